//! A soak run: honest echo peers and hostile traffic against one node at once, for a long
//! time, sampling what the node holds (live heap, open files) and spends (CPU) every few
//! seconds, so growth that no short test sees shows up as a trend.

use super::hostile::{HostileConfig, HostileCounters, run_hostile};
use super::{LoadConfig, LoadError, LoadReport, Phase, Progress, run_weft_load};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc` CPU times: USER_HZ, 100 on every Linux architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// Whose resources a soak samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watched {
    /// The node runs in this process: its CPU is its threads' (named `weft-shard-*` and
    /// `weft-echo`), its open files this process's.
    InProcess,
    /// The node is another process.
    Pid(u32),
    /// Nothing to sample (a `--target` node with no pid).
    Nothing,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// The honest peers' load; its `duration` is the soak's.
    pub load: LoadConfig,
    /// Hostile datagrams per second (0: none).
    pub hostile_rate: u64,
    /// Source addresses the hostile traffic comes from.
    pub hostile_sources: usize,
    /// Time between samples.
    pub sample_every: Duration,
    /// Whose open files and CPU are sampled.
    pub watched: Watched,
}

/// One sample; counts are for the interval since the previous one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Time since the data phase started.
    pub at: Duration,
    /// The node's live heap in bytes, when it can be read.
    pub heap: Option<i64>,
    /// The node's open file descriptors, when they can be read.
    pub open_files: Option<u64>,
    /// The node's CPU over the interval, in cores (1.0 = one core busy), when it can be read.
    pub cpu: Option<f64>,
    /// Honest messages sent.
    pub honest_sent: u64,
    /// Honest echoes received.
    pub honest_received: u64,
    /// Hostile datagrams sent.
    pub hostile_sent: u64,
}

/// What a soak measured.
#[derive(Debug)]
pub struct SoakReport {
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// The honest peers' whole run.
    pub honest: LoadReport,
    /// Hostile datagrams sent by kind, and the node's answers to them.
    pub hostile: Arc<HostileCounters>,
}

/// Runs `config`: opens the honest peers' channels, then for `config.load.duration` sends
/// their data and the hostile mix together, calling `on_sample` with each sample as it is taken.
/// `heap` reads the node's live heap (None where it cannot be read).
pub fn run_soak(
    config: &SoakConfig,
    heap: impl Fn() -> Option<i64>,
    mut on_sample: impl FnMut(&Sample),
) -> Result<SoakReport, LoadError> {
    let progress = Arc::new(Progress::default());
    let honest = {
        let (load, progress) = (config.load.clone(), Arc::clone(&progress));
        std::thread::spawn(move || {
            crate::heap::set_thread_account(crate::heap::Account::Harness);
            run_weft_load(&load, &progress, || {})
        })
    };
    while progress.phase() != Phase::Data && !honest.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(HostileCounters::default());
    let hostile = (config.hostile_rate > 0).then(|| {
        let hostile_config = HostileConfig {
            target: config.load.target,
            target_peer: config.load.target_peer,
            rate: config.hostile_rate,
            sources: config.hostile_sources,
        };
        let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
        std::thread::spawn(move || {
            crate::heap::set_thread_account(crate::heap::Account::Harness);
            run_hostile(&hostile_config, &stop, &counters)
        })
    });

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last = (
        started,
        cpu_ticks(config.watched),
        progress.sent.load(Ordering::Relaxed),
        progress.received.load(Ordering::Relaxed),
        counters.sent(),
    );
    let mut next = started + config.sample_every;
    loop {
        let finished = honest.is_finished();
        let now = Instant::now();
        if now >= next || finished {
            let ticks = cpu_ticks(config.watched);
            let (sent, received, hostile_sent) = (
                progress.sent.load(Ordering::Relaxed),
                progress.received.load(Ordering::Relaxed),
                counters.sent(),
            );
            let seconds = now.duration_since(last.0).as_secs_f64();
            let sample = Sample {
                at: now.duration_since(started),
                heap: heap(),
                open_files: open_files(config.watched),
                cpu: ticks
                    .zip(last.1)
                    .filter(|_| seconds > 0.0)
                    .map(|(t, l)| t.saturating_sub(l) as f64 / TICKS_PER_SECOND / seconds),
                honest_sent: sent.saturating_sub(last.2),
                honest_received: received.saturating_sub(last.3),
                hostile_sent: hostile_sent.saturating_sub(last.4),
            };
            on_sample(&sample);
            samples.push(sample);
            last = (now, ticks, sent, received, hostile_sent);
            next += config.sample_every;
        }
        if finished {
            break;
        }
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let hostile_result = hostile.map(|h| h.join());
    let honest = honest
        .join()
        .map_err(|_| LoadError::Io(io::Error::other("the honest load panicked")))??;
    if let Some(result) = hostile_result {
        result.map_err(|_| LoadError::Io(io::Error::other("the hostile load panicked")))??;
    }
    Ok(SoakReport {
        samples,
        honest,
        hostile: counters,
    })
}

/// Open file descriptors of the watched process.
fn open_files(watched: Watched) -> Option<u64> {
    let dir = match watched {
        Watched::InProcess => "/proc/self/fd".to_string(),
        Watched::Pid(pid) => format!("/proc/{pid}/fd"),
        Watched::Nothing => return None,
    };
    Some(std::fs::read_dir(dir).ok()?.count() as u64)
}

/// CPU ticks (user + system) the node has used: its threads' when in-process, else the whole
/// process's.
fn cpu_ticks(watched: Watched) -> Option<u64> {
    match watched {
        Watched::InProcess => {
            let mut total = 0u64;
            for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
                let path = task.path();
                let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
                    continue;
                };
                if name.starts_with("weft-shard") || name.starts_with("weft-echo") {
                    let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
                    total = total.saturating_add(stat_ticks(&stat).unwrap_or(0));
                }
            }
            Some(total)
        }
        Watched::Pid(pid) => {
            stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
        }
        Watched::Nothing => None,
    }
}

/// utime + stime from a `/proc/.../stat` line: fields 14 and 15, counted after the command
/// name, which is in parentheses and may itself hold spaces.
pub(super) fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_reads_utime_and_stime_past_a_name_with_spaces() {
        let stat = "1234 (weft shard) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 1 0";
        assert_eq!(stat_ticks(stat), Some(290));
        assert_eq!(stat_ticks("garbage"), None);
        assert!(cpu_ticks(Watched::InProcess).is_some());
        assert!(open_files(Watched::InProcess).is_some_and(|n| n > 0));
        assert_eq!(open_files(Watched::Nothing), None);
    }
}
