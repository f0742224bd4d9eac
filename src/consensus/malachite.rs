//! [`Agreement`] on Malachite's Tendermint core (`arc-malachitebft-core-driver`, pinned): the
//! driver is synchronous (`Driver::process(Input) -> Vec<Output>`) and leaves networking,
//! signing, timers and the write-ahead log to us, which is what a sans-IO member needs.
//!
//! Its thresholds are fractions: a quorum is more than 2/3 of the members (equal to PROTOCOL.md
//! §11's ⌊(n+f)/2⌋+1 for n = 1…5 and 7, one more for 6), and certificates are checked with the
//! same rule ([`super::quorum`]).

use super::agreement::{Agreement, Step, Timer, TimerKind};
use super::ids::MemberKey;
use super::schema::{Batch, BatchId, Proposal, Refusal, Vote, VoteKind};
use super::signed::{Signature, Signed};
use arc_malachitebft_core_driver::{Driver, Input, Output};
use arc_malachitebft_core_types as mt;
use ed25519_dalek::SigningKey;
use mt::{NilOrVal, Round, ThresholdParams};
use std::fmt;
use std::time::Duration;

/// Malachite's name for our types.
#[derive(Clone, Debug, Default)]
pub struct WeftContext;

/// A height as Malachite counts it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EngineHeight(pub u64);

impl fmt::Display for EngineHeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mt::Height for EngineHeight {
    const ZERO: Self = EngineHeight(0);
    const INITIAL: Self = EngineHeight(1);
    fn increment_by(&self, n: u64) -> Self {
        EngineHeight(self.0.saturating_add(n))
    }
    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(EngineHeight)
    }
    fn as_u64(&self) -> u64 {
        self.0
    }
}

impl mt::Address for MemberKey {}

/// A batch with its id computed once: the driver asks for a value's id on every vote.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EngineValue {
    id: BatchId,
    batch: Batch,
}

impl From<Batch> for EngineValue {
    fn from(batch: Batch) -> Self {
        EngineValue {
            id: batch.id(),
            batch,
        }
    }
}

impl mt::Value for EngineValue {
    type Id = BatchId;
    fn id(&self) -> BatchId {
        self.id
    }
}

/// A vote as the driver sees it (its value as `NilOrVal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineVote {
    vote: Vote,
    value: NilOrVal<BatchId>,
}

impl From<Vote> for EngineVote {
    fn from(vote: Vote) -> Self {
        let value = vote.value.map_or(NilOrVal::Nil, NilOrVal::Val);
        EngineVote { vote, value }
    }
}

impl mt::Vote<WeftContext> for EngineVote {
    fn height(&self) -> EngineHeight {
        EngineHeight(self.vote.height)
    }
    fn round(&self) -> Round {
        Round::new(self.vote.round)
    }
    fn value(&self) -> &NilOrVal<BatchId> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<BatchId> {
        self.value
    }
    fn vote_type(&self) -> mt::VoteType {
        match self.vote.kind {
            VoteKind::Prevote => mt::VoteType::Prevote,
            VoteKind::Precommit => mt::VoteType::Precommit,
        }
    }
    fn validator_address(&self) -> &MemberKey {
        &self.vote.voter
    }
    fn extension(&self) -> Option<&mt::SignedExtension<WeftContext>> {
        None
    }
    fn take_extension(&mut self) -> Option<mt::SignedExtension<WeftContext>> {
        None
    }
    fn extend(self, _extension: mt::SignedExtension<WeftContext>) -> Self {
        self
    }
}

/// A proposal as the driver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineProposal {
    height: EngineHeight,
    round: u32,
    pol_round: Option<u32>,
    proposer: MemberKey,
    value: EngineValue,
}

impl From<Proposal> for EngineProposal {
    fn from(proposal: Proposal) -> Self {
        EngineProposal {
            height: EngineHeight(proposal.height),
            round: proposal.round,
            pol_round: proposal.pol_round,
            proposer: proposal.proposer,
            value: EngineValue::from(proposal.batch),
        }
    }
}

impl From<EngineProposal> for Proposal {
    fn from(proposal: EngineProposal) -> Self {
        Proposal {
            height: proposal.height.0,
            round: proposal.round,
            pol_round: proposal.pol_round,
            batch: proposal.value.batch,
            proposer: proposal.proposer,
        }
    }
}

fn round_of(round: Option<u32>) -> Round {
    round.map_or(Round::Nil, Round::new)
}

impl mt::Proposal<WeftContext> for EngineProposal {
    fn height(&self) -> EngineHeight {
        self.height
    }
    fn round(&self) -> Round {
        Round::new(self.round)
    }
    fn value(&self) -> &EngineValue {
        &self.value
    }
    fn take_value(self) -> EngineValue {
        self.value
    }
    fn pol_round(&self) -> Round {
        round_of(self.pol_round)
    }
    fn validator_address(&self) -> &MemberKey {
        &self.proposer
    }
}

/// Proposals go whole; there are no parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoParts;

impl mt::ProposalPart<WeftContext> for NoParts {
    fn is_first(&self) -> bool {
        true
    }
    fn is_last(&self) -> bool {
        true
    }
}

/// A member with one vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineMember(MemberKey);

impl mt::Validator<WeftContext> for EngineMember {
    fn address(&self) -> &MemberKey {
        &self.0
    }
    fn public_key(&self) -> &MemberKey {
        &self.0
    }
    fn voting_power(&self) -> mt::VotingPower {
        1
    }
}

/// The members, sorted by key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineMembers(Vec<EngineMember>);

impl mt::ValidatorSet<WeftContext> for EngineMembers {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn total_voting_power(&self) -> mt::VotingPower {
        self.0.len() as u64
    }
    fn get_by_address(&self, address: &MemberKey) -> Option<&EngineMember> {
        self.0.iter().find(|member| &member.0 == address)
    }
    fn get_by_index(&self, index: usize) -> Option<&EngineMember> {
        self.0.get(index)
    }
}

/// Ed25519, as [`super::signed`] uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Scheme;

impl mt::SigningScheme for Ed25519Scheme {
    type DecodingError = &'static str;
    type Signature = Signature;
    type PublicKey = MemberKey;
    type PrivateKey = SigningKey;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, &'static str> {
        <[u8; 64]>::try_from(bytes)
            .map(Signature)
            .map_err(|_| "a signature is 64 bytes")
    }
    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }
    fn decode_public_key(bytes: &[u8]) -> Result<MemberKey, &'static str> {
        <[u8; 32]>::try_from(bytes)
            .map(MemberKey)
            .map_err(|_| "a key is 32 bytes")
    }
    fn encode_public_key(key: &MemberKey) -> Vec<u8> {
        key.0.to_vec()
    }
}

/// The proposer of `round` at `height`: round robin over the sorted members, shifted by height.
fn proposer_index(count: usize, height: u64, round: u32) -> usize {
    let count = (count.max(1)) as u64;
    let turn = height.wrapping_add(u64::from(round));
    // count ≥ 1, so the remainder fits in usize.
    (turn.checked_rem(count).unwrap_or(0)) as usize
}

impl mt::Context for WeftContext {
    type Address = MemberKey;
    type Height = EngineHeight;
    type ProposalPart = NoParts;
    type Proposal = EngineProposal;
    type Validator = EngineMember;
    type ValidatorSet = EngineMembers;
    type Timeouts = mt::LinearTimeouts;
    type Value = EngineValue;
    type Vote = EngineVote;
    type Extension = ();
    type SigningScheme = Ed25519Scheme;

    fn select_proposer<'a>(
        &self,
        members: &'a EngineMembers,
        height: EngineHeight,
        round: Round,
    ) -> &'a EngineMember {
        let index = proposer_index(members.0.len(), height.0, round.as_u32().unwrap_or(0));
        // The driver never runs with an empty member list (`MalachiteEngine::start_height`).
        &members.0[index]
    }

    fn new_proposal(
        &self,
        height: EngineHeight,
        round: Round,
        value: EngineValue,
        pol_round: Round,
        proposer: MemberKey,
    ) -> EngineProposal {
        EngineProposal {
            height,
            round: round.as_u32().unwrap_or(0),
            pol_round: pol_round.as_u32(),
            proposer,
            value,
        }
    }

    fn new_prevote(
        &self,
        height: EngineHeight,
        round: Round,
        value: NilOrVal<BatchId>,
        voter: MemberKey,
    ) -> EngineVote {
        new_vote(height, round, value, voter, VoteKind::Prevote)
    }

    fn new_precommit(
        &self,
        height: EngineHeight,
        round: Round,
        value: NilOrVal<BatchId>,
        voter: MemberKey,
    ) -> EngineVote {
        new_vote(height, round, value, voter, VoteKind::Precommit)
    }
}

fn new_vote(
    height: EngineHeight,
    round: Round,
    value: NilOrVal<BatchId>,
    voter: MemberKey,
    kind: VoteKind,
) -> EngineVote {
    let id = match &value {
        NilOrVal::Nil => None,
        NilOrVal::Val(id) => Some(*id),
    };
    EngineVote {
        vote: Vote {
            height: height.0,
            round: round.as_u32().unwrap_or(0),
            kind,
            value: id,
            voter,
        },
        value,
    }
}

/// The round timeouts of [`MalachiteEngine`].
pub type RoundTimeouts = mt::LinearTimeouts;

/// Malachite's driver behind [`Agreement`].
pub struct MalachiteEngine {
    me: MemberKey,
    timeouts: RoundTimeouts,
    members: EngineMembers,
    driver: Driver<WeftContext>,
}

impl MalachiteEngine {
    /// An engine for member `me`, with these round timeouts; it works once
    /// [`Agreement::start_height`] names the members.
    pub fn new(me: MemberKey, timeouts: RoundTimeouts) -> Self {
        let members = EngineMembers(vec![EngineMember(me)]);
        let driver = Driver::new(
            WeftContext,
            EngineHeight(0),
            members.clone(),
            me,
            ThresholdParams::default(),
        );
        MalachiteEngine {
            me,
            timeouts,
            members,
            driver,
        }
    }

    /// Feeds one input and everything it leads to (a new round enters with its proposer);
    /// returns the host's steps.
    fn run(&mut self, input: Input<WeftContext>) -> Result<Vec<Step>, Refusal> {
        let mut steps = Vec::new();
        let mut inputs = vec![input];
        // Each output yields at most one input (a new round), and rounds only grow, so this
        // ends; the bound is a backstop against a driver bug, not a peer's lever.
        let mut budget = 64u32;
        while let Some(input) = inputs.pop() {
            budget = budget.checked_sub(1).ok_or(Refusal::Unexpected)?;
            let outputs = self
                .driver
                .process(input)
                .map_err(|_| Refusal::Unexpected)?;
            for output in outputs {
                self.lift(output, &mut steps, &mut inputs);
            }
        }
        Ok(steps)
    }

    fn lift(
        &self,
        output: Output<WeftContext>,
        steps: &mut Vec<Step>,
        inputs: &mut Vec<Input<WeftContext>>,
    ) {
        match output {
            Output::NewRound(height, round) => {
                let proposer = self
                    .proposer(round.as_u32().unwrap_or(0))
                    .unwrap_or(self.me);
                inputs.push(Input::NewRound(height, round, proposer));
            }
            Output::Propose(proposal) => steps.push(Step::Propose(Proposal::from(proposal))),
            Output::Vote(vote) => steps.push(Step::Vote(vote.vote)),
            Output::Decide(_, proposal) => {
                // The round the output names is the state machine's current one, which is
                // later than the decided proposal's when its precommit quorum arrived after
                // the member moved on (Tendermint L49 fires in any round). The quorum is of
                // the proposal's round, so that is where the precommits are: taking the
                // current round's gave an empty certificate that no lagging member could
                // accept (the seven-member liveness bug, seed 16).
                let round_number = proposal.round;
                let id = proposal.value.id;
                // The driver keeps no certificate of a decision it reached by votes (only of
                // one it was handed): the precommits for the value in that round are its
                // vote keeper's.
                let mut commit = self.votes_for(Round::new(round_number), VoteKind::Precommit, &id);
                commit.sort_by_key(|vote| vote.body.voter);
                commit.dedup_by(|a, b| a.body.voter == b.body.voter);
                steps.push(Step::Decide {
                    round: round_number,
                    proposal: Proposal::from(proposal),
                    commit,
                });
            }
            Output::ScheduleTimeout(timeout) => {
                let kind = match timeout.kind {
                    mt::TimeoutKind::Propose => TimerKind::Propose,
                    mt::TimeoutKind::Prevote => TimerKind::Prevote,
                    mt::TimeoutKind::Precommit => TimerKind::Precommit,
                    // Rebroadcast and finalize are the host's business (the member resends on
                    // its own timer).
                    mt::TimeoutKind::Rebroadcast | mt::TimeoutKind::FinalizeHeight(_) => return,
                };
                let after = self.timeouts.duration_for(timeout);
                let timer = Timer {
                    kind,
                    round: timeout.round.as_u32().unwrap_or(0),
                };
                steps.push(Step::Schedule { timer, after });
            }
            Output::GetValue(height, round, _) => steps.push(Step::NeedValue {
                height: height.0,
                round: round.as_u32().unwrap_or(0),
            }),
        }
    }
}

impl MalachiteEngine {
    /// The signed votes of `kind` for `id` the driver holds for `round`.
    fn votes_for(&self, round: Round, kind: VoteKind, id: &BatchId) -> Vec<Signed<Vote>> {
        self.driver
            .votes()
            .per_round(round)
            .map(|per_round| {
                per_round
                    .received_votes()
                    .iter()
                    .filter(|vote| vote.vote.kind == kind && vote.vote.value == Some(*id))
                    .map(|vote| Signed {
                        body: vote.vote.clone(),
                        signature: vote.signature,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Agreement for MalachiteEngine {
    fn polka(&self, round: u32, id: &BatchId) -> Vec<Signed<Vote>> {
        self.votes_for(Round::new(round), VoteKind::Prevote, id)
    }

    fn height(&self) -> u64 {
        self.driver.height().0
    }

    fn round(&self) -> Option<u32> {
        self.driver.round().as_u32()
    }

    fn start_height(&mut self, height: u64, members: &[MemberKey]) -> Vec<Step> {
        let mut sorted: Vec<MemberKey> = members.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.is_empty() {
            sorted.push(self.me);
        }
        self.members = EngineMembers(sorted.into_iter().map(EngineMember).collect());
        self.driver
            .move_to_height(EngineHeight(height), self.members.clone());
        let proposer = self.proposer(0).unwrap_or(self.me);
        self.run(Input::NewRound(
            EngineHeight(height),
            Round::new(0),
            proposer,
        ))
        .unwrap_or_default()
    }

    fn propose_value(&mut self, round: u32, batch: Batch) -> Vec<Step> {
        self.run(Input::ProposeValue(
            Round::new(round),
            EngineValue::from(batch),
        ))
        .unwrap_or_default()
    }

    fn proposal(&mut self, proposal: Signed<Proposal>, valid: bool) -> Result<Vec<Step>, Refusal> {
        let signed =
            mt::SignedMessage::new(EngineProposal::from(proposal.body), proposal.signature);
        self.run(Input::Proposal(signed, mt::Validity::from_bool(valid)))
    }

    fn vote(&mut self, vote: Signed<Vote>) -> Result<Vec<Step>, Refusal> {
        let signed = mt::SignedMessage::new(EngineVote::from(vote.body), vote.signature);
        self.run(Input::Vote(signed))
    }

    fn timeout(&mut self, timer: Timer) -> Vec<Step> {
        let round = Round::new(timer.round);
        let timeout = match timer.kind {
            TimerKind::Propose => mt::Timeout::propose(round),
            TimerKind::Prevote => mt::Timeout::prevote(round),
            TimerKind::Precommit => mt::Timeout::precommit(round),
        };
        self.run(Input::TimeoutElapsed(timeout)).unwrap_or_default()
    }

    fn polka_certificate(
        &mut self,
        round: u32,
        id: BatchId,
        votes: Vec<Signed<Vote>>,
    ) -> Result<Vec<Step>, Refusal> {
        let height = EngineHeight(self.height());
        let votes = votes
            .into_iter()
            .map(|vote| mt::SignedMessage::new(EngineVote::from(vote.body), vote.signature))
            .collect();
        let certificate = mt::PolkaCertificate::new(height, Round::new(round), id, votes);
        self.run(Input::PolkaCertificate(certificate))
    }

    fn proposer(&self, round: u32) -> Option<MemberKey> {
        let index = proposer_index(self.members.0.len(), self.height(), round);
        self.members.0.get(index).map(|member| member.0)
    }
}

/// Round timeouts scaled from one base: propose 3×, prevote and precommit 1×, each growing by
/// half the base per round, capped at 60×.
pub fn round_timeouts(base: Duration) -> RoundTimeouts {
    let half = base.checked_div(2).unwrap_or_default();
    RoundTimeouts {
        propose: base.saturating_mul(3),
        propose_delta: half,
        prevote: base,
        prevote_delta: half,
        precommit: base,
        precommit_delta: half,
        rebroadcast: base.saturating_mul(5),
        max_timeout: base.saturating_mul(60),
    }
}
