//! Peers' signed records (PROTOCOL.md §2: "what an address book, a config file or the DHT
//! hands out"): the static keys that let the node open a contact by IK, one round trip fewer
//! than XX (PROTOCOL.md §5).
//!
//! - **Learnt** from the peer itself (SET_CONNECTION_OPT option 5, its own record on its own
//!   session: the key must hash to the session's peer id and the signature verify), from a
//!   FIND_NODE reply (a contact's optional fourth item: kept only when its key hashes to the
//!   contact's peer id, else dropped and counted `key_mismatch`; its signature is checked the
//!   first time the record is used, `key_forged` when it fails), or from the store at start.
//! - **Used** by the driver to open a contact ([`Dht::record_for_open`]), and handed on in
//!   FIND_NODE replies, only once verified: a node relays no record it has not checked.
//! - **Dropped** when the peer's session proved another X25519 key (`key_stale`: the peer
//!   has a new one) and, past `max_peer_records`, the least recently seen first.
//! - **Kept** across restarts: every verified record and every drop is journaled
//!   ([`Change::Peer`], [`Change::PeerGone`]) for the address book on disk.

use super::journal::{Change, PeerEntry};
use super::node::{Dht, Sender};
use crate::overlay::id::Contact;
use crate::overlay::rpc::{MAX_RECORD_BYTES, NodeInfo};
use crate::session::PeerRecord;
use crate::stats::Stats;
use crate::wire::PeerId;
use std::collections::HashMap;

const DROPPED: &str = "weft_overlay_dropped_total";

struct Held {
    entry: PeerEntry,
    /// Its signature verified (announced by the peer, or checked at first use).
    verified: bool,
}

/// The records the node holds, bounded (see the module doc).
pub struct KeyBook {
    max: usize,
    peers: HashMap<PeerId, Held>,
    /// The node's own record, announced on every channel (option 5).
    own: Option<Vec<u8>>,
}

impl KeyBook {
    /// An empty book of at most `max` peers.
    pub fn new(max: usize) -> KeyBook {
        KeyBook {
            max,
            peers: HashMap::new(),
            own: None,
        }
    }

    /// Peers held.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer is held.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The record held for `peer` and whether it was verified.
    pub fn get(&self, peer: &PeerId) -> Option<(&PeerRecord, bool)> {
        self.peers.get(peer).map(|h| (&h.entry.record, h.verified))
    }

    /// Holds `entry`; a verified one replaces what was held, an unverified one only fills a
    /// gap. Past the bound the least recently seen goes (unverified ones first), and its
    /// peer is returned so the drop can be journaled; `Err` when `entry` itself found no
    /// room.
    fn insert(&mut self, entry: PeerEntry, verified: bool) -> Result<Option<PeerId>, ()> {
        let peer = entry.record.peer_id();
        if let Some(held) = self.peers.get_mut(&peer) {
            if verified || !held.verified {
                *held = Held { entry, verified };
            }
            return Ok(None);
        }
        let mut evicted = None;
        if self.peers.len() >= self.max {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, h)| (h.verified, h.entry.seen))
                .map(|(p, h)| (*p, h.verified));
            match oldest {
                // An unverified record does not push a verified one out.
                Some((_, true)) if !verified => return Err(()),
                Some((old, _)) => {
                    self.peers.remove(&old);
                    evicted = Some(old);
                }
                None => return Err(()),
            }
        }
        self.peers.insert(peer, Held { entry, verified });
        Ok(evicted)
    }

    /// Takes the records a FIND_NODE reply carried (each only if its key hashes to the
    /// contact's peer id; the signature waits for first use) and returns the contacts.
    pub fn relayed(&mut self, nodes: Vec<NodeInfo>, stats: &mut Stats) -> Vec<Contact> {
        let mut contacts = Vec::with_capacity(nodes.len());
        for NodeInfo { contact, record } in nodes {
            contacts.push(contact);
            let Some(bytes) = record else {
                continue;
            };
            if self.peers.contains_key(&contact.peer) {
                continue;
            }
            let reason = match PeerRecord::from_bytes(&bytes) {
                Ok(record) if record.peer_id() == contact.peer => {
                    let entry = PeerEntry {
                        record,
                        addr: contact.addr,
                        seen: 0,
                    };
                    match self.insert(entry, false) {
                        Ok(_) => continue,
                        Err(()) => "keys_full",
                    }
                }
                Ok(_) => "key_mismatch",
                Err(_) => "key_malformed",
            };
            stats.add(DROPPED, Some(("reason", reason)), 1);
        }
        contacts
    }

    /// `contacts` as a FIND_NODE reply lists them: each with its record when one is held
    /// verified.
    pub fn with_records(&self, contacts: Vec<Contact>) -> Vec<NodeInfo> {
        contacts
            .into_iter()
            .map(|contact| NodeInfo {
                record: self
                    .peers
                    .get(&contact.peer)
                    .filter(|h| h.verified)
                    .map(|h| h.entry.record.to_bytes()),
                contact,
            })
            .collect()
    }
}

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
