//! What a node keeps across restarts, as changes its host writes to disk (issue 15.5). The
//! DHT stays sans-IO: it records each change to what must survive (a record stored, replaced
//! or expired, a record it published, its routing table) in a [`Journal`], the host takes them
//! as one batch per input batch ([`super::Dht::poll_changes`]), commits them, and says so
//! ([`super::Dht::committed`]). A STORE's ACK is held until the batch holding its record has
//! committed: a peer that saw the ACK may count on the record surviving a crash.

use super::store::Record;
use crate::overlay::id::Contact;
use crate::overlay::rpc::Value;
use crate::session::PeerRecord;
use crate::wire::PeerId;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// A record this node published, stored again every republish interval.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedRecord {
    /// The value.
    pub value: Value,
    /// Its version (one higher per put).
    pub version: u64,
    /// When it is next stored again (wall seconds).
    pub next: u64,
}

/// One change to what survives a restart.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A record held for others was stored or replaced.
    Record {
        /// Its key.
        key: Vec<u8>,
        /// The record as held now.
        record: Record,
    },
    /// A record held for others expired.
    Removed {
        /// Its key.
        key: Vec<u8>,
    },
    /// The node published (or published again) a record of its own.
    Published {
        /// Its key.
        key: Vec<u8>,
        /// What it republishes.
        record: PublishedRecord,
    },
    /// The routing table's contacts, all of them: replaces what was saved before.
    Contacts(Vec<Contact>),
    /// A peer's signed record was verified (or seen again): the address book keeps it.
    Peer(PeerEntry),
    /// A peer's record was dropped (forged, stale, or evicted for room).
    PeerGone(PeerId),
}

/// A peer of the address book (PROTOCOL.md §10): its signed peer record (its static keys and
/// the addresses it names), where this node last reached it, and when (wall seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// The record, as the peer signed it.
    pub record: PeerRecord,
    /// Where it was last reached.
    pub addr: SocketAddr,
    /// When it was last heard from (wall seconds).
    pub seen: u64,
}

/// The changes of one input batch, to be committed together.
#[derive(Clone, Debug, PartialEq)]
pub struct Changes {
    /// The batch's number: pass it to [`super::Dht::committed`] once it is durable.
    pub seq: u64,
    /// What changed, in order.
    pub changes: Vec<Change>,
}

/// What a host read back from disk, for [`super::Dht::restore`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Restored {
    /// Records held for others, by key.
    pub records: Vec<(Vec<u8>, Record)>,
    /// Records this node published, by key.
    pub published: Vec<(Vec<u8>, PublishedRecord)>,
    /// The routing table's contacts.
    pub contacts: Vec<Contact>,
    /// The address book: peers' signed records.
    pub peers: Vec<PeerEntry>,
}

/// What [`super::Dht::restore`] took back.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Records held again.
    pub records: usize,
    /// Records dropped because they had expired.
    pub expired: usize,
    /// Records refused by the budget (fewer records or bytes configured than were saved).
    pub refused: usize,
    /// Contacts back in the routing table.
    pub contacts: usize,
    /// Saved contacts not certified yet (this start has checked no proof): kept in the node
    /// info cache, which pings them, so they return to the table once they have shown it.
    pub cached: usize,
    /// Peer records back in the address book.
    pub peers: usize,
}

/// The changes not yet handed to the host, and the replies that wait for their commit.
/// `T` is what is held (the node's transmits).
#[derive(Debug)]
pub(crate) struct Journal<T> {
    changes: Vec<Change>,
    /// The number of the batch being filled.
    filling: u64,
    /// The highest batch the host committed.
    committed: u64,
    held: VecDeque<(u64, T)>,
    /// The routing table as last saved, as a hash, so an unchanged table is not written again.
    pub(crate) routing: Option<[u8; 32]>,
    /// How many contacts the table held when last saved: a table that grew or shrank is
    /// saved with the batch, not only at the next maintenance pass.
    pub(crate) routing_len: Option<usize>,
}

impl<T> Journal<T> {
    pub(crate) fn new() -> Journal<T> {
        Journal {
            changes: Vec::new(),
            filling: 1,
            committed: 0,
            held: VecDeque::new(),
            routing: None,
            routing_len: None,
        }
    }

    pub(crate) fn push(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// Holds `item` until the batch being filled has committed.
    pub(crate) fn hold(&mut self, item: T) {
        self.held.push_back((self.filling, item));
    }

    /// The batch being filled, when it holds a change; the next one starts.
    pub(crate) fn take(&mut self) -> Option<Changes> {
        if self.changes.is_empty() {
            return None;
        }
        let seq = self.filling;
        self.filling = self.filling.saturating_add(1);
        Some(Changes {
            seq,
            changes: std::mem::take(&mut self.changes),
        })
    }

    /// Notes batch `seq` as durable; returns what waited for it (and for every batch before).
    pub(crate) fn committed(&mut self, seq: u64) -> Vec<T> {
        // Only a batch that was handed out can be committed.
        let seq = seq.min(self.filling.saturating_sub(1));
        self.committed = self.committed.max(seq);
        self.release(|s| s <= seq)
    }

    /// Takes what waited for batch `seq`, whose commit failed.
    pub(crate) fn failed(&mut self, seq: u64) -> Vec<T> {
        self.release(|s| s == seq)
    }

    fn release(&mut self, due: impl Fn(u64) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.held.len());
        for (seq, item) in self.held.drain(..) {
            if due(seq) {
                out.push(item);
            } else {
                keep.push_back((seq, item));
            }
        }
        self.held = keep;
        out
    }

    /// Replies waiting for a commit.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_items_wait_for_their_own_batch() {
        let mut journal = Journal::new();
        journal.push(Change::Removed { key: b"a".to_vec() });
        journal.hold("ack a");
        let first = journal.take().unwrap();
        journal.push(Change::Removed { key: b"b".to_vec() });
        journal.hold("ack b");
        // A batch not yet handed out cannot be committed ahead of time.
        assert_eq!(journal.committed(first.seq + 1), ["ack a"]);
        let second = journal.take().unwrap();
        assert_eq!(second.seq, first.seq + 1);
        assert_eq!(journal.failed(second.seq), ["ack b"]);
        assert_eq!(journal.held(), 0);
        assert!(journal.take().is_none(), "no change, no batch");
    }
}
