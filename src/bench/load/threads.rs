//! CPU time of named threads of this process, so `weft bench` can charge a node (or the raw
//! echo) only for its own threads, not for the load clients that share the process.
//!
//! Read from `/proc/self/task/TID/schedstat` (nanoseconds on CPU, kept per thread by the
//! scheduler), falling back to `stat`'s utime + stime (10 ms ticks) where a kernel lacks
//! schedstat; plain file reads, so no `unsafe` outside the engine's I/O backends.

use std::collections::HashMap;
use std::time::Duration;

/// Thread names (prefixes of `/proc/.../comm`) of an in-process node: its shards and the echo
/// worker.
pub const NODE_THREADS: &[&str] = &["weft-shard-", "weft-echo"];

/// Thread name prefix of the raw-UDP baseline echo.
pub const RAW_ECHO_THREADS: &[&str] = &["weft-raw-echo"];

/// Nanoseconds in a `/proc` clock tick (USER_HZ is 100 on every Linux architecture).
const NS_PER_TICK: u64 = 10_000_000;

/// Nanoseconds on CPU of one thread: `/proc/self/task/<tid>/...`.
fn thread_cpu_ns(task: &std::path::Path) -> Option<u64> {
    if let Ok(schedstat) = std::fs::read_to_string(task.join("schedstat"))
        && let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
    {
        return Some(ns);
    }
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    Some(super::soak::stat_ticks(&stat)?.saturating_mul(NS_PER_TICK))
}

/// A reading of the CPU clocks of this process's threads whose names start with one of the
/// prefixes, by thread id.
#[derive(Debug, Clone, Default)]
pub struct ThreadClocks {
    by_tid: HashMap<u64, u64>,
}

impl ThreadClocks {
    /// Reads the clocks of the matching threads now.
    pub fn read(prefixes: &[&str]) -> ThreadClocks {
        let mut by_tid = HashMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return ThreadClocks { by_tid };
        };
        for task in tasks.flatten() {
            let path = task.path();
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
                continue;
            };
            if !prefixes.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            if let Some(ns) = thread_cpu_ns(&path) {
                by_tid.insert(tid, ns);
            }
        }
        ThreadClocks { by_tid }
    }

    /// CPU the matching threads used since `earlier`, or `None` when no thread matched now (a
    /// node in another process). A thread born since counts whole; one that has exited is lost,
    /// so both readings are taken while the threads run.
    pub fn since(&self, earlier: &ThreadClocks) -> Option<Duration> {
        if self.by_tid.is_empty() {
            return None;
        }
        let ns = self.by_tid.iter().fold(0u64, |sum, (tid, now)| {
            let before = earlier.by_tid.get(tid).copied().unwrap_or(0);
            sum.saturating_add(now.saturating_sub(before))
        });
        Some(Duration::from_nanos(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_busy_thread_is_charged_and_others_are_not() {
        let before = ThreadClocks::read(&["weft-test-busy"]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let busy = std::thread::Builder::new()
            .name("weft-test-busy".into())
            .spawn(move || {
                let mut x = 0u64;
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            .unwrap();
        // Spin until the thread has been on CPU at all: asserts behaviour, not a duration.
        let used = loop {
            if let Some(used) = ThreadClocks::read(&["weft-test-busy"]).since(&before)
                && used > Duration::ZERO
            {
                break used;
            }
            std::thread::yield_now();
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        busy.join().unwrap();
        assert!(used > Duration::ZERO);
        assert_eq!(ThreadClocks::read(&["no-such-thread"]).since(&before), None);
    }
}
