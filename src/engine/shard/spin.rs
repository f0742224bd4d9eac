//! How long a shard busy-polls after work before it sleeps (PROTOCOL.md §12), learnt from the
//! gaps between its pieces of work, in the spirit of NAPI's adaptive busy-poll.
//!
//! A spin pays when the next piece of work comes sooner than a sleep and a wake-up would take; a
//! spin that runs out empty is CPU lost to the node and, on a host with as many busy threads as
//! cores, a core kept from the very threads (the worker, the peers) the shard waits for. Two
//! waits differ: for a worker that holds the shard's messages, whose answers come within
//! microseconds (the shard spins the whole window for them, see `Shard::run`), and for the
//! network. A steady stream of packets leaves short gaps and the window stays at its most; under
//! ping-pong traffic the gap before the next request is long, and a fixed window was spun in
//! full after every reply (at 2,000 messages/s most of the node's CPU). So a network gap no spin
//! could have bridged halves the window, and one a longer spin would have caught widens it to
//! that gap.

use std::time::{Duration, Instant};

/// The window below which a halved one is spent as none.
const LEAST: Duration = Duration::from_micros(4);

/// A shard's busy-poll window.
#[derive(Debug)]
pub(super) struct Spin {
    window: Duration,
    most: Duration,
}

impl Spin {
    /// A window of `most` to begin with, never longer.
    pub(super) fn new(most: Duration) -> Spin {
        Spin { window: most, most }
    }

    /// Whether the loop polls without sleeping at `now`, its last work done at `last_work`.
    pub(super) fn spinning(&self, now: Instant, last_work: Instant) -> bool {
        now.saturating_duration_since(last_work) < self.window
    }

    /// A turn at `now` found work after a wait on the network since the last work at
    /// `last_work`: the gap teaches the window.
    pub(super) fn worked(&mut self, now: Instant, last_work: Instant) {
        let gap = now.saturating_duration_since(last_work);
        if gap > self.most {
            // No spin could have bridged it: the spin before it was lost.
            self.window = self.window.checked_div(2).unwrap_or(Duration::ZERO);
            if self.window < LEAST {
                self.window = Duration::ZERO;
            }
        } else if gap > self.window {
            // A longer spin would have caught it.
            self.window = gap;
        }
    }

    /// The window now.
    #[cfg(test)]
    pub(super) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const MOST: Duration = Duration::from_micros(50);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn a_steady_stream_keeps_the_whole_window() {
        let mut spin = Spin::new(MOST);
        let mut at = Instant::now();
        for _ in 0..1000 {
            let next = at + us(3);
            spin.worked(next, at);
            at = next;
        }
        assert_eq!(spin.window(), MOST);
        assert!(spin.spinning(at + us(49), at));
        assert!(!spin.spinning(at + us(50), at));
    }

    #[test]
    fn requests_far_apart_end_the_spin_and_a_stream_brings_it_back() {
        let mut spin = Spin::new(MOST);
        let mut at = Instant::now();
        // A request every 500 µs (the waits for the worker's replies are not learnt).
        for _ in 0..10 {
            let request = at + us(500);
            spin.worked(request, at);
            at = request;
        }
        assert_eq!(spin.window(), Duration::ZERO, "no spin after every reply");
        // A gap of 20 µs, which a spin would have caught, opens the window to it at once.
        spin.worked(at + us(20), at);
        assert_eq!(spin.window(), us(20));
        spin.worked(at + us(60), at + us(20));
        assert_eq!(spin.window(), us(40));
        spin.worked(at + us(160), at + us(60));
        assert_eq!(spin.window(), us(20), "one lost spin halves it");
    }

    #[test]
    fn long_gaps_only_end_the_spin() {
        let mut spin = Spin::new(MOST);
        let mut at = Instant::now();
        for _ in 0..10 {
            let next = at + us(1000);
            spin.worked(next, at);
            at = next;
        }
        assert_eq!(spin.window(), Duration::ZERO);
        assert!(!spin.spinning(at, at), "a zero window sleeps at once");
    }
}
