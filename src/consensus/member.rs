//! One cluster member as a sans-IO state machine (STYLE.md 2): the host feeds
//! [`Member::handle`] `(now, from, bytes)` and [`Member::handle_timeout`], then drains
//! [`Member::poll_transmit`] and [`Member::poll_event`] and sleeps until
//! [`Member::poll_timeout`]. No socket, clock or OS randomness in here.
//!
//! A height starts only when there is work (a request with f+1 sightings, ids of the last height
//! to finalize, or a member's message for it), so an idle cluster sends nothing but its resends.

use super::agreement::{Agreement, Step, Timer};
pub use super::config::MemberConfig;
use super::faults;
use super::ids::{MemberKey, NodeId, NodeIdRequest, RequestDigest};
use super::log::Log;
use super::malachite::{MalachiteEngine, round_timeouts};
use super::membership::{Membership, MembershipConfig};
use super::policy::{Counters, PolicyConfig};
use super::pool::Pool;
use super::schema::{self, Batch, BatchId, Message, Proposal, Refusal, Vote, VoteKind};
use super::signed::{Signed, member_key};
use super::store::{Changes, DecidedRecord, IssuedId, MemoryStore, Store, StoreError, WalEntry};
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

// Policy, membership and the wall clock: the hooks of PROTOCOL.md §11's policy and membership.
mod upkeep;

/// A member does not follow votes more rounds ahead of its own than this: a peer could otherwise
/// make it keep a tally for every round number.
pub const MAX_ROUNDS_AHEAD: u32 = 16;

/// Messages for the next height held until this member gets there.
pub const MAX_FUTURE: usize = 256;

/// Decided heights kept to help a lagging member catch up.
pub const KEEP_DECIDED: usize = 64;

/// Digests of member messages handled this resend period, at most.
const MAX_SEEN: usize = 8192;

/// Own messages of the current height kept for resending (the latest ones).
const KEEP_OWN: usize = 4;

mod catch_up;
mod durable;
mod polka;
mod sightings;

pub use durable::{DECISION_WAIT, MAX_WAL};
pub use polka::MAX_TRACKED_PREVOTES;

/// Who a message came from or goes to, as the host's channel proved it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A member, by its key (the host's session proved it).
    Member(MemberKey),
    /// A client, by the source address its channel came from.
    Client(SocketAddr),
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub to: Peer,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

/// What the host may want to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A height decided.
    Decided {
        /// The height.
        height: u64,
        /// How many requests it ordered.
        requests: usize,
    },
    /// An id became final.
    Issued {
        /// The request.
        request: NodeIdRequest,
        /// Its id.
        node_id: NodeId,
        /// The height that ordered it.
        height: u64,
    },
}

/// A decided height kept for catch-up.
#[derive(Clone, Debug)]
struct Kept {
    proposal: Signed<Proposal>,
    commit: Vec<Signed<Vote>>,
}

/// One member of the cluster, on agreement engine `E`, keeping what it must not forget in `S`.
pub struct Member<E: Agreement = MalachiteEngine, S: Store = MemoryStore> {
    key: SigningKey,
    me: MemberKey,
    config: MemberConfig,
    engine: E,
    log: Log,
    pool: Pool,
    /// The height being decided, and whether its round 0 has begun.
    height: u64,
    started: bool,
    timers: BTreeMap<Timer, Instant>,
    resend_at: Option<Instant>,
    proposals: Vec<Signed<Proposal>>,
    /// Requests that this height's proposals carry: a sighting of one that arrives after the
    /// proposal was checked with it, or is not needed, so it is not checked on arrival.
    proposed: BTreeSet<RequestDigest>,
    own: VecDeque<Message>,
    own_polka: Vec<Message>,
    seen: BTreeSet<[u8; 32]>,
    own_sightings: BTreeMap<RequestDigest, Message>,
    future: Vec<(MemberKey, Message)>,
    asked_behind: BTreeSet<MemberKey>,
    answered: BTreeSet<(MemberKey, u64)>,
    decided: BTreeMap<u64, Kept>,
    /// Clients that asked this member, to answer once their ids are final.
    clients: BTreeMap<RequestDigest, BTreeSet<SocketAddr>>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    refused: BTreeMap<Refusal, u64>,
    /// Ids per prefix in the current window, from the decided log (PROTOCOL.md §11, Policy).
    counters: Counters,
    /// Requests NACKed, by limit label.
    nacked: BTreeMap<&'static str, u64>,
    /// Keep-alives, evidence, applications and the member-list chain.
    membership: Membership,
    /// The last decided batch's time (Unix seconds).
    last_time: u64,
    /// The host's wall clock: Unix seconds at an instant.
    wall: Option<(Instant, u64)>,
    /// A member seen ahead, and its height: asked again after each decision until caught up.
    ahead: Option<(MemberKey, u64)>,
    store: S,
    /// What this call of `handle`/`handle_timeout` adds to the store, committed at its end.
    changes: Changes,
    /// Votes and proposals signed at this height: never a second one for one slot.
    own_votes: BTreeMap<(u64, u32, VoteKind), Signed<Vote>>,
    own_proposals: BTreeMap<u32, Signed<Proposal>>,
    wal_keys: BTreeSet<durable::WalKey>,
    /// Verified prevotes for values at this height, conflicting ones included.
    prevotes: BTreeMap<(u32, BatchId), BTreeMap<MemberKey, Signed<Vote>>>,
    /// Polkas handed to the engine as certificates (or found in it already).
    certified: BTreeSet<(u32, BatchId)>,
    wal_len: u32,
    /// True while the write-ahead log is fed back after a restart.
    replaying: bool,
    /// The store failed: this member sends nothing more.
    failed: Option<StoreError>,
    /// True while a batch is fed: heights start at its end, with all of it in the pool.
    batching: bool,
    /// Early proposals and waiting decisions: the overlapped sync chain.
    pipe: durable::Pipeline,
}

impl Member<MalachiteEngine> {
    /// A new member signing with `key`, on Malachite's engine, with nothing stored (a
    /// [`MemoryStore`]; a node uses [`Member::open`]).
    pub fn new(key: SigningKey, config: MemberConfig) -> Self {
        let engine = malachite_engine(&key, &config);
        Member::with_engine(key, config, engine)
    }
}

fn malachite_engine(key: &SigningKey, config: &MemberConfig) -> MalachiteEngine {
    MalachiteEngine::new(member_key(key), round_timeouts(config.round_base))
}

impl<S: Store> Member<MalachiteEngine, S> {
    /// A member on Malachite's engine that resumes from `store` (a
    /// [`super::store::disk::DiskStore`] in the data directory for a node): the decided log,
    /// the ids, and the current height's round and lock, rebuilt by replaying what its engine
    /// was fed. Messages it signed before are sent again as they were; none conflicts.
    pub fn open(
        now: Instant,
        key: SigningKey,
        config: MemberConfig,
        store: S,
    ) -> Result<Self, StoreError> {
        let engine = malachite_engine(&key, &config);
        Member::open_with(now, key, config, engine, store)
    }
}

impl<E: Agreement> Member<E, MemoryStore> {
    /// A new member on another agreement engine, with nothing stored.
    pub fn with_engine(key: SigningKey, config: MemberConfig, engine: E) -> Self {
        Member::bare(key, config, engine, MemoryStore::default())
    }
}

impl<E: Agreement, S: Store> Member<E, S> {
    /// [`Member::open`] on another agreement engine.
    pub fn open_with(
        now: Instant,
        key: SigningKey,
        config: MemberConfig,
        engine: E,
        mut store: S,
    ) -> Result<Self, StoreError> {
        let stored = store.load()?;
        let mut member = Member::bare(key, config, engine, store);
        member.resume(now, stored);
        member.flush();
        match member.failed.take() {
            Some(error) => Err(error),
            None => Ok(member),
        }
    }

    fn bare(key: SigningKey, mut config: MemberConfig, engine: E, store: S) -> Self {
        config.members.sort_unstable();
        config.members.dedup();
        let me = member_key(&key);
        let membership = Membership::new(me, &config.members, MembershipConfig::default());
        Member {
            key,
            me,
            config,
            engine,
            log: Log::default(),
            pool: Pool::default(),
            height: 1,
            started: false,
            timers: BTreeMap::new(),
            resend_at: None,
            proposals: Vec::new(),
            proposed: BTreeSet::new(),
            own: VecDeque::new(),
            own_polka: Vec::new(),
            seen: BTreeSet::new(),
            own_sightings: BTreeMap::new(),
            future: Vec::new(),
            asked_behind: BTreeSet::new(),
            answered: BTreeSet::new(),
            decided: BTreeMap::new(),
            clients: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            refused: BTreeMap::new(),
            counters: Counters::new(PolicyConfig::default()),
            nacked: BTreeMap::new(),
            membership,
            last_time: 0,
            wall: None,
            ahead: None,
            store,
            changes: Changes::default(),
            own_votes: BTreeMap::new(),
            own_proposals: BTreeMap::new(),
            wal_keys: BTreeSet::new(),
            prevotes: BTreeMap::new(),
            certified: BTreeSet::new(),
            wal_len: 0,
            replaying: false,
            failed: None,
            batching: false,
            pipe: durable::Pipeline::default(),
        }
    }

    /// The store's error, once a commit failed: the member then sends nothing more, and the
    /// host should stop and report it.
    pub fn failed(&self) -> Option<&StoreError> {
        self.failed.as_ref()
    }

    /// This member's key.
    pub fn key(&self) -> MemberKey {
        self.me
    }

    /// The decided log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The member lists from genesis on, as decided (what a node's id proof carries).
    pub fn chain(&self) -> &super::trust::MemberListChain {
        self.membership.chain()
    }

    /// The height being decided.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The round of the height being decided, once it has begun.
    pub fn round(&self) -> Option<u32> {
        if self.started {
            self.engine.round()
        } else {
            None
        }
    }

    /// Messages refused, by reason.
    pub fn refused(&self) -> &BTreeMap<Refusal, u64> {
        &self.refused
    }

    /// Requests waiting for a proposal.
    pub fn pending(&self) -> usize {
        self.pool.len()
    }

    fn refuse(&mut self, refusal: Refusal) {
        let count = self.refused.entry(refusal).or_insert(0);
        *count = count.saturating_add(1);
    }

    fn is_member(&self, key: &MemberKey) -> bool {
        self.config.members.binary_search(key).is_ok()
    }

    fn broadcast(&mut self, message: &Message) {
        let bytes = schema::encode(message);
        for member in &self.config.members {
            if *member != self.me {
                self.outbox.push_back(Transmit {
                    to: Peer::Member(*member),
                    bytes: bytes.clone(),
                });
            }
        }
    }

    fn send(&mut self, to: Peer, message: &Message) {
        self.outbox.push_back(Transmit {
            to,
            bytes: schema::encode(message),
        });
    }

    /// Feeds one message that arrived from `from`. What it leads this member to sign or decide
    /// is in its store before any message can be polled.
    pub fn handle(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.receive(now, from, bytes);
        self.flush();
    }

    fn receive(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        self.arm_resend(now);
        if let Peer::Member(member) = from
            && self.is_member(&member)
        {
            // Its own channel delivered: this member's evidence that it is alive.
            self.membership.heard(now, member);
        }
        if let Peer::Member(_) = from {
            // Members resend until heard: a copy already handled this resend period costs a
            // hash, not a decode and signature checks.
            let digest = *blake3::hash(bytes).as_bytes();
            if self.seen.len() >= MAX_SEEN {
                self.seen.clear();
            }
            if !self.seen.insert(digest) {
                return;
            }
        }
        let message = match schema::decode(bytes) {
            Ok(message) => message,
            Err(refusal) => return self.refuse(refusal),
        };
        let result = match from {
            Peer::Client(source) => match message {
                Message::Request(request) => self.on_request(now, source, request),
                Message::Apply(application) => self.on_apply(now, application),
                _ => Err(Refusal::Unexpected),
            },
            Peer::Member(member) if !self.is_member(&member) => Err(Refusal::NonMember),
            Peer::Member(member) => self.on_member(now, member, message),
        };
        if let Err(refusal) = result {
            self.refuse(refusal);
        }
    }

    fn arm_resend(&mut self, now: Instant) {
        if self.resend_at.is_none() {
            self.resend_at = now.checked_add(self.config.resend);
        }
    }

    fn on_member(
        &mut self,
        now: Instant,
        from: MemberKey,
        message: Message,
    ) -> Result<(), Refusal> {
        match message {
            Message::Sighting { request, sighting } => {
                self.on_sighting(now, from, &request, sighting)
            }
            Message::Proposal(proposal) => {
                let (height, round) = (proposal.body.height, proposal.body.round);
                self.check_signed(&proposal, proposal.body.proposer)?;
                self.route(now, from, height, round, Message::Proposal(proposal))
            }
            Message::Vote(vote) => {
                let (height, round) = (vote.body.height, vote.body.round);
                self.check_signed(&vote, vote.body.voter)?;
                self.route(now, from, height, round, Message::Vote(vote))
            }
            Message::Decided { proposal, commit } => self.on_decided(now, from, proposal, commit),
            Message::Ask { height } => {
                if height < self.height {
                    self.help_catch_up(from, height);
                }
                Ok(())
            }
            Message::KeepAlive(_) | Message::Endorse(_) | Message::Links(_) => {
                self.on_membership(from, message)
            }
            Message::Request(_) | Message::Reply(_) | Message::Nack(_) | Message::Apply(_) => {
                Err(Refusal::Unexpected)
            }
        }
    }

    fn check_signed<T: super::signed::Signable>(
        &self,
        signed: &Signed<T>,
        signer: MemberKey,
    ) -> Result<(), Refusal> {
        if !self.is_member(&signer) {
            return Err(Refusal::NonMember);
        }
        if !signed.verify(&self.config.network) {
            return Err(Refusal::BadSignature);
        }
        Ok(())
    }

    /// Sends a proposal or vote to the engine, holds it for the next height, or answers a
    /// member that lags.
    fn route(
        &mut self,
        now: Instant,
        from: MemberKey,
        height: u64,
        round: u32,
        message: Message,
    ) -> Result<(), Refusal> {
        if height < self.height {
            self.help_catch_up(from, height);
            return Err(Refusal::Stale);
        }
        if height > self.height {
            self.ask_behind(from, height);
            if height == self.height.saturating_add(1) && self.future.len() < MAX_FUTURE {
                self.future.push((from, message));
                return Ok(());
            }
            return Err(Refusal::Stale);
        }
        if !self.started {
            self.start(now);
            if !self.started {
                // Not a member of this height's list: nothing for the engine to take.
                return Err(Refusal::NonMember);
            }
        }
        let current = self.engine.round().unwrap_or(0);
        if round > current.saturating_add(MAX_ROUNDS_AHEAD) {
            return Err(Refusal::Stale);
        }
        let input = match message {
            Message::Proposal(proposal) => {
                let valid = self.valid(now, &proposal.body.batch, height);
                WalEntry::Proposal { proposal, valid }
            }
            Message::Vote(vote) => WalEntry::Vote(vote),
            _ => return Err(Refusal::Unexpected),
        };
        self.feed(now, input)?;
        self.certify_polkas(now);
        Ok(())
    }

    /// Hands one input to the engine, logs it for replay, and acts on the steps.
    fn feed(&mut self, now: Instant, input: WalEntry) -> Result<(), Refusal> {
        let steps = match &input {
            WalEntry::Proposal { proposal, valid } => {
                if self.proposals.len() < usize::from(u8::MAX) {
                    self.note_proposal(proposal);
                }
                self.engine.proposal(proposal.clone(), *valid)?
            }
            WalEntry::Vote(vote) => {
                self.track_prevote(vote);
                self.engine.vote(vote.clone())?
            }
            WalEntry::Timeout(timer) => {
                self.timers.remove(timer);
                self.engine.timeout(*timer)
            }
            WalEntry::Polka(votes) => {
                let Some(first) = votes.first().map(|vote| vote.body.clone()) else {
                    return Err(Refusal::Unexpected);
                };
                let id = first.value.ok_or(Refusal::Unexpected)?;
                self.engine
                    .polka_certificate(first.round, id, votes.clone())?
            }
        };
        self.log_input(input);
        self.run(now, steps);
        Ok(())
    }

    fn start(&mut self, now: Instant) {
        if !self.is_member(&self.me) {
            // Not (yet) a member: it follows the log by catching up, and takes part from the
            // height whose list names it.
            return;
        }
        self.started = true;
        let members = self.config.members.clone();
        let steps = self.engine.start_height(self.height, &members);
        self.run(now, steps);
    }

    /// Starts the height when there is work for it.
    fn maybe_start(&mut self, now: Instant) {
        if self.started || self.batching {
            return;
        }
        let last_had_requests = self
            .log
            .get(self.height.saturating_sub(1))
            .is_some_and(|decided| !decided.requests.is_empty());
        let needed = faults(self.config.members.len()).saturating_add(1);
        if last_had_requests
            || !self.ready_entries(now, needed, 1).is_empty()
            || self.membership.proposable().is_some()
        {
            self.start(now);
        }
    }

    fn ready_entries(&self, now: Instant, needed: usize, limit: usize) -> Vec<schema::Entry> {
        let mut seen = BTreeSet::new();
        // PROTOCOL.md §11: counted on top of the log, entry by entry, so the batch never takes a
        // prefix past its quota.
        let mut tally = self.counters.tally(self.batch_time(now));
        self.pool
            .ready(needed, usize::MAX, &self.config.members)
            .into_iter()
            .filter(|entry| {
                let key = entry.request.idempotence_key();
                self.log.lookup(&key.0, key.1).is_none()
                    && !seen.contains(&key)
                    && entry
                        .sightings
                        .first()
                        .is_some_and(|s| tally.admit(s.body.source.ip()).is_ok())
                    && seen.insert(key)
            })
            .take(limit)
            .collect()
    }

    fn run(&mut self, now: Instant, steps: Vec<Step>) {
        let mut queue: VecDeque<Step> = steps.into();
        while let Some(step) = queue.pop_front() {
            let height = self.height;
            let more = match step {
                Step::Propose(proposal) => {
                    if let Some(round) = proposal.pol_round {
                        // Re-proposing a locked value: send the polka that justifies it first.
                        let polka = self.polka(round, proposal.batch.id());
                        self.own_polka = polka.into_iter().map(Message::Vote).collect();
                        for message in self.own_polka.clone() {
                            self.broadcast(&message);
                        }
                    }
                    let signed = self.sign_proposal(proposal);
                    self.broadcast_proposal(&signed);
                    self.keep_own(Message::Proposal(signed.clone()));
                    self.note_proposal(&signed);
                    self.engine.proposal(signed, true).unwrap_or_default()
                }
                Step::Vote(vote) => {
                    let signed = self.sign_vote(vote);
                    self.track_prevote(&signed);
                    let message = Message::Vote(signed.clone());
                    self.broadcast(&message);
                    self.keep_own(message);
                    self.engine.vote(signed).unwrap_or_default()
                }
                Step::NeedValue { height, round } => {
                    let needed = faults(self.config.members.len()).saturating_add(1);
                    let batch = match self.own_proposals.get(&round) {
                        // Proposed before a restart: the same batch again, never another.
                        Some(own) => own.body.batch.clone(),
                        // Maybe proposed before a restart, early, and not stored: nothing.
                        None if self.quiet(height, round) => continue,
                        None => Batch {
                            height,
                            entries: self.proposable(now, needed),
                            last_commit: self
                                .decided
                                .get(&height.saturating_sub(1))
                                .map(|kept| kept.commit.clone())
                                .unwrap_or_default(),
                            time: self.batch_time(now),
                            changes: self.membership.proposable().into_iter().collect(),
                        },
                    };
                    self.engine.propose_value(round, batch)
                }
                Step::Schedule { timer, after } => {
                    if let Some(at) = now.checked_add(after) {
                        self.timers.insert(timer, at);
                    }
                    Vec::new()
                }
                Step::Decide {
                    round,
                    proposal,
                    commit,
                } => {
                    let signed = self
                        .proposals
                        .iter()
                        .find(|signed| signed.body == proposal)
                        .cloned();
                    if let Some(signed) = signed {
                        self.decide(now, round, signed, commit);
                    }
                    Vec::new()
                }
            };
            if self.height != height {
                // The height moved on: what the old one's engine said no longer applies.
                return;
            }
            queue.extend(more);
        }
    }

    fn keep_own(&mut self, message: Message) {
        if self.own.len() >= KEEP_OWN {
            self.own.pop_front();
        }
        self.own.push_back(message);
    }

    /// Records a decision in the log (and finalizes the previous height's ids); returns the
    /// ids that became final. Shared by deciding and by resuming from the store.
    fn apply(
        &mut self,
        proposal: Signed<Proposal>,
        commit: Vec<Signed<Vote>>,
    ) -> Vec<(NodeIdRequest, NodeId)> {
        let height = self.height;
        let batch = &proposal.body.batch;
        let requests: Vec<NodeIdRequest> =
            batch.entries.iter().map(|e| e.request.clone()).collect();
        self.log.append(batch.id(), &requests);
        let issued = match height.checked_sub(1) {
            Some(previous) if previous > 0 => self.log.finalize(previous, &batch.last_commit),
            _ => Vec::new(),
        };
        let batch = proposal.body.batch.clone();
        self.decided.insert(height, Kept { proposal, commit });
        while self.decided.len() > KEEP_DECIDED {
            self.decided.pop_first();
        }
        // Policy counters and membership follow the log, on restart too.
        self.apply_decided(height, &batch);
        self.height = height.saturating_add(1);
        issued
    }

    fn decide(
        &mut self,
        now: Instant,
        _round: u32,
        proposal: Signed<Proposal>,
        commit: Vec<Signed<Vote>>,
    ) {
        let height = self.height;
        let requests: Vec<NodeIdRequest> = proposal
            .body
            .batch
            .entries
            .iter()
            .map(|e| e.request.clone())
            .collect();
        // The decision and the ids it finalizes go into this call's commit, which the store
        // makes durable before any reply below can be polled.
        let record = DecidedRecord {
            proposal: proposal.clone(),
            commit: commit.clone(),
        };
        self.changes.decisions.push((height, record));
        let issued = self.apply(proposal, commit);
        self.changes.height = Some(self.height);
        for request in &requests {
            self.pool.remove(&request.digest());
            self.own_sightings.remove(&request.digest());
        }
        self.events.push_back(Event::Decided {
            height,
            requests: requests.len(),
        });
        let ordered = height.saturating_sub(1);
        for (request, node_id) in issued {
            let digest = request.digest();
            self.changes.ids.push(IssuedId {
                key: request.key,
                salt: request.salt,
                node_id,
                height: ordered,
            });
            if let Some(clients) = self.clients.remove(&digest) {
                for client in clients {
                    self.reply(Peer::Client(client), digest, node_id, ordered);
                }
            }
            self.events.push_back(Event::Issued {
                request,
                node_id,
                height: ordered,
            });
        }
        self.purge_over_quota(now);
        self.decided_at(now);
        self.started = false;
        self.timers.clear();
        self.proposals.clear();
        self.proposed.clear();
        self.own.clear();
        self.own_polka.clear();
        self.prevotes.clear();
        self.certified.clear();
        self.asked_behind.clear();
        self.own_votes.clear();
        self.own_proposals.clear();
        self.wal_keys.clear();
        self.wal_len = 0;
        let future = std::mem::take(&mut self.future);
        for (from, message) in future {
            let _ = self.on_member(now, from, message);
        }
        self.maybe_start(now);
        self.ask_ahead();
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed.is_some() {
            return;
        }
        self.fire(now);
        self.flush();
    }

    fn fire(&mut self, now: Instant) {
        self.wait_over(now);
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(timer, _)| *timer)
            .collect();
        for timer in due {
            let height = self.height;
            let _ = self.feed(now, WalEntry::Timeout(timer));
            if self.height != height {
                break;
            }
        }
        if self.resend_at.is_some_and(|at| at <= now) {
            self.resend_at = now.checked_add(self.config.resend);
            self.resend();
            self.tick_membership(now);
        }
    }

    fn resend(&mut self) {
        self.seen.clear();
        self.asked_behind.clear();
        self.answered.clear();
        let own: Vec<Message> = self.own_polka.iter().chain(&self.own).cloned().collect();
        for message in own {
            self.broadcast(&message);
        }
        let sightings: Vec<Message> = self.own_sightings.values().cloned().collect();
        for message in sightings {
            self.broadcast(&message);
        }
    }

    /// The next message to send: a round-0 proposal may come before the commit it rides with,
    /// everything else only once the member's changes are durable.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(early) = self.pipe.early.pop_front() {
            return Some(early);
        }
        if self.changes.must_commit() {
            return None;
        }
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Member::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let wait = self.pipe.wait_until.filter(|_| self.changes.must_commit());
        self.timers
            .values()
            .copied()
            .chain(self.resend_at)
            .chain(wait)
            .min()
    }
}
