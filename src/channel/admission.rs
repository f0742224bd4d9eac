//! Fair admission under overload (issue 10: "a shard's time is fair"): identities cost an
//! attacker nothing, so one source prefix flooding valid-looking sealed packets (each costs an
//! AEAD open) or handshakes could take a shard's whole CPU and starve a newcomer. Sans-IO: the
//! driver says how its receive batches come back ([`Admission::note_batch`]); the endpoint asks
//! [`Admission::admit`] for every datagram before it parses or opens it.
//!
//! Time is counted in datagrams, not seconds: a **window** is `window` datagrams offered. A
//! window in which at least half of the driver's receive batches came back full (the socket had
//! more waiting than one batch holds) was overloaded. The datagrams the shard lets through per
//! window, the **budget**, halves after an overloaded window (down to a sixteenth of the window)
//! and doubles after a calm one; while it is below the window, each prefix (/24, IPv6 /64) may
//! pass at most the **fair share** of it: the max-min water level over the last window's counts
//! (prefixes that sent less than an equal split keep all of theirs, the rest share what is left
//! equally). The excess of the heaviest prefixes is dropped before any crypto, so the shard
//! spends its time on the light ones and drains its socket, and the kernel stops dropping a
//! newcomer's packets at random with the flooder's.
//!
//! A shard that never reports a full batch is never affected: nothing is counted, nothing is
//! dropped. Neither is a shard with one busy prefix and no other (a lone bulk sender holds back
//! nobody; its congestion control answers its own losses). The per-window table is allocated
//! with the endpoint and never grows: a window holds at most `window` prefixes. Allocating it at
//! set-up rather than at the first full batch keeps a flood from showing up as heap growth
//! (tests/bench_flood.rs holds the node's heap still under a spoofed flood).
//!
//! Prefixes are source addresses, which an off-path flooder may spoof: spread over many
//! prefixes it looks light, and the water level falls to what each of them sends, so a newcomer
//! sending more than that loses its excess too. Fairness here is between sources that receive
//! their answers.

use crate::session::{Prefix, prefix_of};
use std::collections::HashMap;
use std::net::IpAddr;

/// The least budget: a sixteenth of the window, so a long overload cannot starve everyone.
const FLOOR_SHIFT: u32 = 4;

/// Per-prefix fair admission of one shard's datagrams under overload (see the module doc).
#[derive(Debug)]
pub struct Admission {
    /// Datagrams per window; 0 turns admission off.
    window: u32,
    /// Datagrams offered in this window so far.
    seen: u32,
    /// Receive batches reported in this window, and how many of them came back full.
    batches: u32,
    full: u32,
    /// Datagrams per window the shard lets through while overloaded (`window`: no limit).
    budget: u32,
    /// The most datagrams one prefix may pass in this window, while the budget limits.
    share: Option<u32>,
    /// Datagrams offered per prefix in this window (counted once overload is suspected).
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
            batches: 0,
            full: 0,
            budget: window,
            share: None,
            counts: HashMap::with_capacity(room),
            scratch: Vec::with_capacity(room),
        }
    }

    /// The driver read one receive batch; `full` when it came back as large as it can be.
    pub fn note_batch(&mut self, full: bool) {
        self.batches = self.batches.saturating_add(1);
        if full {
            self.full = self.full.saturating_add(1);
        }
    }

    /// True if a datagram from `from` may go on to parsing and crypto; false if its prefix is
    /// past its fair share of an overloaded shard (the caller drops and counts it).
    pub fn admit(&mut self, from: IpAddr) -> bool {
        if self.window == 0 {
            return true;
        }
        let mut admitted = true;
        if self.share.is_some() || self.full > 0 {
            let count = self.counts.entry(prefix_of(from)).or_insert(0);
            *count = count.saturating_add(1);
            admitted = self.share.is_none_or(|share| *count <= share);
        }
        self.seen = self.seen.saturating_add(1);
        if self.seen >= self.window {
            self.end_window();
        }
        admitted
    }

    /// The most datagrams one prefix may pass in this window, when admission limits now.
    pub fn share(&self) -> Option<u32> {
        self.share
    }

    fn end_window(&mut self) {
        let overloaded = self.full > 0 && self.full >= self.batches.div_ceil(2);
        let floor = (self.window >> FLOOR_SHIFT).max(1);
        self.budget = if overloaded {
            (self.budget / 2).max(floor)
        } else {
            self.budget.saturating_mul(2).min(self.window)
        };
        self.share = if self.budget < self.window && self.counts.len() > 1 {
            self.water_level()
        } else {
            None
        };
        self.counts.clear();
        (self.seen, self.batches, self.full) = (0, 0, 0);
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

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::from([a, b, c, d])
    }

    /// Offers one window: per 32-datagram batch, `flood` from the flooder's /24 (spread over
    /// its hosts) and the rest from `light` other prefixes; returns (flood, light) admitted.
    fn window(admission: &mut Admission, flood: u32, full: bool) -> (u32, u32) {
        let (mut flooded, mut light) = (0, 0);
        for batch in 0..WINDOW / 32 {
            admission.note_batch(full);
            for n in 0..32u32 {
                if n < flood {
                    flooded += u32::from(admission.admit(ip(10, 0, 0, n as u8)));
                } else {
                    let prefix = (batch % 4) as u8;
                    light += u32::from(admission.admit(ip(10, 1, prefix, n as u8)));
                }
            }
        }
        (flooded, light)
    }

    #[test]
    fn without_full_batches_nothing_is_counted_or_dropped() {
        let mut admission = Admission::new(WINDOW);
        for _ in 0..8 {
            assert_eq!(window(&mut admission, 31, false), (31 * 32, 32));
        }
        assert_eq!(admission.share(), None);
        assert!(
            admission.counts.is_empty(),
            "nothing counted without overload"
        );
    }

    #[test]
    fn under_overload_the_flooding_prefix_is_cut_to_its_share_and_the_light_ones_pass() {
        let mut admission = Admission::new(WINDOW);
        // The first overloaded window only measures.
        assert_eq!(window(&mut admission, 31, true), (31 * 32, 32));
        let mut last = u32::MAX;
        for _ in 0..6 {
            let (flooded, light) = window(&mut admission, 31, true);
            assert_eq!(light, 32, "every light datagram passes");
            assert!(
                flooded <= last,
                "the flood's share only shrinks while overloaded"
            );
            last = flooded;
        }
        // Down to the floor: a sixteenth of the window, less what the light prefixes use.
        assert_eq!(last, WINDOW / 16 - 32);
    }

    #[test]
    fn the_share_comes_back_when_the_overload_ends() {
        let mut admission = Admission::new(WINDOW);
        for _ in 0..6 {
            window(&mut admission, 31, true);
        }
        assert!(admission.share().is_some());
        for _ in 0..5 {
            window(&mut admission, 31, false);
        }
        assert_eq!(admission.share(), None);
        assert_eq!(window(&mut admission, 31, false), (31 * 32, 32));
    }

    #[test]
    fn a_lone_busy_prefix_is_not_cut() {
        let mut admission = Admission::new(WINDOW);
        for _ in 0..8 {
            assert_eq!(window(&mut admission, 32, true), (WINDOW, 0));
        }
    }

    #[test]
    fn the_table_never_grows_past_one_window() {
        let mut admission = Admission::new(WINDOW);
        let capacity = admission.counts.capacity();
        assert!(capacity >= WINDOW as usize, "allocated with the endpoint");
        admission.note_batch(true);
        admission.admit(ip(10, 0, 0, 1));
        for n in 0..(4 * WINDOW) {
            admission.note_batch(true);
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
        assert_eq!(window(&mut admission, 31, true), (31 * 32, 32));
        assert_eq!(window(&mut admission, 31, true), (31 * 32, 32));
    }
}
