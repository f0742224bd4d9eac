//! Issue 15's review, read as a hostile peer would: each finding's regression test (its input
//! is also in `fuzz/corpus/overlay/`, named `review-*`). Certified ids only in tables, client
//! mode without one; a lookup's reply from another id or for another key is not taken; a
//! replication pass starts no more lookups than fit; a map of many keys costs one sort; a probe
//! that could not be sent does not freeze its bucket.

use super::harness::contact;
use super::rpc::{ask, config, dropped, exchange, from, node, request, sender};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use weft::overlay::id::{Contact, NodeId};
use weft::overlay::kademlia::{CertificateCheck, Dht, Event, KademliaConfig, Sender};
use weft::overlay::rpc::{
    Body, Frame, FrameLimits, Limits, Opcode, RecordMeta, Reply, ReplyBody, Request, Value,
    ValueError,
};
use weft::wire::PeerId;

/// Certifies exactly the (id, peer) pairs it was given.
pub(crate) struct Fake(BTreeSet<(NodeId, PeerId)>);

impl Fake {
    fn of(contacts: &[Contact]) -> Box<Fake> {
        Box::new(Fake(contacts.iter().map(|c| (c.id, c.peer)).collect()))
    }
}

impl CertificateCheck for Fake {
    fn certified(&self, node: &NodeId, peer: &PeerId) -> bool {
        self.0.contains(&(*node, *peer))
    }
}

/// The finding's input is in the fuzz corpus, byte for byte (`WEFT_WRITE_CORPUS=1` writes it).
pub(crate) fn corpus(name: &str, bytes: &[u8]) {
    let path = format!("fuzz/corpus/overlay/{name}");
    if std::env::var_os("WEFT_WRITE_CORPUS").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    assert_eq!(std::fs::read(&path).ok().as_deref(), Some(bytes), "{path}");
}

pub(crate) fn counted(dht: &Dht, name: &str) -> u64 {
    dht.stats()
        .iter()
        .filter(|e| e.name == name)
        .map(|e| e.value)
        .sum()
}

fn ping(id: u32) -> Vec<u8> {
    request(Opcode::Ping, id, Body::Ping)
}

/// The one request `dht` sends next.
pub(crate) fn sent(dht: &mut Dht) -> (weft::overlay::kademlia::Transmit, Request) {
    let t = dht.poll_transmit().expect("a request");
    match Frame::parse(&t.bytes, &FrameLimits::default()).unwrap() {
        Frame::Request(r) => (t, r),
        Frame::Reply(r) => panic!("expected a request, got {r:?}"),
    }
}

#[test]
fn only_certified_ids_enter_the_table_and_an_uncertified_node_is_a_client() {
    let now = Instant::now();
    let (a, b, c) = (contact(7, 1), contact(7, 2), contact(7, 3));
    let mut dht = node(1, config());
    dht.set_certificate_check(Fake::of(&[a, b]));
    assert!(ask(&mut dht, now, from(&b), &ping(1)).unwrap().ack);
    // c claims an id nobody certified: answered, as a client is, but kept out.
    assert!(ask(&mut dht, now, from(&c), &ping(2)).unwrap().ack);
    assert!(dht.table().get(&b.id).is_some());
    assert!(dht.table().get(&c.id).is_none());
    assert_eq!(counted(&dht, "weft_overlay_uncertified_total"), 1);
    // b's id claimed by c's peer is not b's certificate either.
    let impostor = Sender {
        node: Some(b.id),
        ..from(&c)
    };
    ask(&mut dht, now, impostor, &ping(3));
    assert_eq!(counted(&dht, "weft_overlay_uncertified_total"), 2);

    // A node whose own id is not certified (yet) is a client: no id told, no records held.
    let mut uncertified = node(1, config());
    uncertified.set_certificate_check(Fake::of(&[b]));
    assert!(uncertified.is_client());
    assert_eq!(uncertified.advertised_id(), None);
    let store = request(
        Opcode::Store,
        4,
        Body::Store {
            key: b"k".to_vec(),
            value: Value::Nil,
            meta: RecordMeta { version: 0, ttl: 9 },
        },
    );
    let reply = ask(&mut uncertified, now, from(&b), &store).unwrap();
    assert!(!reply.ack);
    assert!(uncertified.records().is_empty());
}

/// `getter` with `hostile` in its table, looking `key` up: returns the FIND_VALUE it sent.
fn looking_up(key: &[u8]) -> (Instant, Dht, Contact, Request) {
    let now = Instant::now();
    let hostile = contact(7, 9);
    let mut getter = node(1, config());
    ask(&mut getter, now, from(&hostile), &ping(1)).unwrap();
    getter.get(now, key, 77);
    let (t, r) = sent(&mut getter);
    assert_eq!(t.peer, hostile.peer);
    (now, getter, hostile, r)
}

/// The node id the FIND_NODE tests look up.
pub(crate) const TARGET: NodeId = NodeId([0x42; 20]);

/// `getter` with `hostile` in its table, looking [`TARGET`] up: returns the FIND_NODE it sent.
pub(crate) fn finding_node(getter: &mut Dht, now: Instant, hostile: &Contact) -> Request {
    ask(getter, now, from(hostile), &ping(1)).unwrap();
    getter.find_node(now, TARGET, 77);
    sent(getter).1
}

/// An answer to `asked` that lists `contacts`.
pub(crate) fn nodes(asked: &Request, contacts: Vec<Contact>) -> Reply {
    Reply {
        ack: true,
        id: asked.id,
        op: Opcode::FindNode,
        body: ReplyBody::Nodes(contacts.into_iter().map(Into::into).collect()),
    }
}

pub(crate) fn lookup_result(dht: &mut Dht) -> weft::overlay::kademlia::LookupResult {
    std::iter::from_fn(|| dht.poll_event())
        .find_map(|e| match e {
            Event::Lookup { token: 77, result } => Some(result),
            _ => None,
        })
        .expect("the lookup finished")
}

#[test]
fn a_found_value_for_another_key_is_not_taken() {
    let (now, mut getter, hostile, asked) = looking_up(b"wanted");
    let answer = Reply {
        ack: true,
        id: asked.id,
        op: Opcode::FindValue,
        body: ReplyBody::Found {
            key: b"other".to_vec(),
            value: Value::Str("poison".into()),
            meta: RecordMeta {
                version: 9,
                ttl: 60,
            },
        },
    };
    corpus("review-found-wrong-key", &answer.encode());
    getter.handle(now, 1_000, from(&hostile), &answer.encode());
    let result = lookup_result(&mut getter);
    assert_eq!(result.found, None, "a value for another key was taken");
    assert_eq!(dropped(&getter, "wrong_key"), 1);
    // Nor is a poisoned value cached anywhere: no STORE went out.
    assert!(getter.poll_transmit().is_none());
}

#[test]
fn a_reply_from_a_peer_under_another_id_is_not_taken() {
    let now = Instant::now();
    let hostile = contact(7, 9);
    let mut getter = node(1, config());
    let mut honest = node(3, config());
    let asked = finding_node(&mut getter, now, &hostile);
    // The hostile peer pairs the honest peer with a made-up id right at the target.
    let fake = Contact {
        id: TARGET,
        ..*honest.own()
    };
    let answer = nodes(&asked, vec![fake]);
    corpus("review-made-up-id", &answer.encode());
    getter.handle(now, 1_000, from(&hostile), &answer.encode());
    // The honest peer answers under its own certified id.
    exchange(&mut getter, &mut honest, now);
    let result = lookup_result(&mut getter);
    assert!(
        result.closest.iter().all(|c| c.id != TARGET),
        "the made-up id counts as answered"
    );
    assert_eq!(dropped(&getter, "wrong_node"), 1);
}

#[test]
fn replication_starts_no_more_lookups_than_fit_and_every_record_gets_its_turn() {
    let now = Instant::now();
    // Refresh off: its lookups would take the slots this test counts.
    let limited = KademliaConfig {
        max_lookups: 4,
        refresh: None,
        ..config()
    };
    let mut holder = node(1, limited);
    let mut peer = node(2, config());
    let keys: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 3]).collect();
    for (i, key) in keys.iter().enumerate() {
        let store = request(
            Opcode::Store,
            i as u32,
            Body::Store {
                key: key.clone(),
                value: Value::UInt(i as u64),
                meta: RecordMeta {
                    version: 0,
                    ttl: 48 * 3600,
                },
            },
        );
        assert!(ask(&mut holder, now, sender(&peer), &store).unwrap().ack);
    }
    // Past the hourly replication, one maintenance pass every 10 s.
    let wall = 1_000 + 3_601;
    let mut at = now;
    for _ in 0..10 {
        at += Duration::from_secs(11);
        holder.handle_timeout(at, wall);
        assert!(holder.lookups() <= 4);
        exchange(&mut holder, &mut peer, at);
    }
    assert_eq!(
        dropped(&holder, "lookups_full"),
        0,
        "replication was skipped"
    );
    for key in &keys {
        assert!(
            peer.records().get(key, wall).is_some(),
            "{key:?} never replicated"
        );
    }
}

#[test]
fn a_map_of_many_keys_is_checked_for_repeats_in_one_sort() {
    // 10,000 distinct keys in under 64 KiB: the old check compared each with all before it.
    let entries: Vec<(String, Value)> = (0..10_000u32)
        .map(|i| (format!("{i:x}"), Value::Nil))
        .collect();
    let body = Value::Map(entries.clone());
    let speak = request(Opcode::Speak, 1, Body::Speak(body));
    assert!(speak.len() < 64 * 1024);
    corpus("review-many-keys", &speak);
    assert!(Frame::parse(&speak, &FrameLimits::default()).is_ok());
    let mut repeated = entries;
    repeated.push(("0".into(), Value::Nil));
    assert_eq!(
        Value::decode(&Value::Map(repeated).encode(), Limits::default()),
        Err(ValueError::Malformed)
    );
}

#[test]
fn a_probe_that_could_not_be_sent_does_not_freeze_its_bucket() {
    let now = Instant::now();
    let tight = KademliaConfig {
        k: 1,
        max_pending: 1,
        ..config()
    };
    let mut dht = node(1, tight);
    let own = dht.own().id;
    // Three peers of one bucket (the far half of the id space).
    let peer = |n: u8| {
        let mut id = own.with_bit_flipped(0);
        id.0[19] ^= n;
        Contact {
            id,
            peer: PeerId([n; 16]),
            addr: ([10, 0, 0, n], 7000).into(),
        }
    };
    let (b, c, d) = (peer(1), peer(2), peer(3));
    // The one request slot is taken.
    let elsewhere = contact(7, 30);
    assert!(dht.request(now, &elsewhere, Opcode::Ping, Body::Ping, 5));
    while dht.poll_transmit().is_some() {}
    ask(&mut dht, now, from(&b), &ping(1));
    // c finds the bucket full; the probe of b cannot be sent.
    ask(&mut dht, now, from(&c), &ping(2));
    // The slot frees; d arrives: b must be probed now.
    dht.handle_timeout(now + Duration::from_secs(2), 1_000);
    while dht.poll_event().is_some() {}
    dht.handle(now + Duration::from_secs(2), 1_000, from(&d), &ping(3));
    let probes: Vec<_> = std::iter::from_fn(|| dht.poll_transmit())
        .filter(|t| t.peer == b.peer)
        .collect();
    assert_eq!(probes.len(), 1, "the bucket stopped probing");
}

#[test]
fn the_store_entries_are_in_the_fuzz_corpus() {
    use weft::overlay::kademlia::Record;
    use weft::overlay::persist::codec;
    let mut record = Record::new(
        Value::Str("v".into()),
        3,
        1_800_172_800,
        1_800_003_600,
        1_800_000_000,
    );
    record.owner = Some(PeerId([2; 16]));
    corpus("store-record", &codec::encode_record(&record));
    let identity = weft::session::Identity::from_secret_bytes([1; 32], [2; 32]);
    let address = ([10, 0, 0, 1], 7700).into();
    let peer = weft::overlay::kademlia::PeerEntry {
        record: weft::session::PeerRecord::sign(&identity, &[address]),
        addr: address,
        seen: 1_800_000_000,
    };
    corpus("store-peer", &codec::encode_peer(&peer));
}

#[test]
fn uncertified_contacts_of_a_reply_are_not_asked_and_an_unannounced_peer_still_counts() {
    let now = Instant::now();
    let hostile = contact(7, 9);
    let honest = contact(7, 3);
    let mut getter = node(1, config());
    getter.set_certificate_check(Fake::of(&[*getter.own(), hostile, honest]));
    let asked = finding_node(&mut getter, now, &hostile);
    let fake = Contact {
        id: TARGET,
        ..honest
    };
    let answer = nodes(&asked, vec![fake, honest]);
    // The hostile peer answers without telling its id (a driver that learned none): its
    // certified contact id still makes the answer count.
    let unannounced = Sender {
        node: None,
        ..from(&hostile)
    };
    getter.handle(now, 1_000, unannounced, &answer.encode());
    let (t, _) = sent(&mut getter);
    assert_eq!(t.peer, honest.peer);
    assert!(
        getter.poll_transmit().is_none(),
        "the made-up id was asked too"
    );
    assert_eq!(counted(&getter, "weft_overlay_uncertified_total"), 1);
    assert_eq!(dropped(&getter, "wrong_node"), 0);
}
