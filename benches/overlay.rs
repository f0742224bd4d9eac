//! The overlay at 10,000 nodes (issue 15 point 6): the scenario of the 1,000-node CI test
//! (`tests/overlay/scenario.rs`) at ten times the size, in virtual time, printing the depth and
//! latency distributions of warm, cold and after-churn lookups as a table. The figures are
//! virtual time, so they do not depend on the machine; only the real time line does.
//! Run: `cargo bench --bench overlay` (`WEFT_OVERLAY_NODES`, `WEFT_SEED` to vary it).

#[path = "../tests/sim/mod.rs"]
mod sim;

#[path = "../tests/overlay/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../tests/overlay/scenario.rs"]
mod scenario;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument other than that is not used.
    let n = std::env::var("WEFT_OVERLAY_NODES")
        .ok()
        .map(|n| {
            n.trim()
                .parse()
                .expect("WEFT_OVERLAY_NODES must be a number")
        })
        .unwrap_or(10_000);
    let seed = std::env::var("WEFT_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("WEFT_SEED must be a number"))
        .unwrap_or(0);
    let params = scenario::Params::issue(n, 200, 1000);
    let report = scenario::run(seed, &params);
    scenario::print(seed, &params, &report);
}
