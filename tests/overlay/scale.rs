//! Issue 15 point 6 at 1,000 nodes: every FIND_VALUE for a stored key succeeds, a lookup's
//! depth stays within ⌈log2 n⌉, and the depth and latency distributions are printed. Links as
//! the issue sets them: one-way latency 10–100 ms, 1 % loss; 10 % of nodes go silent after
//! joining. Virtual time throughout. One seed by default (CI time); `WEFT_SEEDS=N` runs more,
//! `WEFT_SEED=S` one, `WEFT_OVERLAY_NODES` another size.

use super::harness::{join_all, lossy_link, network, sim_config};
use crate::sim::{NodeId as SimId, SimRng, parse_seeds, run_seeds};
use std::collections::BTreeMap;
use std::time::Duration;
use weft::overlay::kademlia::Event;
use weft::overlay::rpc::Value;

/// The keys stored and looked up per seed.
const KEYS: usize = 40;

fn nodes() -> usize {
    std::env::var("WEFT_OVERLAY_NODES")
        .ok()
        .map(|n| {
            n.trim()
                .parse()
                .expect("WEFT_OVERLAY_NODES must be a number")
        })
        .unwrap_or(1000)
}

fn seeds() -> Vec<u64> {
    let one = std::env::var("WEFT_SEED").ok();
    let count = std::env::var("WEFT_SEEDS").ok();
    parse_seeds(one.as_deref(), Some(count.as_deref().unwrap_or("1")))
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

fn histogram(name: &str, values: &[u64]) {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(*v).or_default() += 1;
    }
    let line: Vec<String> = counts.iter().map(|(v, c)| format!("{v}:{c}")).collect();
    println!("  {name} (value:count) {}", line.join(" "));
}

#[test]
fn every_stored_key_is_found_within_log2_n_hops_at_1000_nodes() {
    run_seeds(&seeds(), |seed| {
        let n = nodes();
        let mut net = network(seed, n, lossy_link(), |_| sim_config());
        let clock = std::time::Instant::now();
        join_all(
            &mut net,
            seed,
            Duration::from_millis(20),
            Duration::from_secs(5),
        );
        eprintln!("joined in {:?} (real time)", clock.elapsed());

        let mut rng = SimRng::derive(seed, 0x5ca1e);
        // 10 % go silent after joining: they stay in tables until lookups find them dead.
        let mut silent = vec![false; n];
        let mut went_silent = 0;
        while went_silent < n / 10 {
            let i = (rng.next_u64() % n as u64) as usize;
            if !silent[i] {
                silent[i] = true;
                net.node_mut(SimId(i)).silent = true;
                went_silent += 1;
            }
        }
        let live: Vec<usize> = (0..n).filter(|i| !silent[*i]).collect();
        let pick = |rng: &mut SimRng| live[(rng.next_u64() % live.len() as u64) as usize];

        // Store KEYS keys, each from a random live node, all at once.
        let mut publishers = Vec::new();
        for key in 0..KEYS {
            let who = pick(&mut rng);
            let now = net.now();
            let wall = net.node(SimId(who)).wall_at(now);
            let k = format!("key-{key}").into_bytes();
            net.node_mut(SimId(who))
                .dht
                .put(now, wall, &k, Value::UInt(key as u64), key as u64);
            publishers.push(who);
        }
        net.drive_for(Duration::from_secs(30));
        eprintln!("stored in {:?} (real time)", clock.elapsed());
        for (key, who) in publishers.iter().enumerate() {
            let stored = net.node(SimId(*who)).events.iter().find_map(|e| match e {
                Event::Put { token, stored, .. } if *token == key as u64 => Some(*stored),
                _ => None,
            });
            let stored = stored.unwrap_or_else(|| panic!("put of key {key} did not finish"));
            let table = net.node(SimId(*who)).dht.table().len();
            assert!(
                stored > 0,
                "put of key {key} from node {who} reached no node ({table} contacts)"
            );
        }

        // Look each key up from another random live node, all at once.
        let mut askers = Vec::new();
        for key in 0..KEYS {
            let who = pick(&mut rng);
            let now = net.now();
            let k = format!("key-{key}").into_bytes();
            net.node_mut(SimId(who))
                .dht
                .get(now, &k, 1_000 + key as u64);
            askers.push(who);
        }
        net.drive_for(Duration::from_secs(30));

        let bound = (n as f64).log2().ceil() as u32;
        let mut depths = Vec::new();
        let mut latencies = Vec::new();
        let mut requests = Vec::new();
        for (key, who) in askers.iter().enumerate() {
            let result = net.node(SimId(*who)).events.iter().find_map(|e| match e {
                Event::Lookup { token, result } if *token == 1_000 + key as u64 => Some(result),
                _ => None,
            });
            let result = result.unwrap_or_else(|| panic!("get of key {key} did not finish"));
            let found = result
                .found
                .as_ref()
                .unwrap_or_else(|| panic!("get of key {key} from node {who} found nothing"));
            assert_eq!(found.value, Value::UInt(key as u64));
            assert!(
                result.depth <= bound,
                "get of key {key}: depth {} > ⌈log2 {n}⌉ = {bound}",
                result.depth
            );
            depths.push(u64::from(result.depth));
            latencies.push(result.elapsed.as_millis() as u64);
            requests.push(u64::from(result.requests));
        }
        depths.sort_unstable();
        latencies.sort_unstable();
        requests.sort_unstable();
        println!(
            "overlay sim seed {seed}: {n} nodes, {} silent, {KEYS} keys, link RTT 20–200 ms (median 110 ms), 1 % loss",
            n / 10
        );
        histogram("depth", &depths);
        println!(
            "  latency ms: p50 {} p90 {} p99 {} max {}",
            percentile(&latencies, 50),
            percentile(&latencies, 90),
            percentile(&latencies, 99),
            latencies.last().copied().unwrap_or(0)
        );
        println!(
            "  requests per get: p50 {} max {}",
            percentile(&requests, 50),
            requests.last().copied().unwrap_or(0)
        );
        let fill: usize = (0..n).map(|i| net.node(SimId(i)).dht.table().len()).sum();
        println!("  mean contacts per node: {}", fill / n);
    });
}
