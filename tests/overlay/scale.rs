//! Issue 15 point 6 at 1,000 nodes (the scenario is `scenario.rs`; 10,000 nodes is
//! `benches/overlay.rs`): every FIND_VALUE for a stored key succeeds, a lookup's depth stays
//! within ⌈log2 n⌉, warm and cold lookups stay within 4× (median) and 12× (p99) the median
//! path RTT, and after 20 % of the nodes churned and a republish interval passed, at least
//! 99 % of lookups succeed. The distributions are printed. One seed by default (CI time);
//! `WEFT_SEEDS=N` runs more, `WEFT_SEED=S` one, `WEFT_OVERLAY_NODES` another size.

use super::scenario::{Batch, Params, percentile, print, run};
use crate::sim::{parse_seeds, run_seeds};

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

fn check_latency(name: &str, batch: &Batch, median_rtt: u64) {
    let (p50, p99) = (
        percentile(&batch.latencies_ms, 50),
        percentile(&batch.latencies_ms, 99),
    );
    assert!(
        p50 <= 4 * median_rtt,
        "{name} lookups: median {p50} ms > 4 × the median path RTT {median_rtt} ms"
    );
    assert!(
        p99 <= 12 * median_rtt,
        "{name} lookups: p99 {p99} ms > 12 × the median path RTT {median_rtt} ms"
    );
}

#[test]
fn lookups_at_1000_nodes_find_every_key_warm_cold_and_after_churn() {
    run_seeds(&seeds(), |seed| {
        let params = Params::issue(nodes(), 40, 200);
        let report = run(seed, &params);
        print(seed, &params, &report);
        let n = params.n;
        for (key, stored) in report.stored.iter().enumerate() {
            assert!(*stored > 0, "the put of key {key} reached no node");
        }
        let bound = (n as f64).log2().ceil() as u64;
        for (name, batch) in [("warm", &report.warm), ("cold", &report.cold)] {
            assert_eq!(batch.unfinished, 0, "{name}: every lookup finishes");
            assert_eq!(
                batch.found, batch.lookups,
                "{name}: every FIND_VALUE for a stored key succeeds"
            );
            check_latency(name, batch, report.median_rtt_ms);
        }
        for (name, batch) in [
            ("warm", &report.warm),
            ("cold", &report.cold),
            ("after churn", &report.churned),
        ] {
            let deepest = batch.depths.last().copied().unwrap_or(0);
            assert!(
                deepest <= bound,
                "{name}: depth {deepest} > ⌈log2 {n}⌉ = {bound}"
            );
        }
        // The cold batch really was cold: its first contacts paid a handshake.
        assert!(report.cold.handshakes > 0 && report.cold.cold_share() > report.warm.cold_share());
        let churned = &report.churned;
        assert!(
            churned.found * 100 >= churned.lookups * 99,
            "after churn: {} of {} lookups found their key, below 99 %",
            churned.found,
            churned.lookups
        );
    });
}
