//! One directed link of the simulated network: its settings, its counters, and the fate it deals
//! each datagram (MTU, bottleneck queue, loss, duplication, delay, jitter, reordering).

use super::rng::SimRng;
use std::collections::VecDeque;
use std::ops::AddAssign;
use std::time::{Duration, Instant};

/// How a directed link treats the datagrams sent over it. Fields are public so a scenario writes
/// `LinkConfig { loss: 0.1, ..LinkConfig::default() }`.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) struct LinkConfig {
    /// Fixed one-way propagation delay.
    pub(crate) delay: Duration,
    /// Each copy of a datagram gets an extra delay drawn uniformly from `[0, jitter]`,
    /// independently, so jitter alone already reorders closely spaced packets.
    pub(crate) jitter: Duration,
    /// Probability a datagram is lost; 1.0 makes the link a black hole.
    pub(crate) loss: f64,
    /// Probability a datagram that survived loss arrives twice.
    pub(crate) duplicate: f64,
    /// Probability a copy is held back by an extra [`LinkConfig::reorder_extra`], so packets
    /// sent shortly after it overtake it.
    pub(crate) reorder: f64,
    /// Bottleneck rate: each datagram occupies the link for `len * 8 / bandwidth_bps` seconds,
    /// first come first served, before its propagation delay starts. `None`: infinitely fast.
    pub(crate) bandwidth_bps: Option<u64>,
    /// Bytes that may wait for (or be in) serialisation; a datagram that does not fit is
    /// tail-dropped. Only meaningful with `bandwidth_bps`, since an infinitely fast link never
    /// queues. `None`: unbounded.
    pub(crate) queue_bytes: Option<usize>,
    /// Largest datagram (UDP payload bytes) the path carries; larger ones are dropped.
    pub(crate) mtu: usize,
    /// Draw the jitter once per path (an unordered pair of nodes) instead of per datagram:
    /// each path then has its own fixed latency in `[delay, delay + jitter]`, as paths
    /// between hosts on the Internet do, and its datagrams do not reorder by jitter.
    pub(crate) jitter_per_link: bool,
}

/// UDP payload that fits an Ethernet frame over IPv4 (1500 − 20 − 8): above the protocol's
/// 1200-byte default (PROTOCOL.md §3), so path-MTU probing (§7.6) has somewhere to go.
pub(crate) const ETHERNET_UDP_MTU: usize = 1472;

impl Default for LinkConfig {
    /// A clean 10 ms path with an Ethernet MTU.
    fn default() -> LinkConfig {
        LinkConfig {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            bandwidth_bps: None,
            queue_bytes: None,
            mtu: ETHERNET_UDP_MTU,
            jitter_per_link: false,
        }
    }
}

impl LinkConfig {
    /// A clean path with the given one-way delay.
    pub(crate) fn with_delay(delay: Duration) -> LinkConfig {
        LinkConfig {
            delay,
            ..LinkConfig::default()
        }
    }

    /// A path that loses everything (a partition, or a capacity drop to zero).
    pub(crate) fn black_hole() -> LinkConfig {
        LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        }
    }

    /// How long a reordered copy is held back: one more delay-plus-jitter, at least 1 ms so a
    /// zero-delay link can still reorder.
    pub(crate) fn reorder_extra(&self) -> Duration {
        (self.delay + self.jitter).max(Duration::from_millis(1))
    }

    /// Panics with a readable message on settings that have no meaning, so a typo in a scenario
    /// fails loudly rather than simulating something else.
    pub(crate) fn validate(&self) {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "LinkConfig::{name} must be a probability in [0, 1], got {p}"
            );
        }
        assert!(
            self.bandwidth_bps != Some(0),
            "LinkConfig::bandwidth_bps must be positive (use black_hole() for no capacity)"
        );
    }
}

/// Counters of one directed link (or, summed, of the whole network).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinkStats {
    /// Datagrams a node put on the link.
    pub(crate) sent: u64,
    /// Copies handed to the receiving node (duplicates count twice).
    pub(crate) delivered: u64,
    /// Datagrams lost by the loss draw.
    pub(crate) lost: u64,
    /// Extra copies created by duplication.
    pub(crate) duplicated: u64,
    /// Copies held back to be overtaken.
    pub(crate) reordered: u64,
    /// Datagrams larger than the MTU.
    pub(crate) dropped_mtu: u64,
    /// Datagrams tail-dropped by a full queue.
    pub(crate) dropped_queue: u64,
    /// Copies the `on_deliver` hook refused.
    pub(crate) dropped_by_hook: u64,
}

impl AddAssign for LinkStats {
    fn add_assign(&mut self, other: LinkStats) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.dropped_mtu += other.dropped_mtu;
        self.dropped_queue += other.dropped_queue;
        self.dropped_by_hook += other.dropped_by_hook;
    }
}

/// Why a link refused a datagram.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Larger than the MTU.
    Mtu,
    /// The bottleneck queue was full.
    Queue,
    /// The loss draw.
    Lost,
}

/// What a link does with one datagram: drop it, or deliver one or two copies at these instants.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Refused, for this reason.
    Dropped(DropReason),
    /// Arrives at `first`, and a duplicate at `second` if there is one.
    Arrives {
        /// When the copy arrives.
        first: Instant,
        /// When the duplicate arrives.
        second: Option<Instant>,
    },
}

/// The state of one directed link.
#[derive(Debug)]
pub(crate) struct Link {
    /// Settings for this pair; `None` follows the network's default.
    pub(crate) config: Option<LinkConfig>,
    /// Counters.
    pub(crate) stats: LinkStats,
    rng: SimRng,
    /// This path's own 64 random bits, shared by both directions: its latency when the
    /// jitter is drawn per link.
    path: u64,
    /// When the serialiser finishes the last datagram it accepted.
    busy_until: Option<Instant>,
    /// `(finish, len)` of datagrams not yet fully serialised, oldest first.
    backlog: VecDeque<(Instant, usize)>,
    backlog_bytes: usize,
}

impl Link {
    /// A link with its own random stream, so its draws do not depend on other links' traffic.
    pub(crate) fn new(rng: SimRng, path: u64) -> Link {
        Link {
            config: None,
            stats: LinkStats::default(),
            rng,
            path,
            busy_until: None,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
        }
    }

    /// Decides the fate of a `len`-byte datagram put on the link at `now` under `config`, and
    /// counts it.
    pub(crate) fn transmit(&mut self, now: Instant, len: usize, config: &LinkConfig) -> Fate {
        self.stats.sent += 1;
        if len > config.mtu {
            self.stats.dropped_mtu += 1;
            return Fate::Dropped(DropReason::Mtu);
        }
        let departs = match config.bandwidth_bps {
            Some(bps) => match self.serialise(now, len, bps, config.queue_bytes) {
                Some(finish) => finish,
                None => {
                    self.stats.dropped_queue += 1;
                    return Fate::Dropped(DropReason::Queue);
                }
            },
            None => now,
        };
        if self.rng.chance(config.loss) {
            self.stats.lost += 1;
            return Fate::Dropped(DropReason::Lost);
        }
        let duplicated = self.rng.chance(config.duplicate);
        let first = self.arrival(departs, config);
        let second = if duplicated {
            self.stats.duplicated += 1;
            Some(self.arrival(departs, config))
        } else {
            None
        };
        Fate::Arrives { first, second }
    }

    /// Queues the datagram behind the ones still being serialised and returns when its last bit
    /// leaves, or `None` when the queue has no room (tail drop).
    fn serialise(
        &mut self,
        now: Instant,
        len: usize,
        bps: u64,
        queue_bytes: Option<usize>,
    ) -> Option<Instant> {
        while let Some(&(finish, bytes)) = self.backlog.front() {
            if finish > now {
                break;
            }
            self.backlog.pop_front();
            self.backlog_bytes -= bytes;
        }
        if queue_bytes.is_some_and(|limit| self.backlog_bytes + len > limit) {
            return None;
        }
        let start = self.busy_until.map_or(now, |busy| busy.max(now));
        let finish = start + serialisation_time(len, bps);
        self.busy_until = Some(finish);
        self.backlog.push_back((finish, len));
        self.backlog_bytes += len;
        Some(finish)
    }

    fn arrival(&mut self, departs: Instant, config: &LinkConfig) -> Instant {
        let mut at = departs + config.delay;
        if !config.jitter.is_zero() {
            let span = u64::try_from(config.jitter.as_nanos()).unwrap_or(u64::MAX - 1);
            let draw = if config.jitter_per_link {
                ((u128::from(self.path) * u128::from(span + 1)) >> 64) as u64
            } else {
                self.rng.below(span + 1)
            };
            at += Duration::from_nanos(draw);
        }
        if self.rng.chance(config.reorder) {
            self.stats.reordered += 1;
            at += config.reorder_extra();
        }
        at
    }
}

/// How long `len` bytes occupy a link of `bps` bits per second, rounded up to the nanosecond so
/// back-to-back packets never share an instant.
pub(crate) fn serialisation_time(len: usize, bps: u64) -> Duration {
    let bits = len as u128 * 8;
    let nanos = (bits * 1_000_000_000).div_ceil(u128::from(bps));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}
