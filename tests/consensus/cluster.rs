//! A simulated cluster: members (honest or Byzantine) and clients exchanging whole consensus
//! messages on a virtual clock, with seeded loss, duplication, delay (so reordering) and
//! partitions. Messages, not datagrams: the service sits on reliable channels, whose own loss
//! and reorder the channel simulator covers; here a lost message stands for a channel that
//! broke and reconnected. Invariants are checked after every delivered message and timeout.

use crate::sim::SimRng;
use ed25519_dalek::SigningKey;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::consensus::certificate::{self, NodeCertificate};
use weft::consensus::ids::{MemberKey, NetworkId, NodeId, NodeIdRequest};
use weft::consensus::log::Decided;
use weft::consensus::member::{Member, MemberConfig, Peer, Transmit};
use weft::consensus::schema::{self, Message, Reply, Vote, VoteKind};
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
}

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
        let network = NetworkId::of_genesis(&members);
        let config = MemberConfig {
            network,
            members: members.clone(),
            round_base: Duration::from_millis(50),
            resend: Duration::from_secs(1),
        };
        let start = Instant::now();
        let stores: Vec<MemoryStore> = roles.iter().map(|_| MemoryStore::default()).collect();
        let nodes = keys
            .iter()
            .zip(roles)
            .zip(&stores)
            .map(|((key, role), store)| match role {
                Role::Silent => Node::Silent,
                role => {
                    let member = Member::open(start, key.clone(), config.clone(), store.clone())
                        .expect("an empty store opens");
                    Node::Live(Box::new(member), *role)
                }
            })
            .collect();
        let clients = (0..clients)
            .map(|index| {
                let mut key = [0u8; 32];
                rng.fill(&mut key);
                let addr = client_addr(index);
                Client {
                    addr,
                    request: NodeIdRequest {
                        key,
                        addresses: vec![addr],
                        salt: rng.next_u64() as u32,
                    },
                    replies: Vec::new(),
                    certificate: None,
                    // Clients arrive spread over the first seconds.
                    next_send: start + Duration::from_millis(rng.below(1000)),
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
            .expect("a member reopens from its store");
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
            let due =
                client.next_send <= self.now && (client.certificate.is_none() || !client.repeated);
            if !due {
                continue;
            }
            if self.clients[c].certificate.is_some() {
                self.clients[c].repeated = true;
            }
            self.clients[c].next_send = self.now + CLIENT_RESEND;
            let from = Peer::Client(self.clients[c].addr);
            let bytes = schema::encode(&Message::Request(self.clients[c].request.clone()));
            for m in 0..self.members.len() {
                self.post(from, Peer::Member(self.members[m]), bytes.clone());
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
            .filter(|c| c.certificate.is_none() || !c.repeated)
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
        let Ok(Message::Reply(reply)) = schema::decode(bytes) else {
            panic!("a client got something other than a reply");
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
        if client.replies.len() < 64 {
            client.replies.push(reply);
        }
        let members = self.members.clone();
        let client = &mut self.clients[c];
        if let Some(certificate) = certificate::gather(&self.network, &members, &client.replies) {
            certificate::verify(&self.network, &members, &certificate.replies)
                .expect("a gathered certificate verifies");
            client.certificate = Some(certificate);
            client.next_send = self.now + CLIENT_RESEND;
        }
    }

    fn is_honest(&self, key: MemberKey) -> bool {
        self.members
            .iter()
            .position(|m| *m == key)
            .is_some_and(|i| matches!(self.nodes[i], Node::Live(_, Role::Honest)))
    }

    fn honest(&self) -> impl Iterator<Item = &Member> {
        self.nodes.iter().filter_map(|node| match node {
            Node::Live(member, Role::Honest) => Some(&**member),
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
        for client in &self.clients {
            if let Some(certificate) = &client.certificate {
                certificate::verify(&self.network, &self.members, &certificate.replies)
                    .expect("a client holds an id without a valid certificate");
                if let Some(id) = self.issued.get(&client.request.idempotence_key()) {
                    assert_eq!(
                        *id, certificate.node_id,
                        "a certificate names an id no log holds"
                    );
                }
            }
        }
    }

    /// Steps until every client holds a certificate and has repeated its request, or `limit`
    /// of virtual time passes; panics then, saying what is missing.
    pub(crate) fn run_until_issued(&mut self, limit: Duration) {
        let deadline = self.start + limit;
        while self.now < deadline {
            if self
                .clients
                .iter()
                .all(|c| c.certificate.is_some() && c.repeated)
                && self.flight.is_empty()
            {
                return;
            }
            if !self.step() {
                break;
            }
        }
        let missing = self
            .clients
            .iter()
            .filter(|c| c.certificate.is_none())
            .count();
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
