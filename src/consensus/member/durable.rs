//! Durability of a member (PROTOCOL.md §11; issue 14 point 3): the store changes one call
//! gathers and commits before its messages may leave, the engine's write-ahead log and its
//! replay after a restart, and the guard that never signs a second vote or proposal for a slot.
//!
//! **The sync chain** (docs/CONSENSUS.md, Performance). A height costs three commits in a row
//! if each waits for the one before: the decision of the last height with the next proposal,
//! the prevote, the precommit. Two of them overlap here, and no vote or reply leaves before
//! what it depends on is durable:
//! - a round-0 proposal (not a vote) may leave **before** its commit ([`Member::poll_transmit`]
//!   yields it first). A restarted member therefore never signs a new round-0 proposal at the
//!   height it resumes at or the next (it lets those rounds time out), as it may have sent
//!   one there that its store lacks; only a member whose store held something when it
//!   opened, or that committed since, sends one early, and only up to one height past its
//!   last commit;
//! - a member that decided and is not the next proposer holds the decision's commit (and
//!   every message, replies included) for up to [`DECISION_WAIT`] for the next proposal, so
//!   the decision and the prevote are one commit.

use super::{Member, Peer, Transmit};
use crate::consensus::agreement::{Agreement, Timer};
use crate::consensus::ids::MemberKey;
use crate::consensus::schema::{self, BatchId, Message, Proposal, Vote, VoteKind};
use crate::consensus::signed::{Signed, sign};
use crate::consensus::store::{Store, Stored, WalEntry, vote_slot};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a decision's commit waits for the next height's proposal, to be one commit with
/// the prevote; what the decision finalizes (replies) waits as long at most. A wait that ends
/// before the proposal comes costs that member a sync of its own in front of its prevote's;
/// a longer one (20 ms was measured, docs/PERFORMANCE.md, stop 22) saved about a tenth of the
/// commits on the loopback benchmark but held every message of the waiting members longer
/// and lost ids per second there, so it stays short.
pub const DECISION_WAIT: Duration = Duration::from_millis(5);

/// The state of the overlapped sync chain.
#[derive(Debug, Default)]
pub(super) struct Pipeline {
    /// Proposals that may leave before this call's commit.
    pub(super) early: VecDeque<Transmit>,
    /// The height the member was at after its last commit (or when it opened).
    pub(super) synced: u64,
    /// True once the store is known to hold something: opened non-empty, or committed since.
    pub(super) stored: bool,
    /// A member that resumed from a non-empty store proposes nothing new below this height.
    pub(super) quiet_below: u64,
    /// A decision's commit waits for the next proposal until then.
    pub(super) wait_until: Option<Instant>,
    /// How long it waits: [`DECISION_WAIT`] unless the host set another.
    pub(super) wait: Option<Duration>,
}

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
        self.feed_batch(now, messages);
        self.sync();
    }

    /// [`Member::handle_batch`] without its commit: a host then polls what may leave before
    /// the commit (a proposal; [`Member::poll_transmit`] yields nothing else until the commit)
    /// and calls [`Member::sync`], so the proposal travels while the disk syncs.
    pub fn feed_batch<'a>(
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
    }

    /// Sets how long a decision's commit waits for the next proposal (default
    /// [`DECISION_WAIT`]); zero commits each decision in the
    /// call that made it. Safety does not depend on it:
    /// nothing the decision finalizes leaves before its commit either way.
    pub fn with_decision_wait(mut self, wait: Duration) -> Self {
        self.pipe.wait = Some(wait);
        self
    }

    /// Commits what [`Member::feed_batch`] gathered (unless a decision waits for the next
    /// proposal: then [`Member::handle_timeout`] or the next input commits it).
    pub fn sync(&mut self) {
        if self.failed.is_none() {
            self.flush();
        }
    }

    /// Commits this call's changes before its messages may leave; a failed commit silences
    /// the member (what it would send is not durable). A call that signed and decided nothing
    /// commits nothing: its logged inputs ride with the next commit, and a crash before then
    /// loses only inputs that nothing sent depended on.
    pub(super) fn flush(&mut self) {
        if !self.changes.must_commit() {
            self.pipe.wait_until = None;
            return;
        }
        if self.waits_for_proposal() {
            return;
        }
        self.pipe.wait_until = None;
        let changes = std::mem::take(&mut self.changes);
        match self.store.commit(&changes) {
            Ok(()) => {
                self.pipe.synced = self.height;
                self.pipe.stored = true;
            }
            Err(error) => {
                self.outbox.clear();
                self.pipe.early.clear();
                self.timers.clear();
                self.resend_at = None;
                self.failed = Some(error);
            }
        }
    }

    /// True while a decision's commit may wait for the next proposal: nothing signed yet, the
    /// next height begun, another member its proposer, and the wait not over.
    fn waits_for_proposal(&self) -> bool {
        self.pipe.wait_until.is_some()
            && self.changes.votes.is_empty()
            && self.changes.proposals.is_empty()
            && self.started
            && self
                .engine
                .proposer(0)
                .is_some_and(|proposer| proposer != self.me)
    }

    /// After a decision: its commit may wait a moment for the next proposal.
    pub(super) fn decided_at(&mut self, now: Instant) {
        let wait = self.pipe.wait.unwrap_or(DECISION_WAIT);
        if !self.replaying && self.config.members.len() > 1 && !wait.is_zero() {
            self.pipe.wait_until = now.checked_add(wait);
        }
    }

    /// Ends a wait that is over; its commit follows in this call's flush.
    pub(super) fn wait_over(&mut self, now: Instant) {
        if self.pipe.wait_until.is_some_and(|until| until <= now) {
            self.pipe.wait_until = None;
        }
    }

    /// Sends `proposal` to every member, before this call's commit when it may go early.
    pub(super) fn broadcast_proposal(&mut self, proposal: &Signed<Proposal>) {
        let message = Message::Proposal(proposal.clone());
        let early = proposal.body.round == 0
            && proposal.body.pol_round.is_none()
            && self.pipe.stored
            && self.height <= self.pipe.synced.saturating_add(1)
            && self.config.members.len() > 1;
        if !early {
            return self.broadcast(&message);
        }
        let bytes = schema::encode(&message);
        for member in &self.config.members {
            if *member != self.me {
                self.pipe.early.push_back(Transmit {
                    to: Peer::Member(*member),
                    bytes: bytes.clone(),
                });
            }
        }
    }

    /// True when this member must not sign a new proposal for round `round` at `height`: it
    /// resumed from a store and may have sent one there before its crash that the store lacks.
    /// Only round 0's go early, so round 1 has a proposer even when every member restarted; a
    /// lone member never sends one, so it never keeps quiet.
    pub(super) fn quiet(&self, height: u64, round: u32) -> bool {
        round == 0 && height < self.pipe.quiet_below && self.config.members.len() > 1
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
        let held_something = !(stored.decisions.is_empty()
            && stored.votes.is_empty()
            && stored.proposals.is_empty()
            && stored.wal.is_empty());
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
        if held_something {
            // Something was stored: a proposal may have left before a commit that was lost.
            self.pipe.stored = true;
            self.pipe.quiet_below = height.saturating_add(2);
        }
        self.pipe.synced = height;
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
