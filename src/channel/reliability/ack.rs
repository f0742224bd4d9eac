//! Receive-side packet tracking (PROTOCOL.md §7.1): which packet numbers arrived, when an ACK is
//! due, and the ranges and delay it reports.
//!
//! When one is due follows draft-ietf-quic-ack-frequency: after `ack_eliciting_threshold`
//! ack-eliciting packets, or `max_ack_delay` after the first of them, whichever comes first; a
//! packet out of order at once. Both are the node's settings ([`super::ReliabilityConfig`]);
//! the endpoint further writes at most one ACK alone per channel per receive batch.

use super::ReliabilityConfig;
use super::ranges::RangeSet;
use super::rtt::MAX_ACK_DELAY;
use std::time::{Duration, Instant};

/// PROTOCOL.md §7.1: by default an ACK goes out at the latest after this many ack-eliciting
/// packets (QUIC's and quinn's default too).
pub const ACK_ELICITING_THRESHOLD: u32 = 2;

/// The largest ack-eliciting threshold a node may configure: beyond a few hundred packets the
/// sender's window seldom holds more unacknowledged, so the delay timer, not the threshold,
/// would time every ACK and stall the sender's window growth for `max_ack_delay` a round.
pub const MAX_ACK_ELICITING_THRESHOLD: u32 = 256;

/// Recovers the full packet number from the 32-bit wire sequence number: the candidate closest
/// to one past the largest number seen (RFC 9000 §A.3 with a 32-bit window). `largest_seen` is
/// `None` before the first packet, which then starts the count at its own value.
pub fn decode_packet_number(largest_seen: Option<u64>, wire: u32) -> u64 {
    const WINDOW: u64 = 1 << 32;
    const HALF: u64 = WINDOW / 2;
    let Some(largest) = largest_seen else {
        return u64::from(wire);
    };
    let expected = largest.saturating_add(1);
    let candidate = (expected & !(WINDOW - 1)) | u64::from(wire);
    if candidate.saturating_add(HALF) <= expected {
        candidate.checked_add(WINDOW).unwrap_or(candidate)
    } else if candidate > expected.saturating_add(HALF) {
        candidate.checked_sub(WINDOW).unwrap_or(candidate)
    } else {
        candidate
    }
}

/// Tracks received packet numbers and decides when to acknowledge them.
#[derive(Clone, Debug, PartialEq)]
pub struct AckTracker {
    received: RangeSet,
    /// Narrow, so that the settings fit where one `usize` was (a tracker per channel).
    max_ranges: u16,
    threshold: u16,
    max_delay_us: u32,
    largest: Option<u64>,
    largest_at: Option<Instant>,
    /// Ack-eliciting packets since the last ACK was sent.
    pending_eliciting: u32,
    /// Any packet since the last ACK was sent (a piggybacked ACK then has news).
    pending_any: bool,
    /// When the pending ACK must leave.
    deadline: Option<Instant>,
}

/// What an idle tracker (no ACK pending) keeps: the packet numbers received and the largest
/// one's time. The rest equals a fresh tracker's, which `ChannelReliability` checks before it
/// gives the tracker's memory back (issue 12).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct AckIdle {
    received: RangeSet,
    pub(crate) largest: Option<u64>,
    largest_at: Option<Instant>,
    pending_any: bool,
}

impl AckTracker {
    /// Moves out what the tracker keeps once idle (see [`AckIdle`]), leaving a fresh tracker's
    /// empty ranges, so the rest can be compared with a fresh tracker.
    pub(crate) fn take_idle(&mut self) -> AckIdle {
        AckIdle {
            received: std::mem::take(&mut self.received),
            largest: self.largest,
            largest_at: self.largest_at,
            pending_any: self.pending_any,
        }
    }

    /// Sets the values an idle tracker kept, but not its ranges.
    pub(crate) fn restore_values(&mut self, idle: &AckIdle) {
        self.largest = idle.largest;
        self.largest_at = idle.largest_at;
        self.pending_any = idle.pending_any;
    }

    /// Puts back everything an idle tracker kept (on a fresh one, the whole state again).
    pub(crate) fn restore(&mut self, idle: AckIdle) {
        self.restore_values(&idle);
        self.received = idle.received;
    }

    /// Fits the received ranges' room to what they hold (an idle channel).
    pub(crate) fn shrink_idle(&mut self) {
        self.received.shrink_to_fit();
    }

    /// A tracker that reports at most `max_ranges` ranges (older ones are forgotten), with
    /// PROTOCOL.md §7.1's default ACK frequency.
    pub fn new(max_ranges: usize) -> Self {
        Self::with_frequency(max_ranges, ACK_ELICITING_THRESHOLD, MAX_ACK_DELAY)
    }

    /// The tracker of a channel under `config`.
    pub fn configured(config: &ReliabilityConfig) -> Self {
        Self::with_frequency(
            config.max_ack_ranges,
            config.ack_eliciting_threshold,
            config.max_ack_delay,
        )
    }

    /// A tracker that acknowledges after `threshold` ack-eliciting packets or `max_delay` after
    /// the first, whichever comes first. Out-of-range settings are clamped: the threshold to
    /// 1..=[`MAX_ACK_ELICITING_THRESHOLD`], the delay to PROTOCOL.md §7.1's 25 ms, which peers
    /// assume when they time their probes.
    pub fn with_frequency(max_ranges: usize, threshold: u32, max_delay: Duration) -> Self {
        let max_delay = max_delay.min(MAX_ACK_DELAY);
        AckTracker {
            received: RangeSet::new(),
            max_ranges: u16::try_from(max_ranges.max(1)).unwrap_or(u16::MAX),
            threshold: threshold.clamp(1, MAX_ACK_ELICITING_THRESHOLD) as u16,
            max_delay_us: u32::try_from(max_delay.as_micros()).unwrap_or(u32::MAX),
            largest: None,
            largest_at: None,
            pending_eliciting: 0,
            pending_any: false,
            deadline: None,
        }
    }

    /// The largest packet number received.
    pub fn largest(&self) -> Option<u64> {
        self.largest
    }

    /// Records a received packet; returns `false` if it was already recorded (a duplicate).
    pub fn on_packet(&mut self, now: Instant, pn: u64, ack_eliciting: bool) -> bool {
        if self.received.contains(pn) {
            return false;
        }
        // RFC 9000 §13.2.1: a packet out of order (a gap below it, or arriving late) is
        // acknowledged at once, so the sender's loss detection learns of the gap quickly.
        let out_of_order = self
            .largest
            .is_some_and(|largest| pn < largest || pn > largest.saturating_add(1));
        // The last number, u64::MAX, cannot be represented as a half-open range; no sender
        // reaches it (2^64 packets), so it is simply not recorded.
        self.received.insert(pn..pn.saturating_add(1));
        while self.received.len() > usize::from(self.max_ranges) {
            self.received.pop_first();
        }
        if self.largest.is_none_or(|largest| pn > largest) {
            self.largest = Some(pn);
            self.largest_at = Some(now);
        }
        self.pending_any = true;
        if ack_eliciting {
            self.pending_eliciting = self.pending_eliciting.saturating_add(1);
            let due = if out_of_order || self.pending_eliciting >= u32::from(self.threshold) {
                now
            } else {
                // PROTOCOL.md §7.1: delayed up to 25 ms (or the node's shorter setting).
                let delay = Duration::from_micros(u64::from(self.max_delay_us));
                now.checked_add(delay).unwrap_or(now)
            };
            self.deadline = Some(self.deadline.map_or(due, |d| d.min(due)));
        }
        true
    }

    /// Whether an ACK must be sent now.
    pub fn ack_due(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }

    /// Whether an ACK would tell the peer something new (worth piggybacking on a packet that
    /// leaves anyway).
    pub fn has_news(&self) -> bool {
        self.pending_any && self.largest.is_some()
    }

    /// When the pending ACK is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The received ranges, inclusive `(low, high)`, highest first.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + Clone + '_ {
        // Ranges are never empty, so `end - 1` does not wrap.
        self.received
            .iter_rev()
            .map(|r| (r.start, r.end.saturating_sub(1)))
    }

    /// How long the largest packet has waited for its acknowledgement.
    pub fn ack_delay(&self, now: Instant) -> Duration {
        self.largest_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }

    /// An ACK carrying the current ranges was written into a packet.
    pub fn on_ack_sent(&mut self) {
        self.pending_eliciting = 0;
        self.pending_any = false;
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_across_the_32_bit_wrap() {
        assert_eq!(decode_packet_number(None, 7), 7);
        assert_eq!(decode_packet_number(Some(10), 11), 11);
        assert_eq!(decode_packet_number(Some(10), 5), 5);
        assert_eq!(decode_packet_number(Some(0xFFFF_FFFF), 0), 0x1_0000_0000);
        assert_eq!(decode_packet_number(Some(0xFFFF_FFF0), 3), 0x1_0000_0003);
        assert_eq!(
            decode_packet_number(Some(0x1_0000_0002), 0xFFFF_FFFE),
            0xFFFF_FFFE
        );
        // RFC 9000 §A.3's example, scaled to a 32-bit window.
        assert_eq!(
            decode_packet_number(Some(0x8FFF_0000), 0x0000_1000),
            0x1_0000_1000
        );
        assert_eq!(decode_packet_number(Some(0x7FFF_0000), 0x0000_1000), 0x1000);
        // Round trip of a sender's numbers over a long run.
        let mut largest = None;
        let start = 0xFFFF_FF00u64;
        for pn in start..start + 1000 {
            let decoded = decode_packet_number(largest, pn as u32);
            assert_eq!(decoded, pn);
            largest = Some(decoded);
        }
    }

    #[test]
    fn delays_one_packet_acks_two() {
        let t0 = Instant::now();
        let mut ack = AckTracker::new(32);
        assert!(ack.on_packet(t0, 100, true));
        assert!(!ack.ack_due(t0));
        assert_eq!(ack.deadline(), Some(t0 + MAX_ACK_DELAY));
        assert!(ack.ack_due(t0 + MAX_ACK_DELAY));
        assert!(ack.on_packet(t0, 101, true));
        assert!(ack.ack_due(t0));
        ack.on_ack_sent();
        assert!(!ack.ack_due(t0 + Duration::from_secs(1)));
        assert!(!ack.has_news());
        // An ACK-only packet is recorded but elicits nothing.
        assert!(ack.on_packet(t0, 102, false));
        assert_eq!(ack.deadline(), None);
        assert!(ack.has_news());
    }

    #[test]
    fn a_configured_threshold_and_delay_are_honoured() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut ack = AckTracker::with_frequency(32, 4, ms(5));
        for pn in 0..3 {
            ack.on_packet(t0 + ms(pn), pn, true);
            assert!(!ack.ack_due(t0 + ms(pn)), "packet {pn} of 4");
        }
        // The delay runs from the first unacknowledged packet, not the latest.
        assert_eq!(ack.deadline(), Some(t0 + ms(5)));
        ack.on_packet(t0 + ms(3), 3, true);
        assert!(ack.ack_due(t0 + ms(3)), "the fourth packet makes it due");
        ack.on_ack_sent();
        // Packets that elicit nothing never count towards the threshold.
        for pn in 4..20 {
            ack.on_packet(t0 + ms(4), pn, false);
        }
        assert_eq!(ack.deadline(), None);
        ack.on_packet(t0 + ms(4), 20, true);
        assert!(!ack.ack_due(t0 + ms(8)));
        assert!(ack.ack_due(t0 + ms(9)), "max_ack_delay after the first");
    }

    #[test]
    fn out_of_range_settings_are_clamped() {
        let t0 = Instant::now();
        // A threshold of 0 means every packet; a delay past §7.1's 25 ms is cut to it.
        let mut ack = AckTracker::with_frequency(32, 0, Duration::from_secs(1));
        ack.on_packet(t0, 0, true);
        assert!(ack.ack_due(t0));
        ack.on_ack_sent();
        let mut ack = AckTracker::with_frequency(32, u32::MAX, Duration::from_secs(1));
        ack.on_packet(t0, 0, true);
        assert_eq!(ack.deadline(), Some(t0 + MAX_ACK_DELAY));
        let last = u64::from(MAX_ACK_ELICITING_THRESHOLD) - 1;
        for pn in 1..last {
            ack.on_packet(t0, pn, true);
            assert!(!ack.ack_due(t0), "{pn}");
        }
        ack.on_packet(t0, last, true);
        assert!(ack.ack_due(t0), "the largest threshold still holds");
    }

    #[test]
    fn a_gap_acks_at_once_whatever_the_threshold() {
        let t0 = Instant::now();
        let mut ack = AckTracker::with_frequency(32, 100, MAX_ACK_DELAY);
        ack.on_packet(t0, 0, true);
        ack.on_packet(t0, 1, true);
        assert!(!ack.ack_due(t0));
        // Packet 2 is missing: 3 reveals the gap, and the sender should learn of it now.
        ack.on_packet(t0, 3, true);
        assert!(ack.ack_due(t0), "a gap");
        ack.on_ack_sent();
        ack.on_packet(t0, 4, true);
        assert!(!ack.ack_due(t0), "in order again: the threshold applies");
        // The missing packet arrives late: out of order too.
        ack.on_packet(t0, 2, true);
        assert!(ack.ack_due(t0), "a late packet");
        assert_eq!(ack.ranges().collect::<Vec<_>>(), vec![(0, 4)]);
    }

    #[test]
    fn gaps_ack_immediately_and_ranges_descend() {
        let t0 = Instant::now();
        let mut ack = AckTracker::new(32);
        ack.on_packet(t0, 1, true);
        ack.on_packet(t0, 2, false);
        ack.on_packet(t0, 5, true);
        assert!(ack.ack_due(t0), "a gap acks at once");
        assert!(!ack.on_packet(t0, 5, true), "duplicate");
        ack.on_packet(t0, 9, false);
        assert_eq!(
            ack.ranges().collect::<Vec<_>>(),
            vec![(9, 9), (5, 5), (1, 2)]
        );
        assert_eq!(
            ack.ack_delay(t0 + Duration::from_millis(3)),
            Duration::from_millis(3)
        );
    }

    #[test]
    fn range_count_is_bounded() {
        let t0 = Instant::now();
        let mut ack = AckTracker::new(4);
        for pn in (0..40).step_by(2) {
            ack.on_packet(t0, pn, false);
        }
        let ranges: Vec<_> = ack.ranges().collect();
        assert_eq!(ranges, vec![(38, 38), (36, 36), (34, 34), (32, 32)]);
    }
}
