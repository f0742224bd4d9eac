//! The `[limits]` table of a node's config file: the budgets that bound what hostile peers (and
//! scrapers) can make the node hold or spend (PROTOCOL.md §5–§7, §12), and how often the node
//! acknowledges (§7.1: what it spends on ACK packets).
//!
//! Every default is the owning struct's `Default` ([`EndpointConfig`], [`ReliabilityConfig`],
//! [`RekeyPolicy`], [`ScrapeLimits`]), where the reason for it is written; this file only
//! names, checks and copies them. Each limit holds per engine shard: every shard runs its own
//! endpoint with its own tables.

use super::scrape::ScrapeLimits;
use crate::channel::EndpointConfig;
use crate::channel::reliability::ack::MAX_ACK_ELICITING_THRESHOLD;
use crate::channel::reliability::rtt::{GRANULARITY, MAX_ACK_DELAY};
use crate::session::{RekeyPolicy, TokenRate};
use serde::Deserialize;
use std::time::Duration;

/// A value of `[limits]` out of range or at odds with another limit; the config layer reports
/// it as [`super::ConfigProblem::BadLimit`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("field \"limits.{field}\": {problem}")]
pub struct BadLimit {
    /// The field.
    pub field: &'static str,
    /// What is wrong and the fix.
    pub problem: String,
}

/// The fields `[limits]` may hold, in the order the documentation lists them.
pub const LIMIT_FIELDS: [&str; 34] = [
    "max_sessions",
    "max_sessions_per_address",
    "max_sessions_per_prefix",
    "handshake_rate_per_address",
    "handshake_burst_per_address",
    "handshake_rate_per_prefix",
    "handshake_burst_per_prefix",
    "max_pending_handshakes",
    "max_pending_xx",
    "max_pending_xx_per_prefix",
    "max_handshake_timestamps",
    "handshake_timestamp_window",
    "rekey_after",
    "rekey_after_packets",
    "rekey_reject_after_packets",
    "max_peers",
    "max_channels",
    "max_channels_per_peer",
    "max_closed_channels_per_session",
    "reassembly_node_bytes",
    "reassembly_peer_bytes",
    "reassembly_timeout",
    "reassembly_max_age",
    "max_reassembly_ranges",
    "max_message_size",
    "admission_window",
    "ack_eliciting_threshold",
    "max_ack_delay",
    "max_worker_buffers",
    "max_returned_buffers",
    "max_returned_buffer_bytes",
    "spare_receive_slabs",
    "metrics_max_connections",
    "metrics_request_deadline",
];

/// The `[limits]` fields that hold seconds (an integer or a fraction); the rest are counts.
pub const SECONDS_FIELDS: [&str; 6] = [
    "handshake_timestamp_window",
    "rekey_after",
    "reassembly_timeout",
    "reassembly_max_age",
    "max_ack_delay",
    "metrics_request_deadline",
];

/// Largest table a slab-backed limit may ask for (sessions, peers, channels, pending
/// handshakes); above it the endpoint would silently clamp, so the config refuses it.
const MAX_TABLE: u64 = crate::handle::MAX_LIMIT as u64;

/// `[limits]` as written: every field optional, unknown fields refused. Counts are integers,
/// durations are seconds.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Each field is [`Limits`]' field of the same meaning.
pub struct LimitsFile {
    pub max_sessions: Option<i64>,
    pub max_sessions_per_address: Option<i64>,
    pub max_sessions_per_prefix: Option<i64>,
    pub handshake_rate_per_address: Option<i64>,
    pub handshake_burst_per_address: Option<i64>,
    pub handshake_rate_per_prefix: Option<i64>,
    pub handshake_burst_per_prefix: Option<i64>,
    pub max_pending_handshakes: Option<i64>,
    pub max_pending_xx: Option<i64>,
    pub max_pending_xx_per_prefix: Option<i64>,
    pub max_handshake_timestamps: Option<i64>,
    pub handshake_timestamp_window: Option<f64>,
    pub rekey_after: Option<f64>,
    pub rekey_after_packets: Option<i64>,
    pub rekey_reject_after_packets: Option<i64>,
    pub max_peers: Option<i64>,
    pub max_channels: Option<i64>,
    pub max_channels_per_peer: Option<i64>,
    pub max_closed_channels_per_session: Option<i64>,
    pub reassembly_node_bytes: Option<i64>,
    pub reassembly_peer_bytes: Option<i64>,
    pub reassembly_timeout: Option<f64>,
    pub reassembly_max_age: Option<f64>,
    pub max_reassembly_ranges: Option<i64>,
    pub max_message_size: Option<i64>,
    pub admission_window: Option<i64>,
    pub ack_eliciting_threshold: Option<i64>,
    pub max_ack_delay: Option<f64>,
    pub max_worker_buffers: Option<i64>,
    pub max_returned_buffers: Option<i64>,
    pub max_returned_buffer_bytes: Option<i64>,
    pub spare_receive_slabs: Option<i64>,
    pub metrics_max_connections: Option<i64>,
    pub metrics_request_deadline: Option<f64>,
}

/// The hostile-peer budgets once the file and the defaults are merged; see the fields of the
/// same names on [`EndpointConfig`] (and its `reliability` and `rekey`) for what each bounds and
/// why its default is what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each field is documented on the config struct it is copied to.
pub struct Limits {
    pub max_sessions: usize,
    pub max_sessions_per_address: usize,
    pub max_sessions_per_prefix: usize,
    pub handshake_rate_per_address: TokenRate,
    pub handshake_rate_per_prefix: TokenRate,
    pub max_pending_handshakes: usize,
    pub max_pending_xx: usize,
    pub max_pending_xx_per_prefix: usize,
    pub max_handshake_timestamps: usize,
    pub handshake_timestamp_window: Duration,
    pub rekey: RekeyPolicy,
    pub max_peers: usize,
    pub max_channels: usize,
    pub max_channels_per_peer: usize,
    pub max_closed_channels_per_session: usize,
    pub reassembly_node_bytes: usize,
    pub reassembly_peer_bytes: usize,
    pub reassembly_timeout: Duration,
    pub reassembly_max_age: Duration,
    pub max_reassembly_ranges: usize,
    pub max_message_size: usize,
    pub admission_window: u32,
    pub ack_eliciting_threshold: u32,
    pub max_ack_delay: Duration,
    pub max_worker_buffers: usize,
    pub max_returned_buffers: usize,
    pub max_returned_buffer_bytes: usize,
    pub spare_receive_slabs: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_endpoint(&EndpointConfig::default())
    }
}

impl Limits {
    /// The limits an endpoint config holds.
    pub fn from_endpoint(c: &EndpointConfig) -> Limits {
        Limits {
            max_sessions: c.max_sessions,
            max_sessions_per_address: c.max_sessions_per_address,
            max_sessions_per_prefix: c.max_sessions_per_prefix,
            handshake_rate_per_address: c.handshake_rate_per_address,
            handshake_rate_per_prefix: c.handshake_rate_per_prefix,
            max_pending_handshakes: c.max_pending_handshakes,
            max_pending_xx: c.max_pending_xx,
            max_pending_xx_per_prefix: c.max_pending_xx_per_prefix,
            max_handshake_timestamps: c.max_handshake_timestamps,
            handshake_timestamp_window: c.handshake_timestamp_window,
            rekey: c.rekey,
            max_peers: c.max_peers,
            max_channels: c.max_channels,
            max_channels_per_peer: c.max_channels_per_peer,
            max_closed_channels_per_session: c.max_closed_channels_per_session,
            reassembly_node_bytes: c.reassembly_node_bytes,
            reassembly_peer_bytes: c.reassembly_peer_bytes,
            reassembly_timeout: c.reliability.reassembly_timeout,
            reassembly_max_age: c.reliability.reassembly_max_age,
            max_reassembly_ranges: c.reliability.max_reassembly_ranges,
            max_message_size: c.reliability.max_message_size,
            admission_window: c.admission_window,
            ack_eliciting_threshold: c.reliability.ack_eliciting_threshold,
            max_ack_delay: c.reliability.max_ack_delay,
            max_worker_buffers: c.max_worker_buffers,
            max_returned_buffers: c.max_returned_buffers,
            max_returned_buffer_bytes: c.max_returned_buffer_bytes,
            spare_receive_slabs: c.spare_receive_slabs,
        }
    }

    /// `base` with these limits in place of its own.
    pub fn apply(&self, base: EndpointConfig) -> EndpointConfig {
        let mut c = base;
        c.max_sessions = self.max_sessions;
        c.max_sessions_per_address = self.max_sessions_per_address;
        c.max_sessions_per_prefix = self.max_sessions_per_prefix;
        c.handshake_rate_per_address = self.handshake_rate_per_address;
        c.handshake_rate_per_prefix = self.handshake_rate_per_prefix;
        c.max_pending_handshakes = self.max_pending_handshakes;
        c.max_pending_xx = self.max_pending_xx;
        c.max_pending_xx_per_prefix = self.max_pending_xx_per_prefix;
        c.max_handshake_timestamps = self.max_handshake_timestamps;
        c.handshake_timestamp_window = self.handshake_timestamp_window;
        c.rekey = self.rekey;
        c.max_peers = self.max_peers;
        c.max_channels = self.max_channels;
        c.max_channels_per_peer = self.max_channels_per_peer;
        c.max_closed_channels_per_session = self.max_closed_channels_per_session;
        c.reassembly_node_bytes = self.reassembly_node_bytes;
        c.reassembly_peer_bytes = self.reassembly_peer_bytes;
        c.reliability.reassembly_timeout = self.reassembly_timeout;
        c.reliability.reassembly_max_age = self.reassembly_max_age;
        c.reliability.max_reassembly_ranges = self.max_reassembly_ranges;
        c.reliability.max_message_size = self.max_message_size;
        c.admission_window = self.admission_window;
        c.reliability.ack_eliciting_threshold = self.ack_eliciting_threshold;
        c.reliability.max_ack_delay = self.max_ack_delay;
        c.max_worker_buffers = self.max_worker_buffers;
        c.max_returned_buffers = self.max_returned_buffers;
        c.max_returned_buffer_bytes = self.max_returned_buffer_bytes;
        c.spare_receive_slabs = self.spare_receive_slabs;
        c
    }
}

impl LimitsFile {
    /// Checks the file's values and merges them over `limits` and `metrics` (the defaults).
    pub fn merge(&self, limits: &mut Limits, metrics: &mut ScrapeLimits) -> Result<(), BadLimit> {
        let l = limits;
        count(
            &mut l.max_sessions,
            self.max_sessions,
            "max_sessions",
            MAX_TABLE,
        )?;
        count(
            &mut l.max_sessions_per_address,
            self.max_sessions_per_address,
            "max_sessions_per_address",
            MAX_TABLE,
        )?;
        count(
            &mut l.max_sessions_per_prefix,
            self.max_sessions_per_prefix,
            "max_sessions_per_prefix",
            MAX_TABLE,
        )?;
        let rate = u64::from(u32::MAX);
        let a = &mut l.handshake_rate_per_address;
        count(
            &mut a.per_second,
            self.handshake_rate_per_address,
            "handshake_rate_per_address",
            rate,
        )?;
        count(
            &mut a.burst,
            self.handshake_burst_per_address,
            "handshake_burst_per_address",
            rate,
        )?;
        let p = &mut l.handshake_rate_per_prefix;
        count(
            &mut p.per_second,
            self.handshake_rate_per_prefix,
            "handshake_rate_per_prefix",
            rate,
        )?;
        count(
            &mut p.burst,
            self.handshake_burst_per_prefix,
            "handshake_burst_per_prefix",
            rate,
        )?;
        // The endpoint's pending table holds both kinds, so their sum is one slab.
        count(
            &mut l.max_pending_handshakes,
            self.max_pending_handshakes,
            "max_pending_handshakes",
            MAX_TABLE / 2,
        )?;
        count(
            &mut l.max_pending_xx,
            self.max_pending_xx,
            "max_pending_xx",
            MAX_TABLE / 2,
        )?;
        count(
            &mut l.max_pending_xx_per_prefix,
            self.max_pending_xx_per_prefix,
            "max_pending_xx_per_prefix",
            MAX_TABLE,
        )?;
        count(
            &mut l.max_handshake_timestamps,
            self.max_handshake_timestamps,
            "max_handshake_timestamps",
            MAX_TABLE,
        )?;
        seconds(
            &mut l.handshake_timestamp_window,
            self.handshake_timestamp_window,
            "handshake_timestamp_window",
        )?;
        seconds(&mut l.rekey.after, self.rekey_after, "rekey_after")?;
        // Above the default the 32-bit sequence numbers could wrap under one key (§5).
        let wall = RekeyPolicy::default().reject_after_packets;
        count(
            &mut l.rekey.after_packets,
            self.rekey_after_packets,
            "rekey_after_packets",
            wall,
        )?;
        count(
            &mut l.rekey.reject_after_packets,
            self.rekey_reject_after_packets,
            "rekey_reject_after_packets",
            wall,
        )?;
        count(&mut l.max_peers, self.max_peers, "max_peers", MAX_TABLE)?;
        count(
            &mut l.max_channels,
            self.max_channels,
            "max_channels",
            MAX_TABLE,
        )?;
        count(
            &mut l.max_channels_per_peer,
            self.max_channels_per_peer,
            "max_channels_per_peer",
            MAX_TABLE,
        )?;
        count(
            &mut l.max_closed_channels_per_session,
            self.max_closed_channels_per_session,
            "max_closed_channels_per_session",
            MAX_TABLE,
        )?;
        let bytes = u64::try_from(isize::MAX).unwrap_or(u64::MAX);
        count(
            &mut l.reassembly_node_bytes,
            self.reassembly_node_bytes,
            "reassembly_node_bytes",
            bytes,
        )?;
        count(
            &mut l.reassembly_peer_bytes,
            self.reassembly_peer_bytes,
            "reassembly_peer_bytes",
            bytes,
        )?;
        seconds(
            &mut l.reassembly_timeout,
            self.reassembly_timeout,
            "reassembly_timeout",
        )?;
        seconds(
            &mut l.reassembly_max_age,
            self.reassembly_max_age,
            "reassembly_max_age",
        )?;
        count(
            &mut l.max_reassembly_ranges,
            self.max_reassembly_ranges,
            "max_reassembly_ranges",
            MAX_TABLE,
        )?;
        count(
            &mut l.max_message_size,
            self.max_message_size,
            "max_message_size",
            bytes,
        )?;
        // A window's table holds up to this many prefixes (~40 bytes each): 2^20 bounds it at
        // ~40 MiB a shard. 0 turns fair admission off, as the endpoint's config allows.
        if self.admission_window == Some(0) {
            l.admission_window = 0;
        } else {
            count(
                &mut l.admission_window,
                self.admission_window,
                "admission_window",
                1 << 20,
            )?;
        }
        count(
            &mut l.ack_eliciting_threshold,
            self.ack_eliciting_threshold,
            "ack_eliciting_threshold",
            u64::from(MAX_ACK_ELICITING_THRESHOLD),
        )?;
        ack_delay(&mut l.max_ack_delay, self.max_ack_delay)?;
        // Each buffer is at least a datagram (~1.5 KiB): 2^20 bounds them at ~1.5 GiB a shard.
        count(
            &mut l.max_worker_buffers,
            self.max_worker_buffers,
            "max_worker_buffers",
            1 << 20,
        )?;
        // The return queue is allocated up front, ~32 bytes a slot: 2^20 is 32 MiB a shard.
        // 0 turns the return off (every dropped buffer is freed), 0 bytes likewise.
        zero_or_count(
            &mut l.max_returned_buffers,
            self.max_returned_buffers,
            "max_returned_buffers",
            1 << 20,
        )?;
        zero_or_count(
            &mut l.max_returned_buffer_bytes,
            self.max_returned_buffer_bytes,
            "max_returned_buffer_bytes",
            bytes,
        )?;
        // ~64 KiB a slab, made on first need: 4096 is 256 MiB a shard. 0 never lends.
        zero_or_count(
            &mut l.spare_receive_slabs,
            self.spare_receive_slabs,
            "spare_receive_slabs",
            4096,
        )?;
        count(
            &mut metrics.max_connections,
            self.metrics_max_connections,
            "metrics_max_connections",
            4096,
        )?;
        seconds(
            &mut metrics.request_deadline,
            self.metrics_request_deadline,
            "metrics_request_deadline",
        )?;
        check_order(l)
    }
}

/// Refuses limits that contradict each other: a cap that could never be reached, or a message
/// that could never be received.
fn check_order(l: &Limits) -> Result<(), BadLimit> {
    let below = |field, value: u64, other: &'static str, floor: u64| {
        Err(BadLimit {
            field,
            problem: format!(
                "{value} is below {other} ({floor}), so {other} could never be reached; \
                 raise {field} to at least {floor} or lower {other}"
            ),
        })
    };
    let pairs = [
        (
            "max_sessions_per_prefix",
            l.max_sessions_per_prefix as u64,
            "max_sessions_per_address",
            l.max_sessions_per_address as u64,
        ),
        (
            "handshake_rate_per_prefix",
            u64::from(l.handshake_rate_per_prefix.per_second),
            "handshake_rate_per_address",
            u64::from(l.handshake_rate_per_address.per_second),
        ),
        (
            "handshake_burst_per_prefix",
            u64::from(l.handshake_rate_per_prefix.burst),
            "handshake_burst_per_address",
            u64::from(l.handshake_rate_per_address.burst),
        ),
        (
            "rekey_reject_after_packets",
            l.rekey.reject_after_packets,
            "rekey_after_packets",
            l.rekey.after_packets.saturating_add(1),
        ),
        (
            "reassembly_max_age",
            l.reassembly_max_age.as_millis() as u64,
            "reassembly_timeout",
            l.reassembly_timeout.as_millis() as u64,
        ),
    ];
    for (field, value, other, floor) in pairs {
        if value < floor {
            if field == "reassembly_max_age" {
                return Err(BadLimit {
                    field,
                    problem: format!(
                        "{} s is below reassembly_timeout ({} s); raise it or lower \
                         reassembly_timeout",
                        l.reassembly_max_age.as_secs_f64(),
                        l.reassembly_timeout.as_secs_f64()
                    ),
                });
            }
            return below(field, value, other, floor);
        }
    }
    // PROTOCOL.md §7.5: a big message is charged its whole announced length up front.
    if l.max_message_size >= l.reassembly_peer_bytes {
        return Err(BadLimit {
            field: "reassembly_peer_bytes",
            problem: format!(
                "{} bytes cannot hold one message of max_message_size ({} bytes) and its \
                 bookkeeping; raise reassembly_peer_bytes or lower max_message_size",
                l.reassembly_peer_bytes, l.max_message_size
            ),
        });
    }
    Ok(())
}

/// Checks a count: an integer from 1 to `max` (0 would refuse every peer).
/// [`count`], where 0 is allowed too (it turns the feature off).
fn zero_or_count<T: TryFrom<u64> + From<u8>>(
    slot: &mut T,
    value: Option<i64>,
    field: &'static str,
    max: u64,
) -> Result<(), BadLimit> {
    if value == Some(0) {
        *slot = T::from(0);
        return Ok(());
    }
    count(slot, value, field, max)
}

fn count<T: TryFrom<u64>>(
    slot: &mut T,
    value: Option<i64>,
    field: &'static str,
    max: u64,
) -> Result<(), BadLimit> {
    let Some(value) = value else { return Ok(()) };
    let converted = u64::try_from(value)
        .ok()
        .filter(|v| (1..=max).contains(v))
        .and_then(|v| T::try_from(v).ok());
    match converted {
        Some(v) => {
            *slot = v;
            Ok(())
        }
        None => Err(BadLimit {
            field,
            problem: format!(
                "{value} is out of range; give a whole number from 1 to {max} \
                 (leave it out for the default)"
            ),
        }),
    }
}

/// Checks a duration given in seconds: more than zero, and at most a day's worth of years.
fn seconds(slot: &mut Duration, value: Option<f64>, field: &'static str) -> Result<(), BadLimit> {
    let Some(value) = value else { return Ok(()) };
    const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
    if !(value > 0.0 && value <= MAX_SECONDS) {
        return Err(BadLimit {
            field,
            problem: format!(
                "{value} is out of range; give seconds above 0 and at most {MAX_SECONDS} \
                 (fractions allowed, e.g. 2.5)"
            ),
        });
    }
    *slot = Duration::from_secs_f64(value);
    Ok(())
}

/// Checks `max_ack_delay`: from the timer granularity (1 ms) to PROTOCOL.md §7.1's 25 ms, the
/// most a peer allows for before its probe timeout fires; a longer delay would make every
/// peer resend what this node merely had not acknowledged yet.
fn ack_delay(slot: &mut Duration, value: Option<f64>) -> Result<(), BadLimit> {
    let Some(value) = value else { return Ok(()) };
    let (least, most) = (GRANULARITY.as_secs_f64(), MAX_ACK_DELAY.as_secs_f64());
    if !(least..=most).contains(&value) {
        return Err(BadLimit {
            field: "max_ack_delay",
            problem: format!(
                "{value} is out of range; give seconds from {least} to {most} (peers time their \
                 probes assuming an ACK within {most} s, PROTOCOL.md §7.1)"
            ),
        });
    }
    *slot = Duration::from_secs_f64(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeConfig;
    use crate::node::config::tests::problem;

    #[test]
    fn defaults_are_the_endpoints_own() {
        let applied = Limits::default().apply(EndpointConfig::default());
        assert_eq!(
            format!("{applied:?}"),
            format!("{:?}", EndpointConfig::default())
        );
        assert_eq!(
            NodeConfig::parse("[limits]\n").unwrap(),
            NodeConfig::default()
        );
    }

    #[test]
    fn limits_from_the_file_reach_the_endpoint_config() {
        let config = NodeConfig::parse(
            "[limits]\nmax_sessions = 500\nmax_sessions_per_address = 1\n\
             max_sessions_per_prefix = 2\nhandshake_rate_per_address = 3\n\
             handshake_burst_per_address = 4\nhandshake_rate_per_prefix = 5\n\
             handshake_burst_per_prefix = 6\nmax_pending_handshakes = 7\nmax_pending_xx = 8\n\
             max_pending_xx_per_prefix = 9\nmax_handshake_timestamps = 10\n\
             handshake_timestamp_window = 11\nrekey_after = 12.5\nrekey_after_packets = 13\n\
             rekey_reject_after_packets = 14\nmax_peers = 15\nmax_channels = 16\n\
             max_channels_per_peer = 17\nmax_closed_channels_per_session = 3\n\
             reassembly_node_bytes = 18000\n\
             reassembly_peer_bytes = 19000\nreassembly_timeout = 20\n\
             reassembly_max_age = 21\nmax_reassembly_ranges = 22\nmax_message_size = 2300\n\
             admission_window = 512\nack_eliciting_threshold = 10\nmax_ack_delay = 0.005\n\
             max_worker_buffers = 23\nmax_returned_buffers = 0\n\
             max_returned_buffer_bytes = 4096\nspare_receive_slabs = 0\nmetrics_max_connections = 24\nmetrics_request_deadline = 0.25\n",
        )
        .unwrap();
        let c = config.limits.apply(EndpointConfig::default());
        assert_eq!(
            (
                c.max_sessions,
                c.max_sessions_per_address,
                c.max_sessions_per_prefix
            ),
            (500, 1, 2)
        );
        assert_eq!(
            c.handshake_rate_per_address,
            TokenRate {
                per_second: 3,
                burst: 4
            }
        );
        assert_eq!(
            c.handshake_rate_per_prefix,
            TokenRate {
                per_second: 5,
                burst: 6
            }
        );
        assert_eq!(
            (
                c.max_pending_handshakes,
                c.max_pending_xx,
                c.max_pending_xx_per_prefix
            ),
            (7, 8, 9)
        );
        assert_eq!(c.max_handshake_timestamps, 10);
        assert_eq!(c.handshake_timestamp_window, Duration::from_secs(11));
        assert_eq!(c.rekey.after, Duration::from_millis(12_500));
        assert_eq!(
            (c.rekey.after_packets, c.rekey.reject_after_packets),
            (13, 14)
        );
        assert_eq!(
            (c.max_peers, c.max_channels, c.max_channels_per_peer),
            (15, 16, 17)
        );
        assert_eq!(c.max_closed_channels_per_session, 3);
        assert_eq!(
            (c.reassembly_node_bytes, c.reassembly_peer_bytes),
            (18_000, 19_000)
        );
        let r = &c.reliability;
        assert_eq!(r.reassembly_timeout, Duration::from_secs(20));
        assert_eq!(r.reassembly_max_age, Duration::from_secs(21));
        assert_eq!((r.max_reassembly_ranges, r.max_message_size), (22, 2300));
        assert_eq!(c.admission_window, 512);
        assert_eq!(r.ack_eliciting_threshold, 10);
        assert_eq!(r.max_ack_delay, Duration::from_millis(5));
        assert_eq!(c.max_worker_buffers, 23);
        assert_eq!(
            (c.max_returned_buffers, c.max_returned_buffer_bytes),
            (0, 4096)
        );
        assert_eq!(c.spare_receive_slabs, 0, "0: never lend");
        assert_eq!(config.metrics_limits.max_connections, 24);
        assert_eq!(
            config.metrics_limits.request_deadline,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn an_unknown_limit_is_named_with_a_suggestion() {
        let message = problem("[limits]\nmax_session = 5\n");
        assert!(
            message.contains("unknown field \"limits.max_session\""),
            "{message}"
        );
        assert!(
            message.contains("did you mean \"max_sessions\""),
            "{message}"
        );
        assert!(message.contains("max_sessions_per_address"), "{message}");
    }

    #[test]
    fn a_limit_of_the_wrong_kind_is_named() {
        let message = problem("[limits]\nmax_peers = \"many\"\n");
        assert!(
            message.starts_with("field \"limits.max_peers\": expected a whole number"),
            "{message}"
        );
        let message = problem("[limits]\nreassembly_max_age = true\n");
        assert!(message.contains("expected seconds"), "{message}");
        assert!(problem("limits = 3").starts_with("field \"limits\": expected a table"));
    }

    #[test]
    fn zero_negative_and_huge_limits_are_refused_naming_the_field() {
        for (text, field) in [
            ("max_sessions = 0", "max_sessions"),
            ("max_channels_per_peer = -1", "max_channels_per_peer"),
            (
                "max_closed_channels_per_session = 0",
                "max_closed_channels_per_session",
            ),
            ("max_peers = 100000000", "max_peers"),
            (
                "handshake_rate_per_address = 0",
                "handshake_rate_per_address",
            ),
            (
                "handshake_timestamp_window = 0",
                "handshake_timestamp_window",
            ),
            ("reassembly_max_age = -2.5", "reassembly_max_age"),
            ("metrics_request_deadline = nan", "metrics_request_deadline"),
            (
                "rekey_reject_after_packets = 4294967296",
                "rekey_reject_after_packets",
            ),
            ("ack_eliciting_threshold = 0", "ack_eliciting_threshold"),
            ("ack_eliciting_threshold = 257", "ack_eliciting_threshold"),
            // PROTOCOL.md §7.1: peers allow for 25 ms at most; below 1 ms is below any timer.
            ("max_ack_delay = 0.026", "max_ack_delay"),
            ("max_ack_delay = 0.0005", "max_ack_delay"),
            ("max_ack_delay = -1", "max_ack_delay"),
        ] {
            let message = problem(&format!("[limits]\n{text}\n"));
            assert!(
                message.starts_with(&format!("field \"limits.{field}\": ")),
                "{text}: {message}"
            );
            assert!(message.contains("out of range; give"), "{text}: {message}");
        }
    }

    #[test]
    fn fair_admission_is_on_by_default_and_zero_turns_it_off() {
        let default = NodeConfig::parse("").unwrap().limits;
        assert_eq!(
            default.apply(EndpointConfig::default()).admission_window,
            4096
        );
        let off = NodeConfig::parse("[limits]\nadmission_window = 0\n").unwrap();
        assert_eq!(
            off.limits.apply(EndpointConfig::default()).admission_window,
            0
        );
        let message = problem("[limits]\nadmission_window = -1\n");
        assert!(message.contains("out of range; give"), "{message}");
    }

    #[test]
    fn limits_at_odds_with_each_other_are_refused_with_the_fix() {
        let message = problem("[limits]\nmax_sessions_per_prefix = 10\n");
        assert!(
            message.starts_with("field \"limits.max_sessions_per_prefix\": 10 is below"),
            "{message}"
        );
        assert!(
            message.contains("max_sessions_per_address (1024)"),
            "{message}"
        );
        let message = problem("[limits]\nhandshake_burst_per_address = 1000\n");
        assert!(
            message.contains("limits.handshake_burst_per_prefix"),
            "{message}"
        );
        let message =
            problem("[limits]\nrekey_after_packets = 100\nrekey_reject_after_packets = 100\n");
        assert!(
            message.contains("limits.rekey_reject_after_packets"),
            "{message}"
        );
        let message = problem("[limits]\nreassembly_timeout = 90\n");
        assert!(message.contains("limits.reassembly_max_age"), "{message}");
        let message = problem("[limits]\nreassembly_peer_bytes = 1048576\n");
        assert!(
            message.starts_with("field \"limits.reassembly_peer_bytes\"")
                && message.contains("max_message_size"),
            "{message}"
        );
    }
}
