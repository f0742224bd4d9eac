//! Path MTU discovery (PROTOCOL.md §7.6, after RFC 8899 DPLPMTUD): start at 1200 bytes of UDP
//! payload, binary-search upward with PMTU_PROBE packets, and halve (never below 1200) when
//! full-size packets keep getting lost while small ones are acknowledged (seed 004).

use std::time::{Duration, Instant};

/// PROTOCOL.md §3: every path carries 1200-byte datagrams.
pub const BASE_MTU: u16 = 1200;
/// A safe ceiling for IPv4 over Ethernet: 1500 − 20 (IPv4) − 8 (UDP) − 20 of slack for tunnels.
pub const DEFAULT_MAX_MTU: u16 = 1452;
/// RFC 8899 §5.1.2 MAX_PROBES: a size is abandoned after this many lost probes.
const MAX_PROBES: u8 = 3;
/// Full-size packets lost in a row (with small ones getting through) before the size halves.
const BLACK_HOLE_LOSSES: u32 = 3;
/// RFC 8899 §5.1.1 PMTU_RAISE_TIMER: how long a finished or reset search rests.
const RAISE_INTERVAL: Duration = Duration::from_secs(600);
/// A packet this close to the current size counts as full-size (§7.6).
const FULL_SIZE_SLACK: u16 = 16;
/// The search stops once the candidate range is this narrow.
const SEARCH_PRECISION: u16 = 8;

/// The prober of one path.
#[derive(Clone, Debug)]
pub struct PmtuProber {
    current: u16,
    /// The configured ceiling.
    max: u16,
    /// Largest size known to pass.
    low: u16,
    /// Smallest size known (or assumed) to fail, plus one: the search runs in `low..high`.
    high: u16,
    probe_in_flight: Option<u16>,
    failures: u8,
    next_probe: Option<Instant>,
    full_size_losses: u32,
    small_acked: bool,
}

impl PmtuProber {
    /// A prober that will search up to `max` bytes (`max` at or below 1200 disables probing).
    pub fn new(max: u16) -> Self {
        let max = max.max(BASE_MTU);
        PmtuProber {
            current: BASE_MTU,
            max,
            low: BASE_MTU,
            high: max.saturating_add(1),
            probe_in_flight: None,
            failures: 0,
            next_probe: None,
            full_size_losses: 0,
            small_acked: false,
        }
    }

    /// The largest UDP payload this path carries now.
    pub fn current_mtu(&self) -> u16 {
        self.current
    }

    /// The size of a probe to send now, if one is due.
    pub fn probe_size(&self, now: Instant) -> Option<u16> {
        if self.probe_in_flight.is_some()
            || self.high.saturating_sub(self.low) <= SEARCH_PRECISION
            || self.next_probe.is_some_and(|at| now < at)
        {
            return None;
        }
        // The ceiling first, until MAX_PROBES of it are lost: the common path (Ethernet)
        // carries it, which ends the search in one round trip and at the ceiling itself rather
        // than SEARCH_PRECISION below it; a path that does not falls back to bisection.
        if self.high > self.max {
            return Some(self.max);
        }
        Some(
            self.low
                .saturating_add(self.high.saturating_sub(self.low) / 2),
        )
    }

    /// A probe of `size` bytes left.
    pub fn on_probe_sent(&mut self, size: u16) {
        self.probe_in_flight = Some(size);
    }

    /// A probe of `size` was acknowledged: the path carries it.
    pub fn on_probe_acked(&mut self, size: u16) {
        self.probe_in_flight = None;
        self.failures = 0;
        self.low = self.low.max(size);
        // A probe sent before the size halved may still be acknowledged: the search range
        // must stay non-empty.
        self.high = self.high.max(self.low.saturating_add(1));
        self.current = self.current.max(size);
    }

    /// A probe of `size` was declared lost.
    pub fn on_probe_lost(&mut self, now: Instant, size: u16) {
        self.probe_in_flight = None;
        self.failures = self.failures.saturating_add(1);
        if self.failures >= MAX_PROBES {
            self.failures = 0;
            self.high = self.high.min(size);
            if self.high.saturating_sub(self.low) <= SEARCH_PRECISION {
                self.next_probe = now.checked_add(RAISE_INTERVAL);
            }
        }
    }

    /// The probe in flight will never be resolved (its channel went away).
    pub fn on_probe_abandoned(&mut self) {
        self.probe_in_flight = None;
    }

    /// An ordinary packet of `size` bytes was acknowledged.
    pub fn on_packet_acked(&mut self, size: u16) {
        if size <= BASE_MTU {
            self.small_acked = true;
        } else if size.saturating_add(FULL_SIZE_SLACK) >= self.current {
            self.full_size_losses = 0;
        }
    }

    /// An ordinary packet of `size` bytes was declared lost. Returns whether the MTU dropped.
    pub fn on_packet_lost(&mut self, now: Instant, size: u16) -> bool {
        // Full-size means within FULL_SIZE_SLACK of the current size: a packet ends a few bytes
        // short of it when its last frame's header leaves no room for one more byte.
        if size <= BASE_MTU || size.saturating_add(FULL_SIZE_SLACK) < self.current {
            return false;
        }
        // Each counted loss needs a small packet acknowledged since the last one: a burst of
        // tail drops at a congested queue is found in one pass and counts once, and a large
        // packet acknowledged in between starts the count again.
        if !self.small_acked {
            return false;
        }
        self.small_acked = false;
        self.full_size_losses = self.full_size_losses.saturating_add(1);
        // PROTOCOL.md §7.6: full-size packets keep vanishing while small ones pass — halve.
        if self.full_size_losses >= BLACK_HOLE_LOSSES {
            self.current = (self.current / 2).max(BASE_MTU);
            self.low = self.current;
            self.high = self.high.min(size);
            self.full_size_losses = 0;
            self.next_probe = now.checked_add(RAISE_INTERVAL);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the search against a path that carries `path_mtu` bytes.
    fn search(path_mtu: u16, max: u16) -> PmtuProber {
        let now = Instant::now();
        let mut prober = PmtuProber::new(max);
        for _ in 0..100 {
            let Some(size) = prober.probe_size(now) else {
                break;
            };
            prober.on_probe_sent(size);
            assert_eq!(prober.probe_size(now), None, "one probe at a time");
            if size <= path_mtu {
                prober.on_probe_acked(size);
            } else {
                prober.on_probe_lost(now, size);
            }
        }
        prober
    }

    #[test]
    fn binary_search_finds_the_path_mtu() {
        let found = search(1500, 1452).current_mtu();
        assert!((1452 - SEARCH_PRECISION..=1452).contains(&found), "{found}");
        let found = search(1350, 1452).current_mtu();
        assert!((1350 - SEARCH_PRECISION..=1350).contains(&found), "{found}");
        assert_eq!(search(1000, 1452).current_mtu(), BASE_MTU);
        assert_eq!(
            search(9000, 1200).current_mtu(),
            BASE_MTU,
            "probing disabled"
        );
    }

    #[test]
    fn full_size_losses_with_small_acks_halve_to_the_floor() {
        let now = Instant::now();
        let mut prober = PmtuProber::new(1452);
        prober.on_probe_sent(1326);
        prober.on_probe_acked(1326);
        assert_eq!(prober.current_mtu(), 1326);
        // Losses alone (no small packet acknowledged) do not shrink it: that is congestion.
        for _ in 0..5 {
            assert!(!prober.on_packet_lost(now, 1326));
        }
        // Nor does a burst of large losses found together after one small acknowledgement.
        prober.on_packet_acked(100);
        for _ in 0..5 {
            assert!(!prober.on_packet_lost(now, 1326));
        }
        // Nor losses that a large acknowledgement interrupts.
        prober.on_packet_acked(100);
        assert!(!prober.on_packet_lost(now, 1326));
        prober.on_packet_acked(1326);
        // Small packets passing while large ones keep vanishing confirm a black hole; a packet
        // a byte or two short of the full size counts as full-size.
        for size in [1326, 1325] {
            prober.on_packet_acked(100);
            assert!(!prober.on_packet_lost(now, size));
        }
        prober.on_packet_acked(100);
        assert!(prober.on_packet_lost(now, 1324));
        assert_eq!(prober.current_mtu(), BASE_MTU);
        assert_eq!(
            prober.probe_size(now),
            None,
            "the search rests after a reset"
        );
        assert!(prober.probe_size(now + RAISE_INTERVAL).is_some());
    }
}
