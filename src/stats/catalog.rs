//! Every metric the node exports, in one table: name, type, unit, labels and help
//! (PROTOCOL.md §12). The exporter ([`crate::node::metrics`]) takes HELP and TYPE from it, exports
//! every series whose label values are known at 0 from the start, and turns the per-bucket
//! counters the layers keep into Prometheus histograms; `docs/METRICS.md` is generated from it
//! ([`markdown`]) and a test fails when the file differs.
//!
//! A leaf like [`super::Stats`]: the layers that count name their histograms from here, and
//! nothing here names a layer. Label values are fixed strings: never a peer id or address.

/// The Prometheus type of a metric family.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// Only grows; `rate()` it.
    Counter,
    /// A level that goes both ways.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
}

impl Type {
    /// The word of the exposition format's `# TYPE` line.
    pub fn word(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// How a histogram is kept in a [`super::Stats`] table: one counter per bucket (not cumulative,
/// labelled `label`) and one for the sum, both in the source unit; the exporter makes the buckets
/// cumulative, names them by `le` in base units and scales the sum.
#[derive(Debug)]
pub struct Histogram {
    /// Name of the per-bucket counters in the table.
    pub bucket: &'static str,
    /// Their label key.
    pub label: &'static str,
    /// Each bucket's upper bound in the source unit and its label value; the last holds
    /// everything (`u64::MAX`).
    pub bounds: &'static [(u64, &'static str)],
    /// The exported `le` of each bucket, in base units, where it is not the label value itself.
    pub le: Option<&'static [&'static str]>,
    /// Name of the sum counter in the table.
    pub sum: &'static str,
    /// Source units per base unit: the sum is divided by it (1e6 for microseconds kept,
    /// seconds exported).
    pub sum_divisor: f64,
}

impl Histogram {
    /// The exported `le` of the bucket whose source label is `label`.
    pub fn le_of(&self, label: &str) -> Option<&'static str> {
        let index = self.bounds.iter().position(|&(_, l)| l == label)?;
        match self.le {
            Some(le) => le.get(index).copied(),
            None => self.bounds.get(index).map(|&(_, l)| l),
        }
    }
}

/// Round-trip time samples, microseconds kept, seconds exported: loopback (tens of µs) to
/// intercontinental paths and bufferbloat (seconds).
pub const RTT: Histogram = Histogram {
    bucket: "weft_rtt_seconds_bucket",
    label: "le",
    bounds: &[
        (50, "5e-05"),
        (100, "0.0001"),
        (250, "0.00025"),
        (500, "0.0005"),
        (1_000, "0.001"),
        (2_500, "0.0025"),
        (5_000, "0.005"),
        (10_000, "0.01"),
        (25_000, "0.025"),
        (50_000, "0.05"),
        (100_000, "0.1"),
        (250_000, "0.25"),
        (500_000, "0.5"),
        (1_000_000, "1"),
        (2_500_000, "2.5"),
        (u64::MAX, "+Inf"),
    ],
    le: None,
    sum: "weft_rtt_seconds_sum",
    sum_divisor: 1e6,
};

/// The path's congestion window at each RTT sample, bytes: from the minimum window (a few
/// datagrams) to the largest a 10 Gbit/s path with a long RTT opens.
pub const CONGESTION_WINDOW: Histogram = Histogram {
    bucket: "weft_congestion_window_bytes_bucket",
    label: "le",
    bounds: &[
        (4_096, "4096"),
        (8_192, "8192"),
        (16_384, "16384"),
        (32_768, "32768"),
        (65_536, "65536"),
        (131_072, "131072"),
        (262_144, "262144"),
        (524_288, "524288"),
        (1_048_576, "1048576"),
        (2_097_152, "2097152"),
        (4_194_304, "4194304"),
        (8_388_608, "8388608"),
        (16_777_216, "16777216"),
        (u64::MAX, "+Inf"),
    ],
    le: None,
    sum: "weft_congestion_window_bytes_sum",
    sum_divisor: 1.0,
};

/// Initiated handshakes from the first INIT to the session, microseconds kept, seconds
/// exported: one round trip on loopback (well under a millisecond) to retries over a lossy path
/// (seconds; `open_timeout` bounds it).
pub const HANDSHAKE_DURATION: Histogram = Histogram {
    bucket: "weft_handshake_duration_seconds_bucket",
    label: "le",
    bounds: &[
        (100, "0.0001"),
        (250, "0.00025"),
        (500, "0.0005"),
        (1_000, "0.001"),
        (2_500, "0.0025"),
        (5_000, "0.005"),
        (10_000, "0.01"),
        (25_000, "0.025"),
        (50_000, "0.05"),
        (100_000, "0.1"),
        (250_000, "0.25"),
        (500_000, "0.5"),
        (1_000_000, "1"),
        (2_500_000, "2.5"),
        (5_000_000, "5"),
        (10_000_000, "10"),
        (u64::MAX, "+Inf"),
    ],
    le: None,
    sum: "weft_handshake_duration_seconds_sum",
    sum_divisor: 1e6,
};

/// Messages from their first transmission to their last byte acknowledged, microseconds kept,
/// seconds exported: a round trip on loopback to retransmissions over a lossy long path.
pub const MESSAGE_DELIVERY: Histogram = Histogram {
    bucket: "weft_message_delivery_seconds_bucket",
    label: "le",
    bounds: &[
        (100, "0.0001"),
        (250, "0.00025"),
        (500, "0.0005"),
        (1_000, "0.001"),
        (2_500, "0.0025"),
        (5_000, "0.005"),
        (10_000, "0.01"),
        (25_000, "0.025"),
        (50_000, "0.05"),
        (100_000, "0.1"),
        (250_000, "0.25"),
        (500_000, "0.5"),
        (1_000_000, "1"),
        (2_500_000, "2.5"),
        (5_000_000, "5"),
        (10_000_000, "10"),
        (u64::MAX, "+Inf"),
    ],
    le: None,
    sum: "weft_message_delivery_seconds_sum",
    sum_divisor: 1e6,
};

/// A consensus height from its first round to its decision, microseconds kept, seconds
/// exported: a lone member on one machine (tens of microseconds with its syncs) to rounds that
/// time out over a lossy network (seconds).
pub const DECISION_LATENCY: Histogram = Histogram {
    bucket: "weft_consensus_decision_latency_seconds_bucket",
    label: "le",
    // The handshakes' range: a loopback round trip to retries over a lossy path.
    bounds: HANDSHAKE_DURATION.bounds,
    le: None,
    sum: "weft_consensus_decision_latency_seconds_sum",
    sum_divisor: 1e6,
};

/// Buckets of [`MESSAGE_DELIVERY`], for the fixed arrays the reliability layer counts into.
pub const MESSAGE_DELIVERY_BUCKETS: usize = MESSAGE_DELIVERY.bounds.len();

/// The engine's batch-size buckets (`size` label, kept by the I/O backends) and their `le`.
const BATCH_BOUNDS: &[(u64, &str)] = &[
    (1, "1"),
    (4, "2-4"),
    (8, "5-8"),
    (16, "9-16"),
    (32, "17-32"),
    (64, "33-64"),
    (u64::MAX, "65+"),
];
const BATCH_LE: &[&str] = &["1", "4", "8", "16", "32", "64", "+Inf"];

/// Datagrams per receive batch (recvmmsg or a multishot completion run).
pub const RECV_BATCH: Histogram = Histogram {
    bucket: "weft_shard_recv_batch_size_total",
    label: "size",
    bounds: BATCH_BOUNDS,
    le: Some(BATCH_LE),
    sum: "weft_shard_datagrams_received_total",
    sum_divisor: 1.0,
};

/// Datagrams per send batch (sendmmsg or GSO).
pub const SEND_BATCH: Histogram = Histogram {
    bucket: "weft_shard_send_batch_size_total",
    label: "size",
    bounds: BATCH_BOUNDS,
    le: Some(BATCH_LE),
    sum: "weft_shard_datagrams_sent_total",
    sum_divisor: 1.0,
};

mod overlay;
pub use overlay::{OVERLAY_LOOKUP_DEPTH, OVERLAY_LOOKUP_DURATION, OVERLAY_STORE_COMMIT};

/// One metric family.
#[derive(Debug)]
pub struct Metric {
    /// The exported name.
    pub name: &'static str,
    /// Its type.
    pub kind: Type,
    /// Its unit, empty for a plain count or a level without one.
    pub unit: &'static str,
    /// Its label keys (`shard` first where the engine labels it per shard; `le` not listed).
    pub labels: &'static [&'static str],
    /// Every value of the last label key, each exported at 0 from the start; empty where the
    /// values are not known in advance (a version, an errno).
    pub values: &'static [&'static str],
    /// How a histogram is kept.
    pub histogram: Option<&'static Histogram>,
    /// The HELP text.
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: Type, unit: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        unit,
        labels: &[],
        values: &[],
        histogram: None,
        help,
    }
}

const fn counter(name: &'static str, unit: &'static str, help: &'static str) -> Metric {
    metric(name, Type::Counter, unit, help)
}

const fn gauge(name: &'static str, unit: &'static str, help: &'static str) -> Metric {
    metric(name, Type::Gauge, unit, help)
}

const fn histogram(
    name: &'static str,
    unit: &'static str,
    kept: &'static Histogram,
    help: &'static str,
) -> Metric {
    let mut m = metric(name, Type::Histogram, unit, help);
    m.histogram = Some(kept);
    m
}

impl Metric {
    const fn labels(
        mut self,
        labels: &'static [&'static str],
        values: &'static [&'static str],
    ) -> Metric {
        self.labels = labels;
        self.values = values;
        self
    }

    /// Whether the engine exports it once per shard (`shard` label).
    pub fn per_shard(&self) -> bool {
        matches!(self.labels.first(), Some(&"shard"))
    }
}

const SHARD: &[&str] = &["shard"];

/// Why the endpoint dropped a datagram (`weft_packets_dropped_total{reason}`): the wire layer's
/// parse errors (`wire::ErrorKind::reason`), the session layer's, and the endpoint's own checks.
pub const DROP_REASONS: &[&str] = &[
    // wire::ErrorKind
    "unknown_version",
    "reserved_flag",
    "encrypted_not_sequenced",
    "unsequenced_channel",
    "sequenced_without_start_encryption",
    "zero_sender",
    "zero_recipient",
    "truncated",
    "no_message",
    "non_minimal_varint",
    "varint_overflow",
    "unknown_message_type",
    "nonzero_padding",
    "wrong_channel",
    "handshake_init_not_first",
    "channel_cookie_not_first",
    "start_encryption_misplaced",
    "bad_handshake_kind",
    "bad_cookie_length",
    "bad_capabilities",
    "zero_channel_half",
    "bad_ack",
    "bad_fragment",
    "nonzero_probe",
    "encrypted_too_short",
    "length_overrun",
    "trailing_bytes",
    "buffer_too_small",
    // the endpoint
    "address_mismatch",
    "amplification_limit",
    "answer_limit",
    "authentication",
    "bad_channel_id",
    "bad_cookie",
    "bad_cookie_echo",
    "close_for_other_channel",
    "crossing_init_lost",
    "duplicate_cookie",
    "handshake_in_ciphertext",
    "handshake_misplaced",
    "key_exhausted",
    "malformed_init",
    "no_session",
    "oversize",
    "own_peer_id",
    "plaintext_after_session",
    "plaintext_refused",
    "replay",
    "reset_ignored",
    "reset_without_session",
    "reused_channel_id",
    "start_encryption_unsequenced",
    "transmit_queue_full",
    "unexpected_acknowledge",
    "unknown_channel",
    "unknown_key_phase",
    "unknown_session_index",
    "unsequenced",
    "wrong_recipient",
    "shard_busy",
    "closed_channel",
    // failed and refused handshakes (also in HANDSHAKE_FAILURES)
    "address_limit",
    "address_rate",
    "bad_mac1",
    "bad_record",
    "bad_signature",
    "handshake_authentication",
    "handshake_finished",
    "handshake_payload",
    "handshake_replay",
    "handshake_size",
    "peer_id_mismatch",
    "pending_limit",
    "pending_prefix_limit",
    "prefix_limit",
    "prefix_rate",
    "psk_mismatch",
    "replace_refused",
    "session_limit",
    "unknown_psk",
];

/// Why a handshake was refused by a limit of this node (`weft_handshake_refusals_total`).
pub const HANDSHAKE_REFUSALS: &[&str] = &[
    "address_limit",
    "address_rate",
    "pending_limit",
    "pending_prefix_limit",
    "prefix_limit",
    "prefix_rate",
    "session_limit",
];

/// Why a handshake failed (`weft_handshake_failures_total`): the refusals, failed checks and
/// timeouts.
pub const HANDSHAKE_FAILURES: &[&str] = &[
    "address_limit",
    "address_rate",
    "bad_mac1",
    "bad_record",
    "bad_signature",
    "final_timeout",
    "handshake_authentication",
    "handshake_finished",
    "handshake_payload",
    "handshake_replay",
    "handshake_size",
    "peer_id_mismatch",
    "pending_limit",
    "pending_prefix_limit",
    "prefix_limit",
    "prefix_rate",
    "psk_mismatch",
    "replace_refused",
    "session_limit",
    "timeout",
    "unknown_psk",
];

/// The `mode` label of each capability set (PROTOCOL.md §7's table).
pub const MODES: &[&str] = &[
    "udp",
    "x",
    "streaming1",
    "y",
    "z",
    "sctp",
    "streaming2",
    "tcp",
];

/// The overlay's opcodes as `op` label values (`overlay::rpc::Opcode::name`).
const OVERLAY_OPS: &[&str] = &[
    "ping",
    "set_connection_opt",
    "announce",
    "change_key",
    "shout",
    "speak",
    "whisper",
    "find_node",
    "find_value",
    "store",
    "lock",
    "cas",
    "diff",
    "custom",
];

/// Why the overlay dropped or refused something (`weft_overlay_dropped_total{reason}`): frame
/// checks of the RPC layer, the DHT's budgets, and the worker's channel and peer bounds.
pub const OVERLAY_DROP_REASONS: &[&str] = &[
    "too_large",
    "malformed",
    "not_canonical",
    "frame",
    "body",
    "address_mismatch",
    "bound",
    "envelope_malformed",
    "envelope_forged",
    "reply_unknown",
    "reply_mismatch",
    "pending_full",
    "lookups_full",
    "wrong_node",
    "wrong_key",
    "compression_header",
    "compression_unsupported",
    "decompression_bomb",
    "decompression_corrupt",
    "peer_options_full",
    "checks_limit",
    "peers_full",
    "queue_full",
    "opens_full",
    "open_refused",
    "open_mismatch",
    "send_refused",
    "info_refused",
    "no_peer_info",
    "requests_full",
    // An open to an address with one in flight already, under another id (second round).
    "address_opening",
    // A peer's id proof refused (`node::trust`, `consensus::proof`).
    "malformed_proof",
    "foreign_network",
    "bad_member_list",
    "stale_member_list",
    "bad_certificate",
    "verdicts_full",
    "chain_too_long",
    // A peer's signed record refused or dropped (`overlay::kademlia::keys`).
    "key_malformed",
    "key_mismatch",
    "key_forged",
    "key_stale",
    "keys_full",
    // A reply's contact at an address another candidate of the lookup holds (second round).
    "address_repeated",
];

/// Every metric family the node exports, in the order docs/METRICS.md lists them.
pub const METRICS: &[Metric] = &[
    // ------------------------------------------------------------------ node
    gauge("weft_build_info", "", "Always 1; the version and the I/O backend the engine runs.")
        .labels(&["version", "io_backend"], &[]),
    gauge("weft_engine_info", "", "Always 1; the I/O backend and the number of engine shards.")
        .labels(&["io_backend", "shards"], &[]),
    counter("weft_io_fallback_total", "", "1 when --io auto wanted io_uring and the kernel refused it (reason: the errno); the node then runs epoll.")
        .labels(&["reason"], &[]),
    gauge("weft_heap_live_bytes", "bytes", "Live heap of the process, when it runs weft's counting allocator (the weft binary does)."),
    counter("weft_metrics_connections_dropped_total", "", "Scrape connections the metrics endpoint closed unanswered: over its connection cap, evicted while silent, or past the request deadline.")
        .labels(&["reason"], &["deadline", "evicted", "over_cap"]),
    counter("process_cpu_seconds_total", "seconds", "User and system CPU time the process spent (Linux, /proc/self/stat)."),
    gauge("process_resident_memory_bytes", "bytes", "Resident set size of the process (Linux, /proc/self/status)."),
    gauge("process_virtual_memory_bytes", "bytes", "Virtual memory size of the process (Linux, /proc/self/status)."),
    gauge("process_open_fds", "", "Open file descriptors of the process (Linux, /proc/self/fd)."),
    gauge("process_max_fds", "", "The process's limit on open file descriptors (Linux, /proc/self/limits)."),
    gauge("process_start_time_seconds", "seconds", "When the process started, in seconds since the Unix epoch (Linux, /proc)."),
    // ------------------------------------------------------------- traffic
    counter("weft_packets_received_total", "packets", "Datagrams the endpoint was handed, valid or not."),
    counter("weft_received_bytes_total", "bytes", "Bytes of those datagrams."),
    counter("weft_packets_sent_total", "packets", "Datagrams the endpoint wrote."),
    counter("weft_sent_bytes_total", "bytes", "Bytes of those datagrams."),
    counter("weft_messages_sent_total", "messages", "Application messages accepted for sending."),
    counter("weft_messages_received_total", "messages", "Application messages delivered."),
    counter("weft_message_buffers_total", "messages", "Whole received messages (a DATA, or a DATA_FRAGMENT that holds all of its message) by how their bytes reach the application: `lent`, a piece of the receive memory the datagram arrived in, no copy (sealed datagrams while the backend has a spare receive slab); `copied`, into a pooled buffer.")
        .labels(&["how"], &["copied", "lent"]),
    counter("weft_packets_dropped_total", "packets", "Datagrams dropped whole, by reason (PROTOCOL.md §9): bad input from the network is counted here, never a panic.")
        .labels(&["reason"], DROP_REASONS),
    counter("weft_messages_dropped_total", "messages", "Messages or fragments dropped inside an accepted packet, by reason; the worker queue's refusals (`worker_queue_*`) are counted per shard, with a `shard` label.")
        .labels(&["reason"], &["credit", "fragment_ranges", "malformed", "past_credit", "reassembly_budget", "worker_buffers_held", "worker_queue_full", "worker_queue_share"]),
    counter("weft_messages_awaiting_session_total", "messages", "Messages that waited for a session to be established before they could be sent."),
    counter("weft_handshake_stateless_answers_total", "packets", "Answers sent without keeping state (cookies, acknowledgements, PONGs, RESETs), by message.")
        .labels(&["message"], &["channel_acknowledge", "channel_close", "handshake_cookie", "pong", "reset"]),
    // --------------------------------------------------- peers and sessions
    gauge("weft_peers", "", "Peers the endpoint holds state for."),
    counter("weft_peers_evicted_total", "", "Peers forgotten to make room in a full peer table."),
    gauge("weft_sessions", "", "Established Noise sessions."),
    gauge("weft_pending_handshakes", "", "Handshakes under way."),
    counter("weft_handshakes_completed_total", "", "Sessions established, by handshake kind.")
        .labels(&["kind"], &["ik", "ikpsk2", "xx"]),
    counter("weft_handshake_failures_total", "", "Handshakes that failed, by reason: a failed check, a refusal by a limit, or a timeout.")
        .labels(&["reason"], HANDSHAKE_FAILURES),
    counter("weft_handshake_refusals_total", "", "Handshakes refused by a limit of this node (rate, per-address or per-prefix caps, table sizes), by reason.")
        .labels(&["reason"], HANDSHAKE_REFUSALS),
    histogram(
        "weft_handshake_duration_seconds",
        "seconds",
        &HANDSHAKE_DURATION,
        "Handshakes this node initiated, from the first INIT to the established session (retries included).",
    ),
    counter("weft_handshake_cookies_sent_total", "", "Handshake cookies sent: the node was under load and asked an initiator to prove its address."),
    counter("weft_cookie_failures_total", "", "Cookies that did not check out, by reason.")
        .labels(&["reason"], &["expired", "mismatch", "reused_id"]),
    counter("weft_dh_operations_total", "", "X25519 operations performed (the expensive part of a handshake)."),
    counter("weft_rekeys_total", "", "Sessions replaced by a new handshake with the same peer."),
    counter("weft_sessions_evicted_total", "", "Sessions dropped to make room in a full session table."),
    counter("weft_pending_handshakes_evicted_total", "", "Pending handshakes dropped to make room for new ones."),
    // ------------------------------------------------------------- channels
    gauge("weft_channels", "", "Open channels."),
    gauge("weft_channels_by_mode", "", "Channels with a data path, by mode (PROTOCOL.md §7).")
        .labels(&["mode"], MODES),
    counter("weft_channels_opened_total", "", "Channels opened, by which side opened them.")
        .labels(&["role"], &["initiator", "responder"]),
    counter("weft_channels_closed_total", "", "Channels closed, by close reason.")
        .labels(&["reason"], &["idle", "loss", "normal", "protocol", "refused", "shutdown", "timeout", "unknown", "unsupported"]),
    counter("weft_channels_refused_total", "", "Channel opens refused, by reason.")
        .labels(&["reason"], &["ids_exhausted", "peer_limit", "peer_table_full", "table_full"]),
    counter("weft_channels_evicted_total", "", "Channels closed to make room in a full channel table."),
    // ------------------------------------------------------ paths and loss
    histogram("weft_rtt_seconds", "seconds", &RTT, "Round-trip time samples over every peer path (one per acknowledgement that gave a new sample)."),
    histogram("weft_congestion_window_bytes", "bytes", &CONGESTION_WINDOW, "The path's congestion window at each RTT sample, over every peer path (one controller per peer path, PROTOCOL.md §7.3)."),
    counter("weft_packets_lost_total", "packets", "Packets declared lost, by channel mode.")
        .labels(&["mode"], MODES),
    counter("weft_packets_retransmitted_total", "packets", "Packets that carried message data sent before, by channel mode.")
        .labels(&["mode"], MODES),
    counter("weft_congestion_events_total", "", "Losses that signalled congestion to the path's controller (RFC 9002 §7.3), by the mode of the channel that detected them.")
        .labels(&["mode"], MODES),
    counter("weft_retransmitted_bytes_total", "bytes", "Bytes of message data sent again, by channel mode.")
        .labels(&["mode"], MODES),
    counter("weft_acks_sent_total", "", "ACK frames written (PROTOCOL.md §7.1): `alone` in a packet of their own, at most one per channel per receive batch, or `piggybacked` beside data, WINDOW or a probe, which costs no packet.")
        .labels(&["packet"], &["alone", "piggybacked"]),
    histogram(
        "weft_message_delivery_seconds",
        "seconds",
        &MESSAGE_DELIVERY,
        "Messages sent, from their first transmission until their last byte was acknowledged (retransmissions included).",
    ),
    counter("weft_messages_given_up_total", "messages", "Messages given up after loss or the retry budget."),
    counter("weft_messages_skipped_total", "messages", "Message numbers an ordered channel skipped."),
    counter("weft_probe_timeouts_total", "", "Probe timeouts that fired."),
    counter("weft_reassembly_timeouts_total", "messages", "Incomplete messages dropped by the reassembly timeout."),
    counter("weft_reassembly_evictions_total", "messages", "Incomplete messages evicted to give a lighter peer its share of reassembly memory."),
    // -------------------------------------------------------- engine shards
    counter("weft_shard_datagrams_received_total", "datagrams", "Datagrams the shard's socket received.")
        .labels(SHARD, &[]),
    counter("weft_shard_datagrams_sent_total", "datagrams", "Datagrams the shard's socket sent.")
        .labels(SHARD, &[]),
    counter("weft_shard_recv_batches_total", "", "Receive batches.")
        .labels(SHARD, &[]),
    counter("weft_shard_send_batches_total", "", "Send batches.")
        .labels(SHARD, &[]),
    histogram("weft_shard_recv_batch_datagrams", "datagrams", &RECV_BATCH, "Datagrams per receive batch.")
        .labels(SHARD, &[]),
    histogram("weft_shard_send_batch_datagrams", "datagrams", &SEND_BATCH, "Datagrams per send batch.")
        .labels(SHARD, &[]),
    counter("weft_shard_rxq_overflows_total", "datagrams", "Datagrams the kernel dropped because the shard's receive queue was full (SO_RXQ_OVFL).")
        .labels(SHARD, &[]),
    counter("weft_shard_recv_nobufs_total", "", "io_uring receives that found no free buffer.")
        .labels(SHARD, &[]),
    counter("weft_shard_recv_rearms_total", "", "io_uring multishot receives re-armed.")
        .labels(SHARD, &[]),
    counter("weft_shard_socket_errors_total", "", "Socket errors, by operation.")
        .labels(&["shard", "op"], &["recv", "send"]),
    counter("weft_shard_truncated_total", "datagrams", "Datagrams truncated by a too small receive buffer.")
        .labels(SHARD, &[]),
    counter("weft_shard_send_blocked_total", "", "Sends that found the socket buffer full.")
        .labels(SHARD, &[]),
    counter("weft_shard_handovers_out_total", "datagrams", "Datagrams handed to the shard that owns their peer.")
        .labels(SHARD, &[]),
    counter("weft_shard_handovers_in_total", "datagrams", "Datagrams handed over by other shards.")
        .labels(SHARD, &[]),
    counter("weft_shard_handover_drops_total", "datagrams", "Handed-over datagrams dropped by a full handover queue.")
        .labels(SHARD, &[]),
    counter("weft_shard_bare_opens_total", "", "Worker opens by bare address with several shards, by outcome: opened on the shard the answer to its probe reached (`local`), handed from there to the shard that owns the peer (`moved`), no answer in time (`failed`), too many resolving (`refused`), or a full hand-over queue (`dropped`).")
        .labels(&["shard", "outcome"], &["dropped", "failed", "local", "moved", "refused"]),
    gauge("weft_shard_handover_queue_depth", "", "Datagrams waiting in the shard's handover queue.")
        .labels(SHARD, &[]),
    counter("weft_shard_reply_errors_total", "", "Worker replies the shard could not send.")
        .labels(SHARD, &[]),
    counter("weft_shard_worker_deliveries_total", "messages", "Messages handed to the worker.")
        .labels(SHARD, &[]),
    counter("weft_shard_worker_drops_total", "messages", "Messages dropped because the worker's queue was full.")
        .labels(SHARD, &[]),
    counter("weft_shard_worker_pauses_total", "", "Times the shard paused a channel because the worker's queue was full.")
        .labels(SHARD, &[]),
    gauge("weft_shard_worker_queue_depth", "", "Messages waiting in the worker's queue.")
        .labels(SHARD, &[]),
    gauge("weft_shard_worker_held", "", "Messages the shard holds back for the worker.")
        .labels(SHARD, &[]),
    gauge("weft_shard_worker_buffers_held", "", "Receive buffers of the shard the workers hold (queued for them or taken, not yet let go); bounded by max_worker_buffers.")
        .labels(SHARD, &[]),    // ------------------------------------------------------------- services
    // The worker's host (`service::host`) and the services on it; each service adds its families
    // below its own heading.
    counter("weft_service_messages_dropped_total", "messages", "Messages the worker's host dropped before any service saw them, by reason: a first byte that names no service here, or an answer to a request nobody waits for.")
        .labels(&["reason"], &["unknown_service", "unknown_token"]),
    // The overlay (`overlay::worker`, PROTOCOL.md §10): the DHT's RPCs, lookups, records and
    // channels.
    counter("weft_overlay_requests_sent_total", "requests", "Overlay RPC requests this node sent, by opcode.")
        .labels(&["op"], OVERLAY_OPS),
    counter("weft_overlay_requests_served_total", "requests", "Overlay RPC requests from peers answered with an ACK, by opcode.")
        .labels(&["op"], OVERLAY_OPS),
    counter("weft_overlay_requests_nacked_total", "requests", "Overlay RPC requests from peers answered with a NACK (not served, refused, unknown handler), by opcode.")
        .labels(&["op"], OVERLAY_OPS),
    counter("weft_overlay_requests_timed_out_total", "requests", "Overlay RPC requests of this node that got no answer within their RTT-derived timeout, by opcode.")
        .labels(&["op"], OVERLAY_OPS),
    counter("weft_overlay_replies_total", "replies", "Answers to this node's overlay requests, by outcome.")
        .labels(&["outcome"], &["ack", "nack"]),
    counter("weft_overlay_lookups_total", "lookups", "Overlay lookups finished, by outcome: a value found, none found, or the closest nodes (FIND_NODE).")
        .labels(&["outcome"], &["found", "not_found", "nodes"]),
    histogram("weft_overlay_lookup_depth", "", &OVERLAY_LOOKUP_DEPTH, "Depth of the application's gets and puts: the longest chain of dependent requests of the lookup."),
    histogram("weft_overlay_lookup_duration_seconds", "seconds", &OVERLAY_LOOKUP_DURATION, "The application's gets and puts, from the command to the answer."),
    counter("weft_overlay_store_refused_total", "requests", "STOREs from peers refused, by reason: the record budget full, the storing peer's share of it spent, an older version than held, a value too large, or the store's commit failed (the STORE is NACKed).")
        .labels(&["reason"], &["store_failed", "store_full", "store_quota", "store_older", "store_too_large"]),
    histogram("weft_overlay_store_commit_seconds", "seconds", &OVERLAY_STORE_COMMIT, "Commits of the overlay's store in the data directory: one write transaction, fsynced, per batch of inputs that changed records, published records or the routing table; STORE ACKs wait for it."),
    gauge("weft_overlay_store_records", "records", "Records held for others in the overlay's store on disk, as of the last commit (absent on a node that keeps no store)."),
    counter("weft_overlay_records_expired_total", "records", "Records held for others that expired."),
    counter("weft_overlay_refreshes_total", "lookups", "Bucket refresh lookups: a bucket that saw no lookup for the refresh interval gets one for a random id in its range."),
    counter("weft_overlay_cache_refills_total", "requests", "Contacts of the node info cache pinged to fill a bucket with room."),
    gauge("weft_overlay_cached_contacts", "contacts", "Contacts in the node info cache (learned from lookups, not held in the table)."),
    gauge("weft_overlay_records", "records", "Records held for others."),
    gauge("weft_overlay_contacts", "contacts", "Contacts in the routing table."),
    gauge("weft_overlay_buckets", "buckets", "Routing-table buckets holding at least one contact."),
    gauge("weft_overlay_channels", "channels", "Overlay channels open (one per peer, idle ones closed)."),
    gauge("weft_overlay_peer_records", "", "Peers' signed records the overlay holds (its address book in memory): what lets it open those contacts by IK."),
    counter("weft_overlay_opens_total", "", "Overlay channels opened to contacts, by the handshake asked for: IK with the contact's signed peer record, held from its announcement, a FIND_NODE reply or the address book; XX without one (a session the endpoint holds is reused either way).")
        .labels(&["handshake"], &["ik", "xx"]),
    counter("weft_overlay_dropped_total", "", "Overlay frames, requests and channels dropped or refused, by reason: a frame check, a budget of the DHT, or a bound of the worker.")
        .labels(&["reason"], OVERLAY_DROP_REASONS),
    // The consensus service (`consensus::service`, PROTOCOL.md §11): the member's agreement and
    // the node's own id.
    gauge("weft_consensus_members", "", "Members of the node's consensus network (the configured list, or this node alone)."),
    gauge("weft_consensus_height", "", "Height this member is deciding (0 on a node that is not a member)."),
    gauge("weft_consensus_round", "", "Round of the height being decided."),
    counter("weft_consensus_decisions_total", "", "Heights this member decided."),
    counter("weft_consensus_round_changes_total", "", "Rounds past a height's first that this member entered (a proposer timed out or votes split)."),
    counter("weft_consensus_votes_sent_total", "", "Votes this member signed and sent, by step.")
        .labels(&["step"], &["prevote", "precommit"]),
    counter("weft_consensus_ids_issued_total", "", "Node ids this member saw become final."),
    counter("weft_consensus_refusals_total", "messages", "Consensus messages refused, by reason: oversized (checked before decoding), unknown_version, malformed, non_member, bad_signature, stale, unexpected (out of place, or beyond a pending bound), unauthenticated (member traffic from a peer no encrypted session proved), rate (a client source past its rate of messages, each of which may cost a signature).")
        .labels(&["reason"], &["oversized", "unknown_version", "malformed", "non_member", "bad_signature", "stale", "unexpected", "unauthenticated"]),
    gauge("weft_consensus_links_open", "", "Channels to other members that are open."),
    counter("weft_consensus_policy_refusals_total", "requests", "Node-id requests this member refused with a signed NACK, by the policy limit they ran into: ids per IPv4 address (ipv4_32), /24 (ipv4_24), /16 (ipv4_16), per IPv6 /64 (ipv6_64), /48 (ipv6_48), /32 (ipv6_32) per window, or the window's prefix table full (table_full).")
        .labels(&["limit"], &["ipv4_32", "ipv4_24", "ipv4_16", "ipv6_64", "ipv6_48", "ipv6_32", "table_full"]),
    counter("weft_consensus_membership_changes_total", "changes", "Member-list changes this member's log decided, by change: a member added (an approved applicant voted in) or removed (voted out on evidence of silence).")
        .labels(&["change"], &["added", "removed"]),
    counter("weft_consensus_keepalives_missed_total", "members", "Members this member asked after missing their keep-alives for two periods (the first step toward voting a silent member out)."),
    gauge("weft_consensus_waiting_for_members", "", "1 while the node fetches its cluster's member list from consensus.members_url and has none yet (it joins no cluster and starts none meanwhile)."),
    gauge("weft_consensus_node_id_certified", "", "1 once the node holds a quorum certificate for its own node id."),
    histogram("weft_consensus_decision_latency_seconds", "seconds", &DECISION_LATENCY, "Time from a height's first round to its decision, on this member."),
];

/// The catalog entry of an exported family.
pub fn find(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// docs/METRICS.md, generated from [`METRICS`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Metrics\n\n\
         <!-- Generated from src/stats/catalog.rs: edit the table there, then run\n     \
         `WEFT_BLESS=1 cargo test --lib catalog` to write this file. -->\n\n\
         Every metric family `weft node` exports on `GET /metrics` (Prometheus text format\n\
         0.0.4). Families are sorted by name in a scrape. Labelled counters whose label values\n\
         are listed here are exported at 0 from the start. Histograms are in base units\n\
         (seconds, bytes) with cumulative `le` buckets. `shard` labels engine figures per\n\
         shard; no label ever holds a peer id or an address.\n\n\
         | Name | Type | Unit | Labels | Help |\n\
         |---|---|---|---|---|\n",
    );
    for m in METRICS {
        let labels = match (m.labels, m.values) {
            ([], _) => String::new(),
            (keys, []) => keys.join(", "),
            (keys, values) => format!("{} ({})", keys.join(", "), values.join(", ")),
        };
        let name = match m.kind {
            Type::Histogram => format!("`{0}` (`_bucket`, `_sum`, `_count`)", m.name),
            _ => format!("`{}`", m.name),
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {labels} | {} |\n",
            m.kind.word(),
            m.unit,
            m.help
        ));
    }
    out.push_str("\nHistogram buckets (`le`):\n\n");
    for m in METRICS {
        if let Some(h) = m.histogram {
            let le: Vec<&str> = h.bounds.iter().filter_map(|&(_, l)| h.le_of(l)).collect();
            out.push_str(&format!("- `{}`: {}\n", m.name, le.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(
                m.kind == Type::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Type::Histogram,
                m.histogram.is_some(),
                "{}",
                m.name
            );
            assert!(!m.help.is_empty() && !m.help.contains('\n'), "{}", m.name);
            if !m.unit.is_empty() && m.kind != Type::Counter {
                assert!(m.name.contains(m.unit), "{} does not name its unit", m.name);
            }
            assert!(
                !m.labels
                    .iter()
                    .any(|l| l.contains("peer") || l.contains("addr")),
                "{}: never a peer id or address as a label",
                m.name
            );
        }
    }

    #[test]
    fn histograms_end_in_a_catch_all_bucket() {
        for h in [
            &RTT,
            &CONGESTION_WINDOW,
            &HANDSHAKE_DURATION,
            &DECISION_LATENCY,
            &RECV_BATCH,
            &SEND_BATCH,
        ] {
            assert_eq!(h.bounds.last().map(|b| b.0), Some(u64::MAX));
            assert!(h.bounds.windows(2).all(|w| w[0].0 < w[1].0));
            if let Some(le) = h.le {
                assert_eq!(le.len(), h.bounds.len());
            }
            assert_eq!(h.bounds.last().and_then(|b| h.le_of(b.1)), Some("+Inf"));
        }
    }

    /// docs/METRICS.md is the table's; `WEFT_BLESS=1` rewrites it.
    #[test]
    fn docs_metrics_md_matches_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/METRICS.md");
        let want = markdown();
        if std::env::var_os("WEFT_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/METRICS.md differs from src/stats/catalog.rs: run `WEFT_BLESS=1 cargo test --lib catalog`"
        );
    }
}
