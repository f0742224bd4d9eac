//! The node's periodic INFO line: peers, sessions, handshakes per second and drops since the last
//! line, in place of one line per session (issue 13: a busy node starts thousands a second).

use crate::stats::Stats;
use std::time::{Duration, Instant};

/// How often the summary is logged: often enough to see a node come under load in the journal,
/// rarely enough that an idle node's log stays short.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// The figures of one summary line.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Peers with channel state now.
    pub peers: u64,
    /// Sessions held now.
    pub sessions: u64,
    /// Handshakes completed per second since the last line.
    pub handshakes_per_second: f64,
    /// Datagrams dropped since the last line, all reasons.
    pub dropped: u64,
    /// Messages dropped since the last line, all reasons.
    pub messages_dropped: u64,
}

/// Turns the node-wide counters, seen about once a second, into a summary every `interval`.
#[derive(Debug)]
pub struct SummaryLog {
    interval: Duration,
    last: Option<(Instant, u64, u64, u64)>,
}

impl SummaryLog {
    /// A log that summarises every `interval`; the first call only takes the starting counts.
    pub fn new(interval: Duration) -> SummaryLog {
        SummaryLog {
            interval,
            last: None,
        }
    }

    /// The summary due at `now`, if `interval` has passed since the last one.
    pub fn observe(&mut self, now: Instant, stats: &Stats) -> Option<Summary> {
        let handshakes = total(stats, "weft_handshakes_completed_total");
        let dropped = total(stats, "weft_packets_dropped_total");
        let messages_dropped = total(stats, "weft_messages_dropped_total");
        let Some((since, handshakes_then, dropped_then, messages_then)) = self.last else {
            self.last = Some((now, handshakes, dropped, messages_dropped));
            return None;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed < self.interval {
            return None;
        }
        self.last = Some((now, handshakes, dropped, messages_dropped));
        let handshakes_per_second =
            handshakes.saturating_sub(handshakes_then) as f64 / elapsed.as_secs_f64().max(1e-3);
        Some(Summary {
            peers: total(stats, "weft_peers"),
            sessions: total(stats, "weft_sessions"),
            handshakes_per_second,
            dropped: dropped.saturating_sub(dropped_then),
            messages_dropped: messages_dropped.saturating_sub(messages_then),
        })
    }
}

impl Summary {
    /// Logs the summary at INFO.
    pub fn log(&self) {
        tracing::info!(
            peers = self.peers,
            sessions = self.sessions,
            handshakes_per_second = (self.handshakes_per_second * 10.0).round() / 10.0,
            packets_dropped = self.dropped,
            messages_dropped = self.messages_dropped,
            "summary"
        );
    }
}

/// The sum of a statistic over its labels.
fn total(stats: &Stats, name: &str) -> u64 {
    stats
        .iter()
        .filter(|entry| entry.name == name)
        .fold(0, |sum, entry| sum.saturating_add(entry.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_comes_once_per_interval_with_rates_over_it() {
        let mut log = SummaryLog::new(Duration::from_secs(10));
        let start = Instant::now();
        let mut stats = Stats::new();
        stats.set("weft_peers", None, 4);
        stats.set("weft_sessions", None, 5);
        stats.add("weft_handshakes_completed_total", Some(("kind", "xx")), 7);
        stats.add("weft_packets_dropped_total", Some(("reason", "parse")), 2);
        assert_eq!(log.observe(start, &stats), None);
        stats.add("weft_handshakes_completed_total", Some(("kind", "xx")), 10);
        stats.add("weft_handshakes_completed_total", Some(("kind", "ik")), 10);
        stats.add(
            "weft_packets_dropped_total",
            Some(("reason", "oversize")),
            3,
        );
        stats.add("weft_messages_dropped_total", Some(("reason", "credit")), 1);
        assert_eq!(log.observe(start + Duration::from_secs(5), &stats), None);
        let summary = log
            .observe(start + Duration::from_secs(10), &stats)
            .unwrap();
        assert_eq!(
            summary,
            Summary {
                peers: 4,
                sessions: 5,
                handshakes_per_second: 2.0,
                dropped: 3,
                messages_dropped: 1,
            }
        );
        // The next one counts from this one.
        assert_eq!(log.observe(start + Duration::from_secs(15), &stats), None);
        let summary = log
            .observe(start + Duration::from_secs(20), &stats)
            .unwrap();
        assert_eq!((summary.dropped, summary.handshakes_per_second), (0, 0.0));
    }
}
