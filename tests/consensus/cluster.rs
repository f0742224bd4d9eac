//! A simulated cluster: members (honest or Byzantine) and clients exchanging whole consensus
//! messages on a virtual clock, with seeded loss, duplication, delay (so reordering) and
//! partitions. Messages, not datagrams: the service sits on reliable channels, whose own loss
//! and reorder the channel simulator covers; here a lost message stands for a channel that
//! broke and reconnected. Invariants are checked after every delivered message and timeout.
//!
//! Here: the cluster, its set-up and the event loop. Beside it: the wire's faults and the
//! Byzantine roles (`faults.rs`), crashes at failpoints (`crash.rs`), the clients (`clients.rs`)
//! and the invariants (`invariants.rs`).

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

#[path = "cluster/clients.rs"]
mod clients;
#[path = "cluster/crash.rs"]
mod crash;
#[path = "cluster/faults.rs"]
mod faults;
#[path = "cluster/invariants.rs"]
mod invariants;

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
    /// Every message due at one instant reaches its member in one `handle_batch` call, as a
    /// node's service hands over what one pass of its host brought.
    pub(crate) batched: bool,
    /// Clients share source IPs this many to one (a NAT), each on its own port.
    pub(crate) clients_per_ip: usize,
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
            batched: false,
            clients_per_ip: 1,
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
    /// Every honest member that answered, with the member count its reply names: also the
    /// replies that came after the certificate (a quorum is the first n−f of them).
    pub(crate) answered_by: BTreeSet<(MemberKey, u32)>,
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
    /// A round-0 proposal went out before its call's commit, which the crash lost.
    BeforeProposalSynced,
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
    /// [`Options::batched`].
    batched: bool,
    /// The longest a height took to decide, at any honest member, and which height.
    pub(crate) slowest_height: (Duration, u64),
    /// When each member's current height began (the instant its height last changed).
    height_began: Vec<(u64, Instant)>,
    /// Every proposal an honest member sent, by (proposer, height, round): one batch each.
    signed_proposals: BTreeMap<(MemberKey, u64, u32), schema::BatchId>,
}

/// Client `index`'s address, `per_ip` clients to one IP.
fn client_addr(index: usize, per_ip: usize) -> SocketAddr {
    let (ip, port) = (index / per_ip.max(1), index % per_ip.max(1));
    let ip = [10, 0, (ip / 200) as u8, (ip % 200) as u8 + 1];
    SocketAddr::from((ip, 4000 + port as u16))
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
                let addr = client_addr(index, options.clients_per_ip);
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
                    answered_by: BTreeSet::new(),
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
            batched: options.batched,
            slowest_height: (Duration::ZERO, 0),
            height_began: vec![(1, start); roles.len()],
            signed_proposals: BTreeMap::new(),
        }
    }

    /// Records how long each honest member's heights take.
    fn time_heights(&mut self) {
        for (index, node) in self.nodes.iter().enumerate() {
            let Node::Live(member, Role::Honest) = node else {
                continue;
            };
            let (height, began) = self.height_began[index];
            if member.height() != height {
                let took = self.now - began;
                if took > self.slowest_height.0 {
                    self.slowest_height = (took, height);
                }
                self.height_began[index] = (member.height(), self.now);
            }
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
        if self.batched && self.flight.peek().is_some_and(|f| f.0.at <= self.now) {
            self.deliver_due();
        } else if self.flight.peek().is_some_and(|f| f.0.at <= self.now) {
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
        self.time_heights();
        self.observe();
        self.check();
        true
    }

    /// Delivers every message due now: clients' one by one, each member's in one batch.
    fn deliver_due(&mut self) {
        let mut batches: Vec<(usize, Vec<InFlight>)> = Vec::new();
        while self.flight.peek().is_some_and(|f| f.0.at <= self.now) {
            let Reverse(message) = self.flight.pop().unwrap();
            match self.index_of(message.to) {
                Some(index) => match batches.iter_mut().find(|(i, _)| *i == index) {
                    Some((_, batch)) => batch.push(message),
                    None => batches.push((index, vec![message])),
                },
                None => self.deliver(message),
            }
        }
        for (index, batch) in batches {
            self.delivered += batch.len() as u64;
            if let Node::Live(member, _) = &mut self.nodes[index] {
                member.handle_batch(self.now, batch.iter().map(|m| (m.from, &m.bytes[..])));
                self.after_call(index);
            }
        }
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
            // As a node's service does: the input, what may leave before the commit (a
            // round-0 proposal), then the commit.
            member.feed_batch(self.now, [(message.from, &message.bytes[..])]);
            if self.crash_before_sync(index) {
                return;
            }
            if let Node::Live(member, _) = &mut self.nodes[index] {
                member.sync();
            }
            self.after_call(index);
        }
    }
}
