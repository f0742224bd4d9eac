//! Node memory per idle peer (PROTOCOL.md §12): one server endpoint holds an encrypted session
//! and one open UDP channel with each of many clients, and its live heap per peer (measured by
//! the counting allocator around the server's calls only) stays under a fixed bound, so a
//! regression in per-peer state fails here.

use super::flood::live_bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::{Endpoint, EndpointConfig, Event, HeapReport};
use weft::session::Identity;
use weft::wire::Capabilities;

/// The bound on server bytes per idle peer: the figure measured, plus about 10 % (2,854 B once
/// an idle channel gives its reliability state back and keeps only what differs from a fresh
/// one; 3,291 B before, 6,527 B before issue 12's first cuts).
const MAX_BYTES_PER_PEER: i64 = 3_150;

struct Bench {
    server: Endpoint,
    server_addr: SocketAddr,
    clients: Vec<(Endpoint, SocketAddr)>,
    now: Instant,
    buf: Vec<u8>,
    /// Net bytes the server allocated, counted only while it ran.
    server_heap: i64,
    opened: usize,
}

impl Bench {
    fn server_call<R>(&mut self, f: impl FnOnce(&mut Endpoint) -> R) -> R {
        let before = live_bytes();
        let result = f(&mut self.server);
        self.server_heap += live_bytes() - before;
        result
    }

    /// Moves every queued datagram both ways, runs due timers and takes the events.
    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        let now = self.now;
        loop {
            let mut moved = false;
            let server_addr = self.server_addr;
            for i in 0..self.clients.len() {
                let from = self.clients[i].1;
                while let Some(t) = self.clients[i].0.poll_transmit(&mut self.buf) {
                    let mut datagram = self.buf[..t.len].to_vec();
                    self.server_call(|s| s.handle(now, from, &mut datagram));
                    moved = true;
                }
            }
            loop {
                let mut buf = std::mem::take(&mut self.buf);
                let sent = self.server_call(|s| s.poll_transmit(&mut buf));
                self.buf = buf;
                let Some(t) = sent else { break };
                let Some(client) = self.clients.iter_mut().find(|c| c.1 == t.destination) else {
                    continue;
                };
                client.0.handle(now, server_addr, &mut self.buf[..t.len]);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        for (client, _) in &mut self.clients {
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
            while client.poll_event().is_some() {}
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server_call(|s| s.handle_timeout(now));
        }
        while let Some(event) = self.server_call(Endpoint::poll_event) {
            if matches!(event, Event::ChannelOpened { .. }) {
                self.opened += 1;
            }
        }
    }
}

fn identity(n: u32) -> Identity {
    let mut a = [7u8; 32];
    let mut b = [9u8; 32];
    a[..4].copy_from_slice(&n.to_be_bytes());
    b[..4].copy_from_slice(&n.to_be_bytes());
    Identity::from_secret_bytes(a, b)
}

/// Server bytes per peer once `peers` clients each hold a session and one open UDP channel,
/// and the server's heap taken apart.
fn server_bytes_per_peer(peers: u32) -> (i64, HeapReport) {
    let now = Instant::now();
    let server_addr = SocketAddr::from(([10, 0, 0, 1], 1000));
    let before = live_bytes();
    let server = Endpoint::new(EndpointConfig::default(), identity(u32::MAX), [3; 32], now);
    let created = live_bytes() - before;
    let mut bench = Bench {
        server,
        server_addr,
        clients: Vec::new(),
        now,
        buf: vec![0; 2048],
        server_heap: created,
        opened: 0,
    };
    for n in 0..peers {
        let addr = SocketAddr::from(([10, 1, (n >> 8) as u8, n as u8], 2000));
        let mut seed = [5u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let mut client = Endpoint::new(EndpointConfig::default(), identity(n), seed, now);
        client
            .open_channel(
                now,
                server_addr,
                None,
                None,
                Capabilities::from_bits(0).unwrap(),
            )
            .expect("open");
        bench.clients.push((client, addr));
        // A few handshakes at a time, as peers arrive: the server's load policy (§5) would
        // answer a burst of hundreds with cookies, which is not what this test measures.
        if bench.clients.len().is_multiple_of(32) || n + 1 == peers {
            for _ in 0..200 {
                bench.step();
                if bench.opened == bench.clients.len() {
                    break;
                }
            }
        }
    }
    assert_eq!(bench.opened, peers as usize, "every channel opened");
    assert_eq!(bench.server.session_count(), peers as usize);
    // Idle: let more than a keep-alive interval (§7.7: 15 s) pass with nothing sent.
    for _ in 0..40 {
        bench.now += Duration::from_millis(500);
        bench.step();
    }
    assert_eq!(bench.server.channel_count(), peers as usize);
    let per_peer = (bench.server_heap - created) / i64::from(peers);
    println!(
        "server heap {} B, of which {created} B at creation",
        bench.server_heap
    );
    (per_peer, bench.server.heap_report(&live_bytes))
}

/// Prints the report per peer, largest part first, for docs/PERFORMANCE.md's table.
fn print_table(report: &HeapReport, peers: u32) {
    let mut parts = report.parts.clone();
    parts.sort_by_key(|&(_, bytes)| std::cmp::Reverse(bytes));
    println!("| part | bytes per peer |\n|---|---|");
    for (part, bytes) in &parts {
        println!("| {part} | {:.1} |", *bytes as f64 / f64::from(peers));
    }
    let total: i64 = parts.iter().map(|&(_, bytes)| bytes).sum();
    println!("| total | {:.1} |", total as f64 / f64::from(peers));
    for (name, size) in &report.sizes {
        println!("size_of {name}: {size}");
    }
}

#[test]
fn an_idle_peer_with_a_session_and_a_channel_costs_the_server_a_bounded_heap() {
    let (per_peer, report) = server_bytes_per_peer(500);
    println!("server bytes/peer {per_peer}");
    print_table(&report, 500);
    let part = |name: &str| {
        report
            .parts
            .iter()
            .find(|(part, _)| *part == name)
            .map(|&(_, bytes)| bytes)
    };
    // An idle peer holds no key schedules, no boxed replay window and no reliability state
    // beyond what differs from a fresh channel's: its channels carried too few packets to keep
    // keys, and its silence shed the rest.
    for idle in [
        "channel keys: expanded AES schedules",
        "channel keys: boxed replay windows",
        "reliability busy state (box)",
        "reliability send side",
        "reliability receive side",
    ] {
        assert_eq!(part(idle), Some(0), "{idle}");
    }
    assert!(
        per_peer <= MAX_BYTES_PER_PEER,
        "server holds {per_peer} bytes per idle peer (bound {MAX_BYTES_PER_PEER})"
    );
}
