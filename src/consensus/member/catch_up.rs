//! Catching up (docs/CONSENSUS.md): a member that sees messages of a later height asks for the
//! decision it lacks, and one that has decided it answers with the proposal and its commit
//! certificate.

use super::{Member, Peer};
use crate::consensus::agreement::Agreement;
use crate::consensus::ids::MemberKey;
use crate::consensus::schema::{Message, Proposal, Refusal, Vote};
use crate::consensus::signed::Signed;
use crate::consensus::store::Store;
use crate::consensus::validate;
use std::time::Instant;

impl<E: Agreement, S: Store> Member<E, S> {
    /// Asks a member that is ahead for the decision of this height, once per resend period.
    pub(super) fn ask_behind(&mut self, from: MemberKey, height: u64) {
        self.note_ahead(from, height);
        if self.asked_behind.insert(from) {
            self.send(
                Peer::Member(from),
                &Message::Ask {
                    height: self.height,
                },
            );
        }
    }

    /// Answers a member that lags with the decision of `height`, once per resend period each
    /// (a decision is large: a member asking in a loop must not make us send in a loop).
    pub(super) fn help_catch_up(&mut self, to: MemberKey, height: u64) {
        if !self.answered.insert((to, height)) {
            return;
        }
        if let Some(kept) = self.decided.get(&height).cloned() {
            self.send(
                Peer::Member(to),
                &Message::Decided {
                    proposal: kept.proposal,
                    commit: kept.commit,
                },
            );
        }
    }

    /// A decided height sent to help this member catch up: decided here too if its commit
    /// certificate holds.
    pub(super) fn on_decided(
        &mut self,
        now: Instant,
        from: MemberKey,
        proposal: Signed<Proposal>,
        commit: Vec<Signed<Vote>>,
    ) -> Result<(), Refusal> {
        let height = proposal.body.height;
        if height < self.height {
            return Err(Refusal::Stale);
        }
        if height > self.height {
            self.ask_behind(from, height);
            return Err(Refusal::Stale);
        }
        self.check_signed(&proposal, proposal.body.proposer)?;
        if !validate::commit(
            &self.config.network,
            &self.config.members,
            &commit,
            height,
            proposal.body.round,
            &proposal.body.batch.id(),
        ) {
            return Err(Refusal::BadSignature);
        }
        // A quorum of precommits includes an honest member, who precommitted only a valid
        // batch: the height is decided, whatever this member's engine saw of it.
        let round = proposal.body.round;
        self.decide(now, round, proposal, commit);
        Ok(())
    }
}
