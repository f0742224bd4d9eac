//! The store against a temporary directory: what a restart keeps, what it drops, and the
//! errors a person meets.
#![allow(clippy::arithmetic_side_effects)]

use super::*;
use crate::overlay::id::{Contact, NodeId};
use crate::overlay::kademlia::{KademliaConfig, Record, Sender};
use crate::overlay::rpc::{Body, Frame, FrameLimits, Opcode, RecordMeta, Request, Value};
use crate::wire::PeerId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const WALL: u64 = 1_800_000_000;

/// A fresh directory under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("weft-overlay-store-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn contact(n: u8) -> Contact {
    let mut id = [n; 20];
    id[0] = n.wrapping_mul(37);
    Contact {
        id: NodeId(id),
        peer: PeerId([n; 16]),
        addr: ([10, 0, 0, n], 7700).into(),
    }
}

fn dht(n: u8) -> Dht {
    let config = KademliaConfig {
        per_subnet_cap: None,
        ..KademliaConfig::default()
    };
    Dht::new(config, contact(n), [n; 32])
}

fn store_request(key: &[u8], ttl: u64) -> Vec<u8> {
    Request {
        op: Opcode::Store,
        id: 7,
        body: Body::Store {
            key: key.to_vec(),
            value: Value::Str("value".into()),
            meta: RecordMeta { version: 1, ttl },
        },
    }
    .encode()
}

fn sender(n: u8) -> Sender {
    let c = contact(n);
    Sender {
        peer: c.peer,
        addr: c.addr,
        node: Some(c.id),
    }
}

fn acked(dht: &mut Dht) -> usize {
    let mut acks = 0;
    while let Some(t) = dht.poll_transmit() {
        if let Ok(Frame::Reply(reply)) = Frame::parse(&t.bytes, &FrameLimits::default()) {
            assert_eq!(reply.op, Opcode::Store);
            acks += usize::from(reply.ack);
        }
    }
    acks
}

#[test]
fn a_store_is_acknowledged_only_once_committed_and_a_restart_keeps_it() {
    let dir = TempDir::new();
    let now = Instant::now();
    {
        let mut store = OverlayStore::open(&dir.0).unwrap();
        let mut node = dht(1);
        node.restore(now, WALL, store.load(WALL).unwrap().restored);
        node.enable_journal();
        node.handle(now, WALL, sender(2), &store_request(b"kept", 3600));
        node.handle(now, WALL, sender(3), &store_request(b"short", 10));
        assert_eq!(acked(&mut node), 0, "no ACK before the commit");
        assert_eq!(node.held_replies(), 2);
        store.sync(&mut node).unwrap();
        assert_eq!(acked(&mut node), 2);
        // The routing table goes with the next maintenance pass.
        node.handle_timeout(now + std::time::Duration::from_secs(11), WALL);
        store.sync(&mut node).unwrap();
    }
    // Restarted 20 s later: "short" has expired and is gone from the file too.
    let mut store = OverlayStore::open(&dir.0).unwrap();
    let loaded = store.load(WALL + 20).unwrap();
    assert_eq!(loaded.expired, 1);
    let mut node = dht(1);
    let report = node.restore(now, WALL + 20, loaded.restored);
    assert_eq!((report.records, report.contacts), (1, 2));
    let (value, meta) = node.records().get(b"kept", WALL + 20).unwrap();
    assert_eq!(value, &Value::Str("value".into()));
    assert_eq!(
        meta,
        RecordMeta {
            version: 1,
            ttl: 3580
        }
    );
    let record = node.records().record(b"kept").unwrap();
    assert_eq!((record.stored, record.owner), (WALL, Some(PeerId([2; 16]))));
    assert!(node.table().get(&contact(3).id).is_some());
    assert_eq!(store.load(WALL + 20).unwrap().expired, 0);
}

#[test]
fn expired_records_are_dropped_on_load() {
    let dir = TempDir::new();
    let mut store = OverlayStore::open(&dir.0).unwrap();
    let changes = Changes {
        seq: 1,
        changes: vec![
            Change::Record {
                key: b"old".to_vec(),
                record: Record::new(Value::Nil, 0, WALL, WALL, WALL - 100),
            },
            Change::Record {
                key: b"new".to_vec(),
                record: Record::new(Value::Nil, 0, WALL + 1, WALL, WALL - 100),
            },
        ],
    };
    store.apply(&changes).unwrap();
    let loaded = store.load(WALL).unwrap();
    assert_eq!(loaded.expired, 1);
    let keys: Vec<_> = loaded
        .restored
        .records
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(keys, [b"new".to_vec()]);
    // Past its own expiry, restore drops it too.
    let mut node = dht(1);
    let report = node.restore(Instant::now(), WALL + 5, loaded.restored);
    assert_eq!((report.records, report.expired), (0, 1));
}

#[test]
fn an_unknown_version_is_refused_with_the_fix() {
    let dir = TempDir::new();
    let store = OverlayStore::open(&dir.0).unwrap();
    let txn = store.db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert("format", 99).unwrap();
    txn.commit().unwrap();
    drop(store);
    let error = OverlayStore::open(&dir.0).unwrap_err();
    assert!(matches!(error, PersistError::Version { found: 99, .. }));
    let text = error.to_string();
    assert!(
        text.contains(FILE) && text.contains("version 99") && text.contains("move the file away"),
        "{text}"
    );
}

#[test]
fn a_damaged_file_is_a_clear_error() {
    let dir = TempDir::new();
    std::fs::write(dir.0.join(FILE), vec![0x5a; 8192]).unwrap();
    let error = OverlayStore::open(&dir.0).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, PersistError::Damaged { .. }), "{text}");
    assert!(
        text.contains(FILE) && text.contains("move it away"),
        "{text}"
    );

    // A well-formed file whose record is not one: named with its key.
    let dir = TempDir::new();
    let store = OverlayStore::open(&dir.0).unwrap();
    let txn = store.db.begin_write().unwrap();
    txn.open_table(RECORDS)
        .unwrap()
        .insert(b"k".as_slice(), [0xc1].as_slice())
        .unwrap();
    txn.commit().unwrap();
    drop(store);
    let mut store = OverlayStore::open(&dir.0).unwrap();
    let text = store.load(WALL).unwrap_err().to_string();
    assert!(
        text.contains("does not decode as a record (key 6b)"),
        "{text}"
    );
}

#[test]
fn a_second_process_on_the_same_directory_is_refused() {
    let dir = TempDir::new();
    let _first = OverlayStore::open(&dir.0).unwrap();
    let error = OverlayStore::open(&dir.0).unwrap_err();
    assert!(matches!(error, PersistError::Locked { .. }), "{error}");
}

fn peer_entry(n: u8) -> PeerEntry {
    let identity = crate::session::Identity::from_secret_bytes([n; 32], [n.wrapping_add(1); 32]);
    let addr: std::net::SocketAddr = ([10, 0, 0, n], 7700).into();
    PeerEntry {
        record: crate::session::PeerRecord::sign(&identity, &[addr]),
        addr,
        seen: WALL,
    }
}

fn sorted(mut peers: Vec<PeerEntry>) -> Vec<PeerEntry> {
    peers.sort_by_key(|p| p.record.peer_id());
    peers
}

#[test]
fn the_address_book_is_bounded_and_survives() {
    let dir = TempDir::new();
    let first = sorted(vec![peer_entry(1), peer_entry(2), peer_entry(3)]);
    {
        let mut store = OverlayStore::open(&dir.0).unwrap();
        store.set_max_peers(2);
        assert_eq!(store.put_peers(&first).unwrap(), 1);
        // Replacing a known peer is no new entry.
        assert_eq!(store.put_peers(&first[1..2]).unwrap(), 0);
    }
    let store = OverlayStore::open(&dir.0).unwrap();
    assert_eq!(sorted(store.peers().unwrap()), first[..2]);
}

#[test]
fn the_dht_journals_verified_records_and_a_restart_holds_them_for_ik_again() {
    let dir = TempDir::new();
    let now = Instant::now();
    let (a, b) = (peer_entry(1), peer_entry(2));
    {
        let mut store = OverlayStore::open(&dir.0).unwrap();
        let mut node = dht(9);
        store.restore_into(&mut node, now, WALL).unwrap();
        // Each announces its own record on its session (SET_CONNECTION_OPT option 5).
        for (n, entry) in [(1u8, &a), (2, &b)] {
            let from = Sender {
                peer: entry.record.peer_id(),
                addr: entry.addr,
                node: Some(contact(n).id),
            };
            let opt = crate::overlay::rpc::ConnectionOpt::PeerRecord(entry.record.to_bytes());
            let request = Frame::Request(Request {
                op: Opcode::SetConnectionOpt,
                id: u32::from(n),
                body: Body::SetConnectionOpt(opt),
            });
            node.handle(now, WALL, from, &request.encode());
        }
        assert!(store.sync(&mut node).unwrap());
        assert_eq!(node.key_book().len(), 2);
    }
    let mut store = OverlayStore::open(&dir.0).unwrap();
    assert_eq!(sorted(store.peers().unwrap()), sorted(vec![a.clone(), b]));
    let mut node = dht(9);
    let report = store.restore_into(&mut node, now, WALL).unwrap();
    assert_eq!(report.peers, 2);
    // Verified again before its first use, then handed to the open.
    assert_eq!(
        node.record_for_open(&a.record.peer_id(), WALL + 1),
        Some(a.record)
    );
}

#[test]
fn a_version_1_store_is_migrated_to_the_address_book_by_peer_id() {
    let dir = TempDir::new();
    let store = OverlayStore::open(&dir.0).unwrap();
    let txn = store.db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert("format", 1).unwrap();
    // Version 1's (never written) book was keyed by Ed25519 key, with another entry form.
    txn.open_table(PEERS)
        .unwrap()
        .insert([7u8; 32].as_slice(), [0x95].as_slice())
        .unwrap();
    txn.commit().unwrap();
    drop(store);
    let mut store = OverlayStore::open(&dir.0).unwrap();
    assert!(store.peers().unwrap().is_empty());
    let txn = store.db.begin_read().unwrap();
    let format = txn
        .open_table(META)
        .unwrap()
        .get("format")
        .unwrap()
        .map(|v| v.value());
    assert_eq!(format, Some(FORMAT));
    drop(txn);
    assert!(store.load(WALL).is_ok());
}

#[test]
fn a_failed_commit_nacks_the_stores_it_held() {
    let now = Instant::now();
    let mut node = dht(1);
    node.enable_journal();
    node.handle(now, WALL, sender(2), &store_request(b"k", 60));
    let batch = node.poll_changes().unwrap();
    node.commit_failed(batch.seq);
    let t = node.poll_transmit().unwrap();
    let Ok(Frame::Reply(reply)) = Frame::parse(&t.bytes, &FrameLimits::default()) else {
        panic!("a reply");
    };
    assert!(!reply.ack);
    assert_eq!(
        reply.body,
        crate::overlay::rpc::ReplyBody::Items(vec![Value::Str("store_failed".into())])
    );
}

#[test]
fn a_restore_past_the_budget_is_refused_and_counted() {
    let records = (0..3u8)
        .map(|i| {
            (
                vec![i],
                Record::new(Value::UInt(u64::from(i)), 0, WALL + 60, WALL, WALL),
            )
        })
        .collect();
    let restored = Restored {
        records,
        ..Restored::default()
    };
    let config = KademliaConfig {
        max_records: 2,
        ..KademliaConfig::default()
    };
    let mut node = Dht::new(config, contact(1), [1; 32]);
    let report = node.restore(Instant::now(), WALL, restored);
    assert_eq!((report.records, report.refused), (2, 1));
    let refused: u64 = node
        .stats()
        .iter()
        .filter(|e| {
            e.name == "weft_overlay_store_refused_total"
                && e.label == Some(("reason", "store_full"))
        })
        .map(|e| e.value)
        .sum();
    assert_eq!(refused, 1);
}
