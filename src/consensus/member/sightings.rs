//! Other members' sightings of a request (PROTOCOL.md §11): each signature is checked at most
//! once per member, and only if a batch can carry it (docs/CONSENSUS.md, Performance).

use super::Member;
use crate::consensus::agreement::Agreement;
use crate::consensus::faults;
use crate::consensus::ids::{MemberKey, NodeIdRequest};
use crate::consensus::schema::{Proposal, Refusal, Sighting};
use crate::consensus::signed::Signed;
use crate::consensus::store::Store;
use std::time::Instant;

impl<E: Agreement, S: Store> Member<E, S> {
    /// Takes a member's sighting into the pool. A batch carries the sightings of the f+1
    /// lowest member keys (`Pool::ready`): those are checked as they arrive, off the path from
    /// a proposal to its prevote (a forged one is refused and counted at once). Another
    /// member's waits unchecked until a batch needs it, and so does one of a request that a
    /// proposal of this height carries already (the proposal was checked with its own copy).
    pub(super) fn on_sighting(
        &mut self,
        now: Instant,
        from: MemberKey,
        request: &NodeIdRequest,
        sighting: Signed<Sighting>,
    ) -> Result<(), Refusal> {
        if sighting.body.member != from || sighting.body.digest != request.digest() {
            return Err(Refusal::Unexpected);
        }
        if self.log.lookup(&request.key, request.salt).is_some() {
            return Ok(());
        }
        let carried = self
            .config
            .members
            .iter()
            .position(|member| *member == from)
            .is_some_and(|rank| rank <= faults(self.config.members.len()))
            && !self.proposed.contains(&sighting.body.digest);
        if carried && !sighting.verify(&self.config.network) {
            return Err(Refusal::BadSignature);
        }
        if !self.pool.add(request, sighting, carried) {
            return Err(Refusal::Unexpected);
        }
        self.maybe_start(now);
        Ok(())
    }

    /// Keeps a proposal of this height (to find it again when it decides) and notes the
    /// requests it carries.
    pub(super) fn note_proposal(&mut self, proposal: &Signed<Proposal>) {
        self.proposals.push(proposal.clone());
        let carried = proposal.body.batch.entries.iter();
        self.proposed
            .extend(carried.map(|entry| entry.request.digest()));
    }
}
