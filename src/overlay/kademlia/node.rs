//! The DHT as one sans-IO state machine (STYLE.md 2). A driver feeds it what arrives
//! ([`Dht::handle`]) and its timers ([`Dht::handle_timeout`]), then takes what it sends
//! ([`Dht::poll_transmit`]), its next deadline ([`Dht::poll_timeout`]) and its events
//! ([`Dht::poll_event`]), in that order after each input. Monotonic time (`now`) drives request
//! timeouts; wall-clock time (`wall`, seconds since the Unix epoch) drives record expiry and
//! republishing. Neither is read here.

use super::cache::NodeCache;
use super::certificate::{CertificateCheck, DriverVouches, certified_only};
use super::config::KademliaConfig;
pub use super::events::{Event, LookupResult};
use super::journal::{Journal, PublishedRecord as Published};
use super::keys::KeyBook;
use super::lookup::Lookup;
use super::store::{RecordStore, Share};
use super::table::{RoutingTable, Seen};
use crate::overlay::id::{Contact, NodeId, key_address};
use crate::overlay::rpc::compression::{Method, Negotiated};
use crate::overlay::rpc::{
    Body, CustomHandlers, Frame, Handler, Opcode, Pending, RecordMeta, Reply, ReplyBody, Request,
    RttEstimate, Value,
};
use crate::stats::Stats;
use crate::wire::PeerId;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Who sent what [`Dht::handle`] is fed, as the layer below proves it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    /// Its peer id, proven by its session.
    pub peer: PeerId,
    /// Where it sent from.
    pub addr: SocketAddr,
    /// The node id it claims; `None` for a client. Only a claim the node's
    /// [`CertificateCheck`] certifies counts; any other sender is served as a client and stays
    /// out of the routing table.
    pub node: Option<NodeId>,
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The peer it is for.
    pub peer: PeerId,
    /// Where it is.
    pub addr: SocketAddr,
    /// The frame.
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(super) enum Tag {
    Lookup {
        lookup: u64,
        node: NodeId,
    },
    Store {
        put: Option<u64>,
        node: NodeId,
        /// The key stored: the ACK must name it (`guard.rs`).
        key: Vec<u8>,
    },
    Probe {
        oldest: NodeId,
    },
    App {
        token: u64,
        node: Option<NodeId>,
    },
    /// A SET_CONNECTION_OPT offering a compression method (or preferring it).
    Opt {
        method: Method,
    },
    /// A PING to a cached contact, to fill a bucket with room (its reply puts it there).
    Refill,
}

#[derive(Clone, Debug)]
pub(super) enum Purpose {
    Get {
        token: u64,
        key: Vec<u8>,
    },
    FindNode {
        token: u64,
    },
    Put {
        token: Option<u64>,
        key: Vec<u8>,
        value: Value,
        meta: RecordMeta,
    },
    Maintain,
}

pub(super) struct Active {
    lookup: Lookup,
    pub(super) purpose: Purpose,
    /// When its next request in flight stalls and another may go out.
    wake: Option<Instant>,
}

struct PutState {
    token: Option<u64>,
    waiting: usize,
    stored: usize,
    depth: u32,
    started: Instant,
}

/// Seconds in a duration, for wall-clock arithmetic.
pub(super) fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// How often the maintenance pass runs (expiry, replication, republish, refresh).
pub(super) const MAINTENANCE: Duration = Duration::from_secs(10);

/// A Kademlia node (PROTOCOL.md §10).
pub struct Dht {
    pub(super) config: KademliaConfig,
    pub(super) own: Contact,
    pub(super) table: RoutingTable,
    pending: Pending<Tag>,
    pub(super) lookups: BTreeMap<u64, Active>,
    puts: BTreeMap<u64, PutState>,
    next_id: u64,
    pub(super) records: RecordStore,
    pub(super) published: BTreeMap<Vec<u8>, Published>,
    /// The contacts the node joined through, asked again while its table is short.
    pub(super) joined_via: Vec<Contact>,
    pub(super) custom: CustomHandlers,
    pub(super) outbox: VecDeque<Transmit>,
    /// What must survive a restart, and the STORE ACKs that wait for it (`durable.rs`).
    pub(super) journal: Option<Journal<(Transmit, u32)>>,
    pub(super) certificates: Box<dyn CertificateCheck>,
    pub(super) events: VecDeque<Event>,
    pub(super) stats: Stats,
    pub(super) rng: StdRng,
    next_maintenance: Option<Instant>,
    /// What each peer negotiated (compression), within `max_peer_options` peers.
    pub(super) peer_options: BTreeMap<PeerId, Negotiated>,
    /// Signature checks each peer has cost (`peers.rs`, [`Dht::charge_check`]).
    pub(super) checks: BTreeMap<PeerId, u8>,
    /// Contacts learned but not held in the table (the node info cache).
    pub(super) cache: NodeCache,
    /// Self-initiated connections, at most ℓ.
    pub(super) links: BTreeSet<NodeId>,
    /// Every round trip measured, together: the timeout of a first contact follows it.
    network_rtt: RttEstimate,
    /// Peers' signed records, for IK opens and FIND_NODE replies (`keys.rs`).
    pub(super) keys: KeyBook,
}

impl Dht {
    /// A node at `own` whose every random choice (request id cipher, refresh targets) follows
    /// from `seed`.
    pub fn new(config: KademliaConfig, own: Contact, seed: [u8; 32]) -> Dht {
        let config = config.sanitised();
        let table = RoutingTable::new(own.id, config.k, config.tau, config.per_subnet_cap);
        let cipher = blake3::derive_key("weft v1 overlay request ids", &seed);
        let rng = blake3::derive_key("weft v1 overlay rng", &seed);
        let mut records = RecordStore::new(
            config.max_records,
            config.max_record_bytes,
            config.max_value,
        );
        // `sanitised` made the share at least 1.
        let share = config.peer_share.max(1);
        records.set_peer_quota(Share {
            records: config.max_records.checked_div(share).unwrap_or(0).max(1),
            bytes: config.max_record_bytes.checked_div(share).unwrap_or(0),
        });
        Dht {
            pending: Pending::new(config.max_pending, &cipher),
            records,
            own,
            table,
            lookups: BTreeMap::new(),
            puts: BTreeMap::new(),
            next_id: 0,
            published: BTreeMap::new(),
            joined_via: Vec::new(),
            custom: CustomHandlers::default(),
            outbox: VecDeque::new(),
            journal: None,
            certificates: Box::new(DriverVouches),
            events: VecDeque::new(),
            stats: Stats::new(),
            rng: StdRng::from_seed(rng),
            next_maintenance: None,
            peer_options: BTreeMap::new(),
            checks: BTreeMap::new(),
            cache: NodeCache::new(config.node_cache),
            links: BTreeSet::new(),
            network_rtt: RttEstimate::default(),
            keys: KeyBook::new(config.max_peer_records),
            config,
        }
    }

    /// The node's own contact.
    pub fn own(&self) -> &Contact {
        &self.own
    }

    /// The id a driver tells peers: `None` in client mode, which keeps the node out of their
    /// tables.
    pub fn advertised_id(&self) -> Option<NodeId> {
        (!self.is_client()).then_some(self.own.id)
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The records held for others.
    pub fn records(&self) -> &RecordStore {
        &self.records
    }

    /// Counters by reason, opcode and outcome.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The settings in force.
    pub fn config(&self) -> &KademliaConfig {
        &self.config
    }

    /// Registers an application's CUSTOM handler under `name`.
    pub fn register_custom(&mut self, name: &str, handler: Handler) {
        self.custom.register(name, handler);
    }

    /// Folds a round-trip time the channel measured into `node`'s estimate.
    pub fn note_rtt(&mut self, node: &NodeId, rtt: Duration) {
        self.sample_rtt(node, rtt);
    }

    /// Folds a sample into the peer's estimate and the node-wide one.
    fn sample_rtt(&mut self, node: &NodeId, rtt: Duration) {
        self.table.sample_rtt(node, rtt);
        self.network_rtt.sample(rtt);
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Joins through `contacts` (configured bootstrap nodes, trusted to be in the table) and
    /// looks the node's own id up, which fills its buckets.
    pub fn bootstrap(&mut self, now: Instant, contacts: &[Contact]) {
        for contact in contacts {
            self.note_seen(now, *contact);
        }
        self.joined_via = contacts.iter().take(self.config.k).copied().collect();
        let own = self.own.id;
        self.start_lookup(now, own, Purpose::Maintain);
    }

    /// Looks up `key`'s value; [`Event::Lookup`] with `token` reports the result.
    pub fn get(&mut self, now: Instant, key: &[u8], token: u64) {
        self.start_lookup(
            now,
            key_address(key),
            Purpose::Get {
                token,
                key: key.to_vec(),
            },
        );
    }

    /// Looks up the k contacts closest to `target`; [`Event::Lookup`] with `token` reports it.
    pub fn find_node(&mut self, now: Instant, target: NodeId, token: u64) {
        self.start_lookup(now, target, Purpose::FindNode { token });
    }

    /// Stores `value` under `key` at the k closest nodes for the record TTL, and again every
    /// republish interval while the node runs; [`Event::Put`] with `token` reports how many
    /// acknowledged.
    pub fn put(&mut self, now: Instant, wall: u64, key: &[u8], value: Value, token: u64) {
        let version = self
            .published
            .get(key)
            .map_or(0, |p| p.version.saturating_add(1));
        self.published.insert(
            key.to_vec(),
            Published {
                value: value.clone(),
                version,
                next: wall.saturating_add(secs(self.config.republish)),
            },
        );
        self.journal_published(key);
        let meta = RecordMeta {
            version,
            ttl: secs(self.config.record_ttl),
        };
        self.start_lookup(
            now,
            key_address(key),
            Purpose::Put {
                token: Some(token),
                key: key.to_vec(),
                value,
                meta,
            },
        );
    }

    /// Sends one request (PING, SET_CONNECTION_OPT, CUSTOM, …) to `to`; [`Event::Reply`] or
    /// [`Event::TimedOut`] with `token` reports the answer. `false` when the budget of
    /// requests in flight is spent.
    pub fn request(
        &mut self,
        now: Instant,
        to: &Contact,
        op: Opcode,
        body: Body,
        token: u64,
    ) -> bool {
        self.send_request(
            now,
            to,
            op,
            body,
            Tag::App {
                token,
                node: Some(to.id),
            },
        )
    }

    /// A measured peer's own timeout; for a first contact, twice the node-wide one (its
    /// request may wait for a handshake round trip first), never more than the initial.
    fn timeout_for(&self, node: &NodeId) -> Duration {
        let timeouts = &self.config.timeouts;
        match self.table.get(node) {
            Some(entry) if entry.rtt.srtt().is_some() => entry.rtt.timeout(timeouts),
            _ if self.network_rtt.srtt().is_some() => self
                .network_rtt
                .timeout(timeouts)
                .saturating_mul(2)
                .min(timeouts.initial),
            _ => timeouts.initial,
        }
    }

    pub(super) fn send_request(
        &mut self,
        now: Instant,
        to: &Contact,
        op: Opcode,
        body: Body,
        tag: Tag,
    ) -> bool {
        let mut timeout = self.timeout_for(&to.id);
        if op == Opcode::Store {
            timeout = timeout.saturating_add(self.config.timeouts.commit);
        }
        let Ok(id) = self.pending.insert(now, to.peer, op, timeout, tag) else {
            self.stats.add(
                "weft_overlay_dropped_total",
                Some(("reason", "pending_full")),
                1,
            );
            return false;
        };
        self.stats.add(
            "weft_overlay_requests_sent_total",
            Some(("op", op.name())),
            1,
        );
        self.queue(to.peer, to.addr, Request { op, id, body }.encode());
        true
    }

    pub(super) fn start_lookup(&mut self, now: Instant, target: NodeId, purpose: Purpose) {
        self.arm(now);
        if self.lookups.len() >= self.config.max_lookups {
            self.stats.add(
                "weft_overlay_dropped_total",
                Some(("reason", "lookups_full")),
                1,
            );
            if let Purpose::Get { token, .. } | Purpose::FindNode { token } = purpose {
                self.events.push_back(Event::Lookup {
                    token,
                    result: LookupResult {
                        found: None,
                        closest: Vec::new(),
                        depth: 0,
                        requests: 0,
                        elapsed: Duration::ZERO,
                    },
                });
            }
            return;
        }
        if let Some(bucket) = self.table.bucket_of(&target) {
            self.table.touch_bucket(bucket, now);
        }
        // The table's k closest, and the node info cache's α closest beside them: learned
        // contacts near the target save hops, while the table's (verified) ones stay in the
        // shortlist should cached ones be stale or made up.
        let mut seeds = self.table.closest(&target, self.config.k);
        seeds.extend(self.cache.closest(&target, self.config.alpha));
        // A request unanswered for twice the node's measured RTT (a silent node, or a first
        // contact behind its handshake) lets another go out beside it.
        let stall = self
            .network_rtt
            .srtt()
            .map_or(self.config.timeouts.initial, |rtt| {
                rtt.saturating_mul(2)
                    .clamp(self.config.timeouts.min, self.config.timeouts.initial)
            });
        let lookup = Lookup::new(target, self.own.id, &seeds, now)
            .with_max_requests(self.config.max_lookup_requests)
            .with_subnet_cap(self.config.per_subnet_cap)
            .with_stall(stall);
        let id = self.fresh_id();
        let wake = None;
        self.lookups.insert(
            id,
            Active {
                lookup,
                purpose,
                wake,
            },
        );
        self.drive_lookup(now, id);
    }

    fn drive_lookup(&mut self, now: Instant, id: u64) {
        let (alpha, k) = (self.config.alpha, self.config.k);
        // Unmeasured contacts count as the node's typical path.
        let typical = self
            .network_rtt
            .srtt()
            .unwrap_or(self.config.timeouts.initial);
        loop {
            let Some(active) = self.lookups.get_mut(&id) else {
                return;
            };
            let table = &self.table;
            let rtt = |id: &NodeId| {
                (table.get(id))
                    .and_then(|e| e.rtt.srtt())
                    .unwrap_or(typical)
            };
            let Some((contact, _depth)) = active.lookup.next_query_by(now, alpha, k, rtt) else {
                active.wake = active.lookup.next_stall(now, alpha, k);
                break;
            };
            let (op, body) = match &active.purpose {
                Purpose::Get { key, .. } => {
                    (Opcode::FindValue, Body::FindValue { key: key.clone() })
                }
                _ => (Opcode::FindNode, Body::FindNode(active.lookup.target())),
            };
            let tag = Tag::Lookup {
                lookup: id,
                node: contact.id,
            };
            if !self.send_request(now, &contact, op, body, tag)
                && let Some(active) = self.lookups.get_mut(&id)
            {
                active.lookup.on_failed(&contact.id);
            }
        }
        if self.lookups.get(&id).is_some_and(|a| a.lookup.is_done(k)) {
            self.finish_lookup(now, id);
        }
    }

    fn finish_lookup(&mut self, now: Instant, id: u64) {
        let Some(Active {
            lookup, purpose, ..
        }) = self.lookups.remove(&id)
        else {
            return;
        };
        let k = self.config.k;
        let result = LookupResult {
            found: lookup.found().cloned(),
            closest: lookup.closest_answered(k),
            depth: lookup.depth(),
            requests: lookup.requests(),
            elapsed: now.saturating_duration_since(lookup.started()),
        };
        match purpose {
            Purpose::Get { token, key } => {
                let outcome = if result.found.is_some() {
                    "found"
                } else {
                    "not_found"
                };
                self.stats
                    .add("weft_overlay_lookups_total", Some(("outcome", outcome)), 1);
                // Kademlia §2.3: the closest node that lacked the record caches it.
                if let (Some(found), Some(cache)) = (&result.found, lookup.closest_without_value())
                {
                    let tag = Tag::Store {
                        put: None,
                        node: cache.id,
                        key: key.clone(),
                    };
                    let body = Body::Store {
                        key,
                        value: found.value.clone(),
                        meta: found.meta,
                    };
                    self.send_request(now, &cache, Opcode::Store, body, tag);
                }
                self.events.push_back(Event::Lookup { token, result });
            }
            Purpose::FindNode { token } => {
                self.stats
                    .add("weft_overlay_lookups_total", Some(("outcome", "nodes")), 1);
                self.events.push_back(Event::Lookup { token, result });
            }
            Purpose::Put {
                token,
                key,
                value,
                meta,
            } => {
                let put = self.fresh_id();
                let mut waiting = 0usize;
                for contact in &result.closest {
                    let body = Body::Store {
                        key: key.clone(),
                        value: value.clone(),
                        meta,
                    };
                    let tag = Tag::Store {
                        put: Some(put),
                        node: contact.id,
                        key: key.clone(),
                    };
                    if self.send_request(now, contact, Opcode::Store, body, tag) {
                        waiting = waiting.saturating_add(1);
                    }
                }
                self.puts.insert(
                    put,
                    PutState {
                        token,
                        waiting,
                        stored: 0,
                        depth: result.depth,
                        started: lookup.started(),
                    },
                );
                self.settle_put(now, put);
            }
            Purpose::Maintain => {}
        }
    }

    fn settle_put(&mut self, now: Instant, put: u64) {
        if self.puts.get(&put).is_some_and(|p| p.waiting == 0)
            && let Some(state) = self.puts.remove(&put)
            && let Some(token) = state.token
        {
            self.events.push_back(Event::Put {
                token,
                stored: state.stored,
                depth: state.depth,
                elapsed: now.saturating_duration_since(state.started),
            });
        }
    }

    pub(super) fn note_seen(&mut self, now: Instant, contact: Contact) {
        // Only ids the node's network certified enter the table (PROTOCOL.md §10).
        if !self.certificates.certified(&contact.id, &contact.peer) {
            return;
        }
        if let Seen::Probe(oldest) = self.table.seen(contact, now) {
            let tag = Tag::Probe { oldest: oldest.id };
            // Unsent, the probe would never end and the bucket would never evict again.
            if !self.send_request(now, &oldest, Opcode::Ping, Body::Ping, tag) {
                self.table.probed(&oldest.id, true, now);
            }
        }
    }

    /// Starts the maintenance timer on the node's first input: a node that only answers
    /// still expires and replicates what it holds.
    fn arm(&mut self, now: Instant) {
        if self.next_maintenance.is_none() {
            self.next_maintenance = now.checked_add(MAINTENANCE);
        }
    }

    /// Runs the maintenance pass at once (a restart with contacts to ping from the cache).
    pub(super) fn maintain_now(&mut self, now: Instant) {
        self.next_maintenance = Some(now);
    }

    /// Feeds one frame that arrived from `from`.
    pub fn handle(&mut self, now: Instant, wall: u64, from: Sender, bytes: &[u8]) {
        self.arm(now);
        let Some(bytes) = self.inflate(bytes) else {
            return;
        };
        let frame = match Frame::parse(&bytes, &self.config.frame) {
            Ok(frame) => frame,
            Err(error) => {
                self.stats.add(
                    "weft_overlay_dropped_total",
                    Some(("reason", error.reason())),
                    1,
                );
                return;
            }
        };
        let from = self.certified_sender(from);
        if let Some(node) = from.node
            && node != self.own.id
        {
            self.note_seen(
                now,
                Contact {
                    id: node,
                    peer: from.peer,
                    addr: from.addr,
                },
            );
        }
        match frame {
            Frame::Request(request) => {
                if let Some(reply) = self.serve(wall, &from, request) {
                    self.send_reply(&from, reply);
                }
            }
            Frame::Reply(reply) => self.on_reply(now, &from, reply),
        }
    }

    fn on_reply(&mut self, now: Instant, from: &Sender, reply: Reply) {
        let (tag, rtt) = match self.pending.answer(now, from.peer, reply.id, reply.op) {
            Ok(answer) => answer,
            Err(mismatch) => {
                self.stats.add(
                    "weft_overlay_dropped_total",
                    Some(("reason", mismatch.reason())),
                    1,
                );
                return;
            }
        };
        let outcome = if reply.ack { "ack" } else { "nack" };
        self.stats
            .add("weft_overlay_replies_total", Some(("outcome", outcome)), 1);
        match tag {
            Tag::Lookup { lookup, node } => {
                self.sample_rtt(&node, rtt);
                let fits = reply.ack && self.answer_fits(from, &node, lookup, &reply.body);
                if let Some(active) = self.lookups.get_mut(&lookup) {
                    match (fits, reply.body) {
                        (true, ReplyBody::Nodes(nodes)) => {
                            let mut contacts = self.keys.relayed(nodes, &mut self.stats);
                            let gone = certified_only(self.certificates.as_ref(), &mut contacts);
                            self.stats
                                .add("weft_overlay_uncertified_total", None, gone as u64);
                            let repeated = active.lookup.on_nodes(&node, &contacts, self.config.k);
                            if repeated > 0 {
                                self.stats.add(
                                    "weft_overlay_dropped_total",
                                    Some(("reason", "address_repeated")),
                                    repeated as u64,
                                );
                            }
                            self.learned(&contacts);
                        }
                        (true, ReplyBody::Found { value, meta, .. }) => {
                            active.lookup.on_found(&node, value, meta)
                        }
                        _ => active.lookup.on_failed(&node),
                    }
                }
                self.drive_lookup(now, lookup);
            }
            Tag::Store { put, node, key } => {
                self.sample_rtt(&node, rtt);
                let stored = reply.ack && self.stored_fits(&key, &reply.body);
                if let Some(put) = put {
                    if let Some(state) = self.puts.get_mut(&put) {
                        state.waiting = state.waiting.saturating_sub(1);
                        if stored {
                            state.stored = state.stored.saturating_add(1);
                        }
                    }
                    self.settle_put(now, put);
                }
            }
            Tag::Probe { oldest } => {
                self.sample_rtt(&oldest, rtt);
                self.table.probed(&oldest, true, now);
            }
            Tag::App { token, node } => {
                if let Some(node) = node {
                    self.sample_rtt(&node, rtt);
                }
                self.events.push_back(Event::Reply { token, reply });
            }
            Tag::Opt { method } => self.on_option_reply(from.peer, method, reply.ack),
            // Its sender was noted as seen on arrival, which put it in the table.
            Tag::Refill => {}
        }
    }

    /// Runs timers due at `now` (request timeouts) and, every few seconds, maintenance at
    /// `wall`: expiry, replication, republish, bucket refresh.
    pub fn handle_timeout(&mut self, now: Instant, wall: u64) {
        while let Some(expired) = self.pending.expire(now) {
            self.stats.add(
                "weft_overlay_requests_timed_out_total",
                Some(("op", expired.op.name())),
                1,
            );
            match expired.tag {
                Tag::Lookup { lookup, node } => {
                    self.table.failed(&node, self.config.max_failures, now);
                    // A contact learned from a reply that never answered is not asked again
                    // (it may be a third party's address a peer made up).
                    self.cache.remove(&node);
                    if let Some(active) = self.lookups.get_mut(&lookup) {
                        active.lookup.on_failed(&node);
                    }
                    self.drive_lookup(now, lookup);
                }
                Tag::Store { put, node, .. } => {
                    self.table.failed(&node, self.config.max_failures, now);
                    if let Some(put) = put {
                        if let Some(state) = self.puts.get_mut(&put) {
                            state.waiting = state.waiting.saturating_sub(1);
                        }
                        self.settle_put(now, put);
                    }
                }
                Tag::Probe { oldest } => self.table.probed(&oldest, false, now),
                Tag::App { token, node } => {
                    if let Some(node) = node {
                        self.table.failed(&node, self.config.max_failures, now);
                    }
                    self.events.push_back(Event::TimedOut { token });
                }
                Tag::Opt { .. } | Tag::Refill => {}
            }
        }
        let stalled: Vec<u64> = (self.lookups.iter())
            .filter(|(_, a)| a.wake.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in stalled {
            self.drive_lookup(now, id);
        }
        match self.next_maintenance {
            Some(at) if at > now => {}
            _ => {
                self.next_maintenance = now.checked_add(MAINTENANCE);
                self.maintain(now, wall);
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stall = self.lookups.values().filter_map(|a| a.wake).min();
        [self.pending.next_deadline(), self.next_maintenance, stall]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Lookups in progress.
    pub fn lookups(&self) -> usize {
        self.lookups.len()
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}
