//! Who holds the session table (PROTOCOL.md §5: sessions are cached per peer, bounded by memory,
//! least recently used first out). Identities cost an attacker nothing, so the table is shared
//! by source: it counts sessions per address and per prefix (/24 for IPv4, /64 for IPv6), refuses
//! a source over its cap, and when the whole table is full it names the session to evict — the
//! least recently used of the heaviest prefix — so a newcomer from a lightly used prefix still
//! gets in and nobody is first come, forever served.
//!
//! Recency is read lazily: the owner stamps its own entries on every authenticated packet (a
//! field store, no lookup, no allocation on the hot path) and the table's order keeps the stamp
//! each session had when it was last filed. [`SessionTable::victim`] refiles a candidate whose
//! stamp moved on and looks again, so each call costs at most one refiling per session.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

/// An address prefix: a family tag and the /24 (IPv4) or /64 (IPv6) bits.
pub type Prefix = [u8; 9];

/// The /24 (IPv4) or /64 (IPv6) that `ip` belongs to: what one subscriber or one small network
/// gets, the unit of fairness for shared tables. An IPv4-mapped IPv6 address counts as IPv4.
pub fn prefix_of(ip: IpAddr) -> Prefix {
    let mut key = [0u8; 9];
    match ip {
        IpAddr::V4(ip) => {
            key[0] = 4;
            key[1..4].copy_from_slice(&ip.octets()[..3]);
        }
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => return prefix_of(IpAddr::V4(v4)),
            None => {
                key[0] = 6;
                key[1..9].copy_from_slice(&ip.octets()[..8]);
            }
        },
    }
    key
}

/// Why a source may not add a session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds its cap of sessions.
    AddressLimit,
    /// Its prefix holds its cap of sessions.
    PrefixLimit,
}

impl Refusal {
    /// A snake_case metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::AddressLimit => "address_limit",
            Refusal::PrefixLimit => "prefix_limit",
        }
    }
}

/// The caps a source is held to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SourceCaps {
    /// Most sessions from one address.
    pub per_address: usize,
    /// Most sessions from one prefix.
    pub per_prefix: usize,
}

struct Entry {
    ip: IpAddr,
    prefix: Prefix,
    /// The recency stamp the session is filed under in its prefix's order.
    filed: Instant,
}

/// One prefix's sessions, oldest stamp first.
struct PrefixSessions<H> {
    order: BTreeSet<(Instant, H)>,
}

impl<H: Ord + Copy> PrefixSessions<H> {
    /// Where the prefix stands in the eviction order: most sessions first, then the oldest.
    fn rank(&self, prefix: Prefix) -> Option<(Reverse<usize>, Instant, Prefix)> {
        let (oldest, _) = self.order.first()?;
        Some((Reverse(self.order.len()), *oldest, prefix))
    }
}

/// Per-source accounting and eviction order of a session table; `H` names a session (the
/// owner's slab handle).
pub struct SessionTable<H> {
    entries: HashMap<H, Entry>,
    per_address: HashMap<IpAddr, usize>,
    prefixes: HashMap<Prefix, PrefixSessions<H>>,
    /// Prefixes by (most sessions, oldest stamp): the first one gives way when the table fills.
    ranking: BTreeSet<(Reverse<usize>, Instant, Prefix)>,
}

impl<H> Default for SessionTable<H> {
    fn default() -> Self {
        SessionTable {
            entries: HashMap::new(),
            per_address: HashMap::new(),
            prefixes: HashMap::new(),
            ranking: BTreeSet::new(),
        }
    }
}

impl<H: Copy + Ord + Hash> SessionTable<H> {
    /// An empty table.
    pub fn new() -> SessionTable<H> {
        SessionTable::default()
    }

    /// Sessions filed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if none is filed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sessions filed from `ip`'s address and prefix.
    pub fn counts(&self, ip: IpAddr) -> (usize, usize) {
        let address = self.per_address.get(&ip).copied().unwrap_or(0);
        let prefix = self
            .prefixes
            .get(&prefix_of(ip))
            .map_or(0, |p| p.order.len());
        (address, prefix)
    }

    /// Whether a new session from `ip` fits under `caps`.
    pub fn admits(&self, ip: IpAddr, caps: SourceCaps) -> Result<(), Refusal> {
        let (address, prefix) = self.counts(ip);
        if address >= caps.per_address {
            return Err(Refusal::AddressLimit);
        }
        if prefix >= caps.per_prefix {
            return Err(Refusal::PrefixLimit);
        }
        Ok(())
    }

    /// Files session `handle` from `ip`, used at `now`. A handle filed already is refiled.
    pub fn insert(&mut self, handle: H, ip: IpAddr, now: Instant) {
        self.remove(handle);
        let prefix = prefix_of(ip);
        let count = self.per_address.entry(ip).or_insert(0);
        *count = count.saturating_add(1);
        self.file(handle, prefix, now);
        self.entries.insert(
            handle,
            Entry {
                ip,
                prefix,
                filed: now,
            },
        );
    }

    /// Forgets session `handle`.
    pub fn remove(&mut self, handle: H) {
        let Some(entry) = self.entries.remove(&handle) else {
            return;
        };
        if let Some(count) = self.per_address.get_mut(&entry.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&entry.ip);
            }
        }
        self.unfile(handle, entry.prefix, entry.filed);
    }

    /// The address session `handle` is filed under.
    pub fn address(&self, handle: H) -> Option<IpAddr> {
        self.entries.get(&handle).map(|entry| entry.ip)
    }

    /// The session to evict when the table is full: the least recently used of the prefix that
    /// holds the most sessions (the one with the oldest session among equals). `last_used`
    /// reads the owner's recency stamp of a session (`None` for one it no longer holds, which
    /// is then forgotten). Each session is refiled at most once per call, so the loop is bounded
    /// by the table's size.
    pub fn victim(&mut self, last_used: impl Fn(H) -> Option<Instant>) -> Option<H> {
        for _ in 0..=self.entries.len() {
            let &(_, _, prefix) = self.ranking.first()?;
            let &(filed, handle) = self.prefixes.get(&prefix)?.order.first()?;
            match last_used(handle) {
                Some(stamp) if stamp > filed => {
                    self.unfile(handle, prefix, filed);
                    self.file(handle, prefix, stamp);
                    if let Some(entry) = self.entries.get_mut(&handle) {
                        entry.filed = stamp;
                    }
                }
                Some(_) => return Some(handle),
                None => self.remove(handle),
            }
        }
        None
    }

    fn file(&mut self, handle: H, prefix: Prefix, stamp: Instant) {
        let sessions = self
            .prefixes
            .entry(prefix)
            .or_insert_with(|| PrefixSessions {
                order: BTreeSet::new(),
            });
        if let Some(rank) = sessions.rank(prefix) {
            self.ranking.remove(&rank);
        }
        sessions.order.insert((stamp, handle));
        if let Some(rank) = sessions.rank(prefix) {
            self.ranking.insert(rank);
        }
    }

    fn unfile(&mut self, handle: H, prefix: Prefix, stamp: Instant) {
        let Some(sessions) = self.prefixes.get_mut(&prefix) else {
            return;
        };
        if let Some(rank) = sessions.rank(prefix) {
            self.ranking.remove(&rank);
        }
        sessions.order.remove(&(stamp, handle));
        match sessions.rank(prefix) {
            Some(rank) => {
                self.ranking.insert(rank);
            }
            None => {
                self.prefixes.remove(&prefix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::from([a, b, c, d])
    }

    #[test]
    fn prefixes_are_slash_24_and_slash_64() {
        assert_eq!(prefix_of(ip(10, 1, 2, 3)), prefix_of(ip(10, 1, 2, 200)));
        assert_ne!(prefix_of(ip(10, 1, 2, 3)), prefix_of(ip(10, 1, 3, 3)));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(prefix_of(a), prefix_of(b));
        assert_ne!(prefix_of(a), prefix_of(c));
        let mapped: IpAddr = "::ffff:10.1.2.9".parse().unwrap();
        assert_eq!(prefix_of(mapped), prefix_of(ip(10, 1, 2, 3)));
    }

    #[test]
    fn caps_refuse_by_address_then_by_prefix() {
        let now = Instant::now();
        let caps = SourceCaps {
            per_address: 2,
            per_prefix: 3,
        };
        let mut table = SessionTable::new();
        table.insert(1u32, ip(10, 0, 0, 1), now);
        table.insert(2, ip(10, 0, 0, 1), now);
        assert_eq!(
            table.admits(ip(10, 0, 0, 1), caps),
            Err(Refusal::AddressLimit)
        );
        assert_eq!(table.admits(ip(10, 0, 0, 2), caps), Ok(()));
        table.insert(3, ip(10, 0, 0, 2), now);
        assert_eq!(
            table.admits(ip(10, 0, 0, 3), caps),
            Err(Refusal::PrefixLimit)
        );
        assert_eq!(table.admits(ip(10, 0, 1, 3), caps), Ok(()));
        table.remove(1);
        assert_eq!(table.admits(ip(10, 0, 0, 1), caps), Ok(()));
        assert_eq!(table.counts(ip(10, 0, 0, 1)), (1, 2));
    }

    #[test]
    fn the_victim_is_the_least_recently_used_of_the_heaviest_prefix() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut table = SessionTable::new();
        // One light prefix with the oldest session of all, one heavy prefix.
        table.insert(1u32, ip(10, 0, 0, 1), at(0));
        table.insert(2, ip(10, 0, 9, 1), at(1));
        table.insert(3, ip(10, 0, 9, 2), at(2));
        let stamps = std::cell::RefCell::new(HashMap::from([(1, at(0)), (2, at(1)), (3, at(2))]));
        let used = |h| stamps.borrow().get(&h).copied();
        assert_eq!(table.victim(used), Some(2));
        // Session 2 was used since it was filed: its neighbour goes instead.
        stamps.borrow_mut().insert(2, at(5));
        assert_eq!(table.victim(used), Some(3));
        table.remove(3);
        // Equal prefixes: the least recently used overall.
        assert_eq!(table.victim(used), Some(1));
        stamps.borrow_mut().insert(1, at(9));
        assert_eq!(table.victim(used), Some(2));
        // A session the owner no longer holds is forgotten, not named.
        stamps.borrow_mut().remove(&2);
        assert_eq!(table.victim(used), Some(1));
        assert_eq!(table.len(), 1);
    }
}
