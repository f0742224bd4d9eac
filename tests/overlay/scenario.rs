//! The scale scenario of issue 15 point 6, shared by the 1,000-node CI test
//! (`tests/overlay/scale.rs`) and the 10,000-node benchmark (`benches/overlay.rs`): join `n`
//! nodes over lossy links with a per-path latency, silence 10 %, store keys, look half of them
//! up warm (sessions as the run left them) and half cold (every session forgotten first, so
//! each first contact pays its handshake), then churn 20 % of the nodes (they leave silently,
//! as many new ones join), let the wall clock pass a republish interval, and look every key up
//! again. Virtual time throughout; what it returns does not depend on the machine.

use super::harness::{OverlayNode, contact, join_first, lossy_link, network, sim_config};
use crate::sim::{Network, NodeId as SimId, SimRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weft::overlay::kademlia::Event;
use weft::overlay::rpc::Value;

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Params {
    /// Nodes that join first.
    pub(crate) n: usize,
    /// Keys stored; half are looked up warm, half cold.
    pub(crate) keys: usize,
    /// Lookups after churn (each of a random key).
    pub(crate) churn_lookups: usize,
    /// The share of nodes that go silent after joining (10 %).
    pub(crate) silent: f64,
    /// The share of the live nodes that leave, and of new ones that join (20 %).
    pub(crate) churn: f64,
    /// Round trips a first contact (no session) waits before its request leaves: what the
    /// engine really costs with IK to a known record, 2. The IK handshake is one (CHANNEL_NEW
    /// travels only encrypted, PROTOCOL.md §5, so it cannot ride the INIT); CHANNEL_NEW /
    /// ACKNOWLEDGE is the second (the initiator needs cookie2 before anything may go on the
    /// channel, §6); the request then rides the CHANNEL_COOKIE as early data, with no
    /// FINALIZE round trip and no wait for the worker to hear of the open. XX would be 3 (its
    /// INIT is always answered with a cookie first).
    pub(crate) handshake_rtts: u8,
}

impl Params {
    /// The issue's settings at `n` nodes.
    pub(crate) fn issue(n: usize, keys: usize, churn_lookups: usize) -> Params {
        Params {
            n,
            keys,
            churn_lookups,
            silent: 0.1,
            churn: 0.2,
            handshake_rtts: 2,
        }
    }
}

/// One batch of lookups.
#[derive(Clone, Debug, Default)]
pub(crate) struct Batch {
    /// Lookups started.
    pub(crate) lookups: usize,
    /// Those that found the value stored under their key.
    pub(crate) found: usize,
    /// Those that did not finish within the batch's time.
    pub(crate) unfinished: usize,
    /// Depths, latencies (ms) and requests of the lookups that finished, each sorted.
    pub(crate) depths: Vec<u64>,
    pub(crate) latencies_ms: Vec<u64>,
    pub(crate) requests: Vec<u64>,
    /// Frames sent during the batch, and handshakes (cold first contacts) among them.
    pub(crate) frames: u64,
    pub(crate) handshakes: u64,
}

impl Batch {
    /// The share of frames that waited for a handshake.
    pub(crate) fn cold_share(&self) -> f64 {
        self.handshakes as f64 / self.frames.max(1) as f64
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Report {
    /// STORE acknowledgements per put (k at most).
    pub(crate) stored: Vec<usize>,
    /// Mean routing-table size after joining.
    pub(crate) contacts_mean: usize,
    pub(crate) warm: Batch,
    pub(crate) cold: Batch,
    pub(crate) churned: Batch,
    /// The median RTT of the paths the run's links drew, in ms.
    pub(crate) median_rtt_ms: u64,
    /// Real time spent joining, and in the whole run.
    pub(crate) join_real: Duration,
    pub(crate) total_real: Duration,
}

/// The value `sorted` holds at percentile `p`.
pub(crate) fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

/// `value:count` pairs of `values`.
pub(crate) fn histogram(values: &[u64]) -> String {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(*v).or_default() += 1;
    }
    let line: Vec<String> = counts.iter().map(|(v, c)| format!("{v}:{c}")).collect();
    line.join(" ")
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn traffic(net: &Network<OverlayNode>) -> (u64, u64) {
    (0..net.len()).fold((0, 0), |(f, h), i| {
        let node = net.node(SimId(i));
        (f + node.frames_sent, h + node.handshakes)
    })
}

/// Starts every `(asker, key index)` get at once, runs the network `wait`, and collects.
fn lookups(
    net: &mut Network<OverlayNode>,
    gets: &[(usize, usize)],
    token_base: u64,
    wait: Duration,
) -> Batch {
    let (frames0, handshakes0) = traffic(net);
    for (j, (who, k)) in gets.iter().enumerate() {
        let now = net.now();
        net.node_mut(SimId(*who))
            .dht
            .get(now, &key(*k), token_base + j as u64);
    }
    net.drive_for(wait);
    let (frames1, handshakes1) = traffic(net);
    let mut batch = Batch {
        lookups: gets.len(),
        frames: frames1 - frames0,
        handshakes: handshakes1 - handshakes0,
        ..Batch::default()
    };
    for (j, (who, k)) in gets.iter().enumerate() {
        let token = token_base + j as u64;
        let result = net.node(SimId(*who)).events.iter().find_map(|e| match e {
            Event::Lookup { token: t, result } if *t == token => Some(result),
            _ => None,
        });
        let Some(result) = result else {
            batch.unfinished += 1;
            continue;
        };
        if result
            .found
            .as_ref()
            .is_some_and(|f| f.value == Value::UInt(*k as u64))
        {
            batch.found += 1;
        }
        batch.depths.push(u64::from(result.depth));
        batch.latencies_ms.push(result.elapsed.as_millis() as u64);
        batch.requests.push(u64::from(result.requests));
    }
    batch.depths.sort_unstable();
    batch.latencies_ms.sort_unstable();
    batch.requests.sort_unstable();
    batch
}

/// Silences `count` random nodes among `candidates` (which it updates).
fn silence(net: &mut Network<OverlayNode>, rng: &mut SimRng, live: &mut Vec<usize>, count: usize) {
    for _ in 0..count.min(live.len()) {
        let at = (rng.next_u64() % live.len() as u64) as usize;
        let who = live.swap_remove(at);
        net.node_mut(SimId(who)).silent = true;
    }
    live.sort_unstable();
}

/// The median path RTT: a path's one-way delay is uniform in `[delay, delay + jitter]`, the
/// same both ways.
fn median_rtt(net: &Network<OverlayNode>) -> u64 {
    let link = net.default_link();
    (2 * link.delay + link.jitter).as_millis() as u64
}

/// Runs the scenario under `seed`.
pub(crate) fn run(seed: u64, p: &Params) -> Report {
    let clock = Instant::now();
    let joiners = (p.n as f64 * p.churn) as usize;
    let total = p.n + joiners;
    let mut net = network(seed, total, lossy_link(), |_| sim_config());
    for i in 0..total {
        net.node_mut(SimId(i)).handshake_rtts = p.handshake_rtts;
    }
    join_first(
        &mut net,
        seed,
        p.n,
        Duration::from_millis(20),
        Duration::from_secs(5),
    );
    let mut report = Report {
        join_real: clock.elapsed(),
        contacts_mean: (0..p.n)
            .map(|i| net.node(SimId(i)).dht.table().len())
            .sum::<usize>()
            / p.n.max(1),
        median_rtt_ms: median_rtt(&net),
        ..Report::default()
    };

    let mut rng = SimRng::derive(seed, 0x5ca1e);
    let mut live: Vec<usize> = (0..p.n).collect();
    silence(
        &mut net,
        &mut rng,
        &mut live,
        (p.n as f64 * p.silent) as usize,
    );
    let pick =
        |rng: &mut SimRng, live: &[usize]| live[(rng.next_u64() % live.len() as u64) as usize];

    // Store every key from a random live node, all at once.
    let mut publishers = Vec::new();
    for k in 0..p.keys {
        let who = pick(&mut rng, &live);
        let now = net.now();
        let wall = net.node(SimId(who)).wall_at(now);
        net.node_mut(SimId(who))
            .dht
            .put(now, wall, &key(k), Value::UInt(k as u64), k as u64);
        publishers.push(who);
    }
    net.drive_for(Duration::from_secs(30));
    for (k, who) in publishers.iter().enumerate() {
        let stored = net.node(SimId(*who)).events.iter().find_map(|e| match e {
            Event::Put { token, stored, .. } if *token == k as u64 => Some(*stored),
            _ => None,
        });
        report.stored.push(stored.unwrap_or(0));
    }

    // Warm: sessions as joining and storing left them.
    let half = p.keys / 2;
    let warm: Vec<(usize, usize)> = (0..half).map(|k| (pick(&mut rng, &live), k)).collect();
    report.warm = lookups(&mut net, &warm, 1_000_000, Duration::from_secs(30));
    // Cold: every node forgets every session first.
    for i in 0..total {
        net.node_mut(SimId(i)).forget_sessions();
    }
    let cold: Vec<(usize, usize)> = (half..p.keys).map(|k| (pick(&mut rng, &live), k)).collect();
    report.cold = lookups(&mut net, &cold, 2_000_000, Duration::from_secs(30));

    // Churn: a share of the live nodes leaves without a word, as many new ones join.
    silence(&mut net, &mut rng, &mut live, joiners);
    for i in p.n..total {
        let via = contact(seed, pick(&mut rng, &live));
        let now = net.now();
        net.node_mut(SimId(i)).dht.bootstrap(now, &[via]);
        net.drive_for(Duration::from_millis(20));
        live.push(i);
    }
    net.drive_for(Duration::from_secs(5));
    // A republish interval (22 h) passes on the wall clock: publishers still here store their
    // keys again, and every replica passes what it holds on to the k closest it now finds.
    for i in 0..total {
        net.node_mut(SimId(i)).wall_offset += 22 * 3600;
    }
    net.drive_for(Duration::from_secs(60));
    let after: Vec<(usize, usize)> = (0..p.churn_lookups)
        .map(|_| {
            let k = (rng.next_u64() % p.keys as u64) as usize;
            (pick(&mut rng, &live), k)
        })
        .collect();
    report.churned = lookups(&mut net, &after, 3_000_000, Duration::from_secs(30));
    report.total_real = clock.elapsed();
    report
}

/// The report as the table the test and the benchmark print.
pub(crate) fn print(seed: u64, p: &Params, r: &Report) {
    let bound = (p.n as f64).log2().ceil() as u64;
    println!(
        "overlay sim seed {seed}: {} nodes ({} silent, then {} churned), {} keys, path RTT \
         20–200 ms (median {} ms), 1 % loss, a first contact waits {} RTT (IK, then the \
         channel's establishment; the request rides its CHANNEL_COOKIE)",
        p.n,
        (p.n as f64 * p.silent) as usize,
        (p.n as f64 * p.churn) as usize,
        p.keys,
        r.median_rtt_ms,
        p.handshake_rtts
    );
    println!(
        "  stores acknowledged per put: min {} (k = 20); mean contacts per node {}",
        r.stored.iter().min().copied().unwrap_or(0),
        r.contacts_mean
    );
    println!(
        "  | lookups | found | depth p50 | depth max (bound {bound}) | latency p50 ms | p90 | p99 | max | requests p50 | cold contacts |"
    );
    println!("  |---|---|---|---|---|---|---|---|---|---|");
    for (name, b) in [
        ("warm", &r.warm),
        ("cold", &r.cold),
        ("after churn", &r.churned),
    ] {
        println!(
            "  | {name}: {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} % |",
            b.lookups,
            b.found,
            percentile(&b.depths, 50),
            b.depths.last().copied().unwrap_or(0),
            percentile(&b.latencies_ms, 50),
            percentile(&b.latencies_ms, 90),
            percentile(&b.latencies_ms, 99),
            b.latencies_ms.last().copied().unwrap_or(0),
            percentile(&b.requests, 50),
            100.0 * b.cold_share()
        );
    }
    for (name, b) in [
        ("warm", &r.warm),
        ("cold", &r.cold),
        ("after churn", &r.churned),
    ] {
        println!("  depth {name} (value:count) {}", histogram(&b.depths));
    }
    println!(
        "  real time: joining {:.1} s, whole run {:.1} s",
        r.join_real.as_secs_f64(),
        r.total_real.as_secs_f64()
    );
}
