//! TAI64N timestamps and the bounded table of the last one accepted per key: the replay defence
//! of an IK INIT (PROTOCOL.md §5; the handshake module doc says where it sits in the handshake).

use super::TIMESTAMP_LEN;
use std::collections::HashMap;
use std::time::Duration;

/// A TAI64N timestamp (12 bytes: TAI64 seconds label, nanoseconds), big-endian so that byte order
/// is time order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tai64N(pub [u8; TIMESTAMP_LEN]);

impl Tai64N {
    /// The timestamp of `since_unix_epoch` (the caller reads the wall clock, not this layer).
    pub fn from_unix(since_unix_epoch: Duration) -> Tai64N {
        // TAI64 labels second s of the Unix era as 2^62 + 10 + s (the 10 s TAI-UTC offset of 1970).
        let seconds = (1u64 << 62)
            .saturating_add(10)
            .saturating_add(since_unix_epoch.as_secs());
        let mut bytes = [0u8; TIMESTAMP_LEN];
        bytes[..8].copy_from_slice(&seconds.to_be_bytes());
        bytes[8..].copy_from_slice(&since_unix_epoch.subsec_nanos().to_be_bytes());
        Tai64N(bytes)
    }
}

/// The last INIT timestamp accepted per Ed25519 key (PROTOCOL.md §5: a responder rejects a
/// timestamp not greater than the last it accepted for that key), in bounded memory.
///
/// Identities cost nothing, so the table cannot keep every key forever. What it may forget
/// must not reopen a replay, and the rule that makes forgetting safe is a floor:
///
/// - an entry is forgotten only when the table is full, and only if its timestamp is older than
///   the caller's cutoff (wall clock minus [`TimestampTable::with_limits`]' window), oldest
///   first;
/// - the greatest timestamp ever forgotten is kept as the floor, and a key the table does not
///   hold is fresh only above the floor.
///
/// A recorded INIT of a forgotten key carries a timestamp no greater than that key's last
/// accepted one, which is at most the floor: it stays refused. An honest peer is refused only
/// while the table is under pressure and its clock lags ours by more than the window (the
/// floor is always below the cutoff, so an attacker's clock cannot push it forward: entries
/// stamped in the future are never old enough to forget). When the table is full of entries
/// younger than the window, a key it does not hold is refused ([`is_fresh`](Self::is_fresh)
/// says no) rather than accepted unrecorded: keys it holds, and every XX handshake, still go on.
#[derive(Clone, Debug)]
pub struct TimestampTable {
    last: HashMap<[u8; 32], Tai64N>,
    /// The same entries by timestamp, to forget the oldest first.
    by_age: std::collections::BTreeSet<(Tai64N, [u8; 32])>,
    floor: Option<Tai64N>,
    limit: usize,
}

impl Default for TimestampTable {
    fn default() -> Self {
        TimestampTable::with_limits(DEFAULT_TIMESTAMP_LIMIT)
    }
}

/// Keys a [`TimestampTable`] holds by default: 65,536 entries of about 100 bytes (two maps),
/// 6.5 MiB; an attacker must complete more than 109 IK handshakes a second with new keys,
/// through every per-source limit, to fill it within a 10-minute window.
pub const DEFAULT_TIMESTAMP_LIMIT: usize = 1 << 16;

impl TimestampTable {
    /// An empty table of at most `DEFAULT_TIMESTAMP_LIMIT` keys.
    pub fn new() -> TimestampTable {
        TimestampTable::default()
    }

    /// An empty table of at most `limit` keys (at least 1).
    pub fn with_limits(limit: usize) -> TimestampTable {
        TimestampTable {
            last: HashMap::new(),
            by_age: std::collections::BTreeSet::new(),
            floor: None,
            limit: limit.max(1),
        }
    }

    /// True if `timestamp` is newer than the last one accepted for `ed25519` (for a key the
    /// table does not hold: newer than the floor, and the table has room).
    pub fn is_fresh(&self, ed25519: &[u8; 32], timestamp: Tai64N) -> bool {
        match self.last.get(ed25519) {
            Some(last) => timestamp > *last,
            None => self.last.len() < self.limit && self.floor.is_none_or(|f| timestamp > f),
        }
    }

    /// Makes room, if the table is full, by forgetting entries older than `cutoff`, oldest
    /// first (at most what it takes to get below the limit: a bounded loop). See the type's doc.
    pub fn prune(&mut self, cutoff: Tai64N) {
        while self.last.len() >= self.limit {
            let Some(&(oldest, key)) = self.by_age.first() else {
                return;
            };
            if oldest >= cutoff {
                return;
            }
            self.by_age.remove(&(oldest, key));
            self.last.remove(&key);
            self.floor = Some(self.floor.map_or(oldest, |f| f.max(oldest)));
        }
    }

    /// Records `timestamp` for `ed25519` if it is fresh; returns whether it was.
    pub fn accept(&mut self, ed25519: &[u8; 32], timestamp: Tai64N) -> bool {
        if !self.is_fresh(ed25519, timestamp) {
            return false;
        }
        if let Some(previous) = self.last.insert(*ed25519, timestamp) {
            self.by_age.remove(&(previous, *ed25519));
        }
        self.by_age.insert((timestamp, *ed25519));
        true
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True if no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tai64n_orders_like_time() {
        let a = Tai64N::from_unix(Duration::new(10, 999_999_999));
        let b = Tai64N::from_unix(Duration::new(11, 0));
        assert!(a < b);
        assert_eq!(b.0[..8], ((1u64 << 62) + 21).to_be_bytes());
    }
}
