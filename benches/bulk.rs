//! The CPU of one encrypted TCP-mode stream per 1452-byte packet, sender and receiver apart,
//! with no socket, kernel or second thread: two endpoints in one thread, the sender's packets
//! handed to the receiver in batches of 32 (one GSO train's worth) and its ACKs handed back.
//! What `weft bench --bulk` measures less the system calls and the scheduler, so a change to
//! the per-packet bookkeeping shows here above the noise of a shared machine
//! (docs/PERFORMANCE.md, issue 12's bulk gates).
//!
//! `cargo bench --bench bulk [-- MESSAGES]` (default 16,384 messages of 64 KiB = 1 GiB).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::bench::bulk::{bulk_endpoint_config, fill_pattern, tcp_mode};
use weft::bench::load::process_cpu_time;
use weft::channel::{Endpoint, Event};
use weft::session::Identity;

/// Datagrams the sender writes before the receiver takes them (the bench's `SendBatch`).
const BATCH: usize = 32;
/// Bytes of one message, as `weft bench --bulk` sends them.
const MESSAGE: usize = 64 << 10;

struct Side {
    endpoint: Endpoint,
    addr: SocketAddr,
    cpu: Duration,
    packets: u64,
}

fn main() {
    let messages: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(16_384);
    let mut now = Instant::now();
    let endpoint = |secret: u8| {
        Endpoint::new(
            bulk_endpoint_config(),
            Identity::from_secret_bytes([secret; 32], [secret.wrapping_add(1); 32]),
            [secret.wrapping_add(2); 32],
            now,
        )
    };
    let mut a = Side {
        endpoint: endpoint(1),
        addr: SocketAddr::from(([127, 0, 0, 1], 1000)),
        cpu: Duration::ZERO,
        packets: 0,
    };
    let mut b = Side {
        endpoint: endpoint(4),
        addr: SocketAddr::from(([127, 0, 0, 1], 2000)),
        cpu: Duration::ZERO,
        packets: 0,
    };
    let channel = a
        .endpoint
        .open_channel(now, b.addr, None, None, tcp_mode())
        .expect("open");
    let mut slots = vec![vec![0u8; 2048]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut ack_slots = vec![vec![0u8; 2048]; 8];
    let mut ack_lens = [0usize; 8];
    let (mut queued, mut delivered, mut bytes) = (0u64, 0u64, 0u64);
    let mut measuring = false;
    let warm_up = messages / 8;
    let started = Instant::now();
    while delivered < messages + warm_up && started.elapsed() < Duration::from_secs(120) {
        // A few microseconds of virtual time per round: the pacer's bucket refills as it does
        // at ~10 Gbit/s, so the window, not the pacer, limits what leaves.
        now += Duration::from_micros(5);
        if !measuring && delivered >= warm_up {
            measuring = true;
            (a.cpu, b.cpu, a.packets, b.packets, bytes) = (Duration::ZERO, Duration::ZERO, 0, 0, 0);
        }
        let t0 = process_cpu_time();
        while a
            .endpoint
            .send_queued(channel)
            .is_some_and(|q| q + MESSAGE <= 16 * MESSAGE)
        {
            let offset = queued * MESSAGE as u64;
            let fill = |buf: &mut Vec<u8>| {
                buf.resize(MESSAGE, 0);
                fill_pattern(offset, buf);
            };
            if a.endpoint.send_with(now, channel, MESSAGE, fill).is_err() {
                break;
            }
            queued += 1;
        }
        let mut count = 0;
        while count < BATCH {
            match a.endpoint.poll_transmit(&mut slots[count]) {
                Some(t) => {
                    lens[count] = t.len;
                    count += 1;
                }
                None => break,
            }
        }
        if a.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            a.endpoint.handle_timeout(now);
        }
        let t1 = process_cpu_time();
        a.cpu += t1.saturating_sub(t0);
        a.packets += count as u64;
        b.packets += count as u64;
        let mut acks = 0;
        for (slot, &len) in slots.iter_mut().zip(&lens).take(count) {
            b.endpoint.handle(now, a.addr, &mut slot[..len]);
        }
        if b.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            b.endpoint.handle_timeout(now);
        }
        while acks < ack_slots.len() {
            let Some(t) = b.endpoint.poll_transmit(&mut ack_slots[acks]) else {
                break;
            };
            ack_lens[acks] = t.len;
            acks += 1;
        }
        while let Some(event) = b.endpoint.poll_event() {
            if let Event::Message { data, .. } = event {
                delivered += 1;
                bytes += data.len() as u64;
                b.endpoint.recycle(data);
            }
        }
        let t2 = process_cpu_time();
        b.cpu += t2.saturating_sub(t1);
        for (slot, &len) in ack_slots.iter_mut().zip(&ack_lens).take(acks) {
            a.endpoint.handle(now, b.addr, &mut slot[..len]);
        }
        while a.endpoint.poll_event().is_some() {}
        a.cpu += process_cpu_time().saturating_sub(t2);
    }
    let per = |cpu: Duration, packets: u64| cpu.as_nanos() as f64 / packets.max(1) as f64;
    println!(
        "bulk in process: {} MiB in {} packets; sender {:.0} ns/packet, receiver {:.0} ns/packet",
        bytes >> 20,
        a.packets,
        per(a.cpu, a.packets),
        per(b.cpu, b.packets),
    );
}
