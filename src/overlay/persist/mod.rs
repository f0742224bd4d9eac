//! The overlay on disk (PROTOCOL.md §10, issue 15.5): records with their expiry and
//! metadata, the records the node published, the routing table and the address book, in one
//! redb file, [`FILE`], in the node's data directory, so a restarted node keeps what it
//! stored. The DHT stays sans-IO: it journals changes ([`Dht::poll_changes`]) that
//! [`OverlayStore::sync`] commits, one write transaction per input batch, fsynced before the
//! STORE ACKs of that batch are released.
//!
//! The file carries a format version ([`FORMAT`]); a file of another version, a damaged file,
//! or one another process holds open is refused with an error that names the file and the fix.
#![deny(clippy::arithmetic_side_effects)]

pub mod codec;

use crate::overlay::kademlia::{Change, Changes, Dht, PeerEntry, RestoreReport, Restored};
use crate::overlay::worker::DhtStore;
use codec::CodecError;
use redb::{
    Database, DatabaseError, ReadableTable, ReadableTableMetadata, StorageError, TableDefinition,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The file in the data directory.
pub const FILE: &str = "overlay.redb";
/// The format this code writes and reads; bump it with any change to the tables or
/// entries (`codec`). Version 2 keys the address book by peer id and keeps each peer's signed
/// record; a version-1 file is migrated at open (its address book was never written, so
/// nothing is lost: the empty table is recreated and the version raised).
pub const FORMAT: u64 = 2;
/// The older format this code migrates.
const FORMAT_1: u64 = 1;
/// Peers the address book holds by default.
pub const DEFAULT_MAX_PEERS: usize = 10_000;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const PUBLISHED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("published");
const CONTACTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("contacts");
const PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("peers");

/// Why the store could not be opened, read or written; each message names the file and what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Written in another format.
    #[error(
        "overlay store {}: format version {found}, this weft reads version {FORMAT}; run the weft \
         that wrote it, or move the file away (the node then starts with no stored records and \
         refills its routing table from the network)",
        path.display()
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it carries.
        found: u64,
    },
    /// Not a redb file, or damaged.
    #[error(
        "overlay store {}: damaged or not an overlay store ({reason}); move it away (`mv {} {}.bad`) \
         and restart: the node starts with no stored records and refills its routing table from \
         the network",
        path.display(), path.display(), path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process has it open.
    #[error(
        "overlay store {}: open in another process; another weft node uses this data directory: \
         stop it, or give this node its own --data",
        path.display()
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("overlay store {}: {source}; check the disk (space, permissions) and restart", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<redb::Error>,
    },
}

/// The overlay's store, open.
pub struct OverlayStore {
    db: Database,
    path: PathBuf,
    max_peers: usize,
    /// Records held for others in the file, as of the last commit.
    records: u64,
}

impl std::fmt::Debug for OverlayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayStore")
            .field("path", &self.path)
            .finish()
    }
}

/// What [`OverlayStore::load`] read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    /// For [`Dht::restore`].
    pub restored: Restored,
    /// Records that had expired, removed from the file.
    pub expired: usize,
}

impl OverlayStore {
    /// Opens (or creates) the store in the data directory `dir`, as [`FILE`]. A node opens it
    /// once at start, [`load`](Self::load)s it into its [`Dht`] (`Dht::restore`), turns the
    /// DHT's journal on (`Dht::enable_journal`), and then calls [`sync`](Self::sync) after
    /// each batch of inputs, before it sends what the DHT has to send.
    pub fn open(dir: &Path) -> Result<OverlayStore, PersistError> {
        let path = dir.join(FILE);
        if let Err(error) = std::fs::create_dir_all(dir) {
            return Err(PersistError::Io {
                path,
                source: Box::new(redb::Error::Io(error)),
            });
        }
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(error) => return Err(open_error(path, error)),
        };
        let store = OverlayStore {
            db,
            path,
            max_peers: DEFAULT_MAX_PEERS,
            records: 0,
        };
        store.check_format()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bounds the address book to `max` peers (default [`DEFAULT_MAX_PEERS`]).
    pub fn set_max_peers(&mut self, max: usize) {
        self.max_peers = max;
    }

    fn io(&self, error: impl Into<redb::Error>) -> PersistError {
        match error.into() {
            redb::Error::Corrupted(reason) => PersistError::Damaged {
                path: self.path.clone(),
                reason,
            },
            source => PersistError::Io {
                path: self.path.clone(),
                source: Box::new(source),
            },
        }
    }

    fn damaged(&self, error: CodecError, key: &[u8]) -> PersistError {
        PersistError::Damaged {
            path: self.path.clone(),
            reason: format!("{error} (key {})", hex(key)),
        }
    }

    /// A new file gets the format version; an existing one must carry this one.
    fn check_format(&self) -> Result<(), PersistError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.io(e))?;
            let found = meta
                .get("format")
                .map_err(|e| self.io(e))?
                .map(|v| v.value());
            match found {
                Some(FORMAT) => {}
                Some(FORMAT_1) => {
                    // Version 1 had the address book keyed by Ed25519 key, never written.
                    txn.delete_table(PEERS).map_err(|e| self.io(e))?;
                    meta.insert("format", FORMAT).map_err(|e| self.io(e))?;
                }
                Some(found) => {
                    return Err(PersistError::Version {
                        path: self.path.clone(),
                        found,
                    });
                }
                None => {
                    let records = txn.open_table(RECORDS).map_err(|e| self.io(e))?;
                    if !records.is_empty().map_err(|e| self.io(e))? {
                        return Err(PersistError::Damaged {
                            path: self.path.clone(),
                            reason: "records without a format version".into(),
                        });
                    }
                    meta.insert("format", FORMAT).map_err(|e| self.io(e))?;
                }
            }
            for table in [RECORDS, PUBLISHED, CONTACTS, PEERS] {
                txn.open_table(table).map_err(|e| self.io(e))?;
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// Reads everything back for [`Dht::restore`]; records expired at `wall` (wall-clock
    /// seconds) are left out and removed from the file.
    pub fn load(&mut self, wall: u64) -> Result<Loaded, PersistError> {
        let mut loaded = Loaded::default();
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut records = txn.open_table(RECORDS).map_err(|e| self.io(e))?;
            let mut expired = Vec::new();
            for entry in records.iter().map_err(|e| self.io(e))? {
                let (key, value) = entry.map_err(|e| self.io(e))?;
                let record = codec::decode_record(value.value())
                    .map_err(|e| self.damaged(e, key.value()))?;
                if record.expires <= wall {
                    expired.push(key.value().to_vec());
                } else {
                    loaded.restored.records.push((key.value().to_vec(), record));
                }
            }
            for key in &expired {
                records.remove(key.as_slice()).map_err(|e| self.io(e))?;
            }
            loaded.expired = expired.len();
            self.records = records.len().map_err(|e| self.io(e))?;
            let published = txn.open_table(PUBLISHED).map_err(|e| self.io(e))?;
            for entry in published.iter().map_err(|e| self.io(e))? {
                let (key, value) = entry.map_err(|e| self.io(e))?;
                let record = codec::decode_published(value.value())
                    .map_err(|e| self.damaged(e, key.value()))?;
                loaded
                    .restored
                    .published
                    .push((key.value().to_vec(), record));
            }
            let contacts = txn.open_table(CONTACTS).map_err(|e| self.io(e))?;
            for entry in contacts.iter().map_err(|e| self.io(e))? {
                let (key, value) = entry.map_err(|e| self.io(e))?;
                let contact = codec::decode_contact(value.value())
                    .map_err(|e| self.damaged(e, key.value()))?;
                loaded.restored.contacts.push(contact);
            }
            let peers = txn.open_table(PEERS).map_err(|e| self.io(e))?;
            for entry in peers.iter().map_err(|e| self.io(e))?.take(self.max_peers) {
                let (key, value) = entry.map_err(|e| self.io(e))?;
                let peer =
                    codec::decode_peer(value.value()).map_err(|e| self.damaged(e, key.value()))?;
                loaded.restored.peers.push(peer);
            }
        }
        txn.commit().map_err(|e| self.io(e))?;
        Ok(loaded)
    }

    /// Writes one batch of changes in one transaction, durable when this returns.
    pub fn apply(&mut self, changes: &Changes) -> Result<(), PersistError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        let held = {
            let mut records = txn.open_table(RECORDS).map_err(|e| self.io(e))?;
            let mut published = txn.open_table(PUBLISHED).map_err(|e| self.io(e))?;
            let mut contacts = txn.open_table(CONTACTS).map_err(|e| self.io(e))?;
            let mut peers = txn.open_table(PEERS).map_err(|e| self.io(e))?;
            let mut book =
                usize::try_from(peers.len().map_err(|e| self.io(e))?).unwrap_or(usize::MAX);
            for change in &changes.changes {
                match change {
                    Change::Record { key, record } => {
                        let bytes = codec::encode_record(record);
                        records
                            .insert(key.as_slice(), bytes.as_slice())
                            .map_err(|e| self.io(e))?;
                    }
                    Change::Removed { key } => {
                        records.remove(key.as_slice()).map_err(|e| self.io(e))?;
                    }
                    Change::Published { key, record } => {
                        let bytes = codec::encode_published(record);
                        published
                            .insert(key.as_slice(), bytes.as_slice())
                            .map_err(|e| self.io(e))?;
                    }
                    Change::Contacts(all) => {
                        contacts.retain(|_, _| false).map_err(|e| self.io(e))?;
                        for contact in all {
                            let bytes = codec::encode_contact(contact);
                            contacts
                                .insert(contact.id.0.as_slice(), bytes.as_slice())
                                .map_err(|e| self.io(e))?;
                        }
                    }
                    Change::Peer(peer) => {
                        let key = peer.record.peer_id();
                        let known = peers
                            .get(key.0.as_slice())
                            .map_err(|e| self.io(e))?
                            .is_some();
                        // The DHT keeps its own book smaller; this only guards the file.
                        if known || book < self.max_peers {
                            let bytes = codec::encode_peer(peer);
                            peers
                                .insert(key.0.as_slice(), bytes.as_slice())
                                .map_err(|e| self.io(e))?;
                            book = book.saturating_add(usize::from(!known));
                        }
                    }
                    Change::PeerGone(peer) => {
                        if peers
                            .remove(peer.0.as_slice())
                            .map_err(|e| self.io(e))?
                            .is_some()
                        {
                            book = book.saturating_sub(1);
                        }
                    }
                }
            }
            // redb keeps a table's length in its header: no scan.
            records.len().map_err(|e| self.io(e))?
        };
        // redb's default durability is Immediate: commit returns once the batch is on disk.
        txn.commit().map_err(|e| self.io(e))?;
        self.records = held;
        Ok(())
    }

    /// Records held for others in the file, as of the last commit (or the load).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Reads the file back into `dht` at start (a restart: records expired at `wall` dropped,
    /// those past the budget refused and counted) and turns the DHT's journal on, so that from
    /// now on every STORE's ACK waits for the commit of its record. Call once, before the
    /// DHT has taken any input.
    pub fn restore_into(
        &mut self,
        dht: &mut Dht,
        now: Instant,
        wall: u64,
    ) -> Result<RestoreReport, PersistError> {
        let loaded = self.load(wall)?;
        let mut report = dht.restore(now, wall, loaded.restored);
        report.expired = report.expired.saturating_add(loaded.expired);
        dht.enable_journal();
        Ok(report)
    }

    /// Commits what `dht` journaled since the last call and releases the STORE ACKs that
    /// waited for it; a failed commit NACKs them instead (`Dht::commit_failed`) and is
    /// returned. Call after each batch of inputs, before taking `dht`'s transmits. `Ok(true)`
    /// when a batch was written.
    pub fn sync(&mut self, dht: &mut Dht) -> Result<bool, PersistError> {
        let mut wrote = false;
        while let Some(batch) = dht.poll_changes() {
            if let Err(error) = self.apply(&batch) {
                dht.commit_failed(batch.seq);
                return Err(error);
            }
            dht.committed(batch.seq);
            wrote = true;
        }
        Ok(wrote)
    }

    /// Adds or replaces peers of the address book, keyed by peer id; a new peer past the
    /// bound is refused. Returns how many were refused. (A node writes its book through the
    /// DHT's journal, [`sync`](Self::sync); this is for tools and tests.)
    pub fn put_peers(&mut self, peers: &[PeerEntry]) -> Result<usize, PersistError> {
        let changes = Changes {
            seq: 0,
            changes: peers.iter().cloned().map(Change::Peer).collect(),
        };
        self.apply(&changes)?;
        let mut distinct: Vec<_> = peers.iter().map(|p| p.record.peer_id()).collect();
        distinct.sort();
        distinct.dedup();
        let held = self.peers()?;
        let kept = distinct
            .iter()
            .filter(|p| held.iter().any(|h| h.record.peer_id() == **p))
            .count();
        Ok(distinct.len().saturating_sub(kept))
    }

    /// The address book, at most the bound of peers.
    pub fn peers(&self) -> Result<Vec<PeerEntry>, PersistError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = txn.open_table(PEERS).map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.io(e))?.take(self.max_peers) {
            let (key, value) = entry.map_err(|e| self.io(e))?;
            out.push(codec::decode_peer(value.value()).map_err(|e| self.damaged(e, key.value()))?);
        }
        Ok(out)
    }
}

impl DhtStore for OverlayStore {
    fn sync(&mut self, dht: &mut Dht) -> Result<bool, String> {
        OverlayStore::sync(self, dht).map_err(|e| e.to_string())
    }

    fn records(&self) -> Option<u64> {
        Some(self.records)
    }
}

fn open_error(path: PathBuf, error: DatabaseError) -> PersistError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => PersistError::Locked { path },
        DatabaseError::UpgradeRequired(version) => PersistError::Damaged {
            path,
            reason: format!("redb file format {version}, which this weft does not read"),
        },
        DatabaseError::RepairAborted => PersistError::Damaged {
            path,
            reason: "repair aborted".into(),
        },
        DatabaseError::Storage(StorageError::Corrupted(reason)) => {
            PersistError::Damaged { path, reason }
        }
        DatabaseError::Storage(StorageError::Io(error))
            if error.kind() == std::io::ErrorKind::InvalidData =>
        {
            PersistError::Damaged {
                path,
                reason: "not a redb file".into(),
            }
        }
        other => PersistError::Io {
            path,
            source: Box::new(other.into()),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(32).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
