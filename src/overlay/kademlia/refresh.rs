//! Keeping the table full and fresh: the maintenance pass (expiry, replication, republish,
//! rejoining, bucket refresh), the node info cache that refills buckets with room, and the ℓ
//! self-initiated connections (seed 003 §5.1.7, PROTOCOL.md §10).
//!
//! **Bucket refresh** (Kademlia §2.3): a bucket that saw no lookup for `refresh` (5 min) gets
//! one, for a random id in its range, which finds the bucket's dead contacts (they time out and
//! leave) and the live ones it lacks. **The node info cache** holds contacts learned from
//! lookup replies but not held; each maintenance pass pings up to α of those that fall in a
//! bucket with room, and one that answers is seen and so enters its bucket. **Links**: the
//! node keeps at most ℓ self-initiated connections ([`Event::Connect`]); when one closes
//! ([`Dht::link_closed`]) it asks for another, from the table first (one per bucket, farthest
//! buckets first, so links span the id space), then from the cache.

use super::cache::NodeCache;
use super::node::{Dht, Event, MAINTENANCE, Purpose, Tag, secs};
use crate::overlay::id::{Contact, NodeId, key_address};
use crate::overlay::rpc::{Body, Opcode, RecordMeta};
use rand::RngCore;
use std::collections::BTreeSet;
use std::time::Instant;

// The maintenance pass runs this often; refresh and refill follow it.
const _: () = assert!(MAINTENANCE.as_secs() > 0);

impl Dht {
    pub(super) fn maintain(&mut self, now: Instant, wall: u64) {
        let expired = self.records.expire(wall);
        self.journal_removed(&expired);
        self.stats.add(
            "weft_overlay_records_expired_total",
            None,
            expired.len() as u64,
        );
        self.stats
            .set("weft_overlay_records", None, self.records.len() as u64);
        self.stats
            .set("weft_overlay_contacts", None, self.table.len() as u64);
        // Kademlia §2.5: every replica passes its records on hourly; the publisher stores its
        // own again (with a fresh TTL) every republish interval.
        // At most as many as there are free lookup slots; the rest stay due for the next pass.
        let room = self.config.max_lookups.saturating_sub(self.lookups.len());
        for (key, value, meta) in self.records.due(wall, secs(self.config.replicate), room) {
            let purpose = Purpose::Put {
                token: None,
                key: key.clone(),
                value,
                meta,
            };
            self.start_lookup(now, key_address(&key), purpose);
        }
        let due: Vec<Vec<u8>> = self
            .published
            .iter()
            .filter(|(_, p)| p.next <= wall)
            .map(|(k, _)| k.clone())
            .take(self.config.max_lookups.saturating_sub(self.lookups.len()))
            .collect();
        for key in due {
            let republish = secs(self.config.republish);
            let Some(published) = self.published.get_mut(&key) else {
                continue;
            };
            published.next = wall.saturating_add(republish);
            self.journal_published(&key);
            let Some(published) = self.published.get(&key) else {
                continue;
            };
            let meta = RecordMeta {
                version: published.version,
                ttl: secs(self.config.record_ttl),
            };
            let purpose = Purpose::Put {
                token: None,
                key: key.clone(),
                value: published.value.clone(),
                meta,
            };
            self.start_lookup(now, key_address(&key), purpose);
        }
        // A join whose replies were lost leaves a short table that nobody else may ever fill:
        // look the own id up again, through the bootstrap contacts, until it holds k.
        if self.table.len() < self.config.k && !self.joined_via.is_empty() {
            for contact in self.joined_via.clone() {
                self.note_seen(now, contact);
            }
            let own = self.own.id;
            self.start_lookup(now, own, Purpose::Maintain);
        }
        if let Some(refresh) = self.config.refresh
            && let Some(before) = now.checked_sub(refresh)
        {
            for bucket in self.table.stale_buckets(before) {
                let target = self.random_id_in(bucket);
                self.stats.add("weft_overlay_refreshes_total", None, 1);
                self.start_lookup(now, target, Purpose::Maintain);
            }
        }
        self.refill(now);
        self.fill_links(None);
        self.stats.set(
            "weft_overlay_cached_contacts",
            None,
            self.cache.len() as u64,
        );
        self.stats
            .set("weft_overlay_peer_records", None, self.keys.len() as u64);
        self.journal_routing();
    }

    /// A random id that falls in bucket `index`: the own id's first `index` bits, the next one
    /// flipped, the rest random.
    fn random_id_in(&mut self, index: usize) -> NodeId {
        let mut random = [0u8; 20];
        self.rng.fill_bytes(&mut random);
        let own = self.own.id.with_bit_flipped(index);
        let mut id = [0u8; 20];
        for (bit, byte) in (0..160).map(|b| (b, b / 8)) {
            let from = if bit <= index { &own } else { &NodeId(random) };
            if from.bit(bit)
                && let Some(slot) = id.get_mut(byte)
            {
                *slot |= 0x80 >> (bit % 8);
            }
        }
        NodeId(id)
    }

    /// Notes contacts a reply named: those not in the table go to the node info cache.
    pub(super) fn learned(&mut self, contacts: &[Contact]) {
        for contact in contacts {
            if contact.id != self.own.id && self.table.get(&contact.id).is_none() {
                self.cache.note(*contact);
            }
        }
    }

    /// Pings up to α cached contacts that fall in buckets with room; an answer puts each in
    /// its bucket.
    fn refill(&mut self, now: Instant) {
        let fill = self.table.fill();
        let k = self.config.k;
        let table = &self.table;
        let picked = self.cache.take(self.config.alpha, |c| {
            table.get(&c.id).is_none()
                && table
                    .bucket_of(&c.id)
                    .and_then(|b| fill.get(b))
                    .is_some_and(|n| *n < k)
        });
        for contact in picked {
            self.stats.add("weft_overlay_cache_refills_total", None, 1);
            self.send_request(now, &contact, Opcode::Ping, Body::Ping, Tag::Refill);
        }
    }

    /// The self-initiated connections the node keeps (at most ℓ).
    pub fn links(&self) -> &BTreeSet<NodeId> {
        &self.links
    }

    /// A self-initiated connection to `node` closed (or could not open): another is asked
    /// for in its place.
    pub fn link_closed(&mut self, node: &NodeId) {
        if self.links.remove(node) {
            self.fill_links(Some(*node));
        }
    }

    /// The node info cache.
    pub fn cache(&self) -> &NodeCache {
        &self.cache
    }

    /// Asks for connections until ℓ are kept: table contacts first, one per bucket from the
    /// farthest, then cached ones.
    fn fill_links(&mut self, not: Option<NodeId>) {
        let ell = self.config.ell;
        if self.links.len() >= ell {
            return;
        }
        let wanted = ell.saturating_sub(self.links.len());
        let mut chosen: Vec<Contact> = self
            .table
            .spread()
            .into_iter()
            .filter(|c| !self.links.contains(&c.id) && Some(c.id) != not)
            .take(wanted)
            .collect();
        let wanted = wanted.saturating_sub(chosen.len());
        let links = &self.links;
        chosen.extend(
            self.cache
                .take(wanted, |c| !links.contains(&c.id) && Some(c.id) != not),
        );
        for contact in chosen {
            self.links.insert(contact.id);
            self.events.push_back(Event::Connect { contact });
        }
    }
}
