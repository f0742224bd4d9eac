//! Congestion control shared by all channels of one peer path (PROTOCOL.md §7.3): a small
//! controller trait (STYLE.md 13), NewReno after RFC 9002 §7, and a token-bucket pacer.

use super::rtt::RttEstimator;
use std::time::{Duration, Instant};

/// A congestion controller: decides how many bytes may be in flight on a path.
pub trait CongestionController: Send + std::fmt::Debug {
    /// A packet of `bytes` was sent and counts as in flight.
    fn on_sent(&mut self, now: Instant, bytes: u64);
    /// A packet sent at `sent` was acknowledged.
    fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, rtt: &RttEstimator);
    /// Packets were declared lost; `sent` is when the newest of them was sent.
    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent_congestion: bool,
        lost_bytes: u64,
    );
    /// The path's maximum packet size changed.
    fn on_mtu_update(&mut self, mtu: u16);
    /// Bytes that may be in flight now.
    fn window(&self) -> u64;
}

/// RFC 9002 §7.2: the minimum window is two maximum-size packets.
const MINIMUM_WINDOW_PACKETS: u64 = 2;
/// RFC 9002 §7.3.2: the window halves on loss.
const LOSS_REDUCTION_FACTOR: f64 = 0.5;

/// NewReno (RFC 9002 §7.3): slow start, congestion avoidance, one reduction per recovery period,
/// and a collapse to the minimum window on persistent congestion.
#[derive(Clone, Debug)]
pub struct NewReno {
    mtu: u64,
    window: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    /// Acknowledged bytes not yet turned into window growth in congestion avoidance.
    bytes_acked: u64,
}

impl NewReno {
    /// A controller for packets of at most `mtu` bytes.
    pub fn new(mtu: u16) -> Self {
        let mtu = u64::from(mtu);
        NewReno {
            mtu,
            window: Self::initial_window(mtu),
            ssthresh: u64::MAX,
            recovery_start: None,
            bytes_acked: 0,
        }
    }

    /// RFC 9002 §7.2: ten packets, at least 14720 bytes' worth but not more than ten.
    fn initial_window(mtu: u64) -> u64 {
        mtu.saturating_mul(10)
            .min(mtu.saturating_mul(2).max(14_720))
    }

    fn minimum_window(&self) -> u64 {
        MINIMUM_WINDOW_PACKETS.saturating_mul(self.mtu)
    }

    fn in_recovery(&self, sent: Instant) -> bool {
        self.recovery_start.is_some_and(|start| sent <= start)
    }

    /// The slow-start threshold (`u64::MAX` until the first loss).
    pub fn ssthresh(&self) -> u64 {
        self.ssthresh
    }
}

impl CongestionController for NewReno {
    fn on_sent(&mut self, _now: Instant, _bytes: u64) {}

    fn on_ack(&mut self, _now: Instant, sent: Instant, bytes: u64, _rtt: &RttEstimator) {
        // RFC 9002 §7.3.2: packets sent before recovery started do not grow the window.
        if self.in_recovery(sent) {
            return;
        }
        if self.window < self.ssthresh {
            self.window = self.window.saturating_add(bytes);
        } else {
            // RFC 9002 §7.3.3: one maximum packet per window of acknowledged bytes.
            self.bytes_acked = self.bytes_acked.saturating_add(bytes);
            if self.bytes_acked >= self.window {
                self.bytes_acked = self.bytes_acked.saturating_sub(self.window);
                self.window = self.window.saturating_add(self.mtu);
            }
        }
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent_congestion: bool,
        _lost_bytes: u64,
    ) {
        if !self.in_recovery(sent) {
            // RFC 9002 §7.3.2: entering recovery halves the window once per round trip.
            self.recovery_start = Some(now);
            self.window =
                ((self.window as f64 * LOSS_REDUCTION_FACTOR) as u64).max(self.minimum_window());
            self.ssthresh = self.window;
            self.bytes_acked = 0;
        }
        if persistent_congestion {
            // RFC 9002 §7.6.2: persistent congestion collapses the window.
            self.window = self.minimum_window();
        }
    }

    fn on_mtu_update(&mut self, mtu: u16) {
        self.mtu = u64::from(mtu);
        self.window = self.window.max(self.minimum_window());
    }

    fn window(&self) -> u64 {
        self.window
    }
}

/// Paces sends at 1.25 × window / smoothed RTT with a burst of what the window sends in
/// [`BURST_INTERVAL`], between ten packets and one GSO train, so a full window never leaves in
/// one burst (PROTOCOL.md §7.3).
#[derive(Clone, Debug)]
pub struct Pacer {
    tokens: u64,
    last: Instant,
}

/// Packets a pacer lets out back to back at least, and holds when it starts.
const BURST_PACKETS: u64 = 10;
/// Packets a burst holds at most: the longest GSO train the endpoint builds
/// (`endpoint/flush.rs`), so a fast path's packets leave in whole trains instead of one syscall
/// per ten packets.
const MAX_BURST_PACKETS: u64 = 64;
/// A burst holds what the window sends in this long at its smoothed RTT, as quinn's pacer
/// (2 ms): on a slow or long path that is the ten-packet floor, and only a path whose window
/// sends 64 packets in 2 ms (about 46 MB/s of 1452-byte packets) gets the whole train.
const BURST_INTERVAL: Duration = Duration::from_millis(2);

impl Pacer {
    /// A full bucket for packets of `mtu` bytes.
    pub fn new(now: Instant, mtu: u16) -> Self {
        Pacer {
            tokens: BURST_PACKETS.saturating_mul(u64::from(mtu)),
            last: now,
        }
    }

    /// Tokens earned in `elapsed` at 1.25 × window / srtt, in exact integer arithmetic: in
    /// u64 when the product fits (a send loop calls this per packet, with microseconds
    /// elapsed), else in u128, with the same result.
    fn earned(elapsed: Duration, window: u64, srtt: Duration) -> u64 {
        let srtt = srtt.max(Duration::from_micros(100));
        if let (Ok(elapsed), Ok(srtt)) = (
            u64::try_from(elapsed.as_nanos()),
            u64::try_from(srtt.as_nanos()),
        ) {
            let product = elapsed.checked_mul(window).and_then(|p| p.checked_mul(5));
            if let (Some(product), Some(divisor)) = (product, srtt.checked_mul(4)) {
                return product.checked_div(divisor).unwrap_or(0);
            }
        }
        let earned = elapsed
            .as_nanos()
            .saturating_mul(u128::from(window))
            .saturating_mul(5)
            .checked_div(srtt.as_nanos().saturating_mul(4))
            .unwrap_or(0);
        u64::try_from(earned).unwrap_or(u64::MAX)
    }

    /// The bucket's size: `window × BURST_INTERVAL / srtt`, between [`BURST_PACKETS`] and
    /// [`MAX_BURST_PACKETS`] packets of `mtu`, never above the window. Worked out by comparing
    /// products where it lands on either bound (a saturated fast path always does), so the
    /// per-packet call divides only in between.
    fn capacity(window: u64, srtt: Duration, mtu: u16) -> u64 {
        let mtu64 = u64::from(mtu);
        let (low, high) = (
            BURST_PACKETS.saturating_mul(mtu64),
            MAX_BURST_PACKETS.saturating_mul(mtu64),
        );
        // Both factors of each product are below 2^64, so no product saturates.
        let srtt = srtt.max(Duration::from_micros(100)).as_nanos();
        let span = u128::from(window).saturating_mul(BURST_INTERVAL.as_nanos());
        let burst = if span >= u128::from(high).saturating_mul(srtt) {
            high
        } else if span <= u128::from(low).saturating_mul(srtt) {
            low
        } else {
            span.checked_div(srtt)
                .and_then(|burst| u64::try_from(burst).ok())
                .unwrap_or(high)
        };
        burst.min(window.max(mtu64))
    }

    fn tokens_at(&self, now: Instant, window: u64, srtt: Duration, mtu: u16) -> u64 {
        let capacity = Self::capacity(window, srtt, mtu);
        if self.tokens >= capacity {
            // A full bucket earns nothing more: no arithmetic on the elapsed time.
            return capacity;
        }
        if now <= self.last {
            // The packets of one send loop share its instant: nothing earned since the last.
            return self.tokens;
        }
        let added = Self::earned(now.saturating_duration_since(self.last), window, srtt);
        self.tokens.saturating_add(added).min(capacity)
    }

    /// When a packet of `bytes` may leave: `None` if now, else the instant the bucket holds it.
    pub fn delay(
        &self,
        now: Instant,
        bytes: u64,
        window: u64,
        srtt: Duration,
        mtu: u16,
    ) -> Option<Instant> {
        // What the bucket held at the last send only grows until `now` (or is cut to the
        // capacity, which `needed` never exceeds): enough then is enough now, without working
        // out what was earned since. The common case of a sender with a wide window.
        if self.tokens >= bytes {
            return None;
        }
        let needed = bytes.min(Self::capacity(window, srtt, mtu));
        if self.tokens >= needed {
            return None;
        }
        let tokens = self.tokens_at(now, window, srtt, mtu);
        if tokens >= needed {
            return None;
        }
        let missing = u128::from(needed.saturating_sub(tokens));
        let srtt = srtt.max(Duration::from_micros(100)).as_nanos();
        // Rounded up, so that at the instant returned the bucket really holds the packet.
        let wait_ns = missing
            .saturating_mul(4)
            .saturating_mul(srtt)
            .div_ceil(u128::from(window.max(1)).saturating_mul(5));
        let wait = Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX));
        Some(now.checked_add(wait).unwrap_or(now))
    }

    /// Takes `bytes` from the bucket for a packet sent now.
    pub fn on_sent(&mut self, now: Instant, bytes: u64, window: u64, srtt: Duration, mtu: u16) {
        let tokens = self.tokens_at(now, window, srtt, mtu);
        self.tokens = tokens.saturating_sub(bytes);
        self.last = self.last.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtt() -> RttEstimator {
        let mut rtt = RttEstimator::default();
        rtt.update(Duration::ZERO, Duration::from_millis(100));
        rtt
    }

    #[test]
    fn slow_start_then_halving_once_per_recovery() {
        let t0 = Instant::now();
        let mut cc = NewReno::new(1200);
        assert_eq!(cc.window(), 12_000);
        cc.on_ack(t0, t0, 1200, &rtt());
        assert_eq!(cc.window(), 13_200);
        let t1 = t0 + Duration::from_millis(10);
        cc.on_congestion_event(t1, t0, false, 1200);
        assert_eq!(cc.window(), 6_600);
        assert_eq!(cc.ssthresh(), 6_600);
        // A second loss of a packet sent before recovery began does not halve again.
        cc.on_congestion_event(t1 + Duration::from_millis(1), t0, false, 1200);
        assert_eq!(cc.window(), 6_600);
        // Nor does an ack of such a packet grow it.
        cc.on_ack(t1, t0, 1200, &rtt());
        assert_eq!(cc.window(), 6_600);
        // A packet sent after recovery: congestion avoidance, one MTU per window acked.
        let t2 = t1 + Duration::from_millis(5);
        for _ in 0..5 {
            cc.on_ack(t2, t2, 1200, &rtt());
        }
        assert_eq!(cc.window(), 6_600);
        cc.on_ack(t2, t2, 1200, &rtt());
        assert_eq!(cc.window(), 7_800);
    }

    #[test]
    fn persistent_congestion_collapses_window() {
        let t0 = Instant::now();
        let mut cc = NewReno::new(1200);
        cc.on_congestion_event(t0 + Duration::from_secs(1), t0, true, 5000);
        assert_eq!(cc.window(), 2400);
        cc.on_congestion_event(
            t0 + Duration::from_secs(2),
            t0 + Duration::from_secs(2),
            false,
            1,
        );
        assert_eq!(cc.window(), 2400, "never below the minimum window");
    }

    #[test]
    fn tokens_earned_are_the_exact_quotient_in_either_width() {
        // The u64 shortcut against the 128-bit formula, across the overflow boundary.
        let reference = |elapsed: Duration, window: u64, srtt: Duration| {
            let srtt = srtt.max(Duration::from_micros(100)).as_nanos();
            let earned = elapsed
                .as_nanos()
                .saturating_mul(u128::from(window))
                .saturating_mul(5)
                / (srtt * 4);
            u64::try_from(earned).unwrap_or(u64::MAX)
        };
        let elapsed = [0, 1, 999, 1_000_000, 3_600_000_000_000, u64::MAX / 4];
        let windows = [0, 1, 14_520, 1 << 30, u64::MAX / 5, u64::MAX];
        let srtts = [0, 50_000, 1_300_000, 100_000_000_000];
        for e in elapsed {
            for w in windows {
                for r in srtts {
                    let (e, r) = (Duration::from_nanos(e), Duration::from_nanos(r));
                    assert_eq!(
                        Pacer::earned(e, w, r),
                        reference(e, w, r),
                        "{e:?} {w} {r:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_bucket_that_held_enough_at_the_last_send_holds_it_now() {
        let t0 = Instant::now();
        // 1.25 bytes a microsecond: nothing is earned in the nanoseconds between the sends.
        let (srtt, window) = (Duration::from_millis(1), 1_000_000);
        let mut pacer = Pacer::new(t0, 1452);
        // Even asked about an earlier instant: nothing is earned, and the tokens held suffice.
        for n in 0..9u32 {
            let now = t0 + Duration::from_nanos(u64::from(n));
            assert_eq!(pacer.delay(now, 1452, window, srtt, 1452), None);
            pacer.on_sent(now, 1452, window, srtt, 1452);
        }
        assert_eq!(pacer.delay(t0, 1452, window, srtt, 1452), None);
        pacer.on_sent(t0, 1452, window, srtt, 1452);
        // Empty now: the next packet waits for what 1.25 × window / srtt earns.
        let last = t0 + Duration::from_nanos(8);
        let at = pacer.delay(last, 1452, window, srtt, 1452).expect("empty");
        assert!(at > last);
        assert_eq!(pacer.delay(at, 1452, window, srtt, 1452), None);
    }

    #[test]
    fn a_burst_holds_two_milliseconds_of_the_window_between_ten_packets_and_a_train() {
        let mtu = 1452u16;
        let packets = |window: u64, srtt_us: u64| {
            Pacer::capacity(window, Duration::from_micros(srtt_us), mtu) / u64::from(mtu)
        };
        // A slow or long path keeps the ten-packet floor.
        assert_eq!(packets(120_000, 100_000), 10);
        assert_eq!(packets(14_520, 1_000), 10);
        // In between: the window's 2 ms, exactly (29,040 B/ms × 2 ms = 40 packets).
        assert_eq!(
            Pacer::capacity(29_040_000, Duration::from_millis(1000), mtu),
            58_080
        );
        assert_eq!(packets(29_040_000, 1_000_000), 40);
        // A fast path: one GSO train, whatever the window, and never above the window.
        assert_eq!(packets(1 << 30, 5_000), 64);
        assert_eq!(packets(u64::MAX, 0), 64);
        assert_eq!(Pacer::capacity(2_000, Duration::ZERO, mtu), 2_000);
        assert_eq!(Pacer::capacity(0, Duration::ZERO, mtu), u64::from(mtu));
        // A bucket that filled up lets a whole train out at one instant, then paces.
        let t0 = Instant::now();
        let (srtt, window) = (Duration::from_millis(5), 1u64 << 30);
        let mut pacer = Pacer::new(t0, mtu);
        let later = t0 + Duration::from_millis(1);
        for _ in 0..64 {
            assert_eq!(pacer.delay(later, 1452, window, srtt, mtu), None);
            pacer.on_sent(later, 1452, window, srtt, mtu);
        }
        assert!(pacer.delay(later, 1452, window, srtt, mtu).is_some());
    }

    #[test]
    fn pacer_spreads_a_window_over_an_rtt() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, 1200);
        let srtt = Duration::from_millis(100);
        let window = 120_000;
        for _ in 0..10 {
            assert_eq!(pacer.delay(t0, 1200, window, srtt, 1200), None);
            pacer.on_sent(t0, 1200, window, srtt, 1200);
        }
        let at = pacer
            .delay(t0, 1200, window, srtt, 1200)
            .expect("bucket empty");
        // 1.25 × 120000 B / 100 ms = 1.5 MB/s: 1200 B take 0.8 ms.
        assert_eq!(at - t0, Duration::from_micros(800));
        assert_eq!(pacer.delay(at, 1200, window, srtt, 1200), None);
    }
}
