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
use weft::consensus::schema::{self, Message};
use weft::consensus::signed::member_key;
use weft::consensus::store::disk::{DiskStore, STORE_FILE};
use weft::consensus::store::{STORE_FORMAT, StoreError};

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
