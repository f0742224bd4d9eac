//! Fuzzes every overlay body decoder: the msgpack subset (`Value::decode`), every opcode's
//! frame (`Frame::parse`), envelopes (`Envelope::from_value` and `verify`), every compression
//! decoder (the input as each method's payload, and as a transmission), the entries of the
//! overlay's store (`persist::codec`: records, published records, contacts, peers), and a DHT
//! node answering the input as a request from a peer. Whatever parses must re-encode to the
//! very same bytes (bodies are canonical), whatever inflates stays within the bound, and
//! whatever the node answers must parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use weft::overlay::id::{Contact, NodeId};
use weft::overlay::kademlia::{Dht, KademliaConfig, Sender};
use weft::overlay::persist::codec;
use weft::overlay::rpc::compression::{self, Method};
use weft::overlay::rpc::envelope::Envelope;
use weft::overlay::rpc::{Frame, FrameLimits, Limits, Value};
use weft::wire::PeerId;

fuzz_target!(|data: &[u8]| {
    // A small bound, so inflating past it is reached quickly.
    const BOUND: usize = 4096;
    for method in Method::ALL {
        if let Ok(out) = compression::decompress(method, data, BOUND) {
            assert!(out.len() <= BOUND, "{method:?} inflated past the bound");
        }
    }
    if let Ok(out) = compression::unwrap(data, 0x7f, BOUND) {
        assert!(out.len() <= BOUND, "a transmission inflated past the bound");
        assert!(
            compression::within_ratio(data.len().saturating_sub(compression::HEADER), out.len()),
            "a transmission inflated past the ratio"
        );
    }
    if let Ok(value) = Value::decode(data, Limits::default()) {
        assert_eq!(
            value.encode(),
            data,
            "a decoded value re-encodes to its bytes"
        );
        if let Ok(envelope) = Envelope::from_value(&value) {
            let _ = envelope.verify();
        }
    }
    if let Ok(record) = codec::decode_record(data) {
        assert_eq!(codec::encode_record(&record), data, "a record re-encodes");
    }
    if let Ok(published) = codec::decode_published(data) {
        assert_eq!(codec::encode_published(&published), data, "a published record re-encodes");
    }
    if let Ok(contact) = codec::decode_contact(data) {
        assert_eq!(codec::encode_contact(&contact), data, "a contact re-encodes");
    }
    if let Ok(peer) = codec::decode_peer(data) {
        assert_eq!(codec::encode_peer(&peer), data, "a peer record re-encodes");
    }
    let limits = FrameLimits::default();
    if let Ok(frame) = Frame::parse(data, &limits) {
        assert_eq!(
            frame.encode(),
            data,
            "a parsed frame re-encodes to its bytes"
        );
    }
    let own = Contact {
        id: NodeId([1; 20]),
        peer: PeerId([1; 16]),
        addr: ([10, 0, 0, 1], 7700).into(),
    };
    let mut dht = Dht::new(KademliaConfig::default(), own, [0; 32]);
    let from = Sender {
        peer: PeerId([2; 16]),
        addr: ([10, 0, 0, 2], 7700).into(),
        node: Some(NodeId([2; 20])),
    };
    dht.handle(Instant::now(), 1_800_000_000, from, data);
    while let Some(transmit) = dht.poll_transmit() {
        assert!(
            !compression::is_wrapped(&transmit.bytes),
            "nothing was negotiated, so nothing is compressed"
        );
        assert!(
            Frame::parse(&transmit.bytes, &limits).is_ok(),
            "the node's answer parses"
        );
    }
});
