//! The consensus service on a node's worker (`service::host`): the sans-IO [`Member`] adapted to
//! channels, and the node asking the cluster for its own id.
//!
//! - **Members** talk over a full mesh of encrypted reliable ordered channels ([`Links`]), one
//!   this node opens to each other member by peer id and address, opened again with backoff
//!   whenever it closes. A message from a channel whose session proved a member's peer id is
//!   the member's; everything else is a client's.
//! - **Clients** send requests on their own channel; the member sees each with the source
//!   address the shard reports for the channel ([`Clients`]), never one the request names, and
//!   its signed reply goes back on that channel.
//! - **The node's own id**: it asks every member (itself too, when it is one) with [`Asking`]
//!   until a quorum of matching signed replies is its certificate, then logs it and shows it in
//!   `weft status`. A node with no members configured is the lone member of its own network, so
//!   `weft node` with no config ends up with a certified id; a node with members configured
//!   never starts a cluster of its own, however long they stay out of reach.
//! - **Timers** are the member's deadlines, the links' reopen times and the ask period.
//!
//! Peer input is hostile: the member's decoder checks the size bound before decoding and every
//! refusal is counted by reason (`weft_consensus_refusals_total`).

use super::asking::{Asking, certificate_bytes};
use super::clients::{Clients, Seen};
use super::config::MemberConfig;
use super::ids::{MemberKey, NetworkId, NodeId, NodeIdRequest};
use super::learn::ChainWatch;
use super::links::{LinkEvent, Links};
use super::malachite::MalachiteEngine;
use super::member::{Event, Member, Peer};
use super::membership::MembershipConfig;
use super::policy::{LIMIT_LABELS, PolicyConfig};
use super::query;
use super::schema::{self, Message, Refusal, VoteKind};
use super::store::StoreError;
use super::store::disk::DiskStore;
use crate::service::host::{Context, Service, ServiceTag, body};
use crate::service::{Delivery, Input};
use crate::session::PeerRecord;
use crate::session::peer_id_of;
use crate::session::{SourceRateLimiter, TokenRate};
use crate::stats::{HistogramSlots, catalog};
use crate::wire::PeerId;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Metric names (declared in `stats::catalog`, "services").
pub mod metric {
    /// Members of the network, this node's view.
    pub const MEMBERS: &str = "weft_consensus_members";
    /// Height being decided.
    pub const HEIGHT: &str = "weft_consensus_height";
    /// Round of that height.
    pub const ROUND: &str = "weft_consensus_round";
    /// Heights decided.
    pub const DECISIONS: &str = "weft_consensus_decisions_total";
    /// Rounds past round 0 entered.
    pub const ROUND_CHANGES: &str = "weft_consensus_round_changes_total";
    /// Votes this member sent, by step.
    pub const VOTES: &str = "weft_consensus_votes_sent_total";
    /// Ids this member saw become final.
    pub const ISSUED: &str = "weft_consensus_ids_issued_total";
    /// Messages refused, by reason.
    pub const REFUSALS: &str = "weft_consensus_refusals_total";
    /// Member links open.
    pub const LINKS_OPEN: &str = "weft_consensus_links_open";
    /// 1 once the node holds a certificate for its own id.
    pub const CERTIFIED: &str = "weft_consensus_node_id_certified";
    /// Requests NACKed, by policy limit.
    pub const POLICY_REFUSALS: &str = "weft_consensus_policy_refusals_total";
    /// Member-list changes decided, by change (added, removed).
    pub const MEMBERSHIP_CHANGES: &str = "weft_consensus_membership_changes_total";
    /// Members asked after two keep-alive periods of silence.
    pub const KEEPALIVES_MISSED: &str = "weft_consensus_keepalives_missed_total";
    /// 1 while the member list is being fetched from a URL.
    pub const WAITING: &str = "weft_consensus_waiting_for_members";
}

/// What the service needs to run.
#[derive(Clone)]
pub struct Settings {
    /// The node's identity key: its member key when it is a member, and the key its id is for.
    pub key: SigningKey,
    /// The node's own signed record, with the addresses it asks its id for.
    pub own: PeerRecord,
    /// The configured members' records; empty makes this node the lone member of its own
    /// network.
    pub members: Vec<PeerRecord>,
    /// The base of the round timeouts.
    pub round_base: Duration,
    /// How often a member sends its own messages of the current height again.
    pub resend: Duration,
    /// The salt of the node's own id request.
    pub salt: u32,
    /// The directory of the member's durable store (`consensus::store::disk`), which must
    /// exist: the data directory for a node.
    pub store: std::path::PathBuf,
    /// The network `members` belong to when they are not its genesis (a list fetched with its
    /// chain, [`super::bootstrap`], or configured with `network_id`); `None`: the genesis of
    /// `members`.
    pub network: Option<NetworkId>,
    /// The member-list chain from genesis whose current list is `members`, when known (a
    /// fetched document's); `None`: `members` are genesis, or the chain is learned from them
    /// ([`super::learn`]). A node runs a member once it holds the chain and the current list
    /// names it.
    pub chain: Option<super::trust::MemberListChain>,
    /// The issuing policy (the same at every member).
    pub policy: PolicyConfig,
    /// Keep-alive period and approved applicants.
    pub membership: MembershipConfig,
}

/// What `weft status` and the cluster query show of the service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The network.
    pub network: Option<NetworkId>,
    /// Members of the network.
    pub members: usize,
    /// True when this node is one of them.
    pub is_member: bool,
    /// Height being decided (members only).
    pub height: u64,
    /// Its round, once started.
    pub round: Option<u32>,
    /// Last decided height and when.
    pub last_decision: Option<(u64, Instant)>,
    /// Requests waiting for a proposal.
    pub pending: usize,
    /// Ids this member saw issued.
    pub issued: u64,
    /// Member links open, of those wanted.
    pub links: (usize, usize),
    /// The node's own id and the height that ordered it, once certified.
    pub node_id: Option<(NodeId, u64)>,
    /// The certificate's bytes (the sorted replies, msgpack).
    pub certificate: Vec<u8>,
    /// What the node shows overlay peers for its id (`consensus::proof`, msgpack), once
    /// certified.
    pub proof: Vec<u8>,
    /// How the node trusts the network: "configured", "pinned" (set by the node, `weft
    /// status`).
    pub network_trust: &'static str,
    /// The member list version the node holds (its epoch: genesis is 0) and the chain's
    /// links; `None` while it holds no chain (a node configured with a later list).
    pub list_version: Option<(u64, usize)>,
    /// Set when f+1 configured members report that they are a member list of another network
    /// than the one this node trusts: that network and the list's epoch. The node stops and
    /// names `consensus.network_id` (`node::trust`).
    pub other_network: Option<(NetworkId, u64)>,
}

/// The view, shared with the node's admin side.
pub type SharedView = Arc<Mutex<View>>;

/// The consensus service.
pub struct ConsensusService {
    me: MemberKey,
    /// Where the node says it is: the source its own requests to itself carry.
    self_source: SocketAddr,
    network: NetworkId,
    records: Vec<PeerRecord>,
    /// Other members by the peer id their sessions prove, and the link to each.
    members: BTreeMap<PeerId, (MemberKey, usize)>,
    links: Links,
    member: Option<Member<MalachiteEngine, DiskStore>>,
    clients: Clients,
    asking: Asking,
    refused: BTreeMap<Refusal, u64>,
    votes: [u64; 2],
    decisions: u64,
    round_changes: u64,
    issued: u64,
    /// The height and round last seen, and when that height started.
    last_round: Option<(u64, u32)>,
    height_started: Option<(u64, Instant)>,
    last_decision: Option<(u64, Instant)>,
    latency: Option<HistogramSlots>,
    /// Member-list changes decided (added, removed), and the lists of the log counted so far.
    changes: [u64; 2],
    lists_counted: usize,
    /// Members asked after missing their keep-alives.
    keepalives_missed: u64,
    view: SharedView,
    /// Messages for the member from this pass of the host, handed over in one batch at its
    /// end ([`Service::end_batch`]): one store commit, one fsync, for the whole batch.
    queued: Vec<(Peer, Vec<u8>)>,
    /// The member-list chain learned from the members ([`super::learn`]).
    watch: ChainWatch,
    /// What a member is opened with once the chain names this node (configured with a later
    /// list).
    settings: Settings,
    /// True when the view's id, certificate and proof are to be published again: the list
    /// or the chain changed.
    proof_stale: bool,
    /// True once a refusal of the node's own request was logged.
    nack_logged: bool,
    /// What each client source, and its prefix, may hand the member ([`client_rates`]).
    client_rate: SourceRateLimiter,
}

/// The buckets a client's messages are charged to before the member sees them: `rate` a
/// second for its address, four times that for its /24 (IPv6 /64), each with bursts of four
/// seconds' worth ([`PolicyConfig::client_rate`]). Each message may cost the member a signature
/// (a sighting, a reply to a repeat, a NACK over quota), which without a bound one peer could
/// buy by the thousand a second, a dozen requests to a datagram.
pub fn client_rates(rate: u32) -> (TokenRate, TokenRate) {
    let prefix = rate.saturating_mul(4);
    (
        TokenRate {
            per_second: rate,
            burst: prefix,
        },
        TokenRate {
            per_second: prefix,
            burst: prefix.saturating_mul(4),
        },
    )
}

/// Messages queued for the member before they are handed over early: the host's pass is
/// bounded already; this bounds what one pass can hold back.
const MAX_QUEUED: usize = 1024;

/// Prefixes of a message's msgpack after the version byte: a one-entry map keyed by the
/// variant's name (docs/CONSENSUS.md, test vectors), so the service routes without decoding.
const REQUEST_PREFIX: &[u8] = b"\x81\xa7Request";
const REPLY_PREFIX: &[u8] = b"\x81\xa5Reply";
const NACK_PREFIX: &[u8] = b"\x81\xa4Nack";
const VOTE_PREFIX: &[u8] = b"\x81\xa4Vote";
const KEEPALIVE_PREFIX: &[u8] = b"\x81\xa9KeepAlive";

fn is_variant(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.get(1..).is_some_and(|rest| rest.starts_with(prefix))
}

impl ConsensusService {
    /// A service for `settings`, starting at `now`; a member resumes from its store (its log,
    /// its ids, its votes of the current height). A store that cannot be opened is an error.
    pub fn new(now: Instant, settings: Settings) -> Result<ConsensusService, StoreError> {
        let me = MemberKey(settings.key.verifying_key().to_bytes());
        let mut records = if settings.members.is_empty() {
            vec![settings.own.clone()]
        } else {
            settings.members.clone()
        };
        records.sort_by_key(|record| record.ed25519);
        records.dedup_by_key(|record| record.ed25519);
        let keys: Vec<MemberKey> = records.iter().map(|r| MemberKey(r.ed25519)).collect();
        let genesis = NetworkId::of_genesis(&keys);
        let network = settings.network.unwrap_or(genesis);
        let self_source = settings
            .own
            .addresses
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        // The chain: the configured list as genesis when it is one, a fetched document's, or
        // none until a member shows it.
        let chain = settings
            .chain
            .clone()
            .or_else(|| (network == genesis).then(|| super::trust::MemberListChain::new(&keys)));
        let watch = ChainWatch::new(now, network, &keys, chain);
        let mut links = Links::default();
        let mut members = BTreeMap::new();
        for record in &records {
            if record.ed25519 == me.0 {
                continue;
            }
            let peer = peer_id_of(&record.ed25519);
            let Some(&address) = record.addresses.first() else {
                continue;
            };
            let index = links.add(now, Some(peer), address);
            members.insert(peer, (MemberKey(record.ed25519), index));
        }
        let member = match watch.chain() {
            Some(chain) if keys.contains(&me) => {
                Some(open_member(now, &settings, network, &chain.genesis)?)
            }
            _ => None,
        };
        let request = NodeIdRequest {
            key: me.0,
            addresses: vec![self_source],
            salt: settings.salt,
        };
        let view = Arc::new(Mutex::new(View {
            network: Some(network),
            members: keys.len(),
            is_member: member.is_some(),
            list_version: watch
                .current()
                .zip(watch.chain())
                .map(|(list, chain)| (list.epoch, chain.links.len())),
            ..View::default()
        }));
        let (address, prefix) = client_rates(settings.policy.client_rate);
        let client_rate = SourceRateLimiter::new(rand::random(), address, prefix);
        Ok(ConsensusService {
            me,
            self_source,
            network,
            records,
            members,
            links,
            member,
            clients: Clients::default(),
            asking: Asking::new(now, network, keys, request),
            refused: BTreeMap::new(),
            votes: [0; 2],
            decisions: 0,
            round_changes: 0,
            issued: 0,
            last_round: None,
            height_started: None,
            last_decision: None,
            latency: None,
            changes: [0; 2],
            lists_counted: 1,
            keepalives_missed: 0,
            view,
            queued: Vec::new(),
            watch,
            settings,
            proof_stale: false,
            nack_logged: false,
            client_rate,
        })
    }

    /// Publishes the view into `view` from now on (the node's admin side holds it from before
    /// this service was built, while the member list was being fetched).
    pub fn share_view(&mut self, view: SharedView) {
        if let (Ok(mut shared), Ok(ours)) = (view.lock(), self.view.lock()) {
            // How the node trusts the network is the node's to say (set before, or by the
            // fetcher as it pinned the network).
            let trust = shared.network_trust;
            *shared = ours.clone();
            shared.network_trust = trust;
        }
        self.view = view;
    }

    /// Adds `count` refusals for `refusal` (counted by a host before this service existed).
    pub fn count_refused(&mut self, refusal: Refusal, count: u64) {
        let total = self.refused.entry(refusal).or_insert(0);
        *total = total.saturating_add(count);
    }

    /// The view `weft status` reads.
    pub fn view(&self) -> SharedView {
        Arc::clone(&self.view)
    }

    /// The network this node belongs to.
    pub fn network(&self) -> NetworkId {
        self.network
    }

    fn refuse(&mut self, refusal: Refusal) {
        let count = self.refused.entry(refusal).or_insert(0);
        *count = count.saturating_add(1);
    }

    /// A request, or a message for a client-facing member, from a channel that is not a
    /// member's link: handed to the member with the channel's source address.
    fn on_client(&mut self, now: Instant, delivery: &Delivery, cx: &mut Context<'_>) {
        let bytes = body(delivery);
        if self.member.is_none() {
            // Ids are asked of members; this node only asks.
            return self.refuse(Refusal::Unexpected);
        }
        if bytes.len() > schema::MAX_MESSAGE_BYTES {
            // Checked before anything waits in the client table.
            return self.refuse(Refusal::Oversized);
        }
        let at = (delivery.shard, delivery.channel);
        match self.clients.seen(at, bytes) {
            Seen::Known(source) => self.feed(now, Peer::Client(source), bytes),
            Seen::Waiting => {}
            Seen::Refused => self.refuse(Refusal::Unexpected),
            Seen::Ask => match cx.peer_info(delivery.peer) {
                Ok(token) => self.clients.asked(token, at, bytes),
                Err(_) => self.refuse(Refusal::Unexpected),
            },
        }
    }

    /// Queues a message for the member; [`ConsensusService::hand_over`] feeds the queue.
    fn feed(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        if self.member.is_none() {
            return;
        }
        if let Peer::Client(source) = from
            && source != self.self_source
            && self.client_rate.charge(source.ip(), now).is_err()
        {
            return self.refuse(Refusal::Rate);
        }
        self.queued.push((from, bytes.to_vec()));
        if self.queued.len() >= MAX_QUEUED {
            self.hand_over(now);
        }
    }

    /// Hands the queued messages to the member as one batch: what they lead it to sign or
    /// decide is committed once, before any of it can be sent.
    fn hand_over(&mut self, now: Instant) {
        let queued = std::mem::take(&mut self.queued);
        if let Some(member) = &mut self.member
            && !queued.is_empty()
        {
            member.handle_batch(now, queued.iter().map(|(from, bytes)| (*from, &bytes[..])));
        }
    }

    /// Sends what the member wants sent, takes its events, and updates counters and the view.
    fn flush(&mut self, now: Instant, cx: &mut Context<'_>) {
        let Some(member) = &mut self.member else {
            self.publish(now, cx);
            return;
        };
        let mut own_replies = Vec::new();
        while let Some(transmit) = member.poll_transmit() {
            if is_variant(&transmit.bytes, VOTE_PREFIX)
                && let Ok(Message::Vote(vote)) = schema::decode(&transmit.bytes)
            {
                let step = usize::from(vote.body.kind == VoteKind::Precommit);
                self.votes[step] = self.votes[step].saturating_add(1);
            }
            if is_variant(&transmit.bytes, KEEPALIVE_PREFIX)
                && let Ok(Message::KeepAlive(keepalive)) = schema::decode(&transmit.bytes)
                && keepalive.ask
            {
                // Membership asks a member once it missed two keep-alive periods.
                self.keepalives_missed = self.keepalives_missed.saturating_add(1);
            }
            match transmit.to {
                Peer::Member(key) => {
                    // A link that is down drops it; the member resends its own messages.
                    if let Some(&(_, index)) = self.members.values().find(|(k, _)| *k == key) {
                        self.links.send(index, &transmit.bytes, cx);
                    }
                }
                Peer::Client(address) if address == self.self_source => {
                    own_replies.push(transmit.bytes);
                }
                Peer::Client(address) => {
                    if let Some((shard, channel)) = self.clients.channel_of(&address) {
                        let _ = cx.send(shard, channel, &transmit.bytes);
                    }
                }
            }
        }
        while let Some(event) = member.poll_event() {
            match event {
                Event::Decided { height, .. } => {
                    self.decisions = self.decisions.saturating_add(1);
                    self.last_decision = Some((height, now));
                    if let Some((started, at)) = self.height_started.take()
                        && started == height
                    {
                        let micros = now.saturating_duration_since(at).as_micros();
                        let latency = self.latency.get_or_insert_with(|| {
                            cx.stats().register_histogram(&catalog::DECISION_LATENCY)
                        });
                        cx.stats()
                            .observe(latency, u64::try_from(micros).unwrap_or(u64::MAX));
                    }
                }
                Event::Issued {
                    node_id, height, ..
                } => {
                    self.issued = self.issued.saturating_add(1);
                    tracing::debug!(node_id = %hex(&node_id.0), height, "id issued");
                }
            }
        }
        let history = member.membership().history();
        for pair in history
            .get(self.lists_counted.saturating_sub(1)..)
            .unwrap_or(&[])
            .windows(2)
        {
            let (before, after) = (&pair[0].members, &pair[1].members);
            let added = after.iter().filter(|m| !before.contains(m)).count();
            let removed = before.iter().filter(|m| !after.contains(m)).count();
            self.changes[0] = self.changes[0].saturating_add(added as u64);
            self.changes[1] = self.changes[1].saturating_add(removed as u64);
        }
        self.lists_counted = history.len().max(1);
        let height = member.height();
        if let Some(round) = member.round() {
            if self.height_started.is_none_or(|(h, _)| h != height) {
                self.height_started = Some((height, now));
            }
            if let Some((last_height, last_round)) = self.last_round
                && last_height == height
                && round > last_round
            {
                self.round_changes = self.round_changes.saturating_add(1);
            }
            self.last_round = Some((height, round));
        }
        // A member asks today's members for its own id: a certificate of an older list is
        // not today's (`chain::follow_list`).
        let current = member.members().to_vec();
        self.follow_list(now, &current);
        for bytes in own_replies {
            self.on_own_reply(&bytes);
        }
        self.publish(now, cx);
    }

    fn on_own_reply(&mut self, bytes: &[u8]) {
        match self.asking.on_reply(bytes) {
            Ok(true) => {
                if let Some(certificate) = self.asking.certificate() {
                    tracing::info!(
                        node_id = %hex(&certificate.node_id.0),
                        height = certificate.height,
                        replies = certificate.replies.len(),
                        network = %hex(&self.network.0),
                        "node id certified by the cluster"
                    );
                }
            }
            Ok(false) => {
                if !self.nack_logged
                    && let Some(refused) = self.asking.refused()
                {
                    self.nack_logged = true;
                    tracing::warn!(
                        limit = refused.limit.label(),
                        until = refused.until,
                        members = refused.members,
                        "the cluster refused this node's id request: over a policy quota; asking again"
                    );
                }
            }
            // A reply to an older request of ours (a restart with another salt) is stale.
            Err(refusal) => self.refuse(refusal),
        }
    }

    /// Asks for the node's own id when due: of itself, and on every open link.
    fn ask(&mut self, now: Instant, cx: &mut Context<'_>) {
        if !self.asking.due(now) {
            return;
        }
        let request = self.asking.encoded().to_vec();
        if self.member.is_some() {
            self.feed(now, Peer::Client(self.self_source), &request);
        }
        for index in 0..self.links.len() {
            self.links.send(index, &request, cx);
        }
    }

    fn publish(&mut self, now: Instant, cx: &mut Context<'_>) {
        let members = self.member.as_ref().map_or_else(
            || {
                self.watch
                    .current()
                    .map_or(self.records.len(), |list| list.members.len())
            },
            |m| m.members().len(),
        );
        let stats = cx.stats();
        stats.set(metric::MEMBERS, None, members as u64);
        stats.set_counter(metric::KEEPALIVES_MISSED, None, self.keepalives_missed);
        stats.set_counter(
            metric::MEMBERSHIP_CHANGES,
            Some(("change", "added")),
            self.changes[0],
        );
        stats.set_counter(
            metric::MEMBERSHIP_CHANGES,
            Some(("change", "removed")),
            self.changes[1],
        );
        for label in LIMIT_LABELS {
            let nacked = self
                .member
                .as_ref()
                .and_then(|m| m.nacked().get(label).copied())
                .unwrap_or(0);
            stats.set_counter(metric::POLICY_REFUSALS, Some(("limit", label)), nacked);
        }
        stats.set(metric::LINKS_OPEN, None, self.links.open_count() as u64);
        stats.set_counter(metric::DECISIONS, None, self.decisions);
        stats.set_counter(metric::ROUND_CHANGES, None, self.round_changes);
        stats.set_counter(metric::ISSUED, None, self.issued);
        stats.set_counter(metric::VOTES, Some(("step", "prevote")), self.votes[0]);
        stats.set_counter(metric::VOTES, Some(("step", "precommit")), self.votes[1]);
        for refusal in Refusal::ALL {
            let ours = self.refused.get(&refusal).copied().unwrap_or(0);
            let member = self
                .member
                .as_ref()
                .and_then(|m| m.refused().get(&refusal).copied())
                .unwrap_or(0);
            stats.set_counter(
                metric::REFUSALS,
                Some(("reason", refusal.label())),
                ours.saturating_add(member),
            );
        }
        let certificate = self.asking.certificate();
        stats.set(metric::CERTIFIED, None, u64::from(certificate.is_some()));
        let height = self.member.as_ref().map_or(0, Member::height);
        let round = self.member.as_ref().and_then(Member::round);
        stats.set(metric::HEIGHT, None, height);
        stats.set(metric::ROUND, None, u64::from(round.unwrap_or(0)));
        let _ = now;
        if let Ok(mut view) = self.view.lock() {
            view.height = height;
            view.round = round;
            view.last_decision = self.last_decision;
            view.pending = self.member.as_ref().map_or(0, Member::pending);
            view.issued = self.issued;
            view.links = (self.links.open_count(), self.links.len());
            view.members = members;
            view.is_member = self.member.is_some();
            view.list_version = self.list_version();
            // A certificate of an older list stays shown until today's members sign one.
            if (view.node_id.is_none() || self.proof_stale)
                && let Some(certificate) = certificate
            {
                view.node_id = Some((certificate.node_id, certificate.height));
                view.certificate = certificate_bytes(certificate);
                view.proof = self.proof(certificate);
                self.proof_stale = false;
            }
        }
    }
}

/// Lowercase hex, for logs and tables.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Service for ConsensusService {
    fn tag(&self) -> ServiceTag {
        ServiceTag::CONSENSUS
    }

    fn name(&self) -> &'static str {
        "consensus"
    }

    fn on_message(&mut self, now: Instant, delivery: Delivery, cx: &mut Context<'_>) {
        let bytes = body(&delivery);
        let at = (delivery.shard, delivery.channel);
        if query::is_query(bytes) {
            let from = delivery.authenticated.then_some(delivery.peer);
            self.on_query(now, at, from, bytes, cx);
        } else if !delivery.authenticated && self.members.contains_key(&delivery.peer) {
            // A plaintext peer (on an `allow_plaintext` node) claiming a member's peer id: its
            // keep-alives would keep a dead member alive, its votes be heard as the member's.
            self.refuse(Refusal::Unauthenticated);
        } else if is_variant(bytes, REPLY_PREFIX) || is_variant(bytes, NACK_PREFIX) {
            if self.members.contains_key(&delivery.peer) {
                self.on_own_reply(bytes);
            } else {
                self.refuse(Refusal::NonMember);
            }
        } else if let Some(&(key, _)) = self.members.get(&delivery.peer)
            && !is_variant(bytes, REQUEST_PREFIX)
        {
            if self.member.is_some() {
                self.feed(now, Peer::Member(key), bytes);
            } else {
                self.refuse(Refusal::Unexpected);
            }
        } else {
            self.on_client(now, &delivery, cx);
        }
        self.flush(now, cx);
    }

    fn on_input(&mut self, now: Instant, input: Input, cx: &mut Context<'_>) {
        match self.links.on_input(now, &input) {
            Some(LinkEvent::Opened { index, .. }) => {
                // A fresh link hears the node's own request at once (when it still asks), and
                // the question whose report carries the member's chain.
                if self.asking.certificate().is_none() {
                    let request = self.asking.encoded().to_vec();
                    self.links.send(index, &request, cx);
                }
                self.links
                    .send(index, &query::encode(&query::Query::Status), cx);
            }
            Some(LinkEvent::Down { .. }) => {}
            None => match input {
                Input::PeerInfo { token, info, .. } => {
                    let address = info.map(|info| info.address);
                    if let Some((address, waiting)) = self.clients.answered(token, address) {
                        match address {
                            Some(source) => {
                                for bytes in waiting {
                                    self.feed(now, Peer::Client(source), &bytes);
                                }
                            }
                            // The peer is gone: its messages go with it.
                            None => self.refuse(Refusal::Stale),
                        }
                    }
                }
                Input::Closed { shard, channel, .. } => self.clients.closed((shard, channel)),
                _ => {}
            },
        }
        self.flush(now, cx);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.member.as_ref().and_then(Member::poll_timeout),
            self.links.poll_timeout(),
            self.asking.poll_timeout(),
            // A lone member asks nobody for a chain.
            (!self.members.is_empty()).then(|| self.watch.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        // What arrived before the timers goes in first, in order.
        self.hand_over(now);
        if let Some(member) = &mut self.member
            && member.poll_timeout().is_some_and(|due| due <= now)
        {
            member.handle_timeout(now);
        }
        self.links.poll(now, cx);
        self.ask(now, cx);
        self.ask_chain(now, cx);
        self.flush(now, cx);
    }

    fn end_batch(&mut self, now: Instant, cx: &mut Context<'_>) {
        // The batch's inputs, then what may leave before its commit (a round-0 proposal, so
        // it travels while the disk syncs), then the commit and everything else.
        let queued = std::mem::take(&mut self.queued);
        let fed = match &mut self.member {
            Some(member) if !queued.is_empty() => {
                member.feed_batch(now, queued.iter().map(|(from, bytes)| (*from, &bytes[..])));
                true
            }
            _ => false,
        };
        if fed {
            self.flush(now, cx);
            if let Some(member) = &mut self.member {
                member.sync();
            }
        }
        self.flush(now, cx);
    }
}

/// Opens the member of `network` whose genesis members are `genesis`, from its store.
fn open_member(
    now: Instant,
    settings: &Settings,
    network: NetworkId,
    genesis: &[MemberKey],
) -> Result<Member<MalachiteEngine, DiskStore>, StoreError> {
    let store = DiskStore::open(&settings.store)?;
    let config = MemberConfig {
        network,
        members: genesis.to_vec(),
        round_base: settings.round_base,
        resend: settings.resend,
    };
    let mut member = Member::open(now, settings.key.clone(), config, store)?
        .with_policy(settings.policy.clone())
        .with_membership(settings.membership.clone());
    // Batches carry wall-clock time for the policy's windows, and members refuse one far ahead
    // of their own clock: every member must read the same (Unix) clock.
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    member.set_wall_clock(now, unix);
    Ok(member)
}

mod chain;
#[cfg(test)]
mod tests;
