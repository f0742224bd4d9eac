//! The consensus store on disk: one redb file in the data directory ([`STORE_FILE`]), opened by
//! [`DiskStore::open`]. Every [`Store::commit`] is one write transaction with redb's immediate
//! durability (an fsync before it returns), so what it wrote survives a crash or SIGKILL.
//!
//! Format (version [`STORE_FORMAT`], in table `meta` under `format`; docs/CONSENSUS.md):
//!
//! | table | key | value (msgpack, compact) |
//! |---|---|---|
//! | `meta` | `"format"` / `"height"` | u64 |
//! | `decisions` | height u64 | [`DecidedRecord`] |
//! | `ids` | public key ‖ salt (u32 BE), 36 bytes | [`IssuedId`] |
//! | `votes` | (height, round, 0 prevote / 1 precommit) | own `Signed<Vote>` |
//! | `proposals` | (height, round) | own `Signed<Proposal>` |
//! | `wal` | (height, sequence) | [`super::WalEntry`] |

use super::{Changes, DecidedRecord, IssuedId, STORE_FORMAT, Store, StoreError, Stored};
use crate::consensus::schema::VoteKind;
use redb::{Database, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The store's file name in the data directory.
pub const STORE_FILE: &str = "consensus.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const DECISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("decisions");
const IDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ids");
const VOTES: TableDefinition<(u64, u32, u8), &[u8]> = TableDefinition::new("votes");
const PROPOSALS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("proposals");
const WAL: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("wal");

/// A member's store in a redb file.
pub struct DiskStore {
    path: PathBuf,
    db: Database,
}

fn kind_byte(kind: VoteKind) -> u8 {
    match kind {
        VoteKind::Prevote => 0,
        VoteKind::Precommit => 1,
    }
}

fn id_key(key: &[u8; 32], salt: u32) -> [u8; 36] {
    let mut out = [0u8; 36];
    out[..32].copy_from_slice(key);
    out[32..].copy_from_slice(&salt.to_be_bytes());
    out
}

impl DiskStore {
    /// Opens (creating it and the tables if absent) the store [`STORE_FILE`] in the data
    /// directory `dir`, which must exist. A file of another format version is refused with
    /// [`StoreError::UnknownVersion`], naming the file and the fix. The node gives each
    /// cluster member it runs its own directory; a member is rebuilt from it with
    /// `Member::open`.
    pub fn open(dir: &Path) -> Result<DiskStore, StoreError> {
        let path = dir.join(STORE_FILE);
        let db = Database::create(&path).map_err(|e| database(&path, e))?;
        let store = DiskStore { path, db };
        store.check_format()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let path = &self.path;
        let txn = self.db.begin_write().map_err(|e| database(path, e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| database(path, e))?;
            let found = meta
                .get("format")
                .map_err(|e| database(path, e))?
                .map(|guard| guard.value());
            match found {
                Some(STORE_FORMAT) => {}
                Some(found) => {
                    return Err(StoreError::UnknownVersion {
                        path: path.clone(),
                        found,
                    });
                }
                None => {
                    meta.insert("format", STORE_FORMAT)
                        .map_err(|e| database(path, e))?;
                }
            }
            txn.open_table(DECISIONS).map_err(|e| database(path, e))?;
            txn.open_table(IDS).map_err(|e| database(path, e))?;
            txn.open_table(VOTES).map_err(|e| database(path, e))?;
            txn.open_table(PROPOSALS).map_err(|e| database(path, e))?;
            txn.open_table(WAL).map_err(|e| database(path, e))?;
        }
        txn.commit().map_err(|e| database(path, e))
    }

    /// Writes another format version: only for testing that such a file is refused.
    #[doc(hidden)]
    pub fn write_format_for_test(&self, version: u64) -> Result<(), StoreError> {
        let path = &self.path;
        let txn = self.db.begin_write().map_err(|e| database(path, e))?;
        txn.open_table(META)
            .map_err(|e| database(path, e))?
            .insert("format", version)
            .map_err(|e| database(path, e))?;
        txn.commit().map_err(|e| database(path, e))
    }

    /// The stored id of (key, salt) and the height that ordered it, for a node answering
    /// without its member (a status command, a restart check).
    pub fn lookup(&self, key: &[u8; 32], salt: u32) -> Result<Option<IssuedId>, StoreError> {
        let path = &self.path;
        let txn = self.db.begin_read().map_err(|e| database(path, e))?;
        let table = txn.open_table(IDS).map_err(|e| database(path, e))?;
        let found = table
            .get(&id_key(key, salt)[..])
            .map_err(|e| database(path, e))?;
        found
            .map(|guard| decode(path, "id", guard.value()))
            .transpose()
    }
}

fn database(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own types always encode.
    rmp_serde::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        path: path.to_path_buf(),
        what,
    })
}

/// The decoded values of a range of rows.
fn values<K: redb::Key + 'static, T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    rows: Result<redb::Range<'static, K, &'static [u8]>, redb::StorageError>,
) -> Result<Vec<T>, StoreError> {
    let rows = rows.map_err(|e| database(path, e))?;
    rows.map(|row| {
        let (_, bytes) = row.map_err(|e| database(path, e))?;
        decode(path, what, bytes.value())
    })
    .collect()
}

impl Store for DiskStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        let path = &self.path;
        let txn = self.db.begin_read().map_err(|e| database(path, e))?;
        let meta = txn.open_table(META).map_err(|e| database(path, e))?;
        let height = meta
            .get("height")
            .map_err(|e| database(path, e))?
            .map_or(0, |guard| guard.value());
        let mut stored = Stored::default();
        let decisions = txn.open_table(DECISIONS).map_err(|e| database(path, e))?;
        let mut expected = 1u64;
        for row in decisions.iter().map_err(|e| database(path, e))? {
            let (height, bytes) = row.map_err(|e| database(path, e))?;
            if height.value() != expected {
                return Err(StoreError::Gap {
                    path: path.clone(),
                    height: height.value(),
                });
            }
            expected = expected.saturating_add(1);
            let record: DecidedRecord = decode(path, "decision", bytes.value())?;
            stored.decisions.push(record);
        }
        let votes = txn.open_table(VOTES).map_err(|e| database(path, e))?;
        let rows = votes.range((height, 0, 0)..);
        stored.votes = values(path, "vote", rows)?;
        let proposals = txn.open_table(PROPOSALS).map_err(|e| database(path, e))?;
        stored.proposals = values(path, "proposal", proposals.range((height, 0)..))?;
        let wal = txn.open_table(WAL).map_err(|e| database(path, e))?;
        stored.wal = values(path, "write-ahead", wal.range((height, 0)..))?;
        Ok(stored)
    }

    fn commit(&mut self, changes: &Changes) -> Result<(), StoreError> {
        let path = &self.path;
        let txn = self.db.begin_write().map_err(|e| database(path, e))?;
        {
            let mut decisions = txn.open_table(DECISIONS).map_err(|e| database(path, e))?;
            for (height, record) in &changes.decisions {
                decisions
                    .insert(*height, &encode(record)[..])
                    .map_err(|e| database(path, e))?;
            }
            let mut ids = txn.open_table(IDS).map_err(|e| database(path, e))?;
            for id in &changes.ids {
                ids.insert(&id_key(&id.key, id.salt)[..], &encode(id)[..])
                    .map_err(|e| database(path, e))?;
            }
            let mut votes = txn.open_table(VOTES).map_err(|e| database(path, e))?;
            for vote in &changes.votes {
                let body = &vote.body;
                let key = (body.height, body.round, kind_byte(body.kind));
                votes
                    .insert(key, &encode(vote)[..])
                    .map_err(|e| database(path, e))?;
            }
            let mut proposals = txn.open_table(PROPOSALS).map_err(|e| database(path, e))?;
            for proposal in &changes.proposals {
                let key = (proposal.body.height, proposal.body.round);
                proposals
                    .insert(key, &encode(proposal)[..])
                    .map_err(|e| database(path, e))?;
            }
            let mut wal = txn.open_table(WAL).map_err(|e| database(path, e))?;
            for (key, entry) in &changes.wal {
                wal.insert(*key, &encode(entry)[..])
                    .map_err(|e| database(path, e))?;
            }
            if let Some(height) = changes.height {
                txn.open_table(META)
                    .map_err(|e| database(path, e))?
                    .insert("height", height)
                    .map_err(|e| database(path, e))?;
                // What belongs to decided heights is never needed again.
                wal.retain_in(..(height, 0), |_, _| false)
                    .map_err(|e| database(path, e))?;
                votes
                    .retain_in(..(height, 0, 0), |_, _| false)
                    .map_err(|e| database(path, e))?;
                proposals
                    .retain_in(..(height, 0), |_, _| false)
                    .map_err(|e| database(path, e))?;
            }
        }
        // Immediate durability is redb's default: the commit returns after the fsync.
        txn.commit().map_err(|e| database(path, e))
    }
}
