//! The RPC layer as a peer sees it, one node fed frames directly: every opcode it does not
//! serve yet is NACKed, forged envelopes and bad frames are dropped and counted, CUSTOM
//! handlers answer, the subnet descriptor disconnects a stranger, timeouts follow the RTT, and
//! a client stays out of tables.

use super::harness::contact;
use ed25519_dalek::SigningKey;
use std::time::{Duration, Instant};
use weft::overlay::id::{Contact, key_address};
use weft::overlay::kademlia::{Dht, Event, KademliaConfig, NOT_SERVED, Sender};
use weft::overlay::rpc::envelope::Envelope;
use weft::overlay::rpc::{
    Body, ConnectionOpt, Frame, Opcode, RecordMeta, Reply, ReplyBody, Request, Value,
};

pub(crate) fn config() -> KademliaConfig {
    KademliaConfig {
        per_subnet_cap: None,
        ..KademliaConfig::default()
    }
}

pub(crate) fn node(index: usize, config: KademliaConfig) -> Dht {
    Dht::new(config, contact(7, index), [index as u8; 32])
}

pub(crate) fn sender(of: &Dht) -> Sender {
    Sender {
        peer: of.own().peer,
        addr: of.own().addr,
        node: of.advertised_id(),
    }
}

pub(crate) fn from(contact: &Contact) -> Sender {
    Sender {
        peer: contact.peer,
        addr: contact.addr,
        node: Some(contact.id),
    }
}

/// Feeds `bytes` to `dht` from `who` and returns the one reply it sends, if any.
pub(crate) fn ask(dht: &mut Dht, now: Instant, who: Sender, bytes: &[u8]) -> Option<Reply> {
    dht.handle(now, 1_000, who, bytes);
    let transmit = dht.poll_transmit()?;
    assert!(dht.poll_transmit().is_none(), "one request, one reply");
    match Frame::parse(&transmit.bytes, &Default::default()).unwrap() {
        Frame::Reply(reply) => Some(reply),
        Frame::Request(r) => panic!("expected a reply, got {r:?}"),
    }
}

/// Moves every frame between `a` and `b` until both are quiet.
pub(crate) fn exchange(a: &mut Dht, b: &mut Dht, now: Instant) {
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            assert_eq!(t.peer, b.own().peer);
            let who = sender(a);
            b.handle(now, 1_000, who, &t.bytes);
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            assert_eq!(t.peer, a.own().peer);
            let who = sender(b);
            a.handle(now, 1_000, who, &t.bytes);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

pub(crate) fn dropped(dht: &Dht, reason: &str) -> u64 {
    dht.stats()
        .iter()
        .filter(|e| e.name == "weft_overlay_dropped_total" && e.label == Some(("reason", reason)))
        .map(|e| e.value)
        .sum()
}

/// Asserts `reply` is a NACK whose one item is `reason`.
fn assert_nacked(reply: &Reply, reason: &str) {
    assert!(!reply.ack, "{reply:?} was acknowledged");
    assert_eq!(
        reply.body,
        ReplyBody::Items(vec![Value::Str(reason.into())])
    );
}

/// A fresh node and, already in its hand, a peer that asks it things.
fn served() -> (Instant, Dht, Sender) {
    (Instant::now(), node(1, config()), from(&contact(7, 2)))
}

pub(crate) fn request(op: Opcode, id: u32, body: Body) -> Vec<u8> {
    Request { op, id, body }.encode()
}

/// A STORE of nil under `k` for a minute.
fn store_nil(id: u32) -> Vec<u8> {
    let meta = RecordMeta {
        version: 0,
        ttl: 60,
    };
    let key = b"k".to_vec();
    request(
        Opcode::Store,
        id,
        Body::Store {
            key,
            value: Value::Nil,
            meta,
        },
    )
}

#[test]
fn opcodes_not_served_yet_are_nacked() {
    let (now, mut b, asker) = served();
    let key = SigningKey::from_bytes(&[9; 32]);
    let k = b"k".to_vec();
    let cases = [
        (Opcode::Speak, Body::Speak(Value::Str("hi".into()))),
        (
            Opcode::Lock,
            Body::Lock {
                key: k.clone(),
                lease: 30,
            },
        ),
        (
            Opcode::Cas,
            Body::Cas {
                key: k.clone(),
                expected: 1,
                value: Value::Nil,
            },
        ),
        (
            Opcode::Diff,
            Body::Diff {
                key: k.clone(),
                version: 1,
                patch: Value::Map(vec![]),
            },
        ),
        (
            Opcode::Announce,
            Body::Envelope(Envelope::sign(&key, 5, Opcode::Announce, Value::Nil)),
        ),
        (
            Opcode::ChangeKey,
            Body::Envelope(Envelope::sign(&key, 5, Opcode::ChangeKey, Value::Nil)),
        ),
        (
            Opcode::Shout,
            Body::Envelope(Envelope::sign(&key, 5, Opcode::Shout, Value::Nil)),
        ),
        (
            Opcode::Whisper,
            Body::Envelope(Envelope::sign(&key, 5, Opcode::Whisper, Value::Nil)),
        ),
    ];
    for (id, (op, body)) in cases.into_iter().enumerate() {
        let reply = ask(&mut b, now, asker, &request(op, id as u32, body))
            .unwrap_or_else(|| panic!("{op:?} got no answer"));
        assert_eq!((reply.id, reply.op), (id as u32, op));
        assert_nacked(&reply, NOT_SERVED);
    }
}

#[test]
fn forged_envelopes_of_unserved_ops_cost_no_signature_check_and_bad_frames_are_counted() {
    let (now, mut b, asker) = served();
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut forged = Envelope::sign(&key, 5, Opcode::Shout, Value::Str("a".into()));
    forged.body = Value::Str("b".into());
    // Attack on the overlay (docs/SECURITY.md): SHOUT is not served, so its NACK does not
    // depend on the signature, and a peer's frames must not buy a signature check each.
    let reply = ask(
        &mut b,
        now,
        asker,
        &request(Opcode::Shout, 1, Body::Envelope(forged)),
    )
    .expect("NACKed");
    assert_nacked(&reply, NOT_SERVED);
    assert_eq!(dropped(&b, "envelope_forged"), 0, "never checked");

    for (bytes, reason) in [
        (&[0xc1][..], "malformed"),
        (&[0x93, 0x02, 0x01][..], "malformed"),
        (&[0x93, 0x02, 0x01, 0xcc, 0x05][..], "not_canonical"),
        (&[0x92, 0x02, 0x01][..], "frame"),
        (&[0x93, 0x10, 0x01, 0xc0][..], "frame"),
        (&[0x93, 0x09, 0x01, 0xc0][..], "body"),
    ] {
        assert_eq!(ask(&mut b, now, asker, bytes), None, "{bytes:02x?}");
        assert!(
            dropped(&b, reason) >= 1,
            "{bytes:02x?} not counted as {reason}"
        );
    }
    // A STORE whose address is not its key's.
    let mut store = store_nil(2);
    let address = key_address(b"k").0;
    let at = store.windows(20).position(|w| w == address).unwrap();
    store[at] ^= 1;
    assert_eq!(ask(&mut b, now, asker, &store), None);
    assert_eq!(dropped(&b, "address_mismatch"), 1);
    assert_eq!(b.records().len(), 0);
    let too_big = vec![0u8; KademliaConfig::default().frame.value.max_bytes + 1];
    assert_eq!(ask(&mut b, now, asker, &too_big), None);
    assert_eq!(dropped(&b, "too_large"), 1);
}

#[test]
fn custom_handlers_answer_by_name() {
    let now = Instant::now();
    let mut a = node(1, config());
    let mut b = node(2, config());
    b.register_custom(
        "double",
        Box::new(|_, body| match body {
            Value::UInt(n) => Ok(Value::UInt(n * 2)),
            _ => Err("not a number".into()),
        }),
    );
    let to = *b.own();
    for (token, name, body) in [
        (1, "double", Value::UInt(21)),
        (2, "double", Value::Nil),
        (3, "missing", Value::Nil),
    ] {
        let body = Body::Custom {
            name: name.into(),
            body,
        };
        assert!(a.request(now, &to, Opcode::Custom, body, token));
    }
    exchange(&mut a, &mut b, now);
    let replies: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert_eq!(replies.len(), 3);
    let Event::Reply { token: 1, reply } = &replies[0] else {
        panic!("{replies:?}")
    };
    assert!(reply.ack);
    assert_eq!(reply.body, ReplyBody::Items(vec![Value::UInt(42)]));
    for (event, reason) in replies[1..].iter().zip(["not a number", "no such handler"]) {
        let Event::Reply { reply, .. } = event else {
            panic!("{event:?}")
        };
        assert_nacked(reply, reason);
    }
}

#[test]
fn connection_options_accept_what_is_read_and_a_stranger_is_disconnected() {
    let (now, mut b, asker) = served();
    let opt = |id, opt| request(Opcode::SetConnectionOpt, id, Body::SetConnectionOpt(opt));
    assert!(
        ask(&mut b, now, asker, &opt(1, ConnectionOpt::Compression(0)))
            .unwrap()
            .ack
    );
    // zlib (4) is read; 7 is no method.
    assert!(
        ask(&mut b, now, asker, &opt(2, ConnectionOpt::Compression(4)))
            .unwrap()
            .ack
    );
    assert!(
        !ask(&mut b, now, asker, &opt(2, ConnectionOpt::Compression(7)))
            .unwrap()
            .ack
    );
    let same = config().subnet();
    assert!(
        ask(
            &mut b,
            now,
            asker,
            &opt(3, ConnectionOpt::Subnet(same.clone()))
        )
        .unwrap()
        .ack
    );
    assert_eq!(b.poll_event(), None);
    let other = weft::overlay::rpc::Subnet {
        description: "another network".into(),
        ..same
    };
    assert!(
        !ask(&mut b, now, asker, &opt(4, ConnectionOpt::Subnet(other)))
            .unwrap()
            .ack
    );
    assert_eq!(b.poll_event(), Some(Event::Disconnect { peer: asker.peer }));
}

#[test]
fn request_timeouts_follow_the_measured_rtt() {
    let start = Instant::now();
    let mut a = node(1, config());
    let mut b = node(2, config());
    let to = *b.own();
    // The first request to an unmeasured peer waits the initial timeout.
    a.bootstrap(start, &[to]);
    let initial = a.config().timeouts.initial;
    assert_eq!(a.poll_timeout(), Some(start + initial));
    // b answers 40 ms later: the sample is taken.
    let later = start + Duration::from_millis(40);
    exchange(&mut a, &mut b, later);
    for n in 0..10u64 {
        let now = later + Duration::from_millis(40 * n);
        a.request(now, &to, Opcode::Ping, Body::Ping, n);
        exchange(&mut a, &mut b, now + Duration::from_millis(40));
    }
    // Now a request to b times out well before the initial second.
    let now = later + Duration::from_secs(1);
    a.handle_timeout(now, 1_000);
    a.request(now, &to, Opcode::Ping, Body::Ping, 99);
    let _ = a.poll_transmit();
    let deadline = a.poll_timeout().unwrap();
    assert!(
        deadline <= now + Duration::from_millis(200),
        "timeout {:?} after a 40 ms RTT",
        deadline - now
    );
    a.handle_timeout(deadline, 1_000);
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        events.contains(&Event::TimedOut { token: 99 }),
        "{events:?}"
    );
}

#[test]
fn a_client_is_answered_but_stays_out_of_tables() {
    let now = Instant::now();
    let mut client = node(
        1,
        KademliaConfig {
            client: true,
            ..config()
        },
    );
    let mut server = node(2, config());
    assert_eq!(client.advertised_id(), None);
    client.bootstrap(now, &[*server.own()]);
    exchange(&mut client, &mut server, now);
    assert_eq!(
        server.table().len(),
        0,
        "the client entered the server's table"
    );
    assert_eq!(client.table().len(), 1);
    // A client refuses to hold records for others.
    let store = store_nil(5);
    let reply = ask(&mut client, now, sender(&server), &store).unwrap();
    assert!(!reply.ack);
}

#[test]
fn store_then_find_value() {
    let (now, mut b, asker) = served();
    let store = request(
        Opcode::Store,
        1,
        Body::Store {
            key: b"k".to_vec(),
            value: Value::Str("v".into()),
            meta: RecordMeta {
                version: 3,
                ttl: 60,
            },
        },
    );
    let reply = ask(&mut b, now, asker, &store).unwrap();
    assert_eq!(
        reply.body,
        ReplyBody::Stored {
            key: b"k".to_vec(),
            meta: RecordMeta {
                version: 3,
                ttl: 60
            }
        }
    );
    let find = request(Opcode::FindValue, 2, Body::FindValue { key: b"k".to_vec() });
    let reply = ask(&mut b, now, asker, &find).unwrap();
    assert!(
        matches!(reply.body, ReplyBody::Found { ref value, .. } if *value == Value::Str("v".into()))
    );
    // An unknown key is answered as a FIND_NODE: the asker is in b's table now, and left out.
    let find = request(Opcode::FindValue, 3, Body::FindValue { key: b"x".to_vec() });
    let reply = ask(&mut b, now, asker, &find).unwrap();
    assert_eq!(
        (reply.op, reply.body),
        (Opcode::FindNode, ReplyBody::Nodes(vec![]))
    );
}
