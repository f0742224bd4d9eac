//! Durability of a member (PROTOCOL.md §11; issue 14 point 3): the store changes one call
//! gathers and commits before its messages may leave, the engine's write-ahead log and its
//! replay after a restart, and the guard that never signs a second vote or proposal for a slot.

use super::{Member, Peer};
use crate::consensus::agreement::{Agreement, Timer};
use crate::consensus::ids::MemberKey;
use crate::consensus::schema::{BatchId, Proposal, Vote, VoteKind};
use crate::consensus::signed::{Signed, sign};
use crate::consensus::store::{Store, Stored, WalEntry, vote_slot};
use std::time::Instant;

/// Engine inputs logged for replay per height, at most. Each member's first vote of each kind
/// per round, each proposer's first proposal per round and each timeout are logged once (what
/// the engine's vote keeper counts), so this is about 200 rounds of seven members; past it
/// inputs are not logged, and a restart resumes from the logged prefix (own votes stay
/// guarded: a restarted member still never signs a second vote for one slot).
pub const MAX_WAL: u32 = 4096;

/// What makes a write-ahead entry the first of its kind.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum WalKey {
    Proposal(u32, MemberKey),
    Vote(u32, VoteKind, MemberKey),
    Timeout(Timer),
    Polka(u32, Option<BatchId>),
}

impl<E: Agreement, S: Store> Member<E, S> {
    /// Feeds several messages that arrived together and commits what they lead this member to
    /// sign or decide in one store transaction (one sync for the batch, not one per message),
    /// before any of their messages can be polled: [`Member::handle`] for a batch. A host
    /// that reads its sockets in batches (the service's `end_batch`, the loopback benchmark)
    /// pays one fsync per batch, and a height the batch gives work to starts at its end.
    pub fn handle_batch<'a>(
        &mut self,
        now: Instant,
        messages: impl IntoIterator<Item = (Peer, &'a [u8])>,
    ) {
        // A height that the batch gives work to starts once all of it is in: one proposal
        // carries every request the batch made ready.
        self.batching = true;
        for (from, bytes) in messages {
            if self.failed.is_some() {
                break;
            }
            self.receive(now, from, bytes);
        }
        self.batching = false;
        if self.failed.is_some() {
            return;
        }
        self.maybe_start(now);
        self.flush();
    }

    /// Commits this call's changes before its messages may leave; a failed commit silences
    /// the member (what it would send is not durable). A call that signed and decided nothing
    /// commits nothing: its logged inputs ride with the next commit, and a crash before then
    /// loses only inputs that nothing sent depended on.
    pub(super) fn flush(&mut self) {
        if !self.changes.must_commit() {
            return;
        }
        let changes = std::mem::take(&mut self.changes);
        if let Err(error) = self.store.commit(&changes) {
            self.outbox.clear();
            self.timers.clear();
            self.resend_at = None;
            self.failed = Some(error);
        }
    }

    /// Logs an input the engine accepted, once per kind, for replay.
    pub(super) fn log_input(&mut self, input: WalEntry) {
        let key = match &input {
            WalEntry::Proposal { proposal, .. } => {
                WalKey::Proposal(proposal.body.round, proposal.body.proposer)
            }
            WalEntry::Vote(vote) => WalKey::Vote(vote.body.round, vote.body.kind, vote.body.voter),
            WalEntry::Timeout(timer) => WalKey::Timeout(*timer),
            WalEntry::Polka(votes) => {
                let first = votes.first().map(|vote| &vote.body);
                WalKey::Polka(first.map_or(0, |v| v.round), first.and_then(|v| v.value))
            }
        };
        if self.wal_len >= MAX_WAL || !self.wal_keys.insert(key) {
            return;
        }
        if !self.replaying {
            self.changes.wal.push(((self.height, self.wal_len), input));
        }
        self.wal_len = self.wal_len.saturating_add(1);
    }

    /// Rebuilds the log and the current height from what was stored: the decisions in order,
    /// then the current height's engine, fed its logged inputs again. The engine is
    /// deterministic, so it reaches the same round and lock and asks for the same votes, which
    /// the guard answers with the stored signatures.
    pub(super) fn resume(&mut self, now: Instant, stored: Stored) {
        for record in stored.decisions {
            self.apply(record.proposal, record.commit);
        }
        let height = self.height;
        for vote in stored.votes {
            if vote.body.height == height {
                self.own_votes.insert(vote_slot(&vote.body), vote);
            }
        }
        for proposal in stored.proposals {
            if proposal.body.height == height {
                self.own_proposals.insert(proposal.body.round, proposal);
            }
        }
        let resumed =
            !(stored.wal.is_empty() && self.own_votes.is_empty() && self.own_proposals.is_empty());
        self.replaying = true;
        if resumed {
            self.start(now);
        }
        for input in stored.wal {
            // Each input was accepted once, so it is again.
            let _ = self.feed(now, input);
            if self.height != height {
                break;
            }
        }
        self.replaying = false;
        self.maybe_start(now);
    }

    /// Signs a vote, unless one was signed for its slot already (before a restart): then that
    /// one, so no two conflicting votes ever carry this member's signature. A new one goes to
    /// the store with this call's batch, before anything is sent.
    pub(super) fn sign_vote(&mut self, vote: Vote) -> Signed<Vote> {
        let slot = vote_slot(&vote);
        if let Some(signed) = self.own_votes.get(&slot) {
            return signed.clone();
        }
        let signed = sign(&self.key, &self.config.network, vote);
        self.own_votes.insert(slot, signed.clone());
        self.changes.votes.push(signed.clone());
        signed
    }

    /// As [`Member::sign_vote`], for proposals: one per round.
    pub(super) fn sign_proposal(&mut self, proposal: Proposal) -> Signed<Proposal> {
        if let Some(signed) = self.own_proposals.get(&proposal.round) {
            return signed.clone();
        }
        let signed = sign(&self.key, &self.config.network, proposal);
        self.own_proposals.insert(signed.body.round, signed.clone());
        self.changes.proposals.push(signed.clone());
        signed
    }
}
