//! Handshakes per source (PROTOCOL.md §5, cheap before expensive): a token bucket per address
//! and per prefix that every INIT about to cost Diffie-Hellman is charged to, whether or not it
//! carries a valid cookie. A cookie proves the source can receive at its address; it does not
//! make that source's handshakes free, so one address (or one /24) cannot buy the whole shard's
//! handshake CPU by fetching cookies.
//!
//! The buckets live in two fixed tables indexed by a keyed hash of the address and of its
//! prefix: memory is fixed whatever the number of sources, nothing is ever allocated or pruned,
//! and the key keeps an attacker from choosing which honest source it collides with. Sources
//! that share a slot share its budget — a collision can only make the limit stricter.
//!
//! Each bucket is a generic cell rate algorithm (GCRA) state, a single instant: the theoretical
//! arrival time of the next handshake.

use super::table::prefix_of;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Slots per table (address and prefix): 2 × 2048 × 16 bytes = 64 KiB per endpoint.
const SLOTS: usize = 2048;

/// A token bucket's settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TokenRate {
    /// Tokens added per second (sustained handshakes per second); 0 refuses everything.
    pub per_second: u32,
    /// Most tokens held (handshakes allowed at once after a quiet spell); at least 1.
    pub burst: u32,
}

impl TokenRate {
    /// No limit (a test bed or a bench that loads a node from one address on purpose).
    pub const UNLIMITED: TokenRate = TokenRate {
        per_second: u32::MAX,
        burst: u32::MAX,
    };

    /// Time per token.
    fn interval(self) -> Option<Duration> {
        Duration::from_secs(1).checked_div(self.per_second)
    }
}

/// Why the limiter refused a handshake.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RateRefusal {
    /// The source address spent its bucket.
    Address,
    /// The source's prefix spent its bucket.
    Prefix,
}

impl RateRefusal {
    /// A snake_case metric label.
    pub fn label(self) -> &'static str {
        match self {
            RateRefusal::Address => "address_rate",
            RateRefusal::Prefix => "prefix_rate",
        }
    }
}

/// Per-source handshake rates (see the module doc).
pub struct SourceRateLimiter {
    key: [u8; 32],
    address: TokenRate,
    prefix: TokenRate,
    /// Theoretical arrival time of the next handshake, per slot; `None`: a full bucket.
    addresses: Box<[Option<Instant>]>,
    prefixes: Box<[Option<Instant>]>,
}

impl std::fmt::Debug for SourceRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRateLimiter")
            .field("address", &self.address)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// GCRA: admit at `now` unless the bucket's theoretical arrival time is more than a burst's
/// worth of intervals ahead. Returns the new state, or `None` to refuse.
fn admit(tat: Option<Instant>, now: Instant, rate: TokenRate) -> Option<Instant> {
    let interval = rate.interval()?;
    let tolerance = interval.saturating_mul(rate.burst.max(1).saturating_sub(1));
    let tat = tat.map_or(now, |tat| tat.max(now));
    if tat.saturating_duration_since(now) > tolerance {
        return None;
    }
    Some(tat.checked_add(interval).unwrap_or(tat))
}

impl SourceRateLimiter {
    /// A limiter keyed by `key` (the caller's randomness) with these rates.
    pub fn new(key: [u8; 32], address: TokenRate, prefix: TokenRate) -> SourceRateLimiter {
        SourceRateLimiter {
            key,
            address,
            prefix,
            addresses: vec![None; SLOTS].into_boxed_slice(),
            prefixes: vec![None; SLOTS].into_boxed_slice(),
        }
    }

    fn slot(&self, tag: u8, bytes: &[u8]) -> usize {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&[tag]).update(bytes);
        let hash = hasher.finalize();
        let mut index = [0u8; 8];
        index.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(index)
            .checked_rem(SLOTS as u64)
            .unwrap_or(0) as usize
    }

    /// Charges one handshake from `ip` at `now`: both its address's and its prefix's bucket
    /// must hold a token, and only an admitted handshake takes them.
    pub fn charge(&mut self, ip: IpAddr, now: Instant) -> Result<(), RateRefusal> {
        let address_bytes = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(v6, |v4| v4.to_ipv6_mapped())
                .octets(),
        };
        let a = self.slot(0, &address_bytes);
        let p = self.slot(1, &prefix_of(ip));
        let next_address =
            admit(self.addresses[a], now, self.address).ok_or(RateRefusal::Address)?;
        let next_prefix = admit(self.prefixes[p], now, self.prefix).ok_or(RateRefusal::Prefix)?;
        self.addresses[a] = Some(next_address);
        self.prefixes[p] = Some(next_prefix);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(address: (u32, u32), prefix: (u32, u32)) -> SourceRateLimiter {
        let rate = |(per_second, burst)| TokenRate { per_second, burst };
        SourceRateLimiter::new([3; 32], rate(address), rate(prefix))
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let now = Instant::now();
        let mut rates = limiter((10, 5), (1000, 1000));
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..5 {
            assert_eq!(rates.charge(ip, now), Ok(()));
        }
        assert_eq!(rates.charge(ip, now), Err(RateRefusal::Address));
        // Another address is not charged for it.
        assert_eq!(rates.charge(IpAddr::from([10, 0, 0, 2]), now), Ok(()));
        // One interval later, one more token.
        let later = now + Duration::from_millis(100);
        assert_eq!(rates.charge(ip, later), Ok(()));
        assert_eq!(rates.charge(ip, later), Err(RateRefusal::Address));
        // A quiet spell refills to the burst, not beyond.
        let quiet = now + Duration::from_secs(60);
        let admitted = (0..20).filter(|_| rates.charge(ip, quiet).is_ok()).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn a_prefix_is_charged_for_all_its_addresses() {
        let now = Instant::now();
        let mut rates = limiter((100, 100), (10, 8));
        let admitted = (0..50u8)
            .filter(|&n| rates.charge(IpAddr::from([10, 0, 0, n]), now).is_ok())
            .count();
        assert_eq!(admitted, 8);
        assert_eq!(
            rates.charge(IpAddr::from([10, 0, 0, 99]), now),
            Err(RateRefusal::Prefix)
        );
        assert_eq!(rates.charge(IpAddr::from([10, 0, 1, 1]), now), Ok(()));
    }

    #[test]
    fn a_zero_rate_refuses_everything() {
        let mut rates = limiter((0, 5), (10, 10));
        assert!(
            rates
                .charge(IpAddr::from([10, 0, 0, 1]), Instant::now())
                .is_err()
        );
    }
}
