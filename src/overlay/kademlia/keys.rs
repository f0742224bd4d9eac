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
//!   (`Change::Peer`, `Change::PeerGone`) for the address book on disk.
//!
//! The book is here; what the DHT does with it is `peers.rs`.

use super::journal::PeerEntry;
use crate::overlay::id::Contact;
use crate::overlay::rpc::NodeInfo;
use crate::session::PeerRecord;
use crate::stats::Stats;
use crate::wire::PeerId;
use std::collections::HashMap;

pub(super) const DROPPED: &str = "weft_overlay_dropped_total";

pub(super) struct Held {
    pub(super) entry: PeerEntry,
    /// Its signature verified (announced by the peer, or checked at first use).
    pub(super) verified: bool,
}

/// The records the node holds, bounded (see the module doc).
pub struct KeyBook {
    max: usize,
    pub(super) peers: HashMap<PeerId, Held>,
    /// The node's own record, announced on every channel (option 5).
    pub(super) own: Option<Vec<u8>>,
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
    pub(super) fn insert(
        &mut self,
        entry: PeerEntry,
        verified: bool,
    ) -> Result<Option<PeerId>, ()> {
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
