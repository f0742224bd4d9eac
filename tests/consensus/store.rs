//! The consensus store on disk (issue 14 point 3, docs/CONSENSUS.md "On disk"): a member
//! restarted from its redb file keeps its log and answers the same (key, salt) with the same
//! id; a file of an unknown format version is refused with an error naming the file and the fix.

use ed25519_dalek::SigningKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use weft::consensus::ids::{NetworkId, NodeId, NodeIdRequest};
use weft::consensus::malachite::MalachiteEngine;
use weft::consensus::member::{Member, MemberConfig, Peer};
use weft::consensus::schema::{self, Message, Vote, VoteKind};
use weft::consensus::signed::{Signed, member_key, sign};
use weft::consensus::store::disk::{DiskStore, STORE_FILE};
use weft::consensus::store::{Changes, MemoryStore, STORE_FORMAT, Store, StoreError, WalEntry};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn lone_member() -> (SigningKey, MemberConfig) {
    let key = SigningKey::from_bytes(&[3; 32]);
    let me = member_key(&key);
    let config = MemberConfig {
        network: NetworkId::of_genesis(&[me]),
        members: vec![me],
        round_base: Duration::from_millis(50),
        resend: Duration::from_secs(1),
    };
    (key, config)
}

/// Sends `request` from `client` and runs the member's timers until it replies; the id.
fn ask(
    member: &mut Member<MalachiteEngine, DiskStore>,
    now: &mut Instant,
    client: SocketAddr,
    request: &NodeIdRequest,
) -> NodeId {
    member.handle(
        *now,
        Peer::Client(client),
        &schema::encode(&Message::Request(request.clone())),
    );
    for _ in 0..200 {
        while let Some(transmit) = member.poll_transmit() {
            if let Ok(Message::Reply(reply)) = schema::decode(&transmit.bytes) {
                assert_eq!(transmit.to, Peer::Client(client));
                return reply.body.node_id;
            }
        }
        let Some(at) = member.poll_timeout() else {
            break;
        };
        *now = (*now).max(at);
        member.handle_timeout(*now);
    }
    panic!("the lone member never replied");
}

#[test]
fn a_member_restarted_from_its_store_keeps_its_log_and_ids() {
    let dir = scratch("restart");
    let (key, config) = lone_member();
    let client: SocketAddr = "192.0.2.9:7000".parse().unwrap();
    let request = NodeIdRequest {
        key: [0x42; 32],
        addresses: vec![client],
        salt: 11,
    };
    let mut now = Instant::now();
    let store = DiskStore::open(&dir).expect("a new store opens");
    let mut member = Member::open(now, key.clone(), config.clone(), store).expect("opens");
    let first = ask(&mut member, &mut now, client, &request);
    let log = member.log().heights().to_vec();
    assert!(
        log.len() >= 2,
        "the id is final one height after its request"
    );
    drop(member);

    let store = DiskStore::open(&dir).expect("the store reopens");
    let stored = store.lookup(&request.key, request.salt).expect("reads");
    assert_eq!(
        stored.map(|id| id.node_id),
        Some(first),
        "the id map is on disk"
    );
    let mut member = Member::open(now, key, config, store).expect("reopens");
    assert_eq!(
        member.log().heights(),
        &log[..],
        "the decided log survives a restart"
    );
    let again = ask(&mut member, &mut now, client, &request);
    assert_eq!(
        again, first,
        "the same (key, salt) gets the same id after a restart"
    );
    // A new request is still served after the restart: the log continues.
    let other = NodeIdRequest {
        salt: 12,
        ..request.clone()
    };
    let second = ask(&mut member, &mut now, client, &other);
    assert_ne!(second, first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_store_of_an_unknown_format_is_refused_naming_the_file_and_the_fix() {
    let dir = scratch("version");
    let store = DiskStore::open(&dir).expect("a new store opens");
    store
        .write_format_for_test(STORE_FORMAT + 1)
        .expect("writes");
    drop(store);
    let Err(error) = DiskStore::open(&dir) else {
        panic!("a store of another format opened");
    };
    assert!(matches!(error, StoreError::UnknownVersion { found, .. } if found == STORE_FORMAT + 1));
    let text = error.to_string();
    assert!(
        text.contains(&dir.join(STORE_FILE).display().to_string()),
        "{text}"
    );
    assert!(text.contains("move the file aside"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A member's vote, signed with `key`.
fn vote(key: &SigningKey, network: &NetworkId, height: u64, round: u32) -> Signed<Vote> {
    sign(
        key,
        network,
        Vote {
            height,
            round,
            kind: VoteKind::Prevote,
            value: None,
            voter: member_key(key),
        },
    )
}

#[test]
fn the_disk_store_loads_what_the_memory_store_loads() {
    // The simulator's crash tests run on MemoryStore; a node runs on DiskStore: both must
    // resume a member from the same state after the same commits, pruning included.
    let dir = scratch("model");
    let (key, config) = lone_member();
    let network = config.network;
    let mut disk = DiskStore::open(&dir).expect("opens");
    let mut memory = MemoryStore::default();
    let steps = [
        Changes {
            votes: vec![vote(&key, &network, 1, 0), vote(&key, &network, 1, 1)],
            wal: vec![((1, 0), WalEntry::Vote(vote(&key, &network, 1, 0)))],
            ..Changes::default()
        },
        Changes {
            wal: vec![
                ((1, 1), WalEntry::Vote(vote(&key, &network, 1, 2))),
                ((2, 0), WalEntry::Vote(vote(&key, &network, 2, 0))),
            ],
            votes: vec![vote(&key, &network, 2, 0)],
            height: Some(2),
            ..Changes::default()
        },
    ];
    for changes in &steps {
        disk.commit(changes).expect("commits");
        memory.commit(changes).expect("commits");
        assert_eq!(disk.load().expect("loads"), memory.load().expect("loads"));
    }
    drop(disk);
    let mut disk = DiskStore::open(&dir).expect("reopens");
    let stored = disk.load().expect("loads");
    assert_eq!(stored, memory.load().expect("loads"));
    assert_eq!(
        stored.votes,
        vec![vote(&key, &network, 2, 0)],
        "height 1 pruned"
    );
    assert_eq!(stored.wal.len(), 1, "height 1's write-ahead entries pruned");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 14 point 10: a batch of inputs is made durable with one commit (one fsync on disk),
/// never skipped: nothing the batch led to can be polled before it, and every decision and id
/// of the batch is in the store once anything is.
#[test]
fn a_batch_of_requests_costs_one_commit_and_nothing_leaves_before_it() {
    let (key, config) = lone_member();
    let store = MemoryStore::default();
    let now = Instant::now();
    let mut member = Member::open(now, key, config, store.clone()).expect("an empty store opens");
    let before = store.commits();
    let requests: Vec<(SocketAddr, Vec<u8>, NodeIdRequest)> = (0..8u8)
        .map(|i| {
            let client = SocketAddr::from(([192, 0, 2, i + 1], 7000));
            let request = NodeIdRequest {
                key: [i; 32],
                addresses: vec![client],
                salt: 0,
            };
            let bytes = schema::encode(&Message::Request(request.clone()));
            (client, bytes, request)
        })
        .collect();
    member.handle_batch(
        now,
        requests
            .iter()
            .map(|(client, bytes, _)| (Peer::Client(*client), &bytes[..])),
    );
    assert_eq!(store.commits(), before + 1, "one commit for the batch");
    // The batch's height orders all eight, the next (empty) one finalizes them, both within
    // the call: every reply polled is for an id already stored.
    let mut replies = 0;
    while let Some(transmit) = member.poll_transmit() {
        if let Ok(Message::Reply(reply)) = schema::decode(&transmit.bytes) {
            let (_, _, request) = requests
                .iter()
                .find(|(client, _, _)| transmit.to == Peer::Client(*client))
                .expect("a reply goes to the client that asked");
            let stored = store.lookup(&request.key, request.salt);
            assert_eq!(stored.map(|id| id.node_id), Some(reply.body.node_id));
            replies += 1;
        }
    }
    assert_eq!(replies, 8, "every request of the batch answered");
    assert_eq!(
        member.log().heights().len(),
        2,
        "one height orders the whole batch, the next finalizes it"
    );
}
