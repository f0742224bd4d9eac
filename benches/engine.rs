//! Engine micro-benchmarks: the software owner computation, and one PING → PONG round trip
//! through a one-shard engine on loopback (syscalls, batching, endpoint and wake-up included).
//! Throughput under load is `weft bench`'s job (docs/PERFORMANCE.md).

use criterion::{Criterion, black_box, criterion_main};
use std::net::UdpSocket;
use std::time::Duration;
use weft::channel::EndpointConfig;
use weft::engine::{Engine, EngineConfig, owner_of};
use weft::session::Identity;
use weft::wire::{ChannelId, Flags, Header, Message, PacketWriter, PeerId};

fn owner(c: &mut Criterion) {
    let datagram = [0x10u8; 64];
    c.bench_function("engine/owner_of", |b| {
        b.iter(|| owner_of(black_box(&datagram), black_box(4)))
    });
}

fn ping_round_trip(c: &mut Criterion) {
    let identity = Identity::from_secret_bytes([1; 32], [2; 32]);
    let config = EngineConfig {
        shards: 1,
        pin: false,
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), EndpointConfig::default())
    };
    let engine = Engine::start(&config, &identity, [3; 32]).unwrap();
    let address = engine.local_addr();
    let stop = engine.shutdown_handle().unwrap();
    let runner = std::thread::spawn(move || engine.run(|_| {}));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let header = Header {
        flags: Flags::default(),
        sender: PeerId([9; 16]),
        recipient: identity.peer_id(),
        channel: ChannelId::DEFAULT,
        sequence: None,
    };
    let mut ping = [0u8; 128];
    let mut writer = PacketWriter::new(&mut ping, &header).unwrap();
    writer.push(&Message::Ping { token: &[7; 8] }).unwrap();
    let len = writer.finish();
    let mut answer = [0u8; 2048];
    c.bench_function("engine/ping_round_trip_1_shard", |b| {
        b.iter(|| {
            socket.send_to(&ping[..len], address).unwrap();
            socket.recv_from(&mut answer).unwrap()
        })
    });
    stop.shutdown();
    let _ = runner.join();
}

// criterion_group! makes a public function that a macro call cannot document; a private
// module keeps it off the crate root, as in benches/handle.rs.
mod group {
    criterion::criterion_group!(benches, super::owner, super::ping_round_trip);
}

criterion_main!(group::benches);
