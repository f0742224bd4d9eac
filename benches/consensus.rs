//! Consensus throughput and decision latency (issue 14, point 10).
//!
//! **Loopback** (the default, the figures docs/PERFORMANCE.md reports): 1, 4 and 7 members,
//! each on its own thread with its own redb `DiskStore` in a temporary directory (every vote,
//! proposal and decision fsynced before anything it led to is sent, one commit per input
//! batch), meshed over TCP on 127.0.0.1, driven by closed-loop clients on their own loopback
//! addresses over UDP, policy limits raised for the run. Ids per second, and p50/p99 of
//! member 0's decision latency (a height's start to its decision) and of the clients' id
//! latency (request sent to a quorum of replies held), from hdrhistogram. See
//! `consensus/loopback.rs` for what it leaves out.
//!
//! **In process** (`-- --in-process`): the sans-IO members on an instant in-memory network with
//! no store: the agreement's CPU cost alone.
//!
//! **Processes** (`-- --processes`): `weft node` processes as members, set up from a generated
//! config as `tests/node/cluster.rs` does, and closed-loop clients on weft engines of their
//! own (encrypted channels, certificates verified); see `consensus/processes.rs`.
//!
//! `cargo bench --bench consensus` (release; `--profile dev` for a quick look: dependencies
//! are optimised in every profile). `WEFT_BENCH_REQUESTS` and `WEFT_BENCH_CLIENTS` size the
//! loopback and process runs (defaults 3000 and 64), `WEFT_BENCH_MEMBERS` picks the cluster
//! sizes (default `1,4,7`).

#[path = "consensus/loopback.rs"]
mod loopback;
#[path = "consensus/processes.rs"]
mod processes;

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

fn in_process() {
    println!("in process, no store, no sockets ({REQUESTS} requests)");
    println!("members  ids/s    heights  p50 decision  p99 decision");
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

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1e3
}

fn on_loopback() {
    let requests = env_or("WEFT_BENCH_REQUESTS", 3000);
    let clients = env_or("WEFT_BENCH_CLIENTS", 64);
    let round_base = Duration::from_millis(200);
    let policy = loopback::raised_policy();
    println!(
        "loopback: members on TCP 127.0.0.1, redb DiskStore per member (fsync per commit), \
         {clients} closed-loop clients on 127.1.x.y over UDP, {requests} ids per run, round base \
         {round_base:?}"
    );
    println!(
        "policy RAISED for the run: {:?} ids per IPv4 /32, /24, /16 (defaults 8, 24, 1024) per {:?}",
        policy.ipv4, policy.period
    );
    if let Some(wait) = loopback::decision_wait() {
        println!("decision wait for the next proposal: {wait:?} (WEFT_BENCH_DECISION_WAIT_MS)");
    }
    println!(
        "members  ids/s  heights  decision p50  p99       id p50     p99        commits  ms/commit  inputs/pass"
    );
    for n in member_counts() {
        let f = loopback::run(n, clients, requests, round_base);
        println!(
            "{n:>7}  {:>5.0}  {:>7}  {:>9.2} ms  {:>7.2} ms  {:>7.2} ms  {:>7.2} ms  {:>7}  {:>9.2}  {:>11.1}",
            f.ids_per_second,
            f.heights,
            ms(f.decision.value_at_quantile(0.5)),
            ms(f.decision.value_at_quantile(0.99)),
            ms(f.id.value_at_quantile(0.5)),
            ms(f.id.value_at_quantile(0.99)),
            f.commits,
            f.commit_time.as_secs_f64() * 1e3 / f.commits.max(1) as f64,
            f.inputs as f64 / f.passes.max(1) as f64,
        );
        println!(
            "         {} of {} heights past round 0; member 0 refused: {}",
            f.late,
            f.heights,
            if f.refused.is_empty() {
                "none"
            } else {
                &f.refused
            }
        );
        assert_eq!(f.requests, requests);
    }
}

/// The cluster sizes to run: `WEFT_BENCH_MEMBERS` (comma-separated), default 1, 4 and 7.
fn member_counts() -> Vec<usize> {
    std::env::var("WEFT_BENCH_MEMBERS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 4, 7])
}

fn in_processes() {
    let requests = env_or("WEFT_BENCH_REQUESTS", 3000);
    let clients = env_or("WEFT_BENCH_CLIENTS", 64);
    let round_base = Duration::from_millis(200);
    println!(
        "processes: one `weft node` per member on 127.0.0.1 (redb store in its data directory, \
         fsync per commit), {clients} closed-loop clients on weft engines at 127.2.x.y \
         (encrypted channels, replies verified), {requests} ids per run, round base {round_base:?}"
    );
    println!(
        "policy RAISED for the run: 1000000 ids per IPv4 /32, /24, /16 (defaults 8, 24, 1024) \
         in the members' config"
    );
    println!("members  ids/s  id p50     p99");
    for n in member_counts() {
        let dir = std::env::temp_dir().join(format!(
            "weft-consensus-processes-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let f = processes::run(n, clients, requests, round_base, dir);
        println!(
            "{n:>7}  {:>5.0}  {:>7.2} ms  {:>7.2} ms",
            f.ids_per_second,
            ms(f.id.value_at_quantile(0.5)),
            ms(f.id.value_at_quantile(0.99)),
        );
        assert_eq!(f.requests, requests);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--in-process") {
        in_process();
    } else if std::env::args().any(|a| a == "--processes") {
        in_processes();
    } else {
        on_loopback();
    }
}
