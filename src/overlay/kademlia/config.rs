//! The DHT's settings (PROTOCOL.md §10 defaults).

use crate::overlay::rpc::compression::Method;
use crate::overlay::rpc::{FrameLimits, Subnet, TimeoutConfig};
use std::time::Duration;

/// Everything a [`super::Dht`] is configured with.
#[derive(Clone, Debug, PartialEq)]
pub struct KademliaConfig {
    /// Bucket size and replication factor (k = 20).
    pub k: usize,
    /// Requests in flight per lookup (α = 3).
    pub alpha: usize,
    /// Bits of a node id considered (τ = 160, at most 160).
    pub tau: u32,
    /// Bits of an extended address, the Ed25519 key (β = 256); carried in the subnet descriptor.
    pub beta: u32,
    /// Self-initiated connections (ℓ = 8); carried in the subnet descriptor.
    pub ell: usize,
    /// Most contacts of one /24 (IPv4) or /64 (IPv6) per bucket, against eclipse attacks
    /// (discv5's rule: 2); `None` turns the rule off (loopback tests, `weft demo`).
    pub per_subnet_cap: Option<usize>,
    /// Client mode: queries, but tells peers no node id, so it stays out of their tables.
    pub client: bool,
    /// How request timeouts follow round-trip times.
    pub timeouts: TimeoutConfig,
    /// Bounds on incoming frames (their `max_contacts` is raised to at least k).
    pub frame: FrameLimits,
    /// Most requests in flight at once (the node's budget for them).
    pub max_pending: usize,
    /// Most lookups at once.
    pub max_lookups: usize,
    /// Most requests one lookup sends: peers that answer with ever closer made-up contacts
    /// cannot keep a lookup (and its slot) going for ever.
    pub max_lookup_requests: u32,
    /// Consecutive timeouts after which a contact leaves its bucket.
    pub max_failures: u32,
    /// How long a record lives without being stored again (48 h).
    pub record_ttl: Duration,
    /// How often the original publisher stores its records again (22 h).
    pub republish: Duration,
    /// How often a replica passes its records on to the k closest (1 h).
    pub replicate: Duration,
    /// A bucket that saw no lookup this long gets one (5 min); `None`: never.
    pub refresh: Option<Duration>,
    /// Most records held for others.
    pub max_records: usize,
    /// Most bytes of records held for others (keys and encoded values).
    pub max_record_bytes: usize,
    /// Largest encoded value accepted in a STORE.
    pub max_value: usize,
    /// One peer may own (be the last to have stored) at most 1/`peer_share` of the record
    /// budget, in records and in bytes; past it its STOREs of new keys are NACKed
    /// (`store_quota`). The default 8: the honest storers of a node's records are the
    /// publishers and the other k−1 replicas that store them again every hour, so an honest
    /// peer owns about 1/k of them (1/20 by default), well under 1/8; a hostile one needs 8
    /// certified ids, which the consensus service rations per address, to fill the budget.
    /// 1 turns the quota off.
    pub peer_share: usize,
    /// The transport named in the subnet descriptor.
    pub transport: String,
    /// The network's description in the subnet descriptor.
    pub network: String,
    /// Compression methods this node reads and writes (seed 003 §3.3.1; "none" always);
    /// [`Method::DEFAULT_READS`] by default: bz2 and lzma cost far more to decode than their
    /// bytes, so a node reads them only where configured.
    pub compression: Vec<Method>,
    /// The method this node asks peers to send it (SET_CONNECTION_OPT option 1); `None`
    /// lets each peer choose.
    pub preferred_compression: Option<Method>,
    /// Frames shorter than this go uncompressed (compression would not pay).
    pub compress_above: usize,
    /// Most peers whose connection options are kept; past it a new peer's options are
    /// NACKed until a driver reports a peer gone ([`super::Dht::forget_peer`]).
    pub max_peer_options: usize,
    /// Most contacts in the node info cache: learned, but not in the table.
    pub node_cache: usize,
    /// Most peers' signed records held (the address book in memory, `keys.rs`): about 200
    /// bytes each, the least recently seen out first.
    pub max_peer_records: usize,
}

impl Default for KademliaConfig {
    fn default() -> KademliaConfig {
        KademliaConfig {
            k: 20,
            alpha: 3,
            tau: 160,
            beta: 256,
            ell: 8,
            per_subnet_cap: Some(2),
            client: false,
            timeouts: TimeoutConfig::default(),
            frame: FrameLimits::default(),
            max_pending: 4096,
            max_lookups: 256,
            max_lookup_requests: 160,
            max_failures: 2,
            record_ttl: Duration::from_secs(48 * 3600),
            republish: Duration::from_secs(22 * 3600),
            replicate: Duration::from_secs(3600),
            refresh: Some(Duration::from_secs(300)),
            max_records: 100_000,
            max_record_bytes: 256 * 1024 * 1024,
            max_value: 16 * 1024,
            peer_share: 8,
            transport: "weft/udp".to_owned(),
            network: "weft".to_owned(),
            compression: Method::DEFAULT_READS.to_vec(),
            preferred_compression: None,
            compress_above: 512,
            max_peer_options: 4096,
            node_cache: 1024,
            max_peer_records: 4096,
        }
    }
}

impl KademliaConfig {
    /// The subnet descriptor `[k, α, τ, β, ℓ, transport, network]` (seed 003 §3.3.3).
    pub fn subnet(&self) -> Subnet {
        Subnet {
            k: self.k as u64,
            alpha: self.alpha as u64,
            tau: u64::from(self.tau),
            beta: u64::from(self.beta),
            ell: self.ell as u64,
            transport: self.transport.clone(),
            description: self.network.clone(),
        }
    }

    /// The settings with every number brought into its meaningful range.
    pub(crate) fn sanitised(mut self) -> KademliaConfig {
        self.k = self.k.max(1);
        self.alpha = self.alpha.max(1);
        self.tau = self.tau.clamp(1, 160);
        self.max_pending = self.max_pending.max(1);
        self.max_lookups = self.max_lookups.max(1);
        self.max_lookup_requests = self.max_lookup_requests.max(1);
        self.max_failures = self.max_failures.max(1);
        self.peer_share = self.peer_share.max(1);
        self.frame.max_contacts = self.frame.max_contacts.max(self.k);
        self
    }
}
