//! Wire-format speed: header parse, full packet parse, message emit.

// criterion_group! defines an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft::wire::{
    ChannelId, DEFAULT_MTU, Flags, Header, Message, Packet, PacketWriter, PeerId, emit_ack,
};

fn channel_header() -> Header {
    Header {
        flags: Flags::SEQUENCED,
        sender: PeerId([0xa1; 16]),
        recipient: PeerId([0xb2; 16]),
        channel: ChannelId::new(5, 0x8001),
        sequence: Some(123_456),
    }
}

/// A full-size packet on a channel: four DATA messages, an ACK, padding to the MTU.
fn data_packet() -> Vec<u8> {
    let mut buf = vec![0u8; DEFAULT_MTU];
    let payload = [0x5au8; 270];
    let mut w = PacketWriter::new(&mut buf, &channel_header()).unwrap();
    for n in 0..4 {
        w.push(&Message::Data {
            message_number: 1000 + n,
            payload: &payload,
        })
        .unwrap();
    }
    w.push_ack(&[(90, 100), (40, 60), (0, 10)], 25_000).unwrap();
    w.pad_to(DEFAULT_MTU);
    let n = w.finish();
    buf.truncate(n);
    buf
}

fn parse(c: &mut Criterion) {
    let packet = data_packet();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(packet.len() as u64));
    group.bench_function("header", |b| {
        b.iter(|| Header::parse(black_box(&packet)).unwrap())
    });
    group.bench_function("packet_1200_data", |b| {
        b.iter(|| {
            let p = Packet::parse(black_box(&packet)).unwrap();
            p.messages().fold(0usize, |n, m| n + m.encoded_len())
        })
    });
    group.finish();
}

fn emit(c: &mut Criterion) {
    let payload = [0x5au8; 270];
    let data = Message::Data {
        message_number: 1000,
        payload: &payload,
    };
    let mut buf = [0u8; DEFAULT_MTU];
    let mut group = c.benchmark_group("emit");
    group.bench_function("data_270", |b| {
        b.iter(|| black_box(&data).emit(black_box(&mut buf)).unwrap())
    });
    group.bench_function("ack_3_ranges", |b| {
        let ranges = [(90, 100), (40, 60), (0, 10)];
        b.iter(|| emit_ack(black_box(&ranges), 25_000, black_box(&mut buf)).unwrap())
    });
    group.bench_function("packet_1200_data", |b| {
        b.iter(|| {
            let mut w = PacketWriter::new(&mut buf, black_box(&channel_header())).unwrap();
            for n in 0..4 {
                w.push(&Message::Data {
                    message_number: 1000 + n,
                    payload: &payload,
                })
                .unwrap();
            }
            w.pad_to(DEFAULT_MTU);
            w.finish()
        })
    });
    group.finish();
}

criterion_group!(benches, parse, emit);
criterion_main!(benches);
