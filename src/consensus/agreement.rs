//! The seam between a cluster member and the agreement engine that orders its log, so the
//! engine can be swapped (issue 14: the embedded core calls itself alpha). The member signs,
//! sends, times and persists; the engine only decides, through [`Agreement`].

use super::ids::MemberKey;
use super::schema::{Batch, BatchId, Proposal, Refusal, Vote};
use super::signed::Signed;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which of a round's timeouts.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// Waiting for the proposal.
    Propose,
    /// Waiting for a prevote quorum on one value.
    Prevote,
    /// Waiting for a precommit quorum on one value.
    Precommit,
}

/// A timeout the engine asked for, named so it can be handed back.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timer {
    /// Which one.
    pub kind: TimerKind,
    /// Its round.
    pub round: u32,
}

/// What the engine asks of its host, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Sign this proposal, send it to every member and hand it back as valid.
    Propose(Proposal),
    /// Sign this vote, persist it, send it to every member and hand it back.
    Vote(Vote),
    /// Give a batch to propose in this round of this height ([`Agreement::propose_value`]).
    NeedValue {
        /// The height.
        height: u64,
        /// The round.
        round: u32,
    },
    /// Hand `timer` back after `after`.
    Schedule {
        /// The timer.
        timer: Timer,
        /// How long from now.
        after: Duration,
    },
    /// The height decided this proposal in `round`, with these precommits (a quorum for it, as
    /// the engine holds them).
    Decide {
        /// The round.
        round: u32,
        /// The decided proposal.
        proposal: Proposal,
        /// The precommits that decided it.
        commit: Vec<Signed<Vote>>,
    },
}

/// An agreement engine for one member: Tendermint-style rounds over signed votes. Signatures
/// are checked by the host before anything reaches it.
pub trait Agreement {
    /// The height it works on.
    fn height(&self) -> u64;
    /// Its round in the height, `None` before the first.
    fn round(&self) -> Option<u32>;
    /// Moves to `height` with `members` and starts round 0.
    fn start_height(&mut self, height: u64, members: &[MemberKey]) -> Vec<Step>;
    /// The batch the host proposes in `round`, after [`Step::NeedValue`].
    fn propose_value(&mut self, round: u32, batch: Batch) -> Vec<Step>;
    /// A signed proposal (its signature checked) and whether the host finds its batch valid.
    fn proposal(&mut self, proposal: Signed<Proposal>, valid: bool) -> Result<Vec<Step>, Refusal>;
    /// A signed vote, its signature checked.
    fn vote(&mut self, vote: Signed<Vote>) -> Result<Vec<Step>, Refusal>;
    /// A timer it asked for has fired.
    fn timeout(&mut self, timer: Timer) -> Vec<Step>;
    /// A quorum of prevotes for `id` in `round` of the current height (signatures checked,
    /// distinct voters): counted as a polka even where the engine kept another vote of an
    /// equivocating voter (CometBFT's remedy for a split polka; docs/CONSENSUS.md).
    fn polka_certificate(
        &mut self,
        round: u32,
        id: BatchId,
        votes: Vec<Signed<Vote>>,
    ) -> Result<Vec<Step>, Refusal>;
    /// The prevotes it holds for `id` in `round` of the current height: the polka a proposer
    /// re-proposing a locked value sends along, so members that missed it can follow
    /// (Tendermint's liveness assumes every message of a correct member arrives eventually).
    fn polka(&self, round: u32, id: &BatchId) -> Vec<Signed<Vote>>;
    /// The proposer of `round` at the current height.
    fn proposer(&self, round: u32) -> Option<MemberKey>;
}
