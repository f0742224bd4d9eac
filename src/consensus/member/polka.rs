//! Split polkas (issue 14, liveness under vote equivocation): Malachite's vote keeper counts a
//! member's first vote of a round and keeps a conflicting second one only as evidence, so a
//! member that prevotes a value to some members and nil to others can leave one honest member
//! locked on a value whose polka the others never count, and the height stalls. As CometBFT
//! does once a peer shows a quorum for a value, this member keeps every verified prevote for a
//! value, and once it holds a quorum from distinct members for one (round, value) that its
//! engine has not counted, hands it to the engine as a polka certificate. A quorum holds at
//! least f+1 honest prevotes, so the polka is real: safety is Tendermint's.

use super::Member;
use crate::consensus::agreement::Agreement;
use crate::consensus::quorum;
use crate::consensus::schema::{BatchId, Vote, VoteKind};
use crate::consensus::signed::Signed;
use crate::consensus::store::{Store, WalEntry};
use std::time::Instant;

/// Prevotes kept per height, at most: a voter's prevotes count once per (round, value), and
/// rounds are bounded by `MAX_ROUNDS_AHEAD`, so this is only reached by an equivocator naming
/// many values; past it, new (round, value) pairs are not tracked.
pub const MAX_TRACKED_PREVOTES: usize = 2048;

impl<E: Agreement, S: Store> Member<E, S> {
    /// Keeps a verified prevote for a value (own ones too).
    pub(super) fn track_prevote(&mut self, vote: &Signed<Vote>) {
        let body = &vote.body;
        let (VoteKind::Prevote, Some(id)) = (body.kind, body.value) else {
            return;
        };
        let key = (body.round, id);
        if self.certified.contains(&key) {
            return;
        }
        let tracked: usize = self.prevotes.values().map(|voters| voters.len()).sum();
        if tracked >= MAX_TRACKED_PREVOTES {
            return;
        }
        self.prevotes
            .entry(key)
            .or_default()
            .entry(body.voter)
            .or_insert_with(|| vote.clone());
    }

    /// Hands the engine every tracked polka it has not counted itself.
    pub(super) fn certify_polkas(&mut self, now: Instant) {
        let needed = quorum(self.config.members.len());
        let ready: Vec<(u32, BatchId)> = self
            .prevotes
            .iter()
            .filter(|(key, voters)| voters.len() >= needed && !self.certified.contains(key))
            .map(|(key, _)| *key)
            .collect();
        for (round, id) in ready {
            let height = self.height;
            self.certified.insert((round, id));
            if self.engine.polka(round, &id).len() >= needed {
                // Counted from single votes already: the common case, nothing to add.
                continue;
            }
            let votes: Vec<Signed<Vote>> = self
                .prevotes
                .get(&(round, id))
                .map(|voters| voters.values().cloned().collect())
                .unwrap_or_default();
            let _ = self.feed(now, WalEntry::Polka(votes));
            if self.height != height {
                return;
            }
        }
    }

    /// The prevotes for `id` in `round` this member holds: what a proposer re-proposing a
    /// locked value sends along, including an equivocator's vote its engine counted.
    pub(super) fn polka(&self, round: u32, id: BatchId) -> Vec<Signed<Vote>> {
        let mut votes = self.engine.polka(round, &id);
        if let Some(voters) = self.prevotes.get(&(round, id)) {
            for vote in voters.values() {
                if !votes.iter().any(|v| v.body.voter == vote.body.voter) {
                    votes.push(vote.clone());
                }
            }
        }
        votes
    }
}
