//! The issuing policy (PROTOCOL.md §11, Policy): at most so many ids per IPv4 address, /24 and
//! /16 (per /64, /48 and /32 for IPv6) per period. The counters are derived from the decided log
//! alone: every member applies the same decided entries, each charged to the source address its
//! f+1 first-hand sightings name, at the time the decided batch carries, so every member counts
//! exactly the same, whichever member a request reached first.
//!
//! Windows are aligned to the period (window = batch time / period): when a decided batch's time
//! enters a new window every counter is dropped at once, so the state is one map entry per
//! prefix that got an id in the current window, at most [`PolicyConfig::max_prefixes`].

use super::ids::{MemberKey, NetworkId, RequestDigest};
use super::signed::Signable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The policy's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The length of one counting window.
    pub period: Duration,
    /// Ids per IPv4 /32, /24 and /16 per period.
    pub ipv4: [u32; 3],
    /// Ids per IPv6 /64, /48 and /32 per period.
    pub ipv6: [u32; 3],
    /// Prefixes counted in one window at most: a request from a prefix not yet counted is
    /// refused (and named as [`Limit::Table`]) once the table holds this many.
    pub max_prefixes: u32,
    /// Client messages per second one source address may hand a member, each of which may
    /// cost it a signature (a sighting, a reply to a repeat, a NACK over quota); its /24 or
    /// /64 four times as many, and bursts of four seconds' worth (`service::client_rates`).
    /// An honest client asks each member once a second until answered.
    pub client_rate: u32,
}

/// Every [`Limit::label`], for metrics.
pub const LIMIT_LABELS: [&str; 7] = [
    "ipv4_32",
    "ipv4_24",
    "ipv4_16",
    "ipv6_64",
    "ipv6_48",
    "ipv6_32",
    "table_full",
];

/// The prefix lengths the IPv4 quotas count by, in the order of [`PolicyConfig::ipv4`].
pub const IPV4_BITS: [u8; 3] = [32, 24, 16];
/// The prefix lengths the IPv6 quotas count by, in the order of [`PolicyConfig::ipv6`].
pub const IPV6_BITS: [u8; 3] = [64, 48, 32];

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            period: Duration::from_secs(24 * 60 * 60),
            ipv4: [8, 24, 1024],
            ipv6: [8, 24, 1024],
            max_prefixes: 1 << 18,
            client_rate: 64,
        }
    }
}

impl PolicyConfig {
    fn period_secs(&self) -> u64 {
        self.period.as_secs().max(1)
    }
}

/// An address family.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    /// IPv4 (and IPv4-mapped IPv6 addresses, which count as the IPv4 address they carry).
    V4,
    /// IPv6.
    V6,
}

/// The limit a request ran into: what a NACK names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Limit {
    /// At most `quota` ids per prefix of `bits` bits of `family` per `period` seconds.
    Prefix {
        /// The address family.
        family: Family,
        /// The prefix length.
        bits: u8,
        /// Ids per prefix per period.
        quota: u32,
        /// The period, in seconds.
        period: u64,
    },
    /// The window already counts as many prefixes as the policy tracks.
    Table {
        /// Prefixes tracked per window.
        prefixes: u32,
        /// The period, in seconds.
        period: u64,
    },
}

impl Limit {
    /// A fixed label, for metrics and tables (never the address).
    pub fn label(&self) -> &'static str {
        match self {
            Limit::Prefix {
                family: Family::V4,
                bits: 32,
                ..
            } => "ipv4_32",
            Limit::Prefix {
                family: Family::V4,
                bits: 24,
                ..
            } => "ipv4_24",
            Limit::Prefix {
                family: Family::V4, ..
            } => "ipv4_16",
            Limit::Prefix {
                family: Family::V6,
                bits: 64,
                ..
            } => "ipv6_64",
            Limit::Prefix {
                family: Family::V6,
                bits: 48,
                ..
            } => "ipv6_48",
            Limit::Prefix {
                family: Family::V6, ..
            } => "ipv6_32",
            Limit::Table { .. } => "table_full",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Prefix {
                family,
                bits,
                quota,
                period,
            } => {
                let family = if *family == Family::V4 {
                    "IPv4"
                } else {
                    "IPv6"
                };
                write!(f, "{quota} ids per {family} /{bits} per {period} s")
            }
            Limit::Table { prefixes, period } => {
                write!(f, "{prefixes} prefixes counted per {period} s")
            }
        }
    }
}

/// A member's signed refusal of a request over its quota (PROTOCOL.md §11): the limit and when
/// its window ends. One NACK is one member's word; f+1 matching ones include an honest member's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Nack {
    /// The request refused.
    pub digest: RequestDigest,
    /// The limit it ran into.
    pub limit: Limit,
    /// When the window that counts it ends (Unix seconds): retry after.
    pub until: u64,
    /// The network whose member refuses.
    pub network: NetworkId,
    /// The member that refuses.
    pub member: MemberKey,
}

impl Signable for Nack {
    const DOMAIN: &'static str = "weft v1 consensus nack";
    fn signer(&self) -> MemberKey {
        self.member
    }
}

/// A counted prefix: the family, its length and the masked network bits.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    /// The family.
    pub family: Family,
    /// Its length in bits.
    pub bits: u8,
    /// The address with every bit past `bits` cleared.
    pub net: u128,
}

/// The three prefixes an address counts against, with their quotas.
fn prefixes(config: &PolicyConfig, source: IpAddr) -> [(Prefix, u32); 3] {
    let (family, value, width, bits, quotas) = match source.to_canonical() {
        IpAddr::V4(v4) => (
            Family::V4,
            u128::from(u32::from(v4)),
            32u32,
            IPV4_BITS,
            config.ipv4,
        ),
        IpAddr::V6(v6) => (Family::V6, u128::from(v6), 128u32, IPV6_BITS, config.ipv6),
    };
    let mut out = [(
        Prefix {
            family,
            bits: 0,
            net: 0,
        },
        0,
    ); 3];
    for (slot, (bits, quota)) in out.iter_mut().zip(bits.into_iter().zip(quotas)) {
        // Clear the low `width - bits` bits; `bits` ≤ `width` for every constant above.
        let drop = width.saturating_sub(u32::from(bits));
        let net = value
            .checked_shr(drop)
            .and_then(|v| v.checked_shl(drop))
            .unwrap_or(0);
        *slot = (Prefix { family, bits, net }, quota);
    }
    out
}

/// Decided ids per prefix in the current window: identical on every member that applied the
/// same log. Costs one map entry (a 24-byte key and a 4-byte count, about 48 bytes with the
/// map's node overhead) per prefix that got an id this window: three per decided request at
/// most, and never more than [`PolicyConfig::max_prefixes`].
#[derive(Clone, Debug)]
pub struct Counters {
    config: PolicyConfig,
    window: u64,
    counts: BTreeMap<Prefix, u32>,
}

impl Counters {
    /// Empty counters under `config`.
    pub fn new(config: PolicyConfig) -> Self {
        Counters {
            config,
            window: 0,
            counts: BTreeMap::new(),
        }
    }

    /// Changes the quotas; the counts stay unless the period differs (windows would not align).
    pub fn set_config(&mut self, config: PolicyConfig) {
        if config.period_secs() != self.config.period_secs() {
            self.counts.clear();
            self.window = 0;
        }
        self.config = config;
    }

    /// The policy.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    fn window_of(&self, time: u64) -> u64 {
        time.checked_div(self.config.period_secs()).unwrap_or(0)
    }

    /// When the window holding `time` ends (Unix seconds): what a NACK names as retry-after.
    pub fn window_end(&self, time: u64) -> u64 {
        self.window_of(time)
            .saturating_add(1)
            .saturating_mul(self.config.period_secs())
    }

    /// Ids counted for `prefix` in the window holding `time`.
    pub fn count(&self, prefix: &Prefix, time: u64) -> u32 {
        if self.window_of(time) != self.window {
            return 0;
        }
        self.counts.get(prefix).copied().unwrap_or(0)
    }

    /// Every counted prefix of the current window with its count and quota.
    pub fn entries(&self) -> impl Iterator<Item = (Prefix, u32, u32)> + '_ {
        self.counts.iter().map(|(prefix, count)| {
            let quotas = if prefix.family == Family::V4 {
                (IPV4_BITS, self.config.ipv4)
            } else {
                (IPV6_BITS, self.config.ipv6)
            };
            let quota = quotas
                .0
                .iter()
                .zip(quotas.1)
                .find(|(bits, _)| **bits == prefix.bits)
                .map_or(0, |(_, quota)| quota);
            (*prefix, *count, quota)
        })
    }

    /// The window counted (Unix seconds / period).
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Prefixes counted this window.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when nothing is counted this window.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Whether one more id for `source` at `time` keeps every quota, counting the log only.
    pub fn check(&self, source: IpAddr, time: u64) -> Result<(), Limit> {
        self.tally(time).check(source)
    }

    /// A tally of one batch's entries on top of the log, decided at `time`.
    pub fn tally(&self, time: u64) -> Tally<'_> {
        Tally {
            counters: self,
            fresh: self.window_of(time) != self.window,
            added: BTreeMap::new(),
        }
    }

    /// Applies one decided batch: its time, then one id per entry's source. Entries were
    /// checked before they were decided; this only counts.
    pub fn apply(&mut self, time: u64, sources: impl IntoIterator<Item = IpAddr>) {
        let window = self.window_of(time);
        if window > self.window {
            // PROTOCOL.md §11: the quota is per period; a new window starts every count at 0.
            self.window = window;
            self.counts.clear();
        }
        for source in sources {
            for (prefix, _) in prefixes(&self.config, source) {
                let count = self.counts.entry(prefix).or_insert(0);
                *count = count.saturating_add(1);
            }
        }
    }
}

/// One batch's ids counted on top of the decided log, so a batch never takes a prefix past its
/// quota however many of its entries share it.
pub struct Tally<'a> {
    counters: &'a Counters,
    /// The batch opens a new window: the log's counts no longer apply.
    fresh: bool,
    added: BTreeMap<Prefix, u32>,
}

impl Tally<'_> {
    fn logged(&self, prefix: &Prefix) -> u32 {
        if self.fresh {
            0
        } else {
            self.counters.counts.get(prefix).copied().unwrap_or(0)
        }
    }

    /// Whether one more id for `source` keeps every quota; does not count it.
    pub fn check(&self, source: IpAddr) -> Result<(), Limit> {
        let config = &self.counters.config;
        let period = config.period_secs();
        let mut new_prefixes = 0u32;
        for (prefix, quota) in prefixes(config, source) {
            let logged = self.logged(&prefix);
            let added = self.added.get(&prefix).copied().unwrap_or(0);
            if logged == 0 && added == 0 {
                new_prefixes = new_prefixes.saturating_add(1);
            }
            if logged.saturating_add(added) >= quota {
                return Err(Limit::Prefix {
                    family: prefix.family,
                    bits: prefix.bits,
                    quota,
                    period,
                });
            }
        }
        let logged_prefixes = if self.fresh {
            0
        } else {
            self.counters.counts.len()
        };
        let tracked = logged_prefixes
            .saturating_add(self.added.keys().filter(|p| self.logged(p) == 0).count())
            .saturating_add(new_prefixes as usize);
        if tracked > config.max_prefixes as usize {
            return Err(Limit::Table {
                prefixes: config.max_prefixes,
                period,
            });
        }
        Ok(())
    }

    /// Counts one more id for `source` if every quota allows it.
    pub fn admit(&mut self, source: IpAddr) -> Result<(), Limit> {
        self.check(source)?;
        for (prefix, _) in prefixes(&self.counters.config, source) {
            let count = self.added.entry(prefix).or_insert(0);
            *count = count.saturating_add(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_quotas_count_the_address_the_24_and_the_16() {
        let config = PolicyConfig {
            ipv4: [2, 3, 4],
            ..PolicyConfig::default()
        };
        let mut counters = Counters::new(config);
        counters.apply(100, [ip("10.1.2.3"), ip("10.1.2.3")]);
        assert!(matches!(
            counters.check(ip("10.1.2.3"), 100),
            Err(Limit::Prefix { bits: 32, .. })
        ));
        assert_eq!(counters.check(ip("10.1.2.4"), 100), Ok(()));
        counters.apply(100, [ip("10.1.2.4")]);
        assert!(matches!(
            counters.check(ip("10.1.2.5"), 100),
            Err(Limit::Prefix { bits: 24, .. })
        ));
        counters.apply(100, [ip("10.1.9.9")]);
        assert!(matches!(
            counters.check(ip("10.1.7.7"), 100),
            Err(Limit::Prefix { bits: 16, .. })
        ));
        assert_eq!(counters.check(ip("10.2.0.1"), 100), Ok(()));
        // A mapped address counts as the IPv4 address it carries.
        assert!(counters.check(ip("::ffff:10.1.2.3"), 100).is_err());
    }

    #[test]
    fn ipv6_quotas_count_the_64_48_and_32() {
        let config = PolicyConfig {
            ipv6: [1, 2, 3],
            ..PolicyConfig::default()
        };
        let mut counters = Counters::new(config);
        counters.apply(0, [ip("2001:db8:1:1::1")]);
        assert!(matches!(
            counters.check(ip("2001:db8:1:1::2"), 0),
            Err(Limit::Prefix { bits: 64, .. })
        ));
        assert_eq!(counters.check(ip("2001:db8:1:2::1"), 0), Ok(()));
    }

    #[test]
    fn a_new_window_starts_every_count_at_zero_and_frees_the_table() {
        let config = PolicyConfig {
            period: Duration::from_secs(10),
            ipv4: [1, 10, 10],
            ..PolicyConfig::default()
        };
        let mut counters = Counters::new(config);
        counters.apply(5, [ip("192.0.2.1")]);
        assert!(counters.check(ip("192.0.2.1"), 9).is_err());
        assert_eq!(counters.window_end(9), 10);
        assert_eq!(counters.check(ip("192.0.2.1"), 10), Ok(()));
        counters.apply(12, [ip("198.51.100.1")]);
        assert_eq!(counters.len(), 3, "the old window's prefixes are gone");
    }

    #[test]
    fn a_tally_counts_a_batch_on_top_of_the_log() {
        let config = PolicyConfig {
            ipv4: [8, 3, 100],
            ..PolicyConfig::default()
        };
        let mut counters = Counters::new(config);
        counters.apply(0, [ip("10.0.0.1")]);
        let mut tally = counters.tally(0);
        assert_eq!(tally.admit(ip("10.0.0.2")), Ok(()));
        assert_eq!(tally.admit(ip("10.0.0.3")), Ok(()));
        let refused = tally.admit(ip("10.0.0.4")).unwrap_err();
        assert_eq!(refused.label(), "ipv4_24");
        assert_eq!(refused.to_string(), "3 ids per IPv4 /24 per 86400 s");
    }

    #[test]
    fn the_table_of_prefixes_is_bounded() {
        let config = PolicyConfig {
            max_prefixes: 4,
            ..PolicyConfig::default()
        };
        let mut counters = Counters::new(config);
        counters.apply(0, [ip("10.0.0.1")]);
        // Same /16: one new prefix (the address' /24 is new too: two), 3 + 2 > 4.
        assert!(matches!(
            counters.check(ip("10.0.1.1"), 0),
            Err(Limit::Table { prefixes: 4, .. })
        ));
        // Same /24: only the address is new.
        assert_eq!(counters.check(ip("10.0.0.2"), 0), Ok(()));
    }
}
