//! Round-trip time estimation (PROTOCOL.md §7.2, modelled on RFC 9002 §5).

use std::time::Duration;

/// RFC 9002 §6.2.2: the RTT assumed before the first sample.
pub const INITIAL_RTT: Duration = Duration::from_millis(333);
/// RFC 9002 §6.1.2: the timer granularity; no timer is shorter than this.
pub const GRANULARITY: Duration = Duration::from_millis(1);
/// PROTOCOL.md §7.1: a receiver delays an ACK by at most 25 ms.
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(25);

/// Smoothed round-trip time, its variation and the minimum seen, from ACK samples.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    latest: Duration,
    smoothed: Option<Duration>,
    var: Duration,
    min: Duration,
    max_ack_delay: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new(INITIAL_RTT)
    }
}

/// `d × num / den`, saturating (RTTs are measured, ack delays reported by the peer).
pub(crate) fn scale(d: Duration, num: u32, den: u32) -> Duration {
    d.saturating_mul(num)
        .checked_div(den)
        .unwrap_or(Duration::MAX)
}

impl RttEstimator {
    /// An estimator that assumes `initial` until the first sample.
    pub fn new(initial: Duration) -> Self {
        RttEstimator {
            latest: initial,
            smoothed: None,
            var: scale(initial, 1, 2),
            min: initial,
            max_ack_delay: MAX_ACK_DELAY,
        }
    }

    /// Feeds one sample: the time from sending the largest newly acknowledged packet to its
    /// acknowledgement, and the delay the peer reports it held the ACK.
    pub fn update(&mut self, ack_delay: Duration, rtt: Duration) {
        self.latest = rtt;
        // RFC 9002 §5.2: min_rtt ignores ack delay, so it never falls below a real path RTT.
        self.min = if self.smoothed.is_none() {
            rtt
        } else {
            self.min.min(rtt)
        };
        let Some(smoothed) = self.smoothed else {
            // RFC 9002 §5.3: the first sample initialises both estimates.
            self.smoothed = Some(rtt);
            self.var = scale(rtt, 1, 2);
            return;
        };
        // RFC 9002 §5.3: a peer's ack delay is trusted up to max_ack_delay, and never so far as to
        // take the sample below min_rtt.
        let ack_delay = ack_delay.min(self.max_ack_delay);
        let adjusted = if rtt >= self.min.saturating_add(ack_delay) {
            rtt.saturating_sub(ack_delay)
        } else {
            rtt
        };
        let deviation = smoothed.abs_diff(adjusted);
        self.var = scale(self.var.saturating_mul(3).saturating_add(deviation), 1, 4);
        self.smoothed = Some(scale(
            smoothed.saturating_mul(7).saturating_add(adjusted),
            1,
            8,
        ));
    }

    /// Whether at least one sample arrived.
    pub fn has_sample(&self) -> bool {
        self.smoothed.is_some()
    }

    /// The smoothed RTT (the initial RTT before the first sample).
    pub fn smoothed(&self) -> Duration {
        self.smoothed.unwrap_or(self.latest)
    }

    /// The latest sample.
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// The RTT variation.
    pub fn var(&self) -> Duration {
        self.var
    }

    /// The smallest sample seen.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest the peer may delay an ACK.
    pub fn max_ack_delay(&self) -> Duration {
        self.max_ack_delay
    }

    /// RFC 9002 §6.2.1: the probe timeout before backoff.
    pub fn pto_base(&self) -> Duration {
        self.smoothed()
            .saturating_add(self.var.saturating_mul(4).max(GRANULARITY))
            .saturating_add(self.max_ack_delay)
    }

    /// RFC 9002 §6.1.2: how long after a later packet was acknowledged an earlier one is lost.
    pub fn loss_delay(&self) -> Duration {
        scale(self.latest.max(self.smoothed()), 9, 8).max(GRANULARITY)
    }

    /// RFC 9002 §7.6.1: a span of losses longer than this means persistent congestion.
    pub fn persistent_congestion_threshold(&self) -> Duration {
        self.pto_base().saturating_mul(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_sample_initialises() {
        let mut rtt = RttEstimator::default();
        assert!(!rtt.has_sample());
        assert_eq!(rtt.smoothed(), INITIAL_RTT);
        rtt.update(ms(0), ms(100));
        assert_eq!(rtt.smoothed(), ms(100));
        assert_eq!(rtt.var(), ms(50));
        assert_eq!(rtt.min(), ms(100));
    }

    #[test]
    fn smooths_and_subtracts_ack_delay() {
        let mut rtt = RttEstimator::default();
        rtt.update(ms(0), ms(100));
        rtt.update(ms(20), ms(140));
        // adjusted = 120; smoothed = (700 + 120) / 8 = 102.5; var = (150 + 20) / 4 = 42.5
        assert_eq!(rtt.smoothed(), Duration::from_micros(102_500));
        assert_eq!(rtt.var(), Duration::from_micros(42_500));
        assert_eq!(rtt.latest(), ms(140));
    }

    #[test]
    fn ack_delay_is_capped_and_never_undercuts_min_rtt() {
        let mut rtt = RttEstimator::default();
        rtt.update(ms(0), ms(100));
        // A claimed delay of 500 ms is capped at 25 ms.
        rtt.update(ms(500), ms(200));
        assert_eq!(
            rtt.smoothed(),
            Duration::from_micros((700_000 + 175_000) / 8)
        );
        let mut rtt = RttEstimator::default();
        rtt.update(ms(0), ms(100));
        // 110 - 20 would fall below min_rtt: the delay is ignored.
        rtt.update(ms(20), ms(110));
        assert_eq!(
            rtt.smoothed(),
            Duration::from_micros((700_000 + 110_000) / 8)
        );
    }

    #[test]
    fn min_tracks_smallest_and_timers_follow() {
        let mut rtt = RttEstimator::default();
        rtt.update(ms(0), ms(100));
        rtt.update(ms(0), ms(60));
        assert_eq!(rtt.min(), ms(60));
        assert!(rtt.pto_base() > rtt.smoothed());
        assert_eq!(rtt.loss_delay(), rtt.smoothed().max(ms(60)) * 9 / 8);
        assert_eq!(rtt.persistent_congestion_threshold(), rtt.pto_base() * 3);
    }
}
