//! Compression (issue 15 point 2, seed 003 §3.3.1): every method round-trips whatever it is
//! given, a bomb in every method is refused at the frame bound and counted, and two nodes that
//! negotiated a method send each other large frames in it. What a frame costs to inflate
//! follows its bytes: at most 64 times its payload, and bz2 and lzma are not read by default.

use super::harness::contact;
use super::rpc::dropped;
use proptest::prelude::*;
use std::time::Instant;
use weft::overlay::id::NodeId;
use weft::overlay::kademlia::{Dht, KademliaConfig, Sender};
use weft::overlay::rpc::compression::{self, CompressionError, HEADER, Method};
use weft::overlay::rpc::{Body, Frame, FrameLimits, Opcode, Reply, ReplyBody, Request};

const LIMIT: usize = 64 * 1024;

proptest! {
    #[test]
    fn every_method_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..2048), repeat in 1usize..8) {
        // Repeats give the codecs something to find, random bytes something they cannot.
        let input: Vec<u8> = bytes.iter().copied().cycle().take(bytes.len() * repeat).collect();
        for method in Method::ALL {
            let wrapped = compression::wrap(method, &input);
            prop_assert_eq!(wrapped[1], method.code());
            prop_assert_eq!(compression::unwrap(&wrapped, 0x7f, LIMIT), Ok(input.clone()), "{:?}", method);
        }
    }

    #[test]
    fn damaged_transmissions_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), method in 0u8..8, at in any::<usize>(), to in any::<u8>()) {
        let mut wrapped = compression::wrap(Method::from_code(u64::from(method)).unwrap_or(Method::Zlib), &bytes);
        let at = at % wrapped.len();
        wrapped[at] = to;
        let _ = compression::unwrap(&wrapped, 0x7f, LIMIT);
    }
}

/// 1 MiB of one byte, compressed (4 MiB for lzma). lzma-rs writes LZMA without matches (valid, never smaller),
/// so the lzma bomb was made by liblzma (Python's `lzma.compress(b"\x93" * (4 << 20),
/// format=lzma.FORMAT_ALONE, preset=9)`): it also shows another implementation's stream reads.
fn bomb_of(method: Method) -> Vec<u8> {
    if method == Method::Lzma {
        let payload = include_bytes!("bomb.lzma");
        let mut out = vec![0, method.code()];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        return out;
    }
    compression::wrap(method, &vec![0x93; 1 << 20])
}

fn sender(of: &Dht) -> Sender {
    Sender {
        peer: of.own().peer,
        addr: of.own().addr,
        node: Some(of.own().id),
    }
}

#[test]
fn a_bomb_in_every_method_is_refused_at_the_bound_and_counted() {
    let every = KademliaConfig {
        compression: Method::ALL.to_vec(),
        ..KademliaConfig::default()
    };
    let mut dht = Dht::new(every, contact(3, 0), [0; 32]);
    let peer = Dht::new(KademliaConfig::default(), contact(3, 1), [1; 32]);
    for (i, method) in Method::ALL.into_iter().enumerate() {
        let bomb = bomb_of(method);
        let small = bomb.len() < LIMIT;
        assert!(
            small || method == Method::None,
            "{method:?} packs 1 MiB small"
        );
        assert_eq!(
            compression::unwrap(&bomb, 0x7f, LIMIT),
            Err(CompressionError::Bomb),
            "{method:?}"
        );
        if small {
            dht.handle(Instant::now(), 1_000, sender(&peer), &bomb);
            assert_eq!(dht.poll_transmit(), None, "{method:?}: dropped unanswered");
            assert_eq!(dropped(&dht, "decompression_bomb"), i as u64);
        }
    }
    // A header whose length disagrees, and a method the node does not read.
    let mut short = compression::wrap(Method::Zlib, b"\x93\x02\x01\xc0");
    short.pop();
    dht.handle(Instant::now(), 1_000, sender(&peer), &short);
    assert_eq!(dropped(&dht, "compression_header"), 1);
    let mut odd = compression::wrap(Method::Zlib, b"\x93\x02\x01\xc0");
    odd[1] = 7;
    dht.handle(Instant::now(), 1_000, sender(&peer), &odd);
    assert_eq!(dropped(&dht, "compression_unsupported"), 1);
    assert_eq!(HEADER, 6);
}

#[test]
fn negotiated_compression_carries_large_frames_in_the_preferred_method() {
    let now = Instant::now();
    let config = |preferred: Option<Method>, methods: Vec<Method>| KademliaConfig {
        per_subnet_cap: None,
        preferred_compression: preferred,
        compression: methods,
        ..KademliaConfig::default()
    };
    let mut a = Dht::new(
        config(Some(Method::Zstd), Method::ALL.to_vec()),
        contact(4, 0),
        [0; 32],
    );
    // b reads only zstd and gzip.
    let mut b = Dht::new(
        config(None, vec![Method::Gzip, Method::Zstd]),
        contact(4, 1),
        [1; 32],
    );
    // b knows 20 contacts, so its FIND_NODE answers are large.
    for i in 2..40 {
        b.handle(
            now,
            1_000,
            sender(&Dht::new(KademliaConfig::default(), contact(4, i), [2; 32])),
            &Request {
                op: Opcode::Ping,
                id: 1,
                body: Body::Ping,
            }
            .encode(),
        );
        while b.poll_transmit().is_some() {}
    }
    let b_contact = *b.own();
    assert!(a.offer_compression(now, &b_contact));
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle(now, 1_000, sender(&a), &t.bytes);
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle(now, 1_000, sender(&b), &t.bytes);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    // b ACKed gzip and zstd, NACKed the rest; a asked for zstd.
    assert_eq!(a.in_flight(), 0);
    assert_eq!(a.compression_for(&b_contact.peer), Method::Zstd);
    assert_eq!(
        b.compression_for(&a.own().peer),
        Method::Zstd,
        "a prefers zstd, b reads it"
    );
    // A large answer travels compressed in zstd, a small request plain.
    let ask = Request {
        op: Opcode::FindNode,
        id: 9,
        body: Body::FindNode(NodeId([0x55; 20])),
    }
    .encode();
    b.handle(now, 1_000, sender(&a), &ask);
    let answer = b.poll_transmit().unwrap();
    assert_eq!(&answer.bytes[..2], &[0, Method::Zstd.code()]);
    let inflated = compression::unwrap(&answer.bytes, 0x7f, LIMIT).unwrap();
    assert!(inflated.len() > answer.bytes.len(), "it paid");
    match Frame::parse(&inflated, &FrameLimits::default()).unwrap() {
        Frame::Reply(Reply {
            ack: true,
            body: ReplyBody::Nodes(nodes),
            ..
        }) => {
            assert_eq!(nodes.len(), 20)
        }
        other => panic!("expected the contacts, got {other:?}"),
    }
    // a reads it as if it were plain.
    a.handle(now, 1_000, sender(&b), &answer.bytes);
    assert_eq!(
        dropped(&a, "reply_unknown"),
        1,
        "parsed, and stale: a never asked"
    );
}

/// A 50-byte bz2 stream of one 900 KB block (Python's `bz2.compress(b"a" * 45_000_000, 9)`):
/// its decoder undoes the whole block, 2 ms of the worker's time, before a byte comes out.
const BZ2_BLOCK_BOMB: &[u8] = include_bytes!("bomb.bz2");

/// Attack on the overlay (docs/SECURITY.md): frames that cost the node far more to inflate
/// than their bytes. A default node does not decode bz2 or lzma at all (refused by method,
/// before the decoder), and nothing inflates past 64 times its payload: a 45-byte zstd frame
/// that would make 64 KiB is a bomb at 2,880 bytes.
#[test]
fn frames_that_cost_more_to_inflate_than_their_bytes_are_refused_before_decoding() {
    let mut dht = Dht::new(KademliaConfig::default(), contact(5, 0), [0; 32]);
    let peer = Dht::new(KademliaConfig::default(), contact(5, 1), [1; 32]);
    let mut bz2 = vec![0, Method::Bz2.code()];
    bz2.extend_from_slice(&(BZ2_BLOCK_BOMB.len() as u32).to_be_bytes());
    bz2.extend_from_slice(BZ2_BLOCK_BOMB);
    dht.handle(Instant::now(), 1_000, sender(&peer), &bz2);
    dht.handle(Instant::now(), 1_000, sender(&peer), &bomb_of(Method::Lzma));
    assert_eq!(dht.poll_transmit(), None);
    assert_eq!(dropped(&dht, "compression_unsupported"), 2);
    assert_eq!(dropped(&dht, "decompression_bomb"), 0, "never decoded");

    // A PING whose padding inflates 60 KiB from a few dozen bytes: within the frame bound,
    // past the ratio.
    let mut ping = Request {
        op: Opcode::Ping,
        id: 1,
        body: Body::Ping,
    }
    .encode();
    let plain_ping = ping.clone();
    ping.extend(std::iter::repeat_n(0xc0, 60 * 1024));
    let wrapped = compression::wrap(Method::Zstd, &ping);
    assert!(wrapped.len() * compression::MAX_RATIO < ping.len());
    assert_eq!(
        compression::unwrap(&wrapped, 0x7f, LIMIT),
        Err(CompressionError::Bomb)
    );
    dht.handle(Instant::now(), 1_000, sender(&peer), &wrapped);
    assert_eq!(dht.poll_transmit(), None);
    assert_eq!(dropped(&dht, "decompression_bomb"), 1);
    // Within the ratio, a compressed frame is served as before.
    let honest = compression::wrap(Method::Zstd, &plain_ping);
    dht.handle(Instant::now(), 1_000, sender(&peer), &honest);
    assert!(dht.poll_transmit().is_some(), "answered");
    // And a sender never sends what a receiver would refuse: past the ratio it goes plain.
    assert!(!compression::within_ratio(
        wrapped.len() - HEADER,
        ping.len()
    ));
}
