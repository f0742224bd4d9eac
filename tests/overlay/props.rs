//! Property tests of every overlay parser (team rule: every parser gets a proptest): values,
//! frames of every opcode and envelopes round-trip through their canonical bytes, and no input
//! makes a parser panic; whatever parses re-encodes to exactly the bytes it came from.

use proptest::prelude::*;
use weft::overlay::id::{Contact, NodeId};
use weft::overlay::kademlia::{PeerEntry, PublishedRecord, Record};
use weft::overlay::persist::codec;
use weft::overlay::rpc::NodeInfo;
use weft::overlay::rpc::envelope::Envelope;
use weft::overlay::rpc::{
    Body, ConnectionOpt, Frame, FrameLimits, Limits, Opcode, RecordMeta, Reply, ReplyBody, Request,
    Subnet, Value,
};
use weft::session::{Identity, PeerRecord};
use weft::wire::PeerId;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::UInt),
        (i64::MIN..0).prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN never equals itself", |x| !x.is_nan())
            .prop_map(Value::F64),
        ".{0,12}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bin),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..5)
                .prop_map(|m| Value::Map(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..40)
}

fn contact() -> impl Strategy<Value = Contact> {
    (
        any::<[u8; 20]>(),
        any::<[u8; 16]>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(id, peer, ip, port, v6)| Contact {
            id: NodeId(id),
            peer: PeerId(peer),
            addr: if v6 {
                std::net::SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(ip[0])], port))
            } else {
                std::net::SocketAddr::from((ip, port))
            },
        })
}

fn meta() -> impl Strategy<Value = RecordMeta> {
    (any::<u64>(), any::<u64>()).prop_map(|(version, ttl)| RecordMeta { version, ttl })
}

fn request() -> impl Strategy<Value = Request> {
    let body = prop_oneof![
        Just((Opcode::Ping, Body::Ping)),
        any::<u64>().prop_map(|m| (
            Opcode::SetConnectionOpt,
            Body::SetConnectionOpt(ConnectionOpt::Compression(m))
        )),
        any::<u64>().prop_map(|m| (
            Opcode::SetConnectionOpt,
            Body::SetConnectionOpt(ConnectionOpt::PreferredCompression(m))
        )),
        (any::<[u64; 5]>(), ".{0,8}", ".{0,8}").prop_map(|(n, transport, description)| (
            Opcode::SetConnectionOpt,
            Body::SetConnectionOpt(ConnectionOpt::Subnet(Subnet {
                k: n[0],
                alpha: n[1],
                tau: n[2],
                beta: n[3],
                ell: n[4],
                transport,
                description,
            }))
        )),
        any::<[u8; 20]>().prop_map(|id| (
            Opcode::SetConnectionOpt,
            Body::SetConnectionOpt(ConnectionOpt::NodeId(NodeId(id)))
        )),
        (any::<[u8; 20]>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(id, proof)| (
            Opcode::SetConnectionOpt,
            Body::SetConnectionOpt(ConnectionOpt::CertifiedId(NodeId(id), proof))
        )),
        (0usize..4, any::<[u8; 32]>(), any::<u64>(), value()).prop_map(
            |(which, seed, time, body)| {
                let op = [
                    Opcode::Announce,
                    Opcode::ChangeKey,
                    Opcode::Shout,
                    Opcode::Whisper,
                ][which];
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                (op, Body::Envelope(Envelope::sign(&key, time, op, body)))
            }
        ),
        value().prop_map(|v| (Opcode::Speak, Body::Speak(v))),
        any::<[u8; 20]>().prop_map(|t| (Opcode::FindNode, Body::FindNode(NodeId(t)))),
        key().prop_map(|key| (Opcode::FindValue, Body::FindValue { key })),
        (key(), value(), meta())
            .prop_map(|(key, value, meta)| (Opcode::Store, Body::Store { key, value, meta })),
        (key(), any::<u64>()).prop_map(|(key, lease)| (Opcode::Lock, Body::Lock { key, lease })),
        (key(), any::<u64>(), value()).prop_map(|(key, expected, value)| (
            Opcode::Cas,
            Body::Cas {
                key,
                expected,
                value
            }
        )),
        (
            key(),
            any::<u64>(),
            proptest::collection::btree_map("[a-z]{1,4}", value(), 0..4)
        )
            .prop_map(|(key, version, m)| (
                Opcode::Diff,
                Body::Diff {
                    key,
                    version,
                    patch: Value::Map(m.into_iter().collect())
                }
            )),
        (".{0,10}", value()).prop_map(|(name, body)| (Opcode::Custom, Body::Custom { name, body })),
    ];
    (body, any::<u32>()).prop_map(|((op, body), id)| Request { op, id, body })
}

fn reply() -> impl Strategy<Value = Reply> {
    let body = prop_oneof![
        proptest::collection::vec(
            (
                contact(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))
            ),
            0..20
        )
        .prop_map(|c| (
            Opcode::FindNode,
            ReplyBody::Nodes(
                c.into_iter()
                    .map(|(contact, record)| NodeInfo { contact, record })
                    .collect()
            )
        )),
        (key(), value(), meta()).prop_map(|(key, value, meta)| (
            Opcode::FindValue,
            ReplyBody::Found { key, value, meta }
        )),
        (key(), meta()).prop_map(|(key, meta)| (Opcode::Store, ReplyBody::Stored { key, meta })),
        (proptest::collection::vec(value(), 0..4), 2u64..16)
            .prop_filter("typed ACKs have their own bodies", |(_, op)| ![9, 10, 11]
                .contains(op))
            .prop_map(|(items, op)| (Opcode::from_u64(op).unwrap(), ReplyBody::Items(items))),
    ];
    (body, any::<u32>(), any::<bool>()).prop_map(|((op, body), id, ack)| {
        // A NACK's items are kept as they came, whatever the opcode.
        let body = match (ack, body) {
            (false, _) => ReplyBody::Items(vec![Value::Str("why".into())]),
            (true, body) => body,
        };
        Reply { ack, id, op, body }
    })
}

proptest! {
    #[test]
    fn values_round_trip(v in value()) {
        let bytes = v.encode();
        prop_assert_eq!(Value::decode(&bytes, Limits::default()), Ok(v));
    }

    #[test]
    fn requests_round_trip(r in request()) {
        let bytes = r.encode();
        prop_assert_eq!(Frame::parse(&bytes, &FrameLimits::default()), Ok(Frame::Request(r)));
    }

    #[test]
    fn replies_round_trip(r in reply()) {
        let bytes = r.encode();
        prop_assert_eq!(Frame::parse(&bytes, &FrameLimits::default()), Ok(Frame::Reply(r)));
    }

    #[test]
    fn envelopes_survive_the_trip_and_verify(seed in any::<[u8; 32]>(), time in any::<u64>(), body in value()) {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let envelope = Envelope::sign(&key, time, Opcode::Shout, body);
        let back = Envelope::from_value(&Value::decode(&envelope.to_value().encode(), Limits::default()).unwrap()).unwrap();
        prop_assert_eq!(back.verify(), Ok(()));
        prop_assert_eq!(back, envelope);
    }

    #[test]
    fn no_input_panics_and_what_parses_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = Value::decode(&bytes, Limits::default()) {
            prop_assert_eq!(v.encode(), bytes.clone());
            let _ = Envelope::from_value(&v).map(|e| e.verify());
        }
        if let Ok(frame) = Frame::parse(&bytes, &FrameLimits::default()) {
            prop_assert_eq!(frame.encode(), bytes);
        }
    }

    #[test]
    fn mutated_frames_never_panic(r in request(), at in any::<usize>(), to in any::<u8>()) {
        let mut bytes = r.encode();
        let at = at % bytes.len();
        bytes[at] = to;
        if let Ok(frame) = Frame::parse(&bytes, &FrameLimits::default()) {
            prop_assert_eq!(frame.encode(), bytes);
        }
    }

    #[test]
    fn stored_entries_round_trip(
        value in value(),
        times in any::<[u64; 4]>(),
        owner in proptest::option::of(any::<[u8; 16]>()),
        c in contact(),
        keys in any::<([u8; 32], [u8; 32])>(),
        node in proptest::option::of(any::<[u8; 20]>()),
        addrs in proptest::collection::vec(contact(), 0..9),
    ) {
        let [version, expires, next, stored] = times;
        let mut record = Record::new(value.clone(), version, expires, next, stored);
        record.owner = owner.map(PeerId);
        let bytes = codec::encode_record(&record);
        prop_assert_eq!(codec::decode_record(&bytes), Ok(record));
        let published = PublishedRecord { value, version, next };
        prop_assert_eq!(codec::decode_published(&codec::encode_published(&published)), Ok(published));
        prop_assert_eq!(codec::decode_contact(&codec::encode_contact(&c)), Ok(c));
        let identity = Identity::from_secret_bytes(keys.0, keys.1);
        let named: Vec<_> = addrs.iter().map(|a| a.addr).collect();
        let mut record = PeerRecord::sign(&identity, &named);
        record.node_id = node;
        let peer = PeerEntry { record, addr: c.addr, seen: stored };
        prop_assert_eq!(codec::decode_peer(&codec::encode_peer(&peer)), Ok(peer));
    }

    #[test]
    fn no_stored_entry_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(record) = codec::decode_record(&bytes) {
            prop_assert_eq!(codec::encode_record(&record), bytes.clone());
        }
        if let Ok(peer) = codec::decode_peer(&bytes) {
            prop_assert_eq!(codec::encode_peer(&peer), bytes.clone());
        }
        let _ = codec::decode_published(&bytes);
        let _ = codec::decode_contact(&bytes);
    }
}
