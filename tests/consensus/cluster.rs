//! A simulated cluster: members (honest or Byzantine) and clients exchanging whole consensus
//! messages on a virtual clock, with seeded loss, duplication, delay (so reordering) and
//! partitions. Messages, not datagrams: the service sits on reliable channels, whose own loss
//! and reorder the channel simulator covers; here a lost message stands for a channel that
//! broke and reconnected. Invariants are checked after every delivered message and timeout.

use crate::sim::SimRng;
use ed25519_dalek::SigningKey;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::consensus::certificate::{self, NodeCertificate};
use weft::consensus::ids::{MemberKey, NetworkId, NodeId, NodeIdRequest};
use weft::consensus::log::Decided;
use weft::consensus::member::{Member, MemberConfig, Peer, Transmit};
use weft::consensus::membership::MembershipConfig;
use weft::consensus::policy::{Nack, PolicyConfig};
use weft::consensus::schema::{self, Application, Change, Message, Reply, Vote, VoteKind};
use weft::consensus::signed::{Signature, Signed, member_key, sign};
use weft::consensus::store::MemoryStore;

/// How a member behaves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Follows the protocol.
    Honest,
    /// Receives nothing, sends nothing.
    Silent,
    /// Sends one proposal to half the members and a different one to the rest.
    Equivocator,
    /// Like [`Role::Equivocator`], and also votes nil to the second half where it votes a value
    /// to the first (docs/CONSENSUS.md: polka certificates restore liveness).
    VoteEquivocator,
    /// Forges votes in other members' names, replays old votes, and signs replies with a
    /// second id.
    Forger,
    /// Honest, and proposes to vote out the next member (live and honest) in every proposal.
    Evictor,
    /// An honest node outside the genesis list: it gets an id as client 0, applies with it,
    /// and is voted in (every member's operator approved it).
    Joiner,
}

/// Policy, membership and client settings of a scenario.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Every member's policy.
    pub(crate) policy: PolicyConfig,
    /// Every member's keep-alive period.
    pub(crate) keepalive: Duration,
    /// Clients arrive spread over this long (at random, or evenly with `even`).
    pub(crate) arrivals: Duration,
    /// Clients arrive at even intervals.
    pub(crate) even: bool,
    /// All clients arrive at the start, from one /24.
    pub(crate) one_prefix_at_once: bool,
    /// Each client sends to this many members only (a different set each), not to all.
    pub(crate) members_per_client: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: PolicyConfig::default(),
            keepalive: Duration::from_secs(60),
            arrivals: Duration::from_secs(1),
            even: false,
            one_prefix_at_once: false,
            members_per_client: None,
        }
    }
}

/// The wall clock the simulated members start at (Unix seconds).
const WALL_START: u64 = 1_700_000_000;

/// The network's behaviour until it heals.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Faults {
    /// Chance a message is lost.
    pub(crate) loss: f64,
    /// Chance a message is delivered twice.
    pub(crate) duplicate: f64,
    /// Largest extra delay (uniform), which reorders.
    pub(crate) jitter: Duration,
    /// Members cut off from everyone until the heal.
    pub(crate) partitioned: usize,
    /// When the network heals: no more loss or partition.
    pub(crate) heal_after: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            jitter: Duration::from_millis(5),
            partitioned: 0,
            heal_after: Duration::ZERO,
        }
    }
}

const BASE_DELAY: Duration = Duration::from_millis(1);
const CLIENT_RESEND: Duration = Duration::from_secs(2);

/// A client: one request, sent to every member until a certificate verifies.
pub(crate) struct Client {
    pub(crate) addr: SocketAddr,
    pub(crate) request: NodeIdRequest,
    pub(crate) replies: Vec<Signed<Reply>>,
    pub(crate) certificate: Option<NodeCertificate>,
    /// The member list the certificate verified against.
    pub(crate) roster: Vec<MemberKey>,
    /// Signed NACKs from honest members.
    pub(crate) nacks: Vec<Signed<Nack>>,
    /// The members its first send goes to (by index), or all.
    send_to: Option<Vec<usize>>,
    next_send: Instant,
    /// Sends again after the certificate, to check the repeat gets the same id.
    pub(crate) repeated: bool,
}

enum Node {
    Live(Box<Member>, Role),
    Silent,
    /// Crashed: back at `until`, rebuilt from its store; its log then must equal `log`.
    Down {
        until: Instant,
        role: Role,
        log: Vec<Decided>,
    },
}

/// Where a member crashes (issue 14 point 8): each named by what has happened just before.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Failpoint {
    /// A call's commit held a new vote; nothing of the call was sent.
    AfterVoteWritten,
    /// A call's commit held a new vote, and all it had to send went out.
    AfterVoteSent,
    /// A call's commit held a decision; nothing of the call was sent.
    AfterDecisionWritten,
    /// A decision's ids are final and on disk; everything but the replies went out.
    BeforeReply,
}

/// Crashes one member at a failpoint, `times` times, each after letting `skip` hits pass.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Crashes {
    pub(crate) member: usize,
    pub(crate) at: Failpoint,
    pub(crate) skip: u32,
    pub(crate) times: u32,
    pub(crate) down: Duration,
}

struct InFlight {
    at: Instant,
    seq: u64,
    from: Peer,
    to: Peer,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulated cluster.
pub(crate) struct Cluster {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    rng: SimRng,
    pub(crate) network: NetworkId,
    pub(crate) keys: Vec<SigningKey>,
    pub(crate) members: Vec<MemberKey>,
    nodes: Vec<Node>,
    pub(crate) clients: Vec<Client>,
    flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    faults: Faults,
    /// Votes seen on the wire, for the forger to replay.
    seen_votes: Vec<Signed<Vote>>,
    pub(crate) delivered: u64,
    /// Every final id honest members issued, by (key, salt).
    issued: BTreeMap<([u8; 32], u32), NodeId>,
    /// The genesis members (`members` also names joiners, for routing).
    pub(crate) genesis: Vec<MemberKey>,
    /// Certificates (by client) and chains (by member, as long) already verified: neither
    /// changes once held, and signature checks after every step would dominate the run.
    verified: RefCell<BTreeSet<(usize, MemberKey, usize)>>,
    /// The policy and membership settings every member gets, on restart too.
    settings: (PolicyConfig, MembershipConfig),
    config: MemberConfig,
    stores: Vec<MemoryStore>,
    /// Commits of each store already looked at for failpoints.
    commits: Vec<u64>,
    crashes: Option<Crashes>,
    /// Crashes done.
    pub(crate) crashed: u32,
    /// Every vote an honest member sent, by slot: a second value in one slot is equivocation.
    signed_votes: BTreeMap<(MemberKey, u64, u32, VoteKind), Option<schema::BatchId>>,
}

fn client_addr(index: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (index / 200) as u8, (index % 200) as u8 + 1], 4000))
}

impl Cluster {
    /// A cluster of `roles.len()` members and `clients` clients, all from `seed`.
    pub(crate) fn new(seed: u64, roles: &[Role], clients: usize, faults: Faults) -> Cluster {
        Cluster::with(seed, roles, clients, faults, Options::default())
    }

    /// A cluster with `options`.
    pub(crate) fn with(
        seed: u64,
        roles: &[Role],
        clients: usize,
        faults: Faults,
        options: Options,
    ) -> Cluster {
        let mut rng = SimRng::derive(seed, 1);
        let keys: Vec<SigningKey> = roles
            .iter()
            .map(|_| {
                let mut bytes = [0u8; 32];
                rng.fill(&mut bytes);
                SigningKey::from_bytes(&bytes)
            })
            .collect();
        let members: Vec<MemberKey> = keys.iter().map(member_key).collect();
        let genesis: Vec<MemberKey> = members
            .iter()
            .zip(roles)
            .filter(|(_, role)| **role != Role::Joiner)
            .map(|(key, _)| *key)
            .collect();
        let joiner = roles
            .iter()
            .position(|role| *role == Role::Joiner)
            .map(|i| members[i]);
        let network = NetworkId::of_genesis(&genesis);
        let config = MemberConfig {
            network,
            members: genesis.clone(),
            round_base: Duration::from_millis(50),
            resend: Duration::from_secs(1),
        };
        let start = Instant::now();
        let membership = MembershipConfig {
            keepalive: options.keepalive,
            approved: joiner.into_iter().collect(),
        };
        let stores: Vec<MemoryStore> = roles.iter().map(|_| MemoryStore::default()).collect();
        let nodes = keys
            .iter()
            .zip(roles)
            .zip(&stores)
            .map(|((key, role), store)| match role {
                Role::Silent => Node::Silent,
                role => {
                    let mut member =
                        Member::open(start, key.clone(), config.clone(), store.clone())
                            .expect("an empty store opens")
                            .with_policy(options.policy.clone())
                            .with_membership(membership.clone());
                    member.set_wall_clock(start, WALL_START);
                    Node::Live(Box::new(member), *role)
                }
            })
            .collect();
        let clients = (0..clients)
            .map(|index| {
                let mut key = [0u8; 32];
                rng.fill(&mut key);
                if let (0, Some(joiner)) = (index, joiner) {
                    key = joiner.0;
                }
                let addr = client_addr(index);
                let arrival = if options.one_prefix_at_once || (index == 0 && joiner.is_some()) {
                    0
                } else if options.even {
                    options.arrivals.as_millis() as u64 * index as u64 / clients as u64
                } else {
                    rng.below(options.arrivals.as_millis().max(1) as u64)
                };
                let send_to = options.members_per_client.map(|k| {
                    (0..k)
                        .map(|j| (index + j) % genesis.len())
                        .collect::<Vec<usize>>()
                });
                Client {
                    addr,
                    request: NodeIdRequest {
                        key,
                        addresses: vec![addr],
                        salt: rng.next_u64() as u32,
                    },
                    replies: Vec::new(),
                    certificate: None,
                    roster: Vec::new(),
                    nacks: Vec::new(),
                    send_to,
                    // Clients arrive spread over the first seconds.
                    next_send: start + Duration::from_millis(arrival),
                    repeated: false,
                }
            })
            .collect();
        Cluster {
            start,
            now: start,
            rng,
            network,
            keys,
            members,
            nodes,
            clients,
            flight: BinaryHeap::new(),
            seq: 0,
            faults,
            seen_votes: Vec::new(),
            delivered: 0,
            issued: BTreeMap::new(),
            genesis,
            verified: RefCell::new(BTreeSet::new()),
            settings: (options.policy.clone(), membership),
            config,
            commits: vec![0; stores.len()],
            stores,
            crashes: None,
            crashed: 0,
            signed_votes: BTreeMap::new(),
        }
    }

    /// Crashes a member at a failpoint as `crashes` says.
    pub(crate) fn crash_at(&mut self, crashes: Crashes) {
        self.crashes = Some(crashes);
    }

    /// After a call into member `index`: crash it if a failpoint is hit, else send its output.
    fn after_call(&mut self, index: usize) {
        let commits = self.stores[index].commits();
        let fresh = commits != self.commits[index];
        self.commits[index] = commits;
        let Some(plan) = self
            .crashes
            .filter(|p| p.member == index && p.times > 0 && fresh)
        else {
            return self.collect(index);
        };
        let last = self.stores[index].last_commit();
        let Node::Live(member, role) = &mut self.nodes[index] else {
            return;
        };
        let role = *role;
        let mut out = Vec::new();
        while let Some(transmit) = member.poll_transmit() {
            out.push(transmit);
        }
        let is_reply = |t: &Transmit| matches!(t.to, Peer::Client(_));
        let hit = match plan.at {
            Failpoint::AfterVoteWritten | Failpoint::AfterVoteSent => !last.votes.is_empty(),
            Failpoint::AfterDecisionWritten => !last.decisions.is_empty(),
            Failpoint::BeforeReply => !last.ids.is_empty() && out.iter().any(is_reply),
        };
        let crash = hit && plan.skip == 0;
        let log = member.log().heights().to_vec();
        if hit {
            let plan = self.crashes.as_mut().expect("a plan");
            plan.skip = plan.skip.saturating_sub(1);
        }
        let send: Vec<Transmit> = match (crash, plan.at) {
            (false, _) | (true, Failpoint::AfterVoteSent) => out,
            (true, Failpoint::BeforeReply) => out.into_iter().filter(|t| !is_reply(t)).collect(),
            (true, _) => Vec::new(),
        };
        self.send_out(index, role, send);
        if crash {
            self.nodes[index] = Node::Down {
                until: self.now + plan.down,
                role,
                log,
            };
            self.crashed += 1;
            let plan = self.crashes.as_mut().expect("a plan");
            plan.times -= 1;
            plan.skip = 1;
        }
    }

    /// Restarts crashed members whose time has come, from their stores.
    fn restart_due(&mut self) {
        for index in 0..self.nodes.len() {
            let Node::Down { until, role, log } = &self.nodes[index] else {
                continue;
            };
            if *until > self.now {
                continue;
            }
            let (role, log) = (*role, log.clone());
            let member = Member::open(
                self.now,
                self.keys[index].clone(),
                self.config.clone(),
                self.stores[index].clone(),
            )
            .expect("a member reopens from its store")
            .with_policy(self.settings.0.clone())
            .with_membership(self.settings.1.clone());
            let mut member = member;
            member.set_wall_clock(self.start, WALL_START);
            assert_eq!(
                member.log().heights(),
                &log[..],
                "a restarted member's decisions or ids changed"
            );
            self.nodes[index] = Node::Live(Box::new(member), role);
            self.commits[index] = self.stores[index].commits();
            self.collect(index);
        }
    }

    fn healed(&self) -> bool {
        self.now >= self.start + self.faults.heal_after
    }

    fn index_of(&self, peer: Peer) -> Option<usize> {
        match peer {
            Peer::Member(key) => self.members.iter().position(|m| *m == key),
            Peer::Client(_) => None,
        }
    }

    fn cut_off(&self, peer: Peer) -> bool {
        !self.healed()
            && self
                .index_of(peer)
                .is_some_and(|i| i >= self.members.len() - self.faults.partitioned)
    }

    /// Puts a message on the wire, subject to the faults.
    fn post(&mut self, from: Peer, to: Peer, bytes: Vec<u8>) {
        if self.cut_off(from) || self.cut_off(to) {
            return;
        }
        let healed = self.healed();
        if !healed && self.rng.chance(self.faults.loss) {
            return;
        }
        let copies = if !healed && self.rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.rng.below(self.faults.jitter.as_micros().max(1) as u64);
            let at = self.now + BASE_DELAY + Duration::from_micros(jitter);
            self.seq += 1;
            self.flight.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from,
                to,
                bytes: bytes.clone(),
            }));
        }
    }

    /// Sends what member `index` has to send, through its role's filter.
    fn collect(&mut self, index: usize) {
        let mut out = Vec::new();
        let role = match &mut self.nodes[index] {
            Node::Live(member, role) => {
                while let Some(transmit) = member.poll_transmit() {
                    out.push(transmit);
                }
                *role
            }
            Node::Silent | Node::Down { .. } => return,
        };
        self.send_out(index, role, out);
    }

    fn send_out(&mut self, index: usize, role: Role, out: Vec<Transmit>) {
        let from = Peer::Member(self.members[index]);
        for transmit in out {
            if role == Role::Honest
                && let Ok(Message::Vote(vote)) = schema::decode(&transmit.bytes)
            {
                let body = &vote.body;
                let slot = (body.voter, body.height, body.round, body.kind);
                let first = *self.signed_votes.entry(slot).or_insert(body.value);
                assert_eq!(
                    first, body.value,
                    "an honest member signed two votes for one slot"
                );
            }
            for (to, bytes) in self.misbehave(index, role, transmit) {
                self.post(from, to, bytes);
            }
        }
    }

    /// What a member of `role` sends in place of `transmit`.
    fn misbehave(&mut self, index: usize, role: Role, transmit: Transmit) -> Vec<(Peer, Vec<u8>)> {
        let Transmit { to, bytes } = transmit;
        let mut out = vec![(to, bytes.clone())];
        let Ok(message) = schema::decode(&bytes) else {
            return out;
        };
        let key = self.keys[index].clone();
        let second_half = self
            .index_of(to)
            .is_some_and(|i| i * 2 >= self.members.len());
        match (role, message) {
            (Role::Equivocator | Role::VoteEquivocator, Message::Proposal(proposal))
                if second_half =>
            {
                let mut body = proposal.body.clone();
                if body.batch.entries.pop().is_none() {
                    body.pol_round = Some(body.round.wrapping_add(7));
                }
                out[0].1 = schema::encode(&Message::Proposal(sign(&key, &self.network, body)));
            }
            (Role::VoteEquivocator, Message::Vote(vote))
                if second_half && vote.body.value.is_some() =>
            {
                let mut body = vote.body.clone();
                body.value = None;
                out[0].1 = schema::encode(&Message::Vote(sign(&key, &self.network, body)));
            }
            (Role::Forger, Message::Vote(vote)) => {
                // In another member's name, with our signature: must fail verification.
                let mut forged = vote.clone();
                forged.body.voter = self.members[(index + 1) % self.members.len()];
                out.push((to, schema::encode(&Message::Vote(forged))));
                // A garbage signature on our own vote for another value.
                let mut garbage = vote.clone();
                garbage.body.value = None;
                garbage.signature = Signature([7; 64]);
                out.push((to, schema::encode(&Message::Vote(garbage))));
                // Replay an old vote of anyone.
                if !self.seen_votes.is_empty() {
                    let pick = self.rng.below(self.seen_votes.len() as u64) as usize;
                    let old = self.seen_votes[pick].clone();
                    out.push((to, schema::encode(&Message::Vote(old))));
                }
            }
            (Role::Evictor, Message::Proposal(proposal)) => {
                let mut body = proposal.body.clone();
                let victim = self.members[(index + 1) % self.members.len()];
                body.batch.changes = vec![Change::Remove(victim)];
                out[0].1 = schema::encode(&Message::Proposal(sign(&key, &self.network, body)));
            }
            (Role::Forger, Message::Reply(reply)) => {
                // Signs a second id for the same request.
                let mut body = reply.body.clone();
                body.node_id.0[0] ^= 0xff;
                out[0].1 = schema::encode(&Message::Reply(sign(&key, &self.network, body)));
            }
            _ => {}
        }
        out
    }

    /// Clients whose time to (re)send has come send to every member.
    fn clients_send(&mut self) {
        for c in 0..self.clients.len() {
            let client = &self.clients[c];
            let due = client.next_send <= self.now && !client.done();
            if !due {
                continue;
            }
            if self.clients[c].certificate.is_some() {
                self.clients[c].repeated = true;
            }
            self.clients[c].next_send = self.now + CLIENT_RESEND;
            let from = Peer::Client(self.clients[c].addr);
            let bytes = schema::encode(&Message::Request(self.clients[c].request.clone()));
            let current = self.current_list();
            // A client limited to some members reaches them first; its resends go to all, so
            // it can gather a quorum of replies.
            let targets: Vec<MemberKey> = match self.clients[c].send_to.take() {
                Some(indexes) => indexes.iter().map(|&i| self.genesis[i]).collect(),
                None => current.clone(),
            };
            for member in targets {
                self.post(from, Peer::Member(member), bytes.clone());
            }
            if let Some(application) = self.application(c) {
                let bytes = schema::encode(&Message::Apply(application));
                for member in current {
                    self.post(from, Peer::Member(member), bytes.clone());
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let members = self.nodes.iter().filter_map(|node| match node {
            Node::Live(member, _) => member.poll_timeout(),
            Node::Silent => None,
            Node::Down { until, .. } => Some(*until),
        });
        let clients = self
            .clients
            .iter()
            .filter(|c| !c.done() || self.applying(c))
            .map(|c| c.next_send);
        let flight = self.flight.peek().map(|f| f.0.at);
        members.chain(clients).chain(flight).min()
    }

    /// One event: the earliest delivery or timeout. False when nothing is left to do.
    pub(crate) fn step(&mut self) -> bool {
        let Some(at) = self.next_deadline() else {
            return false;
        };
        self.now = self.now.max(at);
        if self.flight.peek().is_some_and(|f| f.0.at <= self.now) {
            let Reverse(message) = self.flight.pop().unwrap();
            self.deliver(message);
        } else {
            for index in 0..self.nodes.len() {
                if let Node::Live(member, _) = &mut self.nodes[index]
                    && member.poll_timeout().is_some_and(|t| t <= self.now)
                {
                    member.handle_timeout(self.now);
                    self.after_call(index);
                }
            }
            self.restart_due();
            self.clients_send();
        }
        self.observe();
        self.check();
        true
    }

    fn deliver(&mut self, message: InFlight) {
        self.delivered += 1;
        if let Peer::Client(addr) = message.to {
            if let Some(c) = self.clients.iter().position(|c| c.addr == addr) {
                self.client_receives(c, &message.bytes);
            }
            return;
        }
        if let Ok(Message::Vote(vote)) = schema::decode(&message.bytes)
            && self.seen_votes.len() < 512
        {
            self.seen_votes.push(vote);
        }
        let Some(index) = self.index_of(message.to) else {
            return;
        };
        if let Node::Live(member, _) = &mut self.nodes[index] {
            member.handle(self.now, message.from, &message.bytes);
            self.after_call(index);
        }
    }

    fn client_receives(&mut self, c: usize, bytes: &[u8]) {
        let reply = match schema::decode(bytes) {
            Ok(Message::Reply(reply)) => reply,
            Ok(Message::Nack(nack)) => return self.client_nacked(c, nack),
            _ => panic!("a client got something other than a reply or a NACK"),
        };
        let honest = self.is_honest(reply.body.member) && reply.verify(&self.network);
        let client = &mut self.clients[c];
        assert_eq!(
            reply.body.digest,
            client.request.digest(),
            "a reply names another request"
        );
        if let Some(certificate) = &client.certificate {
            // The repeat: an honest member's signed reply carries the same id.
            if honest {
                assert_eq!(
                    reply.body.node_id, certificate.node_id,
                    "a repeated request got another id"
                );
            }
            return;
        }
        if client.replies.contains(&reply) {
            // The same signed reply again (a repeat answered): nothing new to gather.
            return;
        }
        if client.replies.len() >= 64 {
            client.replies.remove(0);
        }
        client.replies.push(reply);
        // A client verifies against the current member list (trust::MemberListChain).
        let members = self.current_list();
        let client = &mut self.clients[c];
        if let Some(certificate) = certificate::gather(&self.network, &members, &client.replies) {
            certificate::verify(&self.network, &members, &certificate.replies)
                .expect("a gathered certificate verifies");
            client.certificate = Some(certificate);
            client.roster = members;
            client.next_send = self.now + CLIENT_RESEND;
        }
    }

    fn is_honest(&self, key: MemberKey) -> bool {
        self.members
            .iter()
            .position(|m| *m == key)
            .is_some_and(|i| matches!(self.nodes[i], Node::Live(_, Role::Honest | Role::Joiner)))
    }

    pub(crate) fn honest(&self) -> impl Iterator<Item = &Member> {
        self.nodes.iter().filter_map(|node| match node {
            Node::Live(member, Role::Honest | Role::Joiner) => Some(&**member),
            _ => None,
        })
    }

    /// Records every final id honest members hold.
    fn observe(&mut self) {
        let mut found = Vec::new();
        for member in self.honest() {
            for decided in member.log().heights() {
                if let Some(ids) = &decided.ids {
                    for (request, id) in decided.requests.iter().zip(ids) {
                        found.push((request.idempotence_key(), *id));
                    }
                }
            }
        }
        for (key, id) in found {
            let first = *self.issued.entry(key).or_insert(id);
            assert_eq!(first, id, "two ids for one (key, salt)");
        }
    }

    /// The invariants, after every step.
    pub(crate) fn check(&self) {
        // Honest logs are prefixes of each other.
        let logs: Vec<Vec<_>> = self
            .honest()
            .map(|m| m.log().heights().iter().map(|d| d.batch).collect())
            .collect();
        for a in &logs {
            for b in &logs {
                let common = a.len().min(b.len());
                assert_eq!(a[..common], b[..common], "honest logs diverge");
            }
        }
        // A client holds an id only with a valid certificate, and it is the logged id.
        for (c, client) in self.clients.iter().enumerate() {
            if let Some(certificate) = &client.certificate {
                if self
                    .verified
                    .borrow_mut()
                    .insert((c, MemberKey([0; 32]), 0))
                {
                    certificate::verify(&self.network, &client.roster, &certificate.replies)
                        .expect("a client holds an id without a valid certificate");
                }
                if let Some(id) = self.issued.get(&client.request.idempotence_key()) {
                    assert_eq!(
                        *id, certificate.node_id,
                        "a certificate names an id no log holds"
                    );
                }
            }
        }
        self.check_policy_and_trust();
    }

    /// Steps until every client holds a certificate and has repeated its request, or `limit`
    /// of virtual time passes; panics then, saying what is missing.
    pub(crate) fn run_until_issued(&mut self, limit: Duration) {
        let deadline = self.start + limit;
        while self.now < deadline {
            if self.clients.iter().all(|c| c.done() && !self.applying(c)) && self.flight.is_empty()
            {
                return;
            }
            if !self.step() {
                break;
            }
        }
        let missing = self.clients.iter().filter(|c| !c.done()).count();
        let heights: Vec<u64> = self.honest().map(|m| m.height()).collect();
        panic!(
            "{missing} of {} clients without a certificate after {:?} (honest heights {heights:?}, {} delivered)",
            self.clients.len(),
            self.now - self.start,
            self.delivered
        );
    }

    /// Every honest member's refusals, summed by reason label.
    pub(crate) fn refusals(&self) -> BTreeMap<&'static str, u64> {
        let mut sum = BTreeMap::new();
        for member in self.honest() {
            for (refusal, count) in member.refused() {
                *sum.entry(refusal.label()).or_insert(0) += count;
            }
        }
        sum
    }

    /// The distinct ids issued.
    pub(crate) fn issued_ids(&self) -> BTreeSet<NodeId> {
        self.issued.values().copied().collect()
    }
}

impl Client {
    /// Holds a certificate and has repeated its request, or an honest member refused it.
    pub(crate) fn done(&self) -> bool {
        (self.certificate.is_some() && self.repeated) || !self.nacks.is_empty()
    }
}

impl Cluster {
    /// The member list of the honest member furthest along: what a client holding the chain
    /// trusts now.
    pub(crate) fn current_list(&self) -> Vec<MemberKey> {
        self.honest()
            .max_by_key(|m| m.height())
            .map_or_else(|| self.genesis.clone(), |m| m.members().to_vec())
    }

    /// The joiner's application, once its client holds a certificate and until it is a member.
    fn application(&self, c: usize) -> Option<Signed<Application>> {
        let client = &self.clients[c];
        if !self.applying(client) {
            return None;
        }
        let index = self
            .members
            .iter()
            .position(|m| m.0 == client.request.key)?;
        let body = Application {
            request: client.request.clone(),
            certificate: client.certificate.as_ref()?.replies.clone(),
        };
        Some(sign(&self.keys[index], &self.network, body))
    }

    /// True for the joiner's client while its node holds a certificate and is not yet in the
    /// current list.
    fn applying(&self, client: &Client) -> bool {
        let key = MemberKey(client.request.key);
        client.certificate.is_some()
            && self.members.contains(&key)
            && !self.genesis.contains(&key)
            && !self.current_list().contains(&key)
    }

    fn client_nacked(&mut self, c: usize, nack: Signed<Nack>) {
        let honest = self.is_honest(nack.body.member) && nack.verify(&self.network);
        let client = &mut self.clients[c];
        assert_eq!(
            nack.body.digest,
            client.request.digest(),
            "a NACK names another request"
        );
        if honest {
            assert!(
                client.certificate.is_none(),
                "an honest member refused a request that was issued"
            );
            client.nacks.push(nack);
        }
    }

    /// Quotas are never exceeded, honest counters agree at equal heights, and every member
    /// list in every honest member's chain verifies and is the one its log decided.
    fn check_policy_and_trust(&self) {
        let mut by_height: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for member in self.honest() {
            let counters = member.counters();
            let entries: Vec<_> = counters.entries().collect();
            for (prefix, count, quota) in &entries {
                assert!(count <= quota, "{prefix:?} has {count} ids, quota {quota}");
            }
            let previous = by_height
                .entry(member.height())
                .or_insert_with(|| entries.clone());
            assert_eq!(*previous, entries, "honest counters differ at one height");
            let membership = member.membership();
            let links = membership.chain().links.len();
            if self
                .verified
                .borrow_mut()
                .insert((usize::MAX, member.key(), links))
            {
                membership
                    .chain()
                    .verify(&self.network)
                    .expect("an honest member's chain does not verify");
            }
            let history = membership.history();
            assert!(links < history.len(), "a chain ahead of the log");
            for (link, decided) in membership.chain().links.iter().zip(&history[1..]) {
                assert_eq!(&link.list, decided, "a chain list the log did not decide");
            }
        }
    }

    /// Every honest member's member list.
    pub(crate) fn lists(&self) -> Vec<Vec<MemberKey>> {
        self.honest().map(|m| m.members().to_vec()).collect()
    }
}
