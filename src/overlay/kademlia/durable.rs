//! The DHT's side of persistence (issue 15.5): the changes it journals for its host, the
//! STORE ACKs it holds until their batch has committed, and a restart's restore. The host's
//! side, a redb file in the data directory, is `crate::overlay::persist`.

use super::journal::{Change, Changes, Journal, RestoreReport, Restored};
use super::node::{Dht, Sender, Transmit};
use super::store::StoreError;
use crate::overlay::rpc::{Opcode, Reply};
use std::time::Instant;

impl Dht {
    /// Turns journaling on: from now on the node records what must survive a restart, and
    /// holds each STORE's ACK until [`committed`](Self::committed) says the batch holding the
    /// record is durable. A host that persists calls this once, after
    /// [`restore`](Self::restore), then after each batch of inputs: [`poll_changes`]
    /// (Self::poll_changes), commit, `committed`, and only then [`poll_transmit`]
    /// (Self::poll_transmit). Without it (the simulator) nothing is held.
    pub fn enable_journal(&mut self) {
        if self.journal.is_none() {
            self.journal = Some(Journal::new());
        }
    }

    /// The changes since the last call, as one batch to commit whole; `None` when nothing
    /// changed (or journaling is off). Take it after every batch of inputs, and commit every
    /// batch taken: a STORE's ACK waits for its batch.
    pub fn poll_changes(&mut self) -> Option<Changes> {
        let held = self.table.len();
        if self.journal.as_ref()?.routing_len != Some(held) {
            self.journal_routing();
        }
        self.journal.as_mut()?.take()
    }

    /// Batch `seq` (and every one before it) is durable: the replies that waited for it are
    /// released to [`poll_transmit`](Self::poll_transmit).
    pub fn committed(&mut self, seq: u64) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        for (transmit, _) in journal.committed(seq) {
            self.outbox.push_back(transmit);
        }
    }

    /// Batch `seq` could not be committed: every STORE it held is NACKed (`store_failed`), so
    /// no peer counts on a record that is not on disk. (It stays in memory, and is written
    /// with the node's next change to it.)
    pub fn commit_failed(&mut self, seq: u64) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        for (transmit, id) in journal.failed(seq) {
            self.stats.add(
                "weft_overlay_store_refused_total",
                Some(("reason", "store_failed")),
                1,
            );
            let nack = Reply::nack(id, Opcode::Store, "store_failed");
            self.queue(transmit.peer, transmit.addr, nack.encode());
        }
    }

    /// STORE ACKs waiting for a commit.
    pub fn held_replies(&self) -> usize {
        self.journal.as_ref().map_or(0, |j| j.held())
    }

    /// Takes back what a host read from disk at start: records (those expired at `wall`
    /// dropped, those past the budget refused, both counted), the records the node
    /// published, its routing table (certified contacts; the others go to the node info
    /// cache, pinged to come back once they show their proof) and the address book. Call before
    /// [`enable_journal`](Self::enable_journal): nothing restored is journaled again.
    pub fn restore(&mut self, now: Instant, wall: u64, restored: Restored) -> RestoreReport {
        let mut report = RestoreReport::default();
        for (key, record) in restored.records {
            match self.records.restore(&key, record, wall) {
                Ok(()) => report.records = report.records.saturating_add(1),
                Err(StoreError::Expired) => report.expired = report.expired.saturating_add(1),
                Err(error) => {
                    self.stats.add(
                        "weft_overlay_store_refused_total",
                        Some(("reason", error.reason())),
                        1,
                    );
                    report.refused = report.refused.saturating_add(1);
                }
            }
        }
        self.stats.add(
            "weft_overlay_records_expired_total",
            None,
            report.expired as u64,
        );
        for (key, published) in restored.published {
            self.published.insert(key, published);
        }
        report.peers = self.restore_peers(restored.peers);
        let before = self.table.len();
        for contact in restored.contacts {
            if self.certificates.certified(&contact.id, &contact.peer) {
                self.note_seen(now, contact);
            } else if self.certificates.may_ask(&contact.id, &contact.peer) {
                // No proof was checked since the start: the cache pings it (by IK when its
                // record is held), and its proof brings it back to the table.
                self.cache.note(contact);
                report.cached = report.cached.saturating_add(1);
            }
        }
        report.contacts = self.table.len().saturating_sub(before);
        if report.cached > 0 {
            self.maintain_now(now);
        }
        self.stats
            .set("weft_overlay_records", None, self.records.len() as u64);
        self.stats
            .set("weft_overlay_contacts", None, self.table.len() as u64);
        if let Some(journal) = self.journal.as_mut() {
            journal.routing = None;
        }
        report
    }

    /// Queues `reply` to `from`; a STORE's ACK waits for its batch when journaling is on.
    pub(super) fn send_reply(&mut self, from: &Sender, reply: Reply) {
        let transmit = Transmit {
            peer: from.peer,
            addr: from.addr,
            bytes: self.framed(&from.peer, reply.encode()),
        };
        match self.journal.as_mut() {
            Some(journal) if reply.ack && reply.op == Opcode::Store => {
                journal.hold((transmit, reply.id))
            }
            _ => self.outbox.push_back(transmit),
        }
    }

    /// Journals the record now held under `key`.
    pub(super) fn journal_record(&mut self, key: &[u8]) {
        if let Some(journal) = self.journal.as_mut()
            && let Some(record) = self.records.record(key)
        {
            journal.push(Change::Record {
                key: key.to_vec(),
                record: record.clone(),
            });
        }
    }

    /// Journals records that expired.
    pub(super) fn journal_removed(&mut self, keys: &[Vec<u8>]) {
        if let Some(journal) = self.journal.as_mut() {
            for key in keys {
                journal.push(Change::Removed { key: key.clone() });
            }
        }
    }

    /// Journals a record the node published.
    pub(super) fn journal_published(&mut self, key: &[u8]) {
        if let Some(journal) = self.journal.as_mut()
            && let Some(record) = self.published.get(key)
        {
            journal.push(Change::Published {
                key: key.to_vec(),
                record: record.clone(),
            });
        }
    }

    /// Journals the routing table when its contacts changed since it was last saved. An empty
    /// table is not saved over the last contacts: a restart (whose table starts empty until
    /// proofs come) pings those.
    pub(super) fn journal_routing(&mut self) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if self.table.is_empty() {
            journal.routing_len = Some(0);
            return;
        }
        let contacts = self.table.closest(&self.own.id, self.table.len());
        let mut hash = blake3::Hasher::new();
        for contact in &contacts {
            hash.update(&contact.id.0);
            hash.update(&contact.peer.0);
            hash.update(&crate::overlay::id::addr_to_bytes(&contact.addr));
        }
        let fingerprint = *hash.finalize().as_bytes();
        journal.routing_len = Some(contacts.len());
        if journal.routing != Some(fingerprint) {
            journal.routing = Some(fingerprint);
            journal.push(Change::Contacts(contacts));
        }
    }
}
