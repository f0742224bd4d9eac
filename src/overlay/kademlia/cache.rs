//! The node info cache (seed 003 §5.1.7, PROTOCOL.md §10): contacts the node learned but does
//! not hold, because their bucket was full when they came up, because no request went to them,
//! or because the node already keeps ℓ self-initiated connections. A bucket that loses
//! contacts is filled from it (each cached contact is pinged first, and enters the table only
//! by answering), and a connection that closes is replaced from it. Peers name the contacts it
//! holds, so it is bounded: past `max`, the least recently learned goes. Peers also name the
//! addresses, so an address is held under one id only, the first learned: a reply listing
//! a third party's address under many ids must not make the node open to it once per id.

use crate::overlay::id::{Contact, NodeId};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A bounded cache of contacts, least recently learned out first.
#[derive(Clone, Debug)]
pub struct NodeCache {
    max: usize,
    by_id: BTreeMap<NodeId, (Contact, u64)>,
    by_age: BTreeMap<u64, NodeId>,
    by_addr: BTreeMap<SocketAddr, NodeId>,
    next: u64,
}

impl NodeCache {
    /// An empty cache of at most `max` contacts.
    pub fn new(max: usize) -> NodeCache {
        NodeCache {
            max,
            by_id: BTreeMap::new(),
            by_age: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            next: 0,
        }
    }

    /// Notes `contact` as just learned (again), unless another id holds its address, evicting
    /// the least recently learned past the bound.
    pub fn note(&mut self, contact: Contact) {
        if self.max == 0 {
            return;
        }
        self.remove(&contact.id);
        if self.by_addr.contains_key(&contact.addr) {
            // Held under another id: that one stays until it is taken out or fails, as a
            // lookup keeps the first id it was offered at an address.
            return;
        }
        let age = self.next;
        self.next = self.next.wrapping_add(1);
        self.by_id.insert(contact.id, (contact, age));
        self.by_age.insert(age, contact.id);
        self.by_addr.insert(contact.addr, contact.id);
        while self.by_id.len() > self.max {
            let Some((_, oldest)) = self.by_age.first_key_value() else {
                break;
            };
            let oldest = *oldest;
            self.remove(&oldest);
        }
    }

    /// Takes `id` out, if cached.
    pub fn remove(&mut self, id: &NodeId) -> Option<Contact> {
        let (contact, age) = self.by_id.remove(id)?;
        self.by_age.remove(&age);
        self.by_addr.remove(&contact.addr);
        Some(contact)
    }

    /// Takes out up to `n` contacts for which `wanted` holds, most recently learned first.
    pub fn take(&mut self, n: usize, mut wanted: impl FnMut(&Contact) -> bool) -> Vec<Contact> {
        let picked: Vec<NodeId> = self
            .by_age
            .values()
            .rev()
            .filter(|id| self.by_id.get(*id).is_some_and(|(c, _)| wanted(c)))
            .take(n)
            .copied()
            .collect();
        picked.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The `n` cached contacts closest to `target` by XOR distance, closest first (a scan of
    /// the bounded cache).
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut all: Vec<(NodeId, Contact)> = (self.by_id.values())
            .map(|(c, _)| (c.id.distance(target), *c))
            .collect();
        let n = n.min(all.len());
        if n == 0 {
            return Vec::new();
        }
        all.select_nth_unstable_by_key(n.saturating_sub(1), |(d, _)| *d);
        all.truncate(n);
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, c)| c).collect()
    }

    /// Whether `id` is cached.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Contacts cached.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PeerId;

    fn contact(n: u8) -> Contact {
        Contact {
            id: NodeId([n; 20]),
            peer: PeerId([n; 16]),
            addr: ([10, 0, 0, n], 7000).into(),
        }
    }

    #[test]
    fn the_least_recently_learned_goes_past_the_bound() {
        let mut cache = NodeCache::new(3);
        for n in 1..=3 {
            cache.note(contact(n));
        }
        cache.note(contact(1)); // learned again: now the most recent
        cache.note(contact(4));
        assert!(!cache.contains(&NodeId([2; 20])), "2 was the least recent");
        assert_eq!(cache.len(), 3);
        let taken = cache.take(2, |c| c.id != NodeId([4; 20]));
        assert_eq!(
            taken.iter().map(|c| c.id.0[0]).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn an_address_is_cached_under_the_first_id_learned_only() {
        let mut cache = NodeCache::new(10);
        for n in 1..=5 {
            cache.note(Contact {
                addr: contact(9).addr,
                ..contact(n)
            });
        }
        cache.note(contact(6));
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(&NodeId([1; 20])));
        assert_eq!(cache.take(10, |_| true).len(), 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_closest_cached_contacts_come_closest_first() {
        let mut cache = NodeCache::new(10);
        for n in [9, 1, 5, 3, 7] {
            cache.note(contact(n));
        }
        let closest = cache.closest(&NodeId([0; 20]), 3);
        assert_eq!(
            closest.iter().map(|c| c.id.0[0]).collect::<Vec<_>>(),
            vec![1, 3, 5]
        );
        assert_eq!(cache.closest(&NodeId([0; 20]), 99).len(), 5);
    }
}
