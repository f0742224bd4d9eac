//! Consensus throughput and decision latency (issue 14, point 10), in one process: 1, 4 and 7
//! sans-IO members (`consensus::member::Member`) on an instant in-memory network, every request
//! from its own source address (the one-pending-request-per-source bound counts addresses, so
//! distinct sources stand in for the raised policy limits the issue asks for).
//!
//! What it measures is the agreement itself: signing, verifying, Malachite's driver, batching.
//! No sockets, no channels, and no syncs (the durable store is not on main yet): a lower bound
//! on what a loopback cluster costs, not the loopback figure. `cargo bench --bench consensus`
//! (or `--profile dev` for a quick look; dependencies are optimised in every profile).
//!
//! Each run sends `REQUESTS` requests to every member at once, pumps messages until every id is
//! final at member 0, and reports ids per second and the p50/p99 of member 0's decision latency.
//! The cluster is never idle during a run, so a height's latency is the time from the previous
//! decision (or the start) to its own.

use ed25519_dalek::SigningKey;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::consensus::config::MemberConfig;
use weft::consensus::ids::{MemberKey, NetworkId, NodeIdRequest};
use weft::consensus::member::{Event, Member, Peer};
use weft::consensus::schema::{self, Message};
use weft::consensus::signed::member_key;

const REQUESTS: usize = 2000;

fn source(index: usize) -> SocketAddr {
    SocketAddr::from((
        [10, (index >> 16) as u8, (index >> 8) as u8, index as u8],
        4000,
    ))
}

struct Run {
    ids_per_second: f64,
    p50: Duration,
    p99: Duration,
    heights: usize,
}

fn run(n: usize) -> Run {
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    let members: Vec<MemberKey> = keys.iter().map(member_key).collect();
    let config = MemberConfig {
        network: NetworkId::of_genesis(&members),
        members: members.clone(),
        round_base: Duration::from_millis(200),
        resend: Duration::from_secs(5),
    };
    let mut nodes: Vec<Member> = keys
        .iter()
        .map(|k| Member::new(k.clone(), config.clone()))
        .collect();
    let start = Instant::now();
    let mut wire: VecDeque<(usize, Peer, Vec<u8>)> = VecDeque::new();
    for index in 0..REQUESTS {
        let request = NodeIdRequest {
            key: *blake3::hash(&index.to_le_bytes()).as_bytes(),
            addresses: vec![source(index)],
            salt: 0,
        };
        let bytes = schema::encode(&Message::Request(request));
        for to in 0..n {
            wire.push_back((to, Peer::Client(source(index)), bytes.clone()));
        }
    }
    let mut issued = 0usize;
    let mut latencies = Vec::new();
    let mut since = start;
    // Bounded: every request needs a few heights; far more steps than that is a stall.
    let mut steps = 0u64;
    while issued < REQUESTS && steps < 50_000_000 {
        steps += 1;
        let now = Instant::now();
        match wire.pop_front() {
            Some((to, from, bytes)) => nodes[to].handle(now, from, &bytes),
            None => {
                for node in &mut nodes {
                    if node.poll_timeout().is_some_and(|t| t <= now) {
                        node.handle_timeout(now);
                    }
                }
                std::thread::yield_now();
            }
        }
        for (index, node) in nodes.iter_mut().enumerate() {
            while let Some(t) = node.poll_transmit() {
                if let Peer::Member(key) = t.to {
                    let to = members.iter().position(|m| *m == key).unwrap();
                    wire.push_back((to, Peer::Member(members[index]), t.bytes));
                }
            }
        }
        while let Some(event) = nodes[0].poll_event() {
            match event {
                Event::Decided { .. } => {
                    let decided = Instant::now();
                    latencies.push(decided - since);
                    since = decided;
                }
                Event::Issued { .. } => issued += 1,
            }
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(issued, REQUESTS, "{n} members stalled");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Run {
        ids_per_second: REQUESTS as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
        heights: latencies.len(),
    }
}

fn main() {
    println!("members  ids/s    heights  p50 decision  p99 decision   ({REQUESTS} requests)");
    for n in [1, 4, 7] {
        let r = run(n);
        println!(
            "{n:>7}  {:>7.0}  {:>7}  {:>9.3} ms  {:>9.3} ms",
            r.ids_per_second,
            r.heights,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
}
