//! What a member keeps across a restart (PROTOCOL.md §11, durability; issue 14 point 3): the
//! decided log, the (key, salt) → id map, every vote and proposal it signed, and the write-ahead
//! log of what its agreement engine was fed at the current height, so a restarted member
//! rebuilds the same engine state (round and lock) and never signs a vote that conflicts with
//! one it signed before the crash.
//!
//! The member stays sans-IO towards the network: it gathers one [`Changes`] per call of
//! `handle`/`handle_timeout` and hands it to its [`Store`] before any message of that call can
//! be polled, so every vote is on disk before it is sent and every decision before any reply
//! leaves (one commit per batch of outputs; a batch with nothing signed and nothing decided is
//! not committed at all, its inputs ride along with the next commit). [`MemoryStore`] is the
//! simulator's; [`disk::DiskStore`] (redb, in the data directory) is a node's.

pub mod disk;

use super::agreement::Timer;
use super::ids::NodeId;
use super::schema::{Proposal, Vote, VoteKind};
use super::signed::Signed;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// The version of the store's format this build reads and writes.
pub const STORE_FORMAT: u64 = 1;

/// One input the agreement engine was fed at the current height, in order: replayed into a
/// fresh engine on restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalEntry {
    /// A proposal (signature checked) and whether its batch was valid then.
    Proposal {
        /// The proposal.
        proposal: Signed<Proposal>,
        /// The validity the engine was told.
        valid: bool,
    },
    /// Another member's vote (signature checked).
    Vote(Signed<Vote>),
    /// A timer that fired.
    Timeout(Timer),
    /// A quorum of prevotes for one value in one round, fed as a polka certificate.
    Polka(Vec<Signed<Vote>>),
}

/// A decided height as stored: the proposal and the precommits that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedRecord {
    /// The decided proposal.
    pub proposal: Signed<Proposal>,
    /// A quorum of precommits for it, sorted by voter.
    pub commit: Vec<Signed<Vote>>,
}

/// A final id, as the (key, salt) → id map stores it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedId {
    /// The requester's public key.
    pub key: [u8; 32],
    /// Its salt.
    pub salt: u32,
    /// The id.
    pub node_id: NodeId,
    /// The height that ordered the request.
    pub height: u64,
}

/// What one batch of a member's outputs adds to the store, committed at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Heights decided, in order (the next after the stored ones).
    pub decisions: Vec<(u64, DecidedRecord)>,
    /// Ids that became final.
    pub ids: Vec<IssuedId>,
    /// Votes this member signed.
    pub votes: Vec<Signed<Vote>>,
    /// Proposals this member signed.
    pub proposals: Vec<Signed<Proposal>>,
    /// Engine inputs, keyed by (height, sequence number within the height).
    pub wal: Vec<((u64, u32), WalEntry)>,
    /// The height the member moved to: write-ahead entries and own votes and proposals of lower
    /// heights are dropped (a member never votes on a decided height again).
    pub height: Option<u64>,
}

impl Changes {
    /// True when something in it must be durable before the batch's messages leave.
    pub fn must_commit(&self) -> bool {
        !self.decisions.is_empty()
            || !self.ids.is_empty()
            || !self.votes.is_empty()
            || !self.proposals.is_empty()
            || self.height.is_some()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        !self.must_commit() && self.wal.is_empty()
    }
}

/// Everything a member resumes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Every decided height from 1, in order.
    pub decisions: Vec<DecidedRecord>,
    /// Own votes of the height being decided.
    pub votes: Vec<Signed<Vote>>,
    /// Own proposals of the height being decided.
    pub proposals: Vec<Signed<Proposal>>,
    /// The engine's inputs at the height being decided, in order.
    pub wal: Vec<WalEntry>,
}

/// What went wrong with a store; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file holds a format this build does not read.
    #[error(
        "consensus store {}: format version {found}, this build reads version {STORE_FORMAT}; \
         run a weft build that reads it, or move the file aside to join the cluster afresh \
         (the member then catches up from the others)",
        path.display()
    )]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The version it holds.
        found: u64,
    },
    /// The database could not be opened, read or written.
    #[error("consensus store {}: {reason}; check the disk and the file's permissions", path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// Why, as the database said it.
        reason: String,
    },
    /// A record could not be decoded.
    #[error("consensus store {}: a {what} record is corrupt; restore the file from a backup or move it aside", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which kind of record.
        what: &'static str,
    },
    /// The decided log has a gap.
    #[error("consensus store {}: decided heights are not consecutive from 1 (height {height}); restore the file from a backup or move it aside", path.display())]
    Gap {
        /// The file.
        path: PathBuf,
        /// The first height out of order.
        height: u64,
    },
}

/// Where a member keeps what it must not forget.
pub trait Store {
    /// Everything stored, to resume from.
    fn load(&mut self) -> Result<Stored, StoreError>;
    /// Makes `changes` durable, all or nothing; when this returns `Ok` they survive a crash.
    fn commit(&mut self, changes: &Changes) -> Result<(), StoreError>;
}

/// The key of a signed vote: one per height, round and kind.
pub(crate) fn vote_slot(vote: &Vote) -> (u64, u32, VoteKind) {
    (vote.height, vote.round, vote.kind)
}

#[derive(Debug, Default)]
struct Memory {
    decisions: BTreeMap<u64, DecidedRecord>,
    ids: BTreeMap<([u8; 32], u32), IssuedId>,
    votes: BTreeMap<(u64, u32, VoteKind), Signed<Vote>>,
    proposals: BTreeMap<(u64, u32), Signed<Proposal>>,
    wal: BTreeMap<(u64, u32), WalEntry>,
    height: u64,
    commits: u64,
    last: Changes,
}

/// A store in memory, shared by its clones: the simulator keeps one clone while the member it
/// gave the other crashes, and restarts a member from it. A crash loses exactly what a real
/// crash would: everything not handed to [`Store::commit`].
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Memory>>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Memory> {
        // A panic elsewhere cannot leave the maps half-written (each commit is applied whole),
        // so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits so far.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// What the last commit held (for failpoints: did it write a vote, a decision?).
    pub fn last_commit(&self) -> Changes {
        self.lock().last.clone()
    }

    /// The stored id of (key, salt).
    pub fn lookup(&self, key: &[u8; 32], salt: u32) -> Option<IssuedId> {
        self.lock().ids.get(&(*key, salt)).copied()
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        let memory = self.lock();
        let height = memory.height;
        Ok(Stored {
            decisions: memory.decisions.values().cloned().collect(),
            votes: memory
                .votes
                .range((height, 0, VoteKind::Prevote)..)
                .map(|(_, vote)| vote.clone())
                .collect(),
            proposals: memory
                .proposals
                .range((height, 0)..)
                .map(|(_, proposal)| proposal.clone())
                .collect(),
            wal: memory
                .wal
                .range((height, 0)..)
                .map(|(_, entry)| entry.clone())
                .collect(),
        })
    }

    fn commit(&mut self, changes: &Changes) -> Result<(), StoreError> {
        let mut memory = self.lock();
        for (height, record) in &changes.decisions {
            memory.decisions.insert(*height, record.clone());
        }
        for id in &changes.ids {
            memory.ids.insert((id.key, id.salt), *id);
        }
        for vote in &changes.votes {
            memory.votes.insert(vote_slot(&vote.body), vote.clone());
        }
        for proposal in &changes.proposals {
            let key = (proposal.body.height, proposal.body.round);
            memory.proposals.insert(key, proposal.clone());
        }
        for (key, entry) in &changes.wal {
            memory.wal.insert(*key, entry.clone());
        }
        if let Some(height) = changes.height {
            memory.height = height;
            memory.wal = memory.wal.split_off(&(height, 0));
            memory.votes = memory.votes.split_off(&(height, 0, VoteKind::Prevote));
            memory.proposals = memory.proposals.split_off(&(height, 0));
        }
        memory.commits = memory.commits.saturating_add(1);
        memory.last = changes.clone();
        Ok(())
    }
}
