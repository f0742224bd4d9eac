//! The routing table: τ k-buckets by shared prefix length with the node's own id, each ordered
//! least recently seen first. A full bucket pings its least recently seen contact before
//! evicting it (Kademlia §2.2: old contacts that still answer are the most reliable); the
//! newcomer waits in the bucket's bounded replacement list. An optional cap on contacts of one
//! /24 (/64) per bucket keeps one network from filling a bucket (discv5).

use crate::overlay::id::{Contact, NodeId};
use crate::overlay::rpc::RttEstimate;
use std::net::IpAddr;
use std::time::Instant;

/// One contact in a bucket.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Who.
    pub contact: Contact,
    /// Its round-trip time as measured by RPCs.
    pub rtt: RttEstimate,
    /// Consecutive requests it failed to answer.
    pub failures: u32,
    /// When it was last heard from.
    pub last_seen: Instant,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    entries: Vec<Entry>,
    replacements: Vec<Contact>,
    /// The least recently seen contact is being pinged before an eviction.
    probing: bool,
    last_lookup: Option<Instant>,
}

/// What [`RoutingTable::seen`] did with a contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Already there: moved to the bucket's tail.
    Updated,
    /// Added.
    Inserted,
    /// The bucket is full: ping this, its least recently seen contact, and report the answer
    /// with [`RoutingTable::probed`]; the newcomer waits as a replacement.
    Probe(Contact),
    /// The bucket is full and already probing: the newcomer waits as a replacement.
    Waiting,
    /// Not taken: the node itself, an id claimed by another peer, or past the subnet cap.
    Refused,
}

/// The k-buckets.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    own: NodeId,
    k: usize,
    tau: u32,
    per_subnet_cap: Option<usize>,
    buckets: Vec<Bucket>,
}

/// The /24 of an IPv4 address or the /64 of an IPv6 one.
pub(super) fn subnet_of(ip: IpAddr) -> [u8; 8] {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            [4, a, b, c, 0, 0, 0, 0]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
        }
    }
}

impl RoutingTable {
    /// An empty table around `own`.
    pub fn new(own: NodeId, k: usize, tau: u32, per_subnet_cap: Option<usize>) -> RoutingTable {
        let tau = tau.clamp(1, 160);
        RoutingTable {
            own,
            k: k.max(1),
            tau,
            per_subnet_cap,
            buckets: vec![Bucket::default(); tau as usize],
        }
    }

    /// The bucket `id` belongs in: the length of its prefix shared with the node's own id,
    /// the last bucket holding everything at least τ−1 bits close; `None` for the node itself.
    pub fn bucket_of(&self, id: &NodeId) -> Option<usize> {
        let shared = self.own.distance(id).leading_zeros();
        if shared >= 160 {
            return None;
        }
        Some(shared.min(self.tau.saturating_sub(1)) as usize)
    }

    /// Notes that `contact` was heard from (a request or a reply it sent) at `now`.
    pub fn seen(&mut self, contact: Contact, now: Instant) -> Seen {
        let Some(index) = self.bucket_of(&contact.id) else {
            return Seen::Refused;
        };
        let k = self.k;
        let cap = self.per_subnet_cap;
        let Some(bucket) = self.buckets.get_mut(index) else {
            return Seen::Refused;
        };
        if let Some(at) = bucket
            .entries
            .iter()
            .position(|e| e.contact.id == contact.id)
        {
            // A certified id belongs to one peer (`certificate.rs`); with the driver vouching
            // instead, the first claim stands.
            if bucket.entries[at].contact.peer != contact.peer {
                return Seen::Refused;
            }
            let mut entry = bucket.entries.remove(at);
            entry.contact.addr = contact.addr;
            entry.failures = 0;
            entry.last_seen = now;
            bucket.entries.push(entry);
            return Seen::Updated;
        }
        if let Some(cap) = cap {
            let subnet = subnet_of(contact.addr.ip());
            let same = bucket
                .entries
                .iter()
                .filter(|e| subnet_of(e.contact.addr.ip()) == subnet)
                .count();
            if same >= cap {
                return Seen::Refused;
            }
        }
        if bucket.entries.len() < k {
            bucket.entries.push(Entry {
                contact,
                rtt: RttEstimate::default(),
                failures: 0,
                last_seen: now,
            });
            return Seen::Inserted;
        }
        if !bucket.replacements.iter().any(|c| c.id == contact.id) {
            if bucket.replacements.len() >= k {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(contact);
        }
        if bucket.probing {
            return Seen::Waiting;
        }
        bucket.probing = true;
        match bucket.entries.first() {
            Some(oldest) => Seen::Probe(oldest.contact),
            None => Seen::Waiting,
        }
    }

    /// The answer to a [`Seen::Probe`]: an oldest contact that answered stays (its reply was
    /// already [`seen`](Self::seen)); one that did not is evicted for the newest replacement.
    pub fn probed(&mut self, oldest: &NodeId, answered: bool, now: Instant) {
        let Some(index) = self.bucket_of(oldest) else {
            return;
        };
        if let Some(bucket) = self.buckets.get_mut(index) {
            bucket.probing = false;
        }
        if !answered {
            self.evict(oldest, now);
        }
    }

    /// Notes a request `id` did not answer; after `max_failures` in a row it is evicted.
    pub fn failed(&mut self, id: &NodeId, max_failures: u32, now: Instant) {
        let Some(index) = self.bucket_of(id) else {
            return;
        };
        let Some(bucket) = self.buckets.get_mut(index) else {
            return;
        };
        let Some(entry) = bucket.entries.iter_mut().find(|e| e.contact.id == *id) else {
            return;
        };
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= max_failures {
            self.evict(id, now);
        }
    }

    fn evict(&mut self, id: &NodeId, now: Instant) {
        let Some(index) = self.bucket_of(id) else {
            return;
        };
        let Some(bucket) = self.buckets.get_mut(index) else {
            return;
        };
        let before = bucket.entries.len();
        bucket.entries.retain(|e| e.contact.id != *id);
        if bucket.entries.len() < before
            && let Some(replacement) = bucket.replacements.pop()
        {
            bucket.entries.push(Entry {
                contact: replacement,
                rtt: RttEstimate::default(),
                failures: 0,
                last_seen: now,
            });
        }
    }

    /// Folds a round-trip sample into `id`'s estimate.
    pub fn sample_rtt(&mut self, id: &NodeId, rtt: std::time::Duration) {
        if let Some(entry) = self.entry_mut(id) {
            entry.rtt.sample(rtt);
        }
    }

    fn entry_mut(&mut self, id: &NodeId) -> Option<&mut Entry> {
        let index = self.bucket_of(id)?;
        self.buckets
            .get_mut(index)?
            .entries
            .iter_mut()
            .find(|e| e.contact.id == *id)
    }

    /// The entry of `id`, when it is in the table.
    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        let index = self.bucket_of(id)?;
        self.buckets
            .get(index)?
            .entries
            .iter()
            .find(|e| e.contact.id == *id)
    }

    /// Up to `n` contacts closest to `target`, closest first.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut all: Vec<(NodeId, &Contact)> = self
            .buckets
            .iter()
            .flat_map(|b| &b.entries)
            .map(|e| (e.contact.id.distance(target), &e.contact))
            .collect();
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by_key(n.saturating_sub(1), |(d, _)| *d);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().take(n).map(|(_, c)| *c).collect()
    }

    /// Contacts held.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// True when no contact is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Contacts per bucket, for `weft status` and tests.
    pub fn fill(&self) -> Vec<usize> {
        self.buckets.iter().map(|b| b.entries.len()).collect()
    }

    /// The contacts of bucket `index`, least recently seen first.
    pub fn bucket(&self, index: usize) -> Vec<Contact> {
        self.buckets
            .get(index)
            .map(|b| b.entries.iter().map(|e| e.contact).collect())
            .unwrap_or_default()
    }

    /// The contacts waiting for room in bucket `index`, oldest first.
    pub fn replacements(&self, index: usize) -> &[Contact] {
        self.buckets
            .get(index)
            .map_or(&[], |b| b.replacements.as_slice())
    }

    /// Every contact, spread over the id space: the first of each bucket from the farthest
    /// bucket to the closest, then the second of each, and so on (the order links are
    /// chosen in).
    pub fn spread(&self) -> Vec<Contact> {
        let mut out = Vec::with_capacity(self.len());
        for round in 0..self.k {
            let before = out.len();
            out.extend(
                self.buckets
                    .iter()
                    .filter_map(|b| b.entries.get(round))
                    .map(|e| e.contact),
            );
            if out.len() == before {
                break;
            }
        }
        out
    }

    /// Notes a lookup into bucket `index` at `now` (refresh skips buckets looked into lately).
    pub fn touch_bucket(&mut self, index: usize, now: Instant) {
        if let Some(bucket) = self.buckets.get_mut(index) {
            bucket.last_lookup = Some(now);
        }
    }

    /// Buckets that hold contacts and saw no lookup since `before`.
    pub fn stale_buckets(&self, before: Instant) -> Vec<usize> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.entries.is_empty() && b.last_lookup.is_none_or(|at| at < before))
            .map(|(i, _)| i)
            .collect()
    }

    /// The node's own id.
    pub fn own(&self) -> NodeId {
        self.own
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PeerId;
    use std::net::SocketAddr;

    fn contact(own: NodeId, bucket: usize, n: u8, ip: [u8; 4]) -> Contact {
        let mut id = own.with_bit_flipped(bucket);
        id.0[19] ^= n;
        Contact {
            id,
            peer: PeerId([n; 16]),
            addr: SocketAddr::from((ip, 7000)),
        }
    }

    #[test]
    fn a_full_bucket_pings_its_oldest_before_evicting() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 2, 160, None);
        let a = contact(own, 0, 1, [10, 0, 0, 1]);
        let b = contact(own, 0, 2, [10, 0, 0, 2]);
        let c = contact(own, 0, 3, [10, 0, 0, 3]);
        assert_eq!(table.seen(a, now), Seen::Inserted);
        assert_eq!(table.seen(b, now), Seen::Inserted);
        assert_eq!(table.seen(c, now), Seen::Probe(a));
        assert_eq!(table.seen(c, now), Seen::Waiting);
        // a answers: it stays, c waits.
        table.seen(a, now);
        table.probed(&a.id, true, now);
        assert!(table.get(&a.id).is_some() && table.get(&c.id).is_none());
        // b is now the oldest; it does not answer, c takes its place.
        assert_eq!(table.seen(c, now), Seen::Probe(b));
        table.probed(&b.id, false, now);
        assert!(table.get(&b.id).is_none() && table.get(&c.id).is_some());
    }

    #[test]
    fn the_subnet_cap_holds_per_bucket() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 20, 160, Some(2));
        for n in 1..=3 {
            let seen = table.seen(contact(own, 0, n, [10, 0, 0, n]), now);
            assert_eq!(seen == Seen::Inserted, n <= 2, "contact {n}");
        }
        // Another /24, or another bucket, is fine.
        assert_eq!(
            table.seen(contact(own, 0, 4, [10, 0, 1, 4]), now),
            Seen::Inserted
        );
        assert_eq!(
            table.seen(contact(own, 1, 5, [10, 0, 0, 5]), now),
            Seen::Inserted
        );
    }

    #[test]
    fn closest_sorts_by_xor_distance() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 20, 160, None);
        for bucket in 0..10 {
            table.seen(contact(own, bucket, bucket as u8, [10, 0, 0, 1]), now);
        }
        let target = own.with_bit_flipped(3);
        let closest = table.closest(&target, 3);
        assert_eq!(closest[0].id.distance(&target).leading_zeros(), 158);
        assert!(
            closest
                .windows(2)
                .all(|w| w[0].id.distance(&target) <= w[1].id.distance(&target))
        );
        assert_eq!(table.bucket_of(&own), None);
    }

    #[test]
    fn repeated_failures_evict() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 20, 160, None);
        let a = contact(own, 0, 1, [10, 0, 0, 1]);
        table.seen(a, now);
        table.failed(&a.id, 2, now);
        assert!(table.get(&a.id).is_some());
        table.failed(&a.id, 2, now);
        assert!(table.get(&a.id).is_none());
    }
}
