//! Round trips, rejections and robustness of the wire format (PROTOCOL.md §3, §4).

use std::collections::HashSet;

use proptest::collection::vec;
use proptest::prelude::*;
use weft::wire::{
    self, Capabilities, ChannelId, CloseReason, ErrorKind, Flags, HEADER_LEN, Header, Message,
    MessageType, Packet, PacketWriter, PeerId, SEQUENCED_HEADER_LEN, TAG_LEN, WireError, emit_ack,
    parse_payload, varint,
};

// ---------------------------------------------------------------------------------------------
// Owned message descriptions, from which borrowed `Message`s are made.

#[derive(Clone, Debug)]
enum Spec {
    StartEncryption(Vec<u8>),
    Init {
        kind: u8,
        sender_index: u32,
        handshake: Vec<u8>,
        mac1: [u8; 16],
        cookie: Option<[u8; 16]>,
    },
    Response(u32, u32, Vec<u8>),
    Cookie(u32, [u8; 16], [u8; 16]),
    Final(u32, u32, Vec<u8>),
    ChannelNew(u16, [u8; 16]),
    ChannelAcknowledge(ChannelId, [u8; 16], [u8; 16]),
    ChannelFinalize(ChannelId, [u8; 16], Capabilities),
    ChannelCookie([u8; 16], Capabilities),
    ChannelClose(ChannelId, CloseReason),
    Data(u64, Vec<u8>),
    Fragment {
        message_number: u64,
        total_length: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// The ranges, the delay, and the encoded message (so a parsed `Ack` can borrow it).
    Ack(Vec<(u64, u64)>, u64, Vec<u8>),
    Window(u64, u64),
    Ping([u8; 8]),
    PmtuProbe(usize),
    Reset(u8),
    Pong([u8; 8]),
}

impl Spec {
    fn msg(&self) -> Message<'_> {
        match self {
            Spec::StartEncryption(c) => Message::StartEncryption { ciphertext: c },
            Spec::Init {
                kind,
                sender_index,
                handshake,
                mac1,
                cookie,
            } => Message::HandshakeInit {
                kind: *kind,
                sender_index: *sender_index,
                handshake,
                mac1,
                cookie: cookie.as_ref(),
            },
            Spec::Response(s, r, h) => Message::HandshakeResponse {
                sender_index: *s,
                receiver_index: *r,
                handshake: h,
            },
            Spec::Cookie(r, cookie, echo) => Message::HandshakeCookie {
                receiver_index: *r,
                cookie,
                echo,
            },
            Spec::Final(s, r, h) => Message::HandshakeFinal {
                sender_index: *s,
                receiver_index: *r,
                handshake: h,
            },
            Spec::ChannelNew(c1, cookie1) => Message::ChannelNew { c1: *c1, cookie1 },
            Spec::ChannelAcknowledge(channel, cookie1, cookie2) => Message::ChannelAcknowledge {
                channel: *channel,
                cookie1,
                cookie2,
            },
            Spec::ChannelFinalize(channel, cookie2, capabilities) => Message::ChannelFinalize {
                channel: *channel,
                cookie2,
                capabilities: *capabilities,
            },
            Spec::ChannelCookie(cookie2, capabilities) => Message::ChannelCookie {
                cookie2,
                capabilities: *capabilities,
            },
            Spec::ChannelClose(channel, reason) => Message::ChannelClose {
                channel: *channel,
                reason: *reason,
            },
            Spec::Data(n, payload) => Message::Data {
                message_number: *n,
                payload,
            },
            Spec::Fragment {
                message_number,
                total_length,
                offset,
                bytes,
            } => Message::DataFragment {
                message_number: *message_number,
                total_length: *total_length,
                offset: *offset,
                bytes,
            },
            Spec::Ack(_, _, encoded) => Message::parse(encoded).expect("emitted ACK parses").0,
            Spec::Window(max_message, max_bytes) => Message::Window {
                max_message: *max_message,
                max_bytes: *max_bytes,
            },
            Spec::Ping(token) => Message::Ping { token },
            Spec::PmtuProbe(len) => Message::PmtuProbe { len: *len },
            Spec::Reset(reason) => Message::Reset { reason: *reason },
            Spec::Pong(token) => Message::Pong { token },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// u64s that hit every varint length boundary as well as arbitrary values.
fn varint_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..300u64,
        any::<u64>(),
        (1..10u32).prop_map(|k| (1u64 << (7 * k)) - 1),
        (1..10u32).prop_map(|k| 1u64 << (7 * k)),
        Just(u64::MAX),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn established_channel() -> impl Strategy<Value = ChannelId> {
    (1..=u16::MAX, 1..=u16::MAX).prop_map(|(c1, c2)| ChannelId::new(c1, c2))
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    (0..8u8).prop_map(|b| Capabilities::from_bits(b).expect("bits 0..=2"))
}

fn start_encryption() -> impl Strategy<Value = Spec> {
    vec(any::<u8>(), TAG_LEN..TAG_LEN + 64).prop_map(Spec::StartEncryption)
}

fn init() -> impl Strategy<Value = Spec> {
    (
        1..=3u8,
        any::<u32>(),
        bytes(120),
        any::<[u8; 16]>(),
        any::<Option<[u8; 16]>>(),
    )
        .prop_map(|(kind, sender_index, handshake, mac1, cookie)| Spec::Init {
            kind,
            sender_index,
            handshake,
            mac1,
            cookie,
        })
}

fn response() -> impl Strategy<Value = Spec> {
    (any::<u32>(), any::<u32>(), bytes(80)).prop_map(|(s, r, h)| Spec::Response(s, r, h))
}

fn handshake_final() -> impl Strategy<Value = Spec> {
    (any::<u32>(), any::<u32>(), bytes(80)).prop_map(|(s, r, h)| Spec::Final(s, r, h))
}

fn cookie() -> impl Strategy<Value = Spec> {
    (any::<u32>(), any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(r, c, e)| Spec::Cookie(r, c, e))
}

fn channel_new() -> impl Strategy<Value = Spec> {
    (1..=u16::MAX, any::<[u8; 16]>()).prop_map(|(c1, k)| Spec::ChannelNew(c1, k))
}

fn channel_acknowledge() -> impl Strategy<Value = Spec> {
    (established_channel(), any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_map(|(c, k1, k2)| Spec::ChannelAcknowledge(c, k1, k2))
}

fn channel_finalize() -> impl Strategy<Value = Spec> {
    (established_channel(), any::<[u8; 16]>(), capabilities())
        .prop_map(|(c, k2, caps)| Spec::ChannelFinalize(c, k2, caps))
}

fn channel_cookie() -> impl Strategy<Value = Spec> {
    (any::<[u8; 16]>(), capabilities()).prop_map(|(k2, caps)| Spec::ChannelCookie(k2, caps))
}

fn channel_close() -> impl Strategy<Value = Spec> {
    (established_channel(), any::<u8>())
        .prop_map(|(c, reason)| Spec::ChannelClose(c, CloseReason::from(reason)))
}

fn data() -> impl Strategy<Value = Spec> {
    (varint_value(), bytes(200)).prop_map(|(n, p)| Spec::Data(n, p))
}

fn fragment() -> impl Strategy<Value = Spec> {
    (varint_value(), 0..u64::MAX / 2, 0..1000u64, bytes(100)).prop_map(
        |(message_number, offset, extra, bytes)| Spec::Fragment {
            message_number,
            // Non-zero, and the piece lies within it.
            total_length: (offset + bytes.len() as u64 + extra).max(1),
            offset,
            bytes,
        },
    )
}

fn ack() -> impl Strategy<Value = Spec> {
    (
        varint_value(),
        varint_value(),
        vec((0..1000u64, 0..1000u64), 0..12),
        varint_value(),
    )
        .prop_map(|(largest, first_range, pairs, delay)| {
            let mut low = largest.saturating_sub(first_range);
            let mut ranges = vec![(low, largest)];
            for (gap, len) in pairs {
                let Some(high) = low.checked_sub(gap + 2) else {
                    break;
                };
                let Some(next_low) = high.checked_sub(len) else {
                    break;
                };
                ranges.push((next_low, high));
                low = next_low;
            }
            let mut buf = vec![0u8; 512];
            let n = emit_ack(&ranges, delay, &mut buf).expect("valid ranges");
            buf.truncate(n);
            Spec::Ack(ranges, delay, buf)
        })
}

fn window() -> impl Strategy<Value = Spec> {
    (varint_value(), varint_value()).prop_map(|(m, b)| Spec::Window(m, b))
}

fn ping() -> impl Strategy<Value = Spec> {
    any::<[u8; 8]>().prop_map(Spec::Ping)
}

fn pong() -> impl Strategy<Value = Spec> {
    any::<[u8; 8]>().prop_map(Spec::Pong)
}

fn pmtu_probe() -> impl Strategy<Value = Spec> {
    (0..300usize).prop_map(Spec::PmtuProbe)
}

fn reset() -> impl Strategy<Value = Spec> {
    any::<u8>().prop_map(Spec::Reset)
}

fn any_message() -> impl Strategy<Value = Spec> {
    prop_oneof![
        start_encryption(),
        init(),
        response(),
        cookie(),
        handshake_final(),
        channel_new(),
        channel_acknowledge(),
        channel_finalize(),
        channel_cookie(),
        channel_close(),
        data(),
        fragment(),
        ack(),
        window(),
        ping(),
        pmtu_probe(),
        reset(),
        pong(),
    ]
}

/// Messages that may stand anywhere in a default-channel packet.
fn default_channel_message() -> BoxedStrategy<Spec> {
    prop_oneof![
        response(),
        cookie(),
        handshake_final(),
        channel_new(),
        channel_acknowledge(),
        channel_finalize(),
        channel_close(),
        ping(),
        pmtu_probe(),
        reset(),
        pong(),
    ]
    .boxed()
}

/// Messages that may stand anywhere in a non-default-channel packet.
fn channel_message() -> BoxedStrategy<Spec> {
    prop_oneof![
        channel_close(),
        data(),
        fragment(),
        ack(),
        window(),
        ping(),
        pmtu_probe(),
        pong(),
    ]
    .boxed()
}

fn peer_id() -> impl Strategy<Value = PeerId> {
    any::<[u8; 16]>().prop_map(|mut b| {
        b[0] |= 1;
        PeerId(b)
    })
}

#[derive(Clone, Debug)]
struct PacketSpec {
    header: Header,
    messages: Vec<Spec>,
    /// Bytes of padding to add.
    pad: usize,
}

fn packet_spec() -> impl Strategy<Value = PacketSpec> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (peer_id(), peer_id(), 0..4u8),
        (
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0usize), 1..48usize],
        ),
    )
        .prop_flat_map(|(header_bits, ids, shape)| {
            let (default, encrypted, key_phase, channel, sequence) = header_bits;
            let (sender, recipient, zero_recipient) = ids;
            let (head, tail, pad) = shape;
            let pool = if default {
                default_channel_message()
            } else {
                channel_message()
            };
            let head = match (head, default) {
                (false, _) => Just(None).boxed(),
                (true, true) => init().prop_map(Some).boxed(),
                (true, false) => channel_cookie().prop_map(Some).boxed(),
            };
            let tail = if tail && default && !encrypted {
                (
                    prop_oneof![response(), handshake_final()],
                    start_encryption(),
                )
                    .prop_map(Some)
                    .boxed()
            } else {
                Just(None).boxed()
            };
            (vec(pool, 0..5), head, tail).prop_map(move |(body, head, tail)| {
                let mut messages: Vec<Spec> = head.into_iter().collect();
                messages.extend(body);
                let start_encryption = tail.is_some();
                if let Some((last, se)) = tail {
                    messages.push(last);
                    messages.push(se);
                }
                if messages.is_empty() {
                    messages.push(Spec::Ping([7; 8]));
                }
                let channel = if default {
                    ChannelId::DEFAULT
                } else {
                    ChannelId(channel.max(1))
                };
                let sequence = (!default || encrypted || start_encryption).then_some(sequence);
                let mut flags = Flags::EMPTY;
                if encrypted {
                    flags = flags | Flags::ENCRYPTED;
                }
                if sequence.is_some() {
                    flags = flags | Flags::SEQUENCED;
                }
                if key_phase {
                    flags = flags | Flags::KEY_PHASE;
                }
                let mut recipient = recipient;
                // PROTOCOL.md §3: zero only on an unencrypted default-channel packet that is a
                // kind-2 INIT or holds no handshake message.
                if zero_recipient == 0 && default && !encrypted {
                    let first_kind2 = matches!(messages.first(), Some(Spec::Init { kind: 2, .. }));
                    let handshake = messages.iter().any(|m| m.msg().kind().is_handshake());
                    if first_kind2 || !handshake {
                        recipient = PeerId::ZERO;
                    }
                }
                PacketSpec {
                    header: Header {
                        flags,
                        sender,
                        recipient,
                        channel,
                        sequence,
                    },
                    messages,
                    pad: if start_encryption { 0 } else { pad },
                }
            })
        })
}

// ---------------------------------------------------------------------------------------------
// Round trips.

fn emit_one(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; msg.encoded_len()];
    let n = msg.emit(&mut buf).expect("emit");
    assert_eq!(n, buf.len());
    buf
}

fn check_message_round_trip(spec: &Spec) {
    let msg = spec.msg();
    let buf = emit_one(&msg);
    let (parsed, len) = Message::parse(&buf).expect("parse");
    assert_eq!(len, buf.len());
    assert_eq!(parsed, msg);
    if let (Spec::Ack(ranges, delay, _), Message::Ack(ack)) = (spec, parsed) {
        assert_eq!(&ack.iter().collect::<Vec<_>>(), ranges);
        assert_eq!(ack.ack_delay_us, *delay);
    }
    // One byte short never parses as the same message.
    if let Some(short) = buf.get(..buf.len() - 1)
        && let Ok((m, _)) = Message::parse(short)
    {
        assert_ne!(m, msg);
    }
}

/// Writes a packet for `spec`; returns its bytes.
fn write_packet(spec: &PacketSpec) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut w = PacketWriter::new(&mut buf, &spec.header).expect("header");
    for m in &spec.messages {
        w.push(&m.msg()).expect("push");
    }
    let len = spec.header.len()
        + spec
            .messages
            .iter()
            .map(|m| m.msg().encoded_len())
            .sum::<usize>()
        + if spec.header.is_encrypted() {
            TAG_LEN
        } else {
            0
        };
    w.pad_to(len + spec.pad);
    let n = w.try_finish().expect("complete packet");
    assert_eq!(n, len + spec.pad);
    buf.truncate(n);
    buf
}

macro_rules! message_round_trip {
    ($($name:ident: $strategy:expr;)*) => {
        proptest! {
            $(
                #[test]
                fn $name(spec in $strategy) {
                    check_message_round_trip(&spec);
                }
            )*
        }
    };
}

message_round_trip! {
    round_trip_start_encryption: start_encryption();
    round_trip_handshake_init: init();
    round_trip_handshake_response: response();
    round_trip_handshake_cookie: cookie();
    round_trip_handshake_final: handshake_final();
    round_trip_channel_new: channel_new();
    round_trip_channel_acknowledge: channel_acknowledge();
    round_trip_channel_finalize: channel_finalize();
    round_trip_channel_cookie: channel_cookie();
    round_trip_channel_close: channel_close();
    round_trip_data: data();
    round_trip_data_fragment: fragment();
    round_trip_ack: ack();
    round_trip_window: window();
    round_trip_ping: ping();
    round_trip_pmtu_probe: pmtu_probe();
    round_trip_reset: reset();
    round_trip_pong: pong();
}

proptest! {
    #[test]
    fn packet_round_trip(spec in packet_spec()) {
        let bytes = write_packet(&spec);
        let packet = Packet::parse(&bytes).expect("parse");
        prop_assert_eq!(packet.header, spec.header);
        prop_assert_eq!(packet.header_bytes(), &bytes[..spec.header.len()]);
        let want: Vec<Message<'_>> = spec.messages.iter().map(Spec::msg).collect();
        let got: Vec<Message<'_>> = if spec.header.is_encrypted() {
            prop_assert_eq!(packet.messages().count(), 0);
            // Stand-in for decryption: the plaintext is there, the tag zero.
            let payload = packet.payload();
            let plaintext = &payload[..payload.len() - TAG_LEN];
            parse_payload(&packet.header, plaintext).expect("plaintext").collect()
        } else {
            packet.messages().collect()
        };
        prop_assert_eq!(got, want);
    }

    #[test]
    fn message_parse_stops_at_its_own_end(spec in any_message(), tail in bytes(40)) {
        let msg = spec.msg();
        let mut buf = emit_one(&msg);
        let len = buf.len();
        buf.extend_from_slice(&tail);
        match msg {
            // Its ciphertext runs to the end of the payload by definition.
            Message::StartEncryption { .. } => {}
            _ => prop_assert_eq!(Message::parse(&buf), Ok((msg, len))),
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..1500)) {
        if let Ok(packet) = Packet::parse(&bytes) {
            prop_assert!(packet.messages().count() <= bytes.len());
        }
        let _ = Message::parse(&bytes);
        let _ = varint::decode(&bytes);
    }

    #[test]
    fn random_payloads_never_panic(
        header in packet_spec().prop_map(|s| s.header),
        payload in vec(any::<u8>(), 0..600),
    ) {
        if let Ok(messages) = parse_payload(&header, &payload) {
            prop_assert!(messages.count() <= payload.len());
        }
        let mut bytes = vec![0u8; header.len()];
        header.emit(&mut bytes).expect("header");
        bytes.extend_from_slice(&payload);
        let _ = Packet::parse(&bytes).map(|p| p.messages().count());
    }

    #[test]
    fn mutated_packets_never_panic(
        spec in packet_spec(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = write_packet(&spec);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = Packet::parse(&bytes).map(|p| p.messages().count());
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(packet) = Packet::parse(&bytes) {
            for msg in packet.messages() {
                // A message that parses re-emits to its own length.
                prop_assert!(msg.encoded_len() <= bytes.len());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rejections: one case (at least) per ErrorKind, with the byte it must point at.

const A: PeerId = PeerId([0xa1; 16]);
const B: PeerId = PeerId([0xb2; 16]);
const CH: u32 = 0x0005_8001;

fn header(channel: u32, sequence: Option<u32>, flags: Flags) -> Header {
    Header {
        flags,
        sender: A,
        recipient: B,
        channel: ChannelId(channel),
        sequence,
    }
}

/// The default-channel header of a kind-0 or handshake packet.
fn plain() -> Header {
    header(0, None, Flags::EMPTY)
}

/// A header on channel `CH`.
fn on_channel() -> Header {
    header(CH, Some(9), Flags::EMPTY)
}

fn raw(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; h.len()];
    h.emit(&mut out).expect("header");
    out.extend_from_slice(payload);
    out
}

fn msg_bytes(msg: Message<'_>) -> Vec<u8> {
    emit_one(&msg)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const PING: &[u8] = &[0x14, 1, 2, 3, 4, 5, 6, 7, 8];
const RESPONSE: &[u8] = &[0x03, 8, 0, 0, 0, 1, 0, 0, 0, 2];

/// An INIT body builder: kind, handshake bytes, cookie length byte and cookie.
fn init_bytes(kind: u8, handshake: &[u8], cookie_len: u8, cookie: &[u8]) -> Vec<u8> {
    let mut body = vec![kind, 0, 0, 0, 42];
    body.push(handshake.len() as u8);
    body.extend_from_slice(handshake);
    body.extend_from_slice(&[0u8; 16]);
    body.push(cookie_len);
    body.extend_from_slice(cookie);
    let mut out = vec![0x02, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    kind: ErrorKind,
    offset: usize,
}

fn case(name: &'static str, bytes: Vec<u8>, kind: ErrorKind, offset: usize) -> Case {
    Case {
        name,
        bytes,
        kind,
        offset,
    }
}

/// Invalid packets for `Packet::parse`, one or more per kind (emit-only kinds aside).
fn bad_packets() -> Vec<Case> {
    use ErrorKind as K;
    let d = HEADER_LEN; // payload start on an unsequenced packet
    let s = SEQUENCED_HEADER_LEN; // payload start on a sequenced packet
    let with_first = |first: u8| {
        let mut b = raw(&plain(), PING);
        b[0] = first;
        b
    };
    let sequenced_plain = header(0, Some(0), Flags::EMPTY);
    let encrypted = header(CH, Some(1), Flags::ENCRYPTED);
    let se = [&[0x01u8][..], &[9u8; TAG_LEN]].concat();
    let zero_to = |h: Header| Header {
        recipient: PeerId::ZERO,
        ..h
    };
    vec![
        case("version 2", with_first(0x20), K::UnknownVersion, 0),
        case("version 0", with_first(0x00), K::UnknownVersion, 0),
        case("reserved flag", with_first(0x18), K::ReservedFlag, 0),
        case(
            "encrypted, not sequenced",
            with_first(0x11),
            K::EncryptedNotSequenced,
            0,
        ),
        case(
            "non-default channel without SEQUENCED",
            raw(&header(CH, None, Flags::EMPTY), PING),
            K::UnsequencedChannel,
            33,
        ),
        case(
            "SEQUENCED default-channel packet without START_ENCRYPTION",
            raw(&sequenced_plain, PING),
            K::SequencedWithoutStartEncryption,
            0,
        ),
        case(
            "START_ENCRYPTION in an unsequenced packet",
            raw(&plain(), &cat(&[RESPONSE, &se])),
            K::SequencedWithoutStartEncryption,
            d + RESPONSE.len(),
        ),
        case(
            "zero sender",
            raw(
                &Header {
                    sender: PeerId::ZERO,
                    ..plain()
                },
                PING,
            ),
            K::ZeroSender,
            1,
        ),
        case(
            "zero recipient on a kind-1 INIT",
            raw(&zero_to(plain()), &init_bytes(1, b"hs", 0, &[])),
            K::ZeroRecipient,
            17,
        ),
        case(
            "zero recipient on a HANDSHAKE_RESPONSE",
            raw(&zero_to(plain()), RESPONSE),
            K::ZeroRecipient,
            17,
        ),
        case(
            "zero recipient on an encrypted packet",
            raw(&zero_to(encrypted), &[0u8; 32]),
            K::ZeroRecipient,
            17,
        ),
        case(
            "header cut short",
            raw(&plain(), &[])[..20].to_vec(),
            K::Truncated,
            17,
        ),
        case(
            "sequence number cut short",
            raw(&on_channel(), &[])[..39].to_vec(),
            K::Truncated,
            37,
        ),
        case("PING cut short", raw(&plain(), &PING[..5]), K::Truncated, d),
        case(
            "DATA length past the end",
            raw(&on_channel(), &[0x10, 10, 0, 1, 2]),
            K::Truncated,
            s,
        ),
        case(
            "type varint cut short",
            raw(&plain(), &cat(&[PING, &[0x80]])),
            K::Truncated,
            d + PING.len(),
        ),
        case("empty payload", raw(&plain(), &[]), K::NoMessage, d),
        case("only padding", raw(&plain(), &[0, 0, 0]), K::NoMessage, d),
        case(
            "non-minimal message number",
            raw(&on_channel(), &[0x10, 3, 0x80, 0x00, 0x55]),
            K::NonMinimalVarint,
            s + 2,
        ),
        case(
            "non-minimal type",
            raw(&plain(), &[0x94, 0x00]),
            K::NonMinimalVarint,
            d,
        ),
        case(
            "varint past u64",
            raw(
                &on_channel(),
                &[
                    0x13, 11, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ],
            ),
            K::VarintOverflow,
            s + 3,
        ),
        case(
            "type varint of 11 bytes",
            raw(
                &plain(),
                &[
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
            ),
            K::VarintOverflow,
            d,
        ),
        case(
            "reserved type 0x06",
            raw(&plain(), &[0x06, 0]),
            K::UnknownMessageType,
            d,
        ),
        case(
            "reserved type 0x0d",
            raw(&plain(), &[0x0d]),
            K::UnknownMessageType,
            d,
        ),
        case(
            "reserved type 0x3f after a PING",
            raw(&plain(), &cat(&[PING, &[0x3f]])),
            K::UnknownMessageType,
            d + PING.len(),
        ),
        case(
            "type 128",
            raw(&plain(), &[0x80, 0x01]),
            K::UnknownMessageType,
            d,
        ),
        case(
            "nonzero padding",
            raw(&plain(), &cat(&[PING, &[0, 0, 0, 5, 0]])),
            K::NonzeroPadding,
            d + PING.len() + 3,
        ),
        case(
            "DATA on the default channel",
            raw(&plain(), &[0x10, 1, 0]),
            K::WrongChannel,
            d,
        ),
        case(
            "CHANNEL_NEW on a channel",
            raw(&on_channel(), &cat(&[PING, &[0x08, 0, 1], &[3u8; 16]])),
            K::WrongChannel,
            s + PING.len(),
        ),
        case(
            "CHANNEL_COOKIE on the default channel",
            raw(&plain(), &cat(&[&[0x0b], &[3u8; 16], &[0]])),
            K::WrongChannel,
            d,
        ),
        case(
            "START_ENCRYPTION on a channel",
            raw(&on_channel(), &se),
            K::WrongChannel,
            s,
        ),
        case(
            "RESET on a channel",
            raw(&on_channel(), &[0x16, 0]),
            K::WrongChannel,
            s,
        ),
        case(
            "HANDSHAKE_INIT after a PING",
            raw(&plain(), &cat(&[PING, &init_bytes(1, b"hs", 0, &[])])),
            K::HandshakeInitNotFirst,
            d + PING.len(),
        ),
        case(
            "CHANNEL_COOKIE after a PING",
            raw(&on_channel(), &cat(&[PING, &[0x0b], &[3u8; 16], &[1]])),
            K::ChannelCookieNotFirst,
            s + PING.len(),
        ),
        case(
            "START_ENCRYPTION first",
            raw(&sequenced_plain, &se),
            K::StartEncryptionMisplaced,
            s,
        ),
        case(
            "START_ENCRYPTION after a PING",
            raw(&sequenced_plain, &cat(&[RESPONSE, PING, &se])),
            K::StartEncryptionMisplaced,
            s + RESPONSE.len() + PING.len(),
        ),
        case(
            "INIT kind 0",
            raw(&plain(), &init_bytes(0, b"hs", 0, &[])),
            K::BadHandshakeKind,
            d + 2,
        ),
        case(
            "INIT kind 4",
            raw(&plain(), &init_bytes(4, b"hs", 0, &[])),
            K::BadHandshakeKind,
            d + 2,
        ),
        case(
            "INIT cookie of 8 bytes",
            raw(&plain(), &init_bytes(1, b"hs", 8, &[1; 8])),
            K::BadCookieLength,
            d + 2 + 5 + 1 + 2 + 16,
        ),
        case(
            "capability bit 3",
            raw(&on_channel(), &cat(&[&[0x0b], &[3u8; 16], &[0x08]])),
            K::BadCapabilities,
            s + 17,
        ),
        case(
            "CHANNEL_NEW with c1 = 0",
            raw(&plain(), &cat(&[&[0x08, 0, 0], &[3u8; 16]])),
            K::ZeroChannelHalf,
            d + 1,
        ),
        case(
            "CHANNEL_ACKNOWLEDGE with c2 = 0",
            raw(&plain(), &cat(&[&[0x09, 0, 1, 0, 0], &[3u8; 32]])),
            K::ZeroChannelHalf,
            d + 1,
        ),
        case(
            "CHANNEL_CLOSE naming the default channel",
            raw(&plain(), &[0x0c, 0, 0, 0, 0, 0]),
            K::ZeroChannelHalf,
            d + 1,
        ),
        case(
            "ACK first range above largest",
            raw(&on_channel(), &[0x12, 4, 5, 0, 0, 6]),
            K::BadAck,
            s + 5,
        ),
        case(
            "ACK range count beyond its body",
            raw(&on_channel(), &[0x12, 6, 100, 0, 2, 1, 1, 1]),
            K::BadAck,
            s + 4,
        ),
        case(
            "ACK gap below zero",
            raw(&on_channel(), &[0x12, 6, 10, 0, 1, 2, 7, 0]),
            K::BadAck,
            s + 6,
        ),
        case(
            "DATA_FRAGMENT of total length 0",
            raw(&on_channel(), &[0x11, 3, 0, 0, 0]),
            K::BadFragment,
            s + 3,
        ),
        case(
            "DATA_FRAGMENT past its total length",
            raw(&on_channel(), &[0x11, 6, 0, 4, 2, 1, 2, 3]),
            K::BadFragment,
            s + 3,
        ),
        case(
            "PMTU_PROBE with a nonzero byte",
            raw(&plain(), &[0x15, 4, 0, 0, 1, 0]),
            K::NonzeroProbe,
            d + 4,
        ),
        case(
            "encrypted payload shorter than a tag",
            raw(&encrypted, &[0u8; TAG_LEN - 1]),
            K::EncryptedTooShort,
            s,
        ),
        case(
            "START_ENCRYPTION shorter than a tag",
            raw(
                &sequenced_plain,
                &cat(&[RESPONSE, &[0x01], &[9u8; TAG_LEN - 1]]),
            ),
            K::EncryptedTooShort,
            s + RESPONSE.len() + 1,
        ),
        case(
            "INIT handshake length past its message",
            raw(&plain(), &[0x02, 7, 1, 0, 0, 0, 1, 100, 0]),
            K::LengthOverrun,
            d + 2 + 5,
        ),
        case(
            "INIT without mac1",
            raw(&plain(), &[0x02, 7, 1, 0, 0, 0, 1, 1, 0xaa]),
            K::LengthOverrun,
            d + 2 + 7,
        ),
        case(
            "DATA of length 0",
            raw(&on_channel(), &[0x10, 0]),
            K::LengthOverrun,
            s + 2,
        ),
        case(
            "WINDOW with a trailing byte",
            raw(&on_channel(), &[0x13, 3, 1, 1, 0]),
            K::TrailingBytes,
            s + 4,
        ),
    ]
}

#[test]
fn every_rejection_has_its_kind_and_offset() {
    let mut seen = HashSet::new();
    for c in bad_packets() {
        let got = Packet::parse(&c.bytes).map(|_| ());
        assert_eq!(
            got,
            Err(WireError::new(c.kind, c.offset)),
            "{}: {:02x?}",
            c.name,
            c.bytes
        );
        seen.insert(c.kind);
    }
    seen.insert(buffer_too_small_kind());
    let missing: Vec<_> = ErrorKind::ALL
        .iter()
        .filter(|k| !seen.contains(k))
        .collect();
    assert!(missing.is_empty(), "no negative case for {missing:?}");
}

/// BufferTooSmall comes only from emitting.
fn buffer_too_small_kind() -> ErrorKind {
    let mut small = [0u8; 3];
    let e = Message::Ping { token: &[1; 8] }
        .emit(&mut small)
        .unwrap_err();
    assert_eq!(e, WireError::new(ErrorKind::BufferTooSmall, 0));
    e.kind
}

#[test]
fn writer_reports_buffer_too_small_where_the_message_starts() {
    let mut buf = [0u8; HEADER_LEN + 12];
    let mut w = PacketWriter::new(&mut buf, &plain()).unwrap();
    w.push(&Message::Ping { token: &[1; 8] }).unwrap();
    assert_eq!(w.remaining(), 3);
    let e = w.push(&Message::Pong { token: &[1; 8] }).unwrap_err();
    assert_eq!(e, WireError::new(ErrorKind::BufferTooSmall, HEADER_LEN + 9));
    // The refused message left nothing behind.
    assert_eq!(w.remaining(), 3);
    assert_eq!(w.finish(), HEADER_LEN + 9);
    let mut tiny = [0u8; 20];
    assert_eq!(
        PacketWriter::new(&mut tiny, &plain()).unwrap_err().kind,
        ErrorKind::BufferTooSmall
    );
}

#[test]
fn parse_payload_applies_the_same_rules() {
    let encrypted = header(0, Some(0), Flags::ENCRYPTED);
    // PROTOCOL.md §4: START_ENCRYPTION only in unencrypted packets.
    let se = cat(&[RESPONSE, &[0x01], &[9u8; TAG_LEN]]);
    let e = parse_payload(&encrypted, &se).unwrap_err();
    assert_eq!(
        e,
        WireError::new(
            ErrorKind::WrongChannel,
            SEQUENCED_HEADER_LEN + RESPONSE.len()
        )
    );
    let ok = cat(&[&[0x08, 0, 7], &[3u8; 16], PING, &[0, 0]]);
    let kinds: Vec<_> = parse_payload(&encrypted, &ok)
        .unwrap()
        .map(|m| m.kind())
        .collect();
    assert_eq!(kinds, [MessageType::ChannelNew, MessageType::Ping]);
    assert_eq!(
        parse_payload(&encrypted, &[]).unwrap_err(),
        WireError::new(ErrorKind::NoMessage, SEQUENCED_HEADER_LEN)
    );
}

proptest! {
    /// `parse_payload` keeps the first messages its validation decoded and decodes only the
    /// later ones again: the walk hands out every message, in order, however many there are,
    /// and a message out of place anywhere, past the kept ones too, refuses the whole payload.
    #[test]
    fn parse_payload_walks_every_message_kept_or_not(
        specs in vec(channel_message(), 1..12),
        misplaced in any::<prop::sample::Index>(),
    ) {
        let encrypted = header(0x0102_0304, Some(5), Flags::ENCRYPTED);
        let want: Vec<Message<'_>> = specs.iter().map(Spec::msg).collect();
        let payload: Vec<u8> = want.iter().flat_map(|m| emit_one(m)).collect();
        let got: Vec<Message<'_>> = parse_payload(&encrypted, &payload).expect("valid").collect();
        prop_assert_eq!(&got, &want);
        // PROTOCOL.md §6: CHANNEL_COOKIE only first; put one after the `at`-th message.
        let cookie = emit_one(&Message::ChannelCookie {
            cookie2: &[7; 16],
            capabilities: Capabilities::RESEND,
        });
        let at = misplaced.index(want.len()) + 1;
        let mut bad: Vec<u8> = want[..at].iter().flat_map(|m| emit_one(m)).collect();
        bad.extend_from_slice(&cookie);
        bad.extend(want[at..].iter().flat_map(|m| emit_one(m)));
        prop_assert_eq!(
            parse_payload(&encrypted, &bad).map(Iterator::count).map_err(|e| e.kind),
            Err(ErrorKind::ChannelCookieNotFirst)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What is allowed, and what the writer refuses.

#[test]
fn zero_recipient_exceptions_parse() {
    let zero = Header {
        recipient: PeerId::ZERO,
        ..plain()
    };
    // A kind-2 INIT, even followed by another handshake message.
    let init2 = raw(&zero, &cat(&[&init_bytes(2, b"xx", 0, &[]), RESPONSE]));
    assert!(Packet::parse(&init2).is_ok());
    // A kind-0 first packet: channel establishment and PING.
    let kind0 = raw(&zero, &cat(&[&[0x08, 0, 1], &[3u8; 16], PING]));
    assert!(Packet::parse(&kind0).is_ok());
}

#[test]
fn start_encryption_after_final_parses_and_ends_the_packet() {
    let h = header(0, Some(0), Flags::EMPTY);
    let fin = msg_bytes(Message::HandshakeFinal {
        sender_index: 1,
        receiver_index: 2,
        handshake: b"third",
    });
    // The zero bytes belong to the ciphertext, not padding.
    let ciphertext = [0u8; 40];
    let bytes = raw(&h, &cat(&[&fin, &[0x01], &ciphertext]));
    let p = Packet::parse(&bytes).unwrap();
    let msgs: Vec<_> = p.messages().collect();
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[1],
        Message::StartEncryption {
            ciphertext: &ciphertext
        }
    );
}

#[test]
fn writer_refuses_what_parse_refuses() {
    let token = [1u8; 8];
    let ping = Message::Ping { token: &token };
    let data = Message::Data {
        message_number: 0,
        payload: b"x",
    };
    let mut buf = [0u8; 256];

    let mut w = PacketWriter::new(&mut buf, &plain()).unwrap();
    assert_eq!(
        w.push(&data).unwrap_err(),
        WireError::new(ErrorKind::WrongChannel, HEADER_LEN)
    );
    w.push(&ping).unwrap();
    let init_of = |kind| Message::HandshakeInit {
        kind,
        sender_index: 1,
        handshake: b"",
        mac1: &[0; 16],
        cookie: None,
    };
    let init = init_of(1);
    assert_eq!(
        w.push(&init).unwrap_err().kind,
        ErrorKind::HandshakeInitNotFirst
    );
    let se = Message::StartEncryption {
        ciphertext: &[0; 16],
    };
    assert_eq!(
        w.push(&se).unwrap_err().kind,
        ErrorKind::StartEncryptionMisplaced
    );
    w.pad_to(100);
    assert_eq!(w.remaining(), 0);
    assert_eq!(w.push(&ping).unwrap_err().kind, ErrorKind::BufferTooSmall);
    assert_eq!(w.try_finish(), Ok(100));

    let zero = Header {
        recipient: PeerId::ZERO,
        ..plain()
    };
    let mut w = PacketWriter::new(&mut buf, &zero).unwrap();
    assert_eq!(
        w.push(&init).unwrap_err(),
        WireError::new(ErrorKind::ZeroRecipient, 17)
    );
    let init2 = init_of(2);
    w.push(&init2).unwrap();

    let sequenced = header(0, Some(0), Flags::EMPTY);
    let w = PacketWriter::new(&mut buf, &sequenced).unwrap();
    assert_eq!(w.try_finish().unwrap_err().kind, ErrorKind::NoMessage);
    let mut w = PacketWriter::new(&mut buf, &sequenced).unwrap();
    w.push(&ping).unwrap();
    assert_eq!(
        w.try_finish().unwrap_err(),
        WireError::new(ErrorKind::SequencedWithoutStartEncryption, 0)
    );

    let unsequenced = header(CH, None, Flags::EMPTY);
    assert_eq!(
        PacketWriter::new(&mut buf, &unsequenced).unwrap_err().kind,
        ErrorKind::UnsequencedChannel
    );
    let bad_kind = init_of(0);
    assert_eq!(
        bad_kind.emit(&mut buf).unwrap_err().kind,
        ErrorKind::BadHandshakeKind
    );
    let bad_fragment = Message::DataFragment {
        message_number: 0,
        total_length: 2,
        offset: 1,
        bytes: b"ab",
    };
    assert_eq!(
        bad_fragment.emit(&mut buf).unwrap_err().kind,
        ErrorKind::BadFragment
    );
}

#[test]
fn begin_encryption_splits_at_the_ciphertext() {
    let h = header(0, Some(0), Flags::EMPTY);
    let mut buf = [0u8; 200];
    let mut w = PacketWriter::new(&mut buf, &h).unwrap();
    w.push(&Message::HandshakeResponse {
        sender_index: 1,
        receiver_index: 2,
        handshake: b"resp",
    })
    .unwrap();
    let (ad, rest) = w.begin_encryption().unwrap();
    let ad_len = ad.len();
    assert_eq!(ad_len, SEQUENCED_HEADER_LEN + 1 + 1 + 8 + 4 + 1);
    assert_eq!(ad.last(), Some(&0x01));
    rest[..24].fill(0xee);
    let p = Packet::parse(&buf[..ad_len + 24]).unwrap();
    assert_eq!(
        p.messages().last(),
        Some(Message::StartEncryption {
            ciphertext: &[0xee; 24]
        })
    );
}

#[test]
fn encrypted_writer_keeps_room_for_the_tag() {
    let h = header(CH, Some(3), Flags::ENCRYPTED | Flags::KEY_PHASE);
    let mut buf = [0xffu8; 100];
    let mut w = PacketWriter::new(&mut buf, &h).unwrap();
    assert_eq!(w.remaining(), 100 - SEQUENCED_HEADER_LEN - TAG_LEN);
    w.push(&Message::Data {
        message_number: 5,
        payload: b"hello",
    })
    .unwrap();
    w.push_ack(&[(7, 9), (1, 4)], 100).unwrap();
    w.pad_to(90);
    assert_eq!(w.finish(), 90);
    assert!(buf[90 - TAG_LEN..90].iter().all(|&b| b == 0));
    let p = Packet::parse(&buf[..90]).unwrap();
    assert!(p.header.flags.contains(Flags::KEY_PHASE));
    let msgs: Vec<_> = parse_payload(
        &p.header,
        &p.payload()[..90 - SEQUENCED_HEADER_LEN - TAG_LEN],
    )
    .unwrap()
    .collect();
    let Message::Ack(ack) = msgs[1] else {
        panic!("{msgs:?}")
    };
    assert_eq!(ack.iter().collect::<Vec<_>>(), [(7, 9), (1, 4)]);
}

// ---------------------------------------------------------------------------------------------
// The fuzz seed corpus.

/// Valid and invalid seed packets for `fuzz/corpus/packet/`.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name: &str, build: &dyn Fn(&mut PacketWriter<'_>), h: Header| {
        let mut buf = vec![0u8; 1500];
        let mut w = PacketWriter::new(&mut buf, &h).unwrap();
        build(&mut w);
        let n = w.try_finish().unwrap();
        buf.truncate(n);
        out.push((format!("ok-{name}"), buf));
    };
    let zero = Header {
        recipient: PeerId::ZERO,
        ..plain()
    };
    add(
        "init-kind2",
        &|w| {
            w.push(&Message::HandshakeInit {
                kind: 2,
                sender_index: 7,
                handshake: &[5; 32],
                mac1: &[0; 16],
                cookie: None,
            })
            .unwrap();
            w.pad_to(1200);
        },
        zero,
    );
    add(
        "init-kind1-cookie",
        &|w| {
            w.push(&Message::HandshakeInit {
                kind: 1,
                sender_index: 7,
                handshake: &[5; 48],
                mac1: &[9; 16],
                cookie: Some(&[4; 16]),
            })
            .unwrap()
        },
        plain(),
    );
    add(
        "cookie",
        &|w| {
            w.push(&Message::HandshakeCookie {
                receiver_index: 7,
                cookie: &[4; 16],
                echo: &[3; 16],
            })
            .unwrap()
        },
        plain(),
    );
    add(
        "response-start-encryption",
        &|w| {
            w.push(&Message::HandshakeResponse {
                sender_index: 8,
                receiver_index: 7,
                handshake: &[6; 48],
            })
            .unwrap();
            w.push(&Message::StartEncryption {
                ciphertext: &[0xcc; 40],
            })
            .unwrap();
        },
        header(0, Some(0), Flags::EMPTY),
    );
    add(
        "final",
        &|w| {
            w.push(&Message::HandshakeFinal {
                sender_index: 8,
                receiver_index: 7,
                handshake: &[6; 64],
            })
            .unwrap();
        },
        plain(),
    );
    add(
        "channel-establishment",
        &|w| {
            w.push(&Message::ChannelNew {
                c1: 5,
                cookie1: &[1; 16],
            })
            .unwrap();
            w.push(&Message::ChannelAcknowledge {
                channel: ChannelId::new(4, 0x8001),
                cookie1: &[1; 16],
                cookie2: &[2; 16],
            })
            .unwrap();
            w.push(&Message::ChannelFinalize {
                channel: ChannelId::new(3, 0x8002),
                cookie2: &[2; 16],
                capabilities: Capabilities::RESEND | Capabilities::ORDERED,
            })
            .unwrap();
            w.push(&Message::ChannelClose {
                channel: ChannelId::new(2, 1),
                reason: CloseReason::Idle,
            })
            .unwrap();
        },
        plain(),
    );
    add(
        "channel-cookie-early-data",
        &|w| {
            w.push(&Message::ChannelCookie {
                cookie2: &[2; 16],
                capabilities: Capabilities::RESEND,
            })
            .unwrap();
            w.push(&Message::Data {
                message_number: 0,
                payload: b"early data",
            })
            .unwrap();
        },
        on_channel(),
    );
    add(
        "data-ack-window",
        &|w| {
            w.push(&Message::Data {
                message_number: 300,
                payload: &[0x42; 200],
            })
            .unwrap();
            w.push_ack(&[(90, 100), (40, 60), (0, 10)], 25_000).unwrap();
            w.push(&Message::Window {
                max_message: 364,
                max_bytes: 262_144,
            })
            .unwrap();
        },
        on_channel(),
    );
    add(
        "fragment",
        &|w| {
            w.push(&Message::DataFragment {
                message_number: 9,
                total_length: 20_000,
                offset: 10_000,
                bytes: &[0x17; 1000],
            })
            .unwrap()
        },
        on_channel(),
    );
    add(
        "ping-pong-padded",
        &|w| {
            w.push(&Message::Ping { token: &[1; 8] }).unwrap();
            w.push(&Message::Pong { token: &[2; 8] }).unwrap();
            w.pad_to(300);
        },
        plain(),
    );
    add(
        "pmtu-probe",
        &|w| w.push(&Message::PmtuProbe { len: 1400 }).unwrap(),
        on_channel(),
    );
    add(
        "reset",
        &|w| w.push(&Message::Reset { reason: 0 }).unwrap(),
        plain(),
    );
    add(
        "encrypted",
        &|w| {
            w.push(&Message::Data {
                message_number: 1,
                payload: b"sealed",
            })
            .unwrap()
        },
        header(CH, Some(77), Flags::ENCRYPTED),
    );
    // Issue 10's hostile peers: what reached the receive side's arithmetic and reassembly.
    add(
        "finding-1-data-message-number-u64-max",
        &|w| {
            w.push(&Message::Data {
                message_number: u64::MAX,
                payload: b"past every credit",
            })
            .unwrap()
        },
        on_channel(),
    );
    add(
        "finding-2-descending-one-byte-fragments",
        &|w| {
            // Every other byte, from the top down: each fragment a range of its own.
            for i in (0..120u64).rev() {
                w.push(&Message::DataFragment {
                    message_number: 0,
                    total_length: 200_000,
                    offset: 2 * i,
                    bytes: &[0x5a],
                })
                .unwrap();
            }
        },
        on_channel(),
    );
    add(
        "finding-10-trickled-fragment-of-a-big-message",
        &|w| {
            w.push(&Message::DataFragment {
                message_number: 3,
                total_length: 2 << 20,
                offset: 1_000_000,
                bytes: &[0x5a],
            })
            .unwrap()
        },
        on_channel(),
    );
    add(
        "data-past-the-initial-credit",
        &|w| {
            w.push(&Message::Data {
                message_number: 64,
                payload: b"past credit",
            })
            .unwrap()
        },
        on_channel(),
    );
    let picks = [
        "reserved flag",
        "zero recipient on a kind-1 INIT",
        "non-minimal message number",
        "nonzero padding",
        "DATA on the default channel",
        "START_ENCRYPTION after a PING",
        "ACK gap below zero",
        "DATA_FRAGMENT past its total length",
        "INIT handshake length past its message",
    ];
    for c in bad_packets() {
        if picks.contains(&c.name) {
            out.push((format!("bad-{}", c.name.replace(' ', "-")), c.bytes));
        }
    }
    out
}

#[test]
fn seeds_are_what_they_claim() {
    let seeds = seeds();
    assert!(seeds.len() >= 20, "{}", seeds.len());
    for (name, bytes) in &seeds {
        assert_eq!(
            Packet::parse(bytes).is_ok(),
            name.starts_with("ok-"),
            "{name}"
        );
    }
}

/// Writes the seeds to `fuzz/corpus/packet/`: `WEFT_WRITE_CORPUS=1 cargo test --test wire
/// -- --ignored write_fuzz_corpus`.
#[test]
#[ignore]
fn write_fuzz_corpus() {
    if std::env::var_os("WEFT_WRITE_CORPUS").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/packet");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn default_mtu_packet_fits() {
    assert_eq!(wire::DEFAULT_MTU, 1200);
    let mut buf = [0u8; wire::DEFAULT_MTU];
    let mut w = PacketWriter::new(&mut buf, &on_channel()).unwrap();
    let room = w.remaining();
    assert_eq!(room, wire::DEFAULT_MTU - SEQUENCED_HEADER_LEN);
    // DATA: type, 2-byte length, 1-byte message number, payload.
    let payload = vec![1u8; room - 4];
    w.push(&Message::Data {
        message_number: 0,
        payload: &payload,
    })
    .unwrap();
    assert_eq!(w.finish(), wire::DEFAULT_MTU);
}
