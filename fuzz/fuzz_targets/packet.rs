//! Fuzzes `Packet::parse`; whatever parses must re-emit, through `PacketWriter`, to the very
//! same bytes (every encoding is canonical: minimal varints, zero padding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::wire::{Message, Packet, PacketWriter, TAG_LEN, parse_payload};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::parse(data) else {
        return;
    };
    let header = packet.header;
    let mut out = vec![0u8; data.len()];
    if header.is_encrypted() {
        assert_eq!(packet.messages().count(), 0, "ciphertext yields no message");
        // Treat the payload as if it had decrypted to itself: it gets the same rules.
        let plaintext = &packet.payload()[..packet.payload().len() - TAG_LEN];
        let Ok(messages) = parse_payload(&header, plaintext) else {
            return;
        };
        let messages: Vec<Message<'_>> = messages.collect();
        let n = rewrite(&mut out, &packet, &messages, data.len());
        assert_eq!(n, data.len());
        let end = data.len() - TAG_LEN;
        assert_eq!(&out[..end], &data[..end], "encrypted packet re-emits");
        assert!(out[end..].iter().all(|&b| b == 0), "tag room is zeroed");
    } else {
        let messages: Vec<Message<'_>> = packet.messages().collect();
        let n = rewrite(&mut out, &packet, &messages, data.len());
        assert_eq!(&out[..n], data, "packet re-emits to the same bytes");
        let again = Packet::parse(&out[..n]).expect("re-emitted packet parses");
        assert_eq!(again.header, header);
        assert!(again.messages().eq(messages.iter().copied()));
    }
});

/// Writes `messages` under the packet's header, padded to `len`; returns the length.
fn rewrite(out: &mut [u8], packet: &Packet<'_>, messages: &[Message<'_>], len: usize) -> usize {
    let mut w = PacketWriter::new(out, &packet.header).expect("a parsed header re-emits");
    for msg in messages {
        w.push(msg).expect("a parsed message re-emits");
    }
    w.pad_to(len);
    w.try_finish().expect("a parsed packet is complete")
}
