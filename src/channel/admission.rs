//! Fair admission under overload (issue 10: "a shard's time is fair"): identities cost an
//! attacker nothing, so one source prefix flooding valid-looking sealed packets (each costs an
//! AEAD open) or handshakes could take a shard's whole CPU, and the kernel, whose receive queue
//! overflows, then drops a newcomer's datagrams at random with the flood's. Sans-IO: after each
//! receive batch the driver reports its time, whether it came back full and the kernel's
//! running count of datagrams dropped on the shard's socket (SO_RXQ_OVFL)
//! ([`Admission::note_batch`]); the endpoint asks [`Admission::admit`] for every datagram
//! before it parses or opens it.
//!
//! A **window** is `window` datagrams offered. A window was **overloaded** when the kernel
//! dropped datagrams on the socket during it and at least one batch came back full: the shard
//! did not keep up. A node that is merely busy, however busy, reads everything that arrives and
//! is never throttled: full batches alone change nothing.
//!
//! The **budget** is the datagrams per window the shard lets through. After an overloaded
//! window in which it processed `admitted` datagrams while `window + drops` reached the
//! socket, it becomes `admitted · window / (window + drops)`: the shard keeps processing as
//! many per second as it did (dropping the excess before any crypto makes reading cheap, so it
//! reads more per second), it only chooses whose. It never falls below the rate of the last
//! window without kernel drops (what the shard demonstrably processed while it kept up, times
//! this window's duration), nor below a sixteenth of the window; after each window without
//! kernel drops it doubles, up to the window. While it is below the window, each prefix (/24,
//! IPv6 /64) may pass at most the **fair share** of it: the max-min water level over the last
//! window's counts (prefixes that sent less than an equal split keep all of theirs, the rest
//! share what is left equally). Only the heaviest prefixes lose their excess, before any crypto.
//!
//! Prefixes are counted only once the kernel drops (or while a share limits), so a shard that
//! keeps up costs nothing here. A lone busy prefix with no other is never cut (it holds back
//! nobody; its congestion control answers its own losses). The per-window table is allocated
//! with the endpoint and never grows: a window holds at most `window` prefixes. Allocating it at
//! set-up rather than at the first overload keeps a flood from showing up as heap growth
//! (tests/bench_flood.rs holds the node's heap still under a spoofed flood).
//!
//! Prefixes are source addresses, which an off-path flooder may spoof: spread over many
//! prefixes it looks light, and the water level falls to what each of them sends, so a newcomer
//! sending more than that loses its excess too. Fairness here is between sources that receive
//! their answers.

use crate::session::{Prefix, prefix_of};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The least budget: a sixteenth of the window, so a long overload cannot starve everyone.
const FLOOR_SHIFT: u32 = 4;

/// The last window without kernel drops: what the shard processed, and in how long.
#[derive(Clone, Copy, Debug)]
struct Calm {
    admitted: u32,
    took: Duration,
}

impl Calm {
    /// The datagrams the shard processes in `took` at this window's rate.
    fn over(self, took: Duration) -> u32 {
        let scaled = u128::from(self.admitted)
            .saturating_mul(took.as_nanos())
            .checked_div(self.took.as_nanos())
            .unwrap_or(0);
        u32::try_from(scaled).unwrap_or(u32::MAX)
    }
}

/// Per-prefix fair admission of one shard's datagrams under overload (see the module doc).
#[derive(Debug)]
pub struct Admission {
    /// Datagrams per window; 0 turns admission off.
    window: u32,
    /// Datagrams offered in this window so far, how many were let through, and how many of
    /// them were counted per prefix.
    seen: u32,
    admitted: u32,
    counted: u32,
    /// Receive batches of this window that came back full.
    full: u32,
    /// Datagrams the kernel dropped on the socket during this window.
    drops: u32,
    /// The kernel's running count of drops as last reported (it wraps at 2^32).
    overflows: u32,
    /// When this window's first batch was reported, and the latest batch.
    started: Option<Instant>,
    now: Option<Instant>,
    /// Whether the last window was overloaded (this one then counts from its start).
    overloaded: bool,
    /// The last window without kernel drops, whose rate the budget never falls below.
    calm: Option<Calm>,
    /// Datagrams per window the shard lets through while overloaded (`window`: no limit).
    budget: u32,
    /// The most datagrams one prefix may pass in this window, while the budget limits.
    share: Option<u32>,
    /// Datagrams offered per prefix in this window (counted once overload is seen).
    counts: HashMap<Prefix, u32>,
    /// The counts, sorted at the end of a window to find the water level.
    scratch: Vec<u32>,
}

impl Admission {
    /// Admission over windows of `window` datagrams; 0 turns it off.
    pub fn new(window: u32) -> Admission {
        // A window holds at most `window` prefixes, so neither ever grows past this.
        let room = window as usize;
        Admission {
            window,
            seen: 0,
            admitted: 0,
            counted: 0,
            full: 0,
            drops: 0,
            overflows: 0,
            started: None,
            now: None,
            overloaded: false,
            calm: None,
            budget: window,
            share: None,
            counts: HashMap::with_capacity(room),
            scratch: Vec::with_capacity(room),
        }
    }

    /// The driver read one receive batch at `now`: `full` when it came back as large as it can
    /// be; `overflows` is the kernel's running count of datagrams it dropped on the socket
    /// (SO_RXQ_OVFL; 0 until the first drop).
    pub fn note_batch(&mut self, now: Instant, full: bool, overflows: u32) {
        self.started.get_or_insert(now);
        self.now = Some(now);
        if full {
            self.full = self.full.saturating_add(1);
        }
        // The kernel's counter is a u32 that wraps; what it grew by since the last report.
        let grew = overflows.wrapping_sub(self.overflows);
        self.overflows = overflows;
        self.drops = self.drops.saturating_add(grew);
    }

    /// True if a datagram from `from` may go on to parsing and crypto; false if its prefix is
    /// past its fair share of an overloaded shard (the caller drops and counts it).
    pub fn admit(&mut self, from: IpAddr) -> bool {
        if self.window == 0 {
            return true;
        }
        let mut admitted = true;
        if self.share.is_some() || self.overloaded || self.drops > 0 {
            let count = self.counts.entry(prefix_of(from)).or_insert(0);
            *count = count.saturating_add(1);
            admitted = self.share.is_none_or(|share| *count <= share);
            self.counted = self.counted.saturating_add(1);
        }
        self.seen = self.seen.saturating_add(1);
        if admitted {
            self.admitted = self.admitted.saturating_add(1);
        }
        if self.seen >= self.window {
            self.end_window();
        }
        admitted
    }

    /// The most datagrams one prefix may pass in this window, when admission limits now.
    pub fn share(&self) -> Option<u32> {
        self.share
    }

    /// The datagrams per window the shard lets through (the window itself: no limit).
    pub fn budget(&self) -> u32 {
        self.budget
    }

    fn end_window(&mut self) {
        let overloaded = self.drops > 0 && self.full > 0;
        let took = match (self.started, self.now) {
            (Some(start), Some(now)) => now.saturating_duration_since(start),
            _ => Duration::ZERO,
        };
        if overloaded {
            let window = u64::from(self.window);
            let arrived = window.saturating_add(u64::from(self.drops));
            let cut = u64::from(self.admitted)
                .saturating_mul(window)
                .checked_div(arrived)
                .unwrap_or(0);
            let cut = u32::try_from(cut).unwrap_or(self.window);
            let calm = self.calm.map_or(0, |calm| calm.over(took));
            let floor = (self.window >> FLOOR_SHIFT).max(1);
            self.budget = cut.max(calm).max(floor).min(self.window);
        } else {
            if !took.is_zero() {
                self.calm = Some(Calm {
                    admitted: self.admitted,
                    took,
                });
            }
            self.budget = self.budget.saturating_mul(2).min(self.window);
        }
        // A window counted from its middle (the kernel's first drop) only measures.
        let whole = self.counted == self.seen;
        self.share = if whole && self.budget < self.window && self.counts.len() > 1 {
            self.water_level()
        } else {
            None
        };
        self.overloaded = overloaded;
        self.counts.clear();
        self.started = self.now;
        (self.seen, self.admitted, self.counted) = (0, 0, 0);
        (self.full, self.drops) = (0, 0);
    }

    /// Max-min fairness: the level `share` with Σ min(count, share) ≤ budget over this
    /// window's prefixes, or `None` when every prefix fits under the budget whole.
    fn water_level(&mut self) -> Option<u32> {
        self.scratch.clear();
        self.scratch.extend(self.counts.values().copied());
        self.scratch.sort_unstable();
        let (mut left, mut prefixes) = (self.budget, self.scratch.len() as u32);
        for &count in &self.scratch {
            let equal = left.checked_div(prefixes)?;
            if count > equal {
                return Some(equal.max(1));
            }
            left = left.saturating_sub(count);
            prefixes = prefixes.saturating_sub(1);
        }
        None
    }
}

// Test arithmetic over the tests' own small counts.
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const WINDOW: u32 = 1024;
    const BATCH: u32 = 32;
    const TICK: Duration = Duration::from_micros(100);

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::from([a, b, c, d])
    }

    /// The driver's side: a batch every tick, and the kernel's running drop count.
    struct Driver {
        now: Instant,
        overflows: u32,
    }

    impl Driver {
        fn new() -> Driver {
            Driver {
                now: Instant::now(),
                overflows: 0,
            }
        }

        /// One batch: `flood` datagrams from the flooder's /24 (spread over its hosts), `light`
        /// from four other prefixes, then its report (full when it holds [`BATCH`], and the
        /// kernel dropped `drops` meanwhile); returns (flood, light) admitted.
        fn batch(
            &mut self,
            admission: &mut Admission,
            flood: u32,
            light: u32,
            drops: u32,
        ) -> (u32, u32) {
            let (mut flooded, mut lit) = (0, 0);
            for n in 0..flood {
                flooded += u32::from(admission.admit(ip(10, 0, 0, n as u8)));
            }
            for n in 0..light {
                lit += u32::from(admission.admit(ip(10, 1, (n % 4) as u8, n as u8)));
            }
            self.overflows = self.overflows.wrapping_add(drops);
            admission.note_batch(self.now, flood + light >= BATCH, self.overflows);
            self.now += TICK;
            (flooded, lit)
        }

        /// One window's worth of such batches; returns (flood, light) admitted.
        fn window(
            &mut self,
            admission: &mut Admission,
            flood: u32,
            light: u32,
            drops: u32,
        ) -> (u32, u32) {
            let (mut flooded, mut lit) = (0, 0);
            for _ in 0..WINDOW / (flood + light) {
                let (f, l) = self.batch(admission, flood, light, drops);
                flooded += f;
                lit += l;
            }
            (flooded, lit)
        }
    }

    #[test]
    fn full_batches_without_kernel_drops_count_and_drop_nothing() {
        let mut admission = Admission::new(WINDOW);
        let mut driver = Driver::new();
        for _ in 0..8 {
            assert_eq!(driver.window(&mut admission, 31, 1, 0), (31 * 32, 32));
        }
        assert_eq!(admission.share(), None);
        assert_eq!(admission.budget(), WINDOW);
        assert!(
            admission.counts.is_empty(),
            "nothing counted without kernel drops"
        );
    }

    #[test]
    fn under_kernel_drops_the_flooding_prefix_is_cut_to_its_share_and_the_light_ones_pass() {
        let mut admission = Admission::new(WINDOW);
        let mut driver = Driver::new();
        // The first overloaded window only measures (counting starts at the first drop).
        assert_eq!(driver.window(&mut admission, 31, 1, 32), (31 * 32, 32));
        // About half of what reached the socket was read (the window's last batch is reported
        // after it ended), so the budget is about half the window.
        assert_eq!(admission.budget(), WINDOW * WINDOW / (WINDOW + 31 * 32));
        let mut last = u32::MAX;
        for _ in 0..6 {
            let (flooded, light) = driver.window(&mut admission, 31, 1, 32);
            assert_eq!(light, 32, "every light datagram passes");
            assert!(
                flooded <= last,
                "the flood's share only shrinks while overloaded"
            );
            last = flooded;
        }
        // No window without drops was seen, so down to the floor: a sixteenth of the window,
        // less what the light prefixes use of it.
        assert_eq!(last, WINDOW / 16 - 32);
    }

    #[test]
    fn the_budget_never_falls_below_what_the_shard_processed_while_it_kept_up() {
        let mut admission = Admission::new(WINDOW);
        let mut driver = Driver::new();
        // Busy and keeping up: 16 honest datagrams a tick, batches not full, no drops.
        for _ in 0..4 {
            assert_eq!(driver.window(&mut admission, 0, 16, 0), (0, WINDOW));
        }
        // A flood: full batches of 24 flood and 8 honest datagrams a tick, and kernel drops.
        let mut last = (0, 0);
        for _ in 0..8 {
            last = driver.window(&mut admission, 24, 8, 32);
        }
        // 16 a tick over the window's 32 ticks: a budget of 512, not the floor of 64; the
        // honest prefixes keep all of theirs, the flood gets what is left of it.
        assert_eq!(admission.budget(), 16 * 32);
        assert_eq!(last, (16 * 32 - 8 * 32, 8 * 32));
    }

    #[test]
    fn the_share_comes_back_when_the_kernel_stops_dropping() {
        let mut admission = Admission::new(WINDOW);
        let mut driver = Driver::new();
        for _ in 0..6 {
            driver.window(&mut admission, 31, 1, 32);
        }
        assert!(admission.share().is_some());
        // Still full batches, but the socket keeps up: no drops.
        for _ in 0..5 {
            driver.window(&mut admission, 31, 1, 0);
        }
        assert_eq!(admission.share(), None);
        assert_eq!(driver.window(&mut admission, 31, 1, 0), (31 * 32, 32));
    }

    #[test]
    fn a_lone_busy_prefix_is_not_cut() {
        let mut admission = Admission::new(WINDOW);
        let mut driver = Driver::new();
        for _ in 0..8 {
            assert_eq!(driver.window(&mut admission, 32, 0, 32), (WINDOW, 0));
        }
    }

    #[test]
    fn the_kernel_counter_wraps_without_a_false_overload() {
        let mut admission = Admission::new(WINDOW);
        admission.overflows = u32::MAX - 3;
        admission.note_batch(Instant::now(), true, 4);
        assert_eq!(
            admission.drops, 8,
            "what the kernel dropped, across the wrap"
        );
    }

    #[test]
    fn the_table_never_grows_past_one_window() {
        let mut admission = Admission::new(WINDOW);
        let capacity = admission.counts.capacity();
        assert!(capacity >= WINDOW as usize, "allocated with the endpoint");
        let now = Instant::now();
        admission.note_batch(now, true, 1);
        admission.admit(ip(10, 0, 0, 1));
        for n in 0..(4 * WINDOW) {
            admission.note_batch(now, true, n + 2);
            let [_, _, b, c] = n.to_be_bytes();
            admission.admit(ip(11, b, c, 1));
            admission.admit(IpAddr::from([0x2001, 0xdb8, 0, n as u16, 0, 0, 0, 1]));
        }
        assert!(admission.counts.len() <= WINDOW as usize);
        assert_eq!(admission.counts.capacity(), capacity);
    }

    #[test]
    fn off_admits_everything() {
        let mut admission = Admission::new(0);
        let mut driver = Driver::new();
        assert_eq!(driver.window(&mut admission, 31, 1, 32), (31 * 32, 32));
        assert_eq!(driver.window(&mut admission, 31, 1, 32), (31 * 32, 32));
    }
}
