//! Which seeds a randomised scenario runs under, and a runner that names the seed that failed.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// The seeds a randomised scenario runs under: `WEFT_SEED=S` runs only `S` (to reproduce a
/// failure), `WEFT_SEEDS=N` runs `0..N`, and by default `0..32`.
pub(crate) fn seeds() -> Vec<u64> {
    let one = std::env::var("WEFT_SEED").ok();
    let count = std::env::var("WEFT_SEEDS").ok();
    parse_seeds(one.as_deref(), count.as_deref())
}

/// [`seeds`] from the two variables' values. Panics on a value that is not a number, rather
/// than silently running something else.
pub(crate) fn parse_seeds(one: Option<&str>, count: Option<&str>) -> Vec<u64> {
    if let Some(one) = one {
        let seed = one
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WEFT_SEED must be a number, got {one:?}"));
        return vec![seed];
    }
    let count = count.map_or(32, |count| {
        count
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WEFT_SEEDS must be a number, got {count:?}"))
    });
    (0..count).collect()
}

/// Runs `scenario` once per seed of [`seeds`]; a failure panics naming the seed.
pub(crate) fn for_each_seed(scenario: impl FnMut(u64)) {
    run_seeds(&seeds(), scenario);
}

/// Runs `scenario` for each of `seeds`, stopping at the first that panics with a message that
/// names it and how to rerun it alone.
pub(crate) fn run_seeds(seeds: &[u64], mut scenario: impl FnMut(u64)) {
    for &seed in seeds {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| scenario(seed))) {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned());
            match message {
                Some(message) => {
                    panic!("scenario failed with seed {seed} (rerun: WEFT_SEED={seed}): {message}")
                }
                None => {
                    eprintln!("scenario failed with seed {seed} (rerun: WEFT_SEED={seed})");
                    resume_unwind(payload)
                }
            }
        }
    }
}
