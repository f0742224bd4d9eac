//! What the DHT does with peers' signed records (`keys.rs`, the book itself): takes a peer's
//! own (SET_CONNECTION_OPT option 5), hands out the one to open a contact by IK with, drops a
//! stale one, journals what the address book on disk keeps, and takes the book back at start.

use super::journal::{Change, PeerEntry};
use super::keys::{DROPPED, KeyBook};
use super::node::{Dht, Sender};
use crate::overlay::rpc::MAX_RECORD_BYTES;
use crate::session::PeerRecord;
use crate::wire::PeerId;

/// Signature checks one connected peer may cost the node ([`Dht::charge_check`]): its
/// certified-id proofs and the peer records it shows, each once a channel when honest.
pub(super) const MAX_CHECKS: u8 = 8;

impl Dht {
    /// Sets the node's own signed record, announced on every channel (SET_CONNECTION_OPT
    /// option 5) so that peers hand it on and open this node by IK. A record of another peer,
    /// or one past [`MAX_RECORD_BYTES`], is not announced.
    pub fn set_own_record(&mut self, record: &PeerRecord) {
        let bytes = record.to_bytes();
        self.keys.own =
            (record.peer_id() == self.own.peer && bytes.len() <= MAX_RECORD_BYTES).then_some(bytes);
    }

    /// The node's own record as announced, once set.
    pub fn own_record(&self) -> Option<&[u8]> {
        self.keys.own.as_deref()
    }

    /// The records the node holds.
    pub fn key_book(&self) -> &KeyBook {
        &self.keys
    }

    /// A peer announced its record (option 5): held, verified, when it is the peer's own.
    pub(super) fn accept_record(&mut self, from: &Sender, bytes: &[u8], wall: u64) -> bool {
        // The record already held, verified: no second signature check (a peer that repeats
        // its announcement costs a comparison).
        if self
            .keys
            .peers
            .get(&from.peer)
            .is_some_and(|h| h.verified && h.entry.record.to_bytes() == bytes)
        {
            return true;
        }
        if !self.charge_check(from.peer) {
            return false;
        }
        let reason = match PeerRecord::from_bytes(bytes) {
            Err(_) => "key_malformed",
            Ok(record) if record.peer_id() != from.peer => "key_mismatch",
            Ok(record) if record.verify().is_err() => "key_forged",
            Ok(record) => {
                let entry = PeerEntry {
                    record,
                    addr: from.addr,
                    seen: wall,
                };
                return self.hold_verified(entry);
            }
        };
        self.stats.add(DROPPED, Some(("reason", reason)), 1);
        false
    }

    /// Charges `peer` one signature check (a certified-id proof, a peer record it has not
    /// shown before): `false`, counted as `checks_limit`, past [`MAX_CHECKS`] while it is
    /// connected, or when `max_peer_options` peers hold a count already. An honest peer shows
    /// each once a channel; without a bound, one that alternates two records of its own, or
    /// resends a forged proof, buys a check (~50 µs) with every ~200-byte frame.
    pub(super) fn charge_check(&mut self, peer: PeerId) -> bool {
        let full = self.checks.len() >= self.config.max_peer_options;
        let allowed = match self.checks.get_mut(&peer) {
            Some(count) if *count < MAX_CHECKS => {
                *count = count.saturating_add(1);
                true
            }
            Some(_) => false,
            None if full => false,
            None => {
                self.checks.insert(peer, 1);
                true
            }
        };
        if !allowed {
            self.stats.add(DROPPED, Some(("reason", "checks_limit")), 1);
        }
        allowed
    }

    fn hold_verified(&mut self, entry: PeerEntry) -> bool {
        match self.keys.insert(entry.clone(), true) {
            Ok(evicted) => {
                if let Some(journal) = self.journal.as_mut() {
                    if let Some(gone) = evicted {
                        journal.push(Change::PeerGone(gone));
                    }
                    journal.push(Change::Peer(entry));
                }
                true
            }
            Err(()) => {
                self.stats.add(DROPPED, Some(("reason", "keys_full")), 1);
                false
            }
        }
    }

    /// The record to open `peer` with by IK, verified now if it was not (a forged one is
    /// dropped and counted, and the open is XX); `None` when none is held.
    pub fn record_for_open(&mut self, peer: &PeerId, wall: u64) -> Option<PeerRecord> {
        let held = self.keys.peers.get(peer)?;
        if held.verified {
            return Some(held.entry.record.clone());
        }
        let mut entry = held.entry.clone();
        if entry.record.verify().is_err() {
            self.forget_record(peer, "key_forged");
            return None;
        }
        entry.seen = wall;
        let record = entry.record.clone();
        self.hold_verified(entry).then_some(record)
    }

    /// The peer's session proved these static keys: a record held for it with another X25519
    /// key is stale (the peer has a new one) and goes (`key_stale`).
    pub fn note_static_keys(&mut self, peer: &PeerId, keys: &([u8; 32], [u8; 32])) {
        let stale = self.keys.peers.get(peer).is_some_and(|h| {
            let record = &h.entry.record;
            (record.ed25519, record.x25519) != *keys
        });
        if stale {
            self.forget_record(peer, "key_stale");
        }
    }

    fn forget_record(&mut self, peer: &PeerId, reason: &'static str) {
        self.keys.peers.remove(peer);
        self.stats.add(DROPPED, Some(("reason", reason)), 1);
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Change::PeerGone(*peer));
        }
    }

    /// Takes back the address book a host read at start; the records are verified again at
    /// first use (the file is input the node did not write at this moment). Returns how
    /// many are held.
    pub(super) fn restore_peers(&mut self, peers: Vec<PeerEntry>) -> usize {
        peers
            .into_iter()
            .filter(|entry| self.keys.insert(entry.clone(), false).is_ok())
            .count()
    }
}
