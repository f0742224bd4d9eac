//! Records held for others, with wall-clock expiry and replication times passed in (seconds
//! since the Unix epoch), charged to a budget of records and bytes.

use crate::overlay::rpc::{RecordMeta, Value};
use crate::wire::PeerId;
use std::collections::{BTreeMap, HashMap};

/// One record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The value.
    pub value: Value,
    /// Its version.
    pub version: u64,
    /// When it expires (wall seconds).
    pub expires: u64,
    /// When this node next passes it on to the k closest (wall seconds).
    pub next_replicate: u64,
    /// When this node stored it (wall seconds).
    pub stored: u64,
    /// The peer whose STORE put it here; `None` when unknown.
    pub owner: Option<PeerId>,
    bytes: usize,
}

impl Record {
    /// A record as read back from disk; its budget charge is set when it is restored.
    pub fn new(
        value: Value,
        version: u64,
        expires: u64,
        next_replicate: u64,
        stored: u64,
    ) -> Record {
        Record {
            value,
            version,
            expires,
            next_replicate,
            stored,
            owner: None,
            bytes: 0,
        }
    }
}

/// Why a STORE was not kept; each is a metric reason label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The budget of records or bytes is spent.
    #[error("record budget spent")]
    Full,
    /// A newer version is held.
    #[error("a newer version is held")]
    Older,
    /// The value is larger than the node accepts.
    #[error("value too large")]
    TooLarge,
    /// A record read back from disk had expired.
    #[error("record expired")]
    Expired,
    /// The storing peer's share of the budget is spent ([`RecordStore::set_peer_quota`]).
    #[error("the peer's share of the record budget is spent")]
    Quota,
}

impl StoreError {
    /// The reason label it is counted under, and the NACK's reason.
    pub fn reason(self) -> &'static str {
        match self {
            StoreError::Full => "store_full",
            StoreError::Older => "store_older",
            StoreError::TooLarge => "store_too_large",
            StoreError::Expired => "store_expired",
            StoreError::Quota => "store_quota",
        }
    }
}

/// The store and its budget.
#[derive(Clone, Debug)]
pub struct RecordStore {
    records: BTreeMap<Vec<u8>, Record>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    max_value: usize,
    /// Records and bytes each peer is the owner of (the last to store them); one entry per
    /// owner of a held record, so bounded by the record budget.
    owners: HashMap<PeerId, Share>,
    /// Most records and bytes one peer may own.
    peer_quota: Share,
}

/// What one peer holds here, or may: records and bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Share {
    /// Records.
    pub records: usize,
    /// Bytes (key and encoded value), as charged to the budget.
    pub bytes: usize,
}

impl RecordStore {
    /// An empty store of at most `max_records` records, `max_bytes` bytes, values of at most
    /// `max_value` encoded bytes.
    pub fn new(max_records: usize, max_bytes: usize, max_value: usize) -> RecordStore {
        RecordStore {
            records: BTreeMap::new(),
            bytes: 0,
            max_records,
            max_bytes,
            max_value,
            owners: HashMap::new(),
            peer_quota: Share {
                records: max_records,
                bytes: max_bytes,
            },
        }
    }

    /// Bounds what a single peer may own (records it was the last to store): past it, its
    /// STOREs of keys it does not already own are refused ([`StoreError::Quota`]), so one
    /// identity cannot take the whole budget from the others.
    pub fn set_peer_quota(&mut self, quota: Share) {
        self.peer_quota = quota;
    }

    /// What `peer` owns here now.
    pub fn share(&self, peer: &PeerId) -> Share {
        self.owners.get(peer).copied().unwrap_or_default()
    }

    /// What a record of `value` under `key` is charged to the byte budgets: the key and the
    /// memory the decoded value holds ([`Value::held_bytes`]), not its encoding, which can be
    /// 32 times smaller (an array of nils).
    pub fn charge_of(key: &[u8], value: &Value) -> usize {
        key.len().saturating_add(value.held_bytes())
    }

    /// Whether `owner` may store `bytes` ([`charge_of`](Self::charge_of)) under `key` within its share:
    /// a key it already owns is charged only the difference.
    pub fn admit(&self, key: &[u8], owner: &PeerId, bytes: usize) -> Result<(), StoreError> {
        let share = self.share(owner);
        let (records, bytes) = match self.records.get(key) {
            Some(held) if held.owner.as_ref() == Some(owner) => (
                share.records,
                share.bytes.saturating_sub(held.bytes).saturating_add(bytes),
            ),
            _ => (
                share.records.saturating_add(1),
                share.bytes.saturating_add(bytes),
            ),
        };
        if records > self.peer_quota.records || bytes > self.peer_quota.bytes {
            return Err(StoreError::Quota);
        }
        Ok(())
    }

    fn charge(&mut self, owner: Option<PeerId>, bytes: usize) {
        if let Some(owner) = owner {
            let share = self.owners.entry(owner).or_default();
            share.records = share.records.saturating_add(1);
            share.bytes = share.bytes.saturating_add(bytes);
        }
    }

    fn refund(&mut self, owner: Option<PeerId>, bytes: usize) {
        let Some(owner) = owner else {
            return;
        };
        if let Some(share) = self.owners.get_mut(&owner) {
            share.records = share.records.saturating_sub(1);
            share.bytes = share.bytes.saturating_sub(bytes);
            if share.records == 0 {
                self.owners.remove(&owner);
            }
        }
    }

    /// Keeps `value` under `key` for `ttl` seconds from `wall` (capped at `max_ttl`), unless
    /// a newer version is held; the next replication is `replicate` seconds away. Returns the
    /// metadata as stored.
    pub fn put(
        &mut self,
        key: &[u8],
        value: Value,
        meta: RecordMeta,
        wall: u64,
        max_ttl: u64,
        replicate: u64,
    ) -> Result<RecordMeta, StoreError> {
        if value.encode().len() > self.max_value {
            return Err(StoreError::TooLarge);
        }
        let bytes = RecordStore::charge_of(key, &value);
        let ttl = meta.ttl.min(max_ttl);
        let record = Record {
            value,
            version: meta.version,
            expires: wall.saturating_add(ttl),
            next_replicate: wall.saturating_add(replicate),
            stored: wall,
            owner: None,
            bytes,
        };
        let mut record = record;
        let freed = match self.records.get(key) {
            Some(old) if old.version > meta.version => return Err(StoreError::Older),
            Some(old) => {
                // The same version from a replica that counts its TTL down must not cut short
                // what the publisher just refreshed.
                if old.version == meta.version {
                    record.expires = record.expires.max(old.expires);
                }
                old.bytes
            }
            None if self.records.len() >= self.max_records => return Err(StoreError::Full),
            None => 0,
        };
        let total = self.bytes.saturating_sub(freed).saturating_add(bytes);
        if total > self.max_bytes {
            return Err(StoreError::Full);
        }
        self.bytes = total;
        let ttl = record.expires.saturating_sub(wall);
        if let Some(old) = self.records.insert(key.to_vec(), record) {
            // The new record has no owner until `set_owner` names the peer that stored it.
            self.refund(old.owner, old.bytes);
        }
        Ok(RecordMeta {
            version: meta.version,
            ttl,
        })
    }

    /// The value under `key` and its metadata, unless expired at `wall`.
    pub fn get(&self, key: &[u8], wall: u64) -> Option<(&Value, RecordMeta)> {
        let record = self.records.get(key)?;
        let ttl = record.expires.checked_sub(wall).filter(|&t| t > 0)?;
        Some((
            &record.value,
            RecordMeta {
                version: record.version,
                ttl,
            },
        ))
    }

    /// Puts a record read back from disk under `key`, charged to the budget like a STORE;
    /// one expired at `wall` is refused as [`StoreError::Expired`].
    pub fn restore(&mut self, key: &[u8], mut record: Record, wall: u64) -> Result<(), StoreError> {
        if record.expires <= wall {
            return Err(StoreError::Expired);
        }
        if record.value.encode().len() > self.max_value {
            return Err(StoreError::TooLarge);
        }
        record.bytes = RecordStore::charge_of(key, &record.value);
        let freed = self.records.get(key).map_or(0, |old| old.bytes);
        if freed == 0 && self.records.len() >= self.max_records {
            return Err(StoreError::Full);
        }
        let total = self
            .bytes
            .saturating_sub(freed)
            .saturating_add(record.bytes);
        if total > self.max_bytes {
            return Err(StoreError::Full);
        }
        self.bytes = total;
        let charged = (record.owner, record.bytes);
        if let Some(old) = self.records.insert(key.to_vec(), record) {
            self.refund(old.owner, old.bytes);
        }
        self.charge(charged.0, charged.1);
        Ok(())
    }

    /// The record under `key`, expired or not.
    pub fn record(&self, key: &[u8]) -> Option<&Record> {
        self.records.get(key)
    }

    /// Notes who stored the record under `key`.
    pub fn set_owner(&mut self, key: &[u8], owner: PeerId) {
        let Some(record) = self.records.get_mut(key) else {
            return;
        };
        let (old, bytes) = (record.owner.replace(owner), record.bytes);
        self.refund(old, bytes);
        self.charge(Some(owner), bytes);
    }

    /// Drops every record expired at `wall`; returns their keys.
    pub fn expire(&mut self, wall: u64) -> Vec<Vec<u8>> {
        let mut gone = Vec::new();
        let mut refunds = Vec::new();
        let mut freed = 0usize;
        self.records.retain(|key, r| {
            let keep = r.expires > wall;
            if !keep {
                freed = freed.saturating_add(r.bytes);
                gone.push(key.clone());
                refunds.push((r.owner, r.bytes));
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        for (owner, bytes) in refunds {
            self.refund(owner, bytes);
        }
        gone
    }

    /// At most `limit` records due for replication at `wall`, their next time moved `interval`
    /// on; the rest stay due for the next pass. (The bound keeps one pass from cloning the
    /// whole store, which a peer may have filled, or starting more lookups than fit.)
    pub fn due(
        &mut self,
        wall: u64,
        interval: u64,
        limit: usize,
    ) -> Vec<(Vec<u8>, Value, RecordMeta)> {
        let mut out = Vec::new();
        for (key, record) in &mut self.records {
            if out.len() >= limit {
                break;
            }
            if record.next_replicate <= wall && record.expires > wall {
                record.next_replicate = wall.saturating_add(interval);
                out.push((
                    key.clone(),
                    record.value.clone(),
                    RecordMeta {
                        version: record.version,
                        ttl: record.expires.saturating_sub(wall),
                    },
                ));
            }
        }
        out
    }

    /// The earliest expiry or replication time (wall seconds).
    pub fn next_due(&self) -> Option<u64> {
        self.records
            .values()
            .map(|r| r.expires.min(r.next_replicate))
            .min()
    }

    /// Every record, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Record)> {
        self.records.iter().map(|(k, r)| (k.as_slice(), r))
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(version: u64, ttl: u64) -> RecordMeta {
        RecordMeta { version, ttl }
    }

    #[test]
    fn records_expire_and_versions_only_grow() {
        let mut store = RecordStore::new(10, 1000, 100);
        store
            .put(b"k", Value::UInt(1), meta(2, 100), 1000, 50, 10)
            .unwrap();
        // ttl capped at 50
        assert_eq!(store.get(b"k", 1000).unwrap().1, meta(2, 50));
        assert_eq!(
            store.put(b"k", Value::UInt(0), meta(1, 100), 1000, 50, 10),
            Err(StoreError::Older)
        );
        assert_eq!(store.due(1005, 10, 100).len(), 0);
        assert_eq!(store.due(1010, 10, 100).len(), 1);
        assert!(store.get(b"k", 1049).is_some());
        assert!(store.get(b"k", 1050).is_none());
        assert_eq!(store.expire(1050), [b"k".to_vec()]);
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn the_budget_is_charged() {
        let mut store = RecordStore::new(1, 1000, 100);
        store.put(b"a", Value::Nil, meta(0, 10), 0, 10, 10).unwrap();
        assert_eq!(
            store.put(b"b", Value::Nil, meta(0, 10), 0, 10, 10),
            Err(StoreError::Full)
        );
        assert_eq!(
            store.put(b"a", Value::Bin(vec![0; 200]), meta(0, 10), 0, 10, 10),
            Err(StoreError::TooLarge)
        );
        let mut store = RecordStore::new(10, 8, 100);
        assert_eq!(
            store.put(b"abc", Value::Bin(vec![0; 6]), meta(0, 10), 0, 10, 10),
            Err(StoreError::Full)
        );
    }
}
