//! Reliability speed (PROTOCOL.md §7): goodput of a bulk TCP-mode transfer through the
//! simulator at 0 %, 1 % and 5 % loss, and the per-packet CPU cost of the send path
//! (`write_frames` + `on_ack`) and of the receive path (`on_packet_received` + `on_data` +
//! `poll_event`). Run: `cargo bench --bench reliability`; the goodput table is printed first.

// criterion_group! defines an undocumented pub fn.
#![allow(missing_docs)]

#[path = "../tests/sim/mod.rs"]
mod sim;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sim::{LinkConfig, Network, addr};
use std::hint::black_box;
use std::time::{Duration, Instant};
use weft::channel::reliability::Delivery;
use weft::channel::reliability::{ChannelReliability, PathState, ReliabilityConfig};
use weft::channel::{BufferPool, Endpoint, EndpointConfig, Event};
use weft::wire::Capabilities;

/// The simulated bottleneck of the goodput runs.
const BANDWIDTH_BPS: u64 = 20_000_000;
/// Bytes each goodput run moves, in 8 KiB messages.
const TRANSFER: usize = 4 << 20;
const MESSAGE: usize = 8 << 10;

struct Goodput {
    loss: f64,
    virtual_time: Duration,
    real_time: Duration,
}

/// One bulk TCP-mode transfer of [`TRANSFER`] bytes over a 20 Mbit/s, 10 ms link with a
/// 64 KiB bottleneck queue.
fn goodput(loss: f64) -> Goodput {
    let config = EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    };
    let mut net: Network<Endpoint> = Network::new(1);
    let a = net.add_endpoint(addr(1), config.clone());
    let b = net.add_endpoint(addr(2), config);
    let peer = net.node(b).local_peer_id();
    let now = net.now();
    let tcp = Capabilities::from_bits(7).unwrap();
    let channel = net
        .node_mut(a)
        .open_channel(now, addr(2), Some(peer), None, tcp)
        .unwrap();
    net.drive_for(Duration::from_millis(500));
    while net.node_mut(b).poll_event().is_some() {}
    net.set_default_link(LinkConfig {
        loss,
        bandwidth_bps: Some(BANDWIDTH_BPS),
        queue_bytes: Some(64 << 10),
        ..LinkConfig::default()
    });
    let message = vec![0x5a; MESSAGE];
    let (start_virtual, start_real) = (net.elapsed(), Instant::now());
    let (mut sent, mut received) = (0, 0);
    while received < TRANSFER {
        while sent < TRANSFER && net.node(a).send_queued(channel).unwrap() < 256 << 10 {
            let now = net.now();
            net.node_mut(a).send(now, channel, &message).unwrap();
            sent += MESSAGE;
        }
        net.drive_for(Duration::from_millis(5));
        while let Some(event) = net.node_mut(b).poll_event() {
            if let Event::Message { data, .. } = event {
                received += data.len();
            }
        }
        assert!(net.elapsed() < Duration::from_secs(600), "transfer stalled");
    }
    Goodput {
        loss,
        virtual_time: net.elapsed() - start_virtual,
        real_time: start_real.elapsed(),
    }
}

fn goodput_table() {
    println!();
    println!(
        "bulk TCP-mode transfer, {} MiB over {} Mbit/s, 10 ms one way, 64 KiB queue",
        TRANSFER >> 20,
        BANDWIDTH_BPS / 1_000_000
    );
    println!("loss | virtual s | utilisation | wall ms | MB/s per core");
    for loss in [0.0, 0.01, 0.05] {
        let run = goodput(loss);
        let bits = (TRANSFER * 8) as f64;
        let utilisation = bits / run.virtual_time.as_secs_f64() / BANDWIDTH_BPS as f64;
        let rate = TRANSFER as f64 / run.real_time.as_secs_f64() / 1e6;
        println!(
            "{:>3.0} % | {:>9.2} | {:>10.1} % | {:>7.1} | {:>8.1}",
            run.loss * 100.0,
            run.virtual_time.as_secs_f64(),
            utilisation * 100.0,
            run.real_time.as_secs_f64() * 1e3,
            rate
        );
    }
    println!();
}

/// Per packet: queue a 1 KiB message, write its packet, and acknowledge it.
fn send_path(c: &mut Criterion) {
    goodput_table();
    let config = ReliabilityConfig::default();
    let tcp = Capabilities::from_bits(7).unwrap();
    let mut now = Instant::now();
    let mut path = PathState::new(&config, now);
    let mut channel = ChannelReliability::new(tcp, &config, now);
    // Large credit: the bench measures the send path, not flow control.
    channel.on_window(u64::MAX >> 2, u64::MAX >> 2);
    let mut buf = vec![0u8; 1400];
    let message = vec![0x5a; 1000];
    let mut pn = 0u64;
    let mut pool = BufferPool::new();
    // The loop below must really send: one packet per message, each acknowledged.
    channel.send(now, &message, &mut pool).unwrap();
    assert!(channel.write_frames(now, pn, &mut path, &mut buf) > 1000);
    channel.on_ack(now, [(pn, pn)].into_iter(), Duration::ZERO, &mut path);
    pn += 1;
    let mut group = c.benchmark_group("reliability");
    group.throughput(Throughput::Elements(1));
    group.bench_function("send_path_per_packet", |bench| {
        bench.iter(|| {
            now += Duration::from_micros(100);
            channel.send(now, &message, &mut pool).unwrap();
            let written = channel.write_frames(now, pn, &mut path, &mut buf);
            channel.on_ack(now, [(pn, pn)].into_iter(), Duration::ZERO, &mut path);
            channel.reclaim(&mut pool);
            pn += 1;
            black_box(written)
        });
    });
    let mut receiver = ChannelReliability::new(tcp, &config, now);
    let mut receiver_path = PathState::new(&config, now);
    let (mut number, mut receiver_pn) = (0u64, 0u64);
    group.bench_function("receive_path_per_packet", |bench| {
        bench.iter(|| {
            now += Duration::from_micros(100);
            receiver.on_packet_received(now, number, true);
            receiver.on_data(now, number, &message, &mut pool);
            number += 1;
            let event = receiver.poll_event();
            // The receiver's own packets: ACKs every second packet, WINDOW as credit frees
            // up; each is acknowledged at once so the window never fills.
            let written = receiver.write_frames(now, receiver_pn, &mut receiver_path, &mut buf);
            if written > 0 {
                let acked = [(receiver_pn, receiver_pn)].into_iter();
                receiver.on_ack(now, acked, Duration::ZERO, &mut receiver_path);
                receiver_pn += 1;
            }
            if let Some(Delivery::Message { data, .. }) = event {
                pool.recycle(black_box(data));
            }
        });
    });
    group.finish();
    // Every message was taken, none dropped for want of credit.
    assert_eq!(receiver.stats().credit_drops, 0);
    assert_eq!(channel.stats().packets_lost, 0);
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = short();
    targets = send_path
}
criterion_main!(benches);
