//! `weft bench --soak`: honest echo peers and hostile traffic against one node together, a
//! table row per sample of the node's heap, open files and CPU, then a summary and the JSON.

use super::{BenchArgs, LocalNode, default_shards, node_heap, node_under_test, render_json};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weft::bench::load::{
    DEFAULT_WINDOW, LoadConfig, Sample, SoakConfig, SoakReport, Watched, run_soak,
};
use weft::heap;

/// Honest messages per second in a soak when `--rate` is 0: steady traffic whose echoes must
/// keep arriving, well below what a node answers, so a soak measures what the node holds over
/// time rather than how fast it can go.
const SOAK_RATE: u64 = 2000;

/// A duration such as `90`, `90s`, `30m` or `1h`, at least a second.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("\"{text}\" is not a duration like 90s, 30m or 1h");
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let count: u64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => Some(count),
        "m" => count.checked_mul(60),
        "h" => count.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(bad)?;
    if seconds == 0 {
        return Err("a soak lasts at least 1s".into());
    }
    Ok(Duration::from_secs(seconds))
}

pub(super) fn parse_sample(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.1..=3600.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!(
            "\"{text}\" is not a number of seconds from 0.1 to 3600"
        )),
    }
}

/// `weft bench --soak`: honest and hostile load together, a table row per sample, a summary.
pub(super) fn run(args: &BenchArgs, duration: Duration) -> Result<(), String> {
    let shards = args.shards.map_or_else(default_shards, usize::from);
    let (node, target, target_peer, io_backend) = node_under_test(args, shards, false)?;
    let counting = node.is_some() && heap::is_counting();
    let watched = match (&node, args.target_pid) {
        (Some(_), _) => Watched::InProcess,
        (None, Some(pid)) => Watched::Pid(pid),
        (None, None) => Watched::Nothing,
    };
    let rate = if args.rate == 0 { SOAK_RATE } else { args.rate };
    let config = SoakConfig {
        load: LoadConfig {
            target,
            target_peer,
            peers: args.peers as usize,
            clients: usize::from(args.clients),
            size: usize::from(args.size),
            rate,
            duration,
            capabilities: args.mode.capabilities(),
            window: DEFAULT_WINDOW,
        },
        hostile_rate: args.hostile_rate,
        hostile_sources: usize::from(args.flood_sources),
        sample_every: Duration::from_secs_f64(args.sample),
        watched,
    };
    let mut stdout = std::io::stdout();
    let _ = write!(
        stdout,
        "weft bench --soak {}s: {} honest peers ({}) at {rate} messages/s, {} hostile \
         datagrams/s (CHANNEL_NEW, random bytes, INIT without cookie) from {} sources, \
         shards={shards} io={io_backend}\n{:>9}{:>16}{:>12}{:>11}{:>13}{:>13}{:>14}\n",
        duration.as_secs(),
        args.peers,
        args.mode.name(),
        args.hostile_rate,
        args.flood_sources,
        "time s",
        "node heap B",
        "open files",
        "node CPU",
        "honest sent",
        "honest recv",
        "hostile sent",
    );
    let _ = stdout.flush();
    let report = run_soak(
        &config,
        || counting.then(node_heap),
        |sample| {
            let _ = write!(stdout, "{}", soak_row(sample));
            let _ = stdout.flush();
        },
    );
    let node_notes = node.map(LocalNode::stop).unwrap_or_default();
    let report = report.map_err(|e| format!("soak failed: {e}"))?;
    let summary = SoakSummary::of(&report);
    let _ = write!(stdout, "{}{node_notes}", summary.text(&report));
    if let Some(path) = &args.json {
        let mut fields: Vec<(&str, String)> = vec![
            ("mode", "\"soak\"".to_string()),
            ("duration_s", duration.as_secs().to_string()),
            ("sample_every_s", format!("{:.3}", args.sample)),
            ("shards", shards.to_string()),
            ("io_backend", format!("\"{io_backend}\"")),
            ("peers", args.peers.to_string()),
            ("rate", rate.to_string()),
            ("hostile_rate", args.hostile_rate.to_string()),
            ("heap_counted", counting.to_string()),
        ];
        fields.extend(summary.fields(&report));
        std::fs::write(path, render_json(&fields))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn or_na<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| v.to_string())
}

fn or_null<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "null".to_string(), |v| v.to_string())
}

fn soak_row(s: &Sample) -> String {
    format!(
        "{:>9.1}{:>16}{:>12}{:>11}{:>13}{:>13}{:>14}\n",
        s.at.as_secs_f64(),
        or_na(s.heap),
        or_na(s.open_files),
        or_na(s.cpu.map(|c| format!("{:.1} %", c * 100.0))),
        s.honest_sent,
        s.honest_received,
        s.hostile_sent,
    )
}

/// First, last and largest of a series that may be missing.
fn first_last_max<T: Copy + Ord>(values: impl Iterator<Item = Option<T>>) -> Option<(T, T, T)> {
    let values: Vec<T> = values.flatten().collect();
    Some((*values.first()?, *values.last()?, *values.iter().max()?))
}

/// A soak's figures, for the summary line and the JSON.
struct SoakSummary {
    heap: Option<(i64, i64, i64)>,
    files: Option<(u64, u64, u64)>,
    cpu_mean: Option<f64>,
    cpu_max: Option<f64>,
    silent_samples: usize,
}

impl SoakSummary {
    fn of(report: &SoakReport) -> SoakSummary {
        let samples = &report.samples;
        let cpus: Vec<f64> = samples.iter().filter_map(|s| s.cpu).collect();
        SoakSummary {
            heap: first_last_max(samples.iter().map(|s| s.heap)),
            files: first_last_max(samples.iter().map(|s| s.open_files)),
            cpu_mean: (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64),
            cpu_max: cpus.iter().copied().reduce(f64::max),
            // A sample in which honest peers sent but heard nothing back.
            silent_samples: samples
                .iter()
                .filter(|s| s.honest_sent > 0 && s.honest_received == 0)
                .count(),
        }
    }

    fn text(&self, report: &SoakReport) -> String {
        let h = &report.honest;
        let mut out = format!(
            "honest: {} channels open, {} sent, {} received ({:.2} %), {} of {} samples with \
             none received\n",
            h.opened,
            h.sent,
            h.received,
            h.received as f64 * 100.0 / h.sent.max(1) as f64,
            self.silent_samples,
            report.samples.len(),
        );
        let x = &report.hostile;
        out += &format!(
            "hostile: {} sent ({} CHANNEL_NEW, {} random, {} INIT), {} answered\n",
            x.sent(),
            x.channel_new.load(Ordering::Relaxed),
            x.garbage.load(Ordering::Relaxed),
            x.init.load(Ordering::Relaxed),
            x.answers.load(Ordering::Relaxed),
        );
        out += &match self.heap {
            Some((first, last, max)) => format!(
                "node heap: {first} B at the first sample, {last} B at the last, {max} B at most\n"
            ),
            None => "node heap: n/a (a --target node, or no counting allocator)\n".to_string(),
        };
        out += &match self.files {
            Some((first, last, max)) => {
                format!(
                    "open files: {first} at the first sample, {last} at the last, {max} at most\n"
                )
            }
            None => "open files: n/a (a --target node without --target-pid)\n".to_string(),
        };
        out += &match (self.cpu_mean, self.cpu_max) {
            (Some(mean), Some(max)) => format!(
                "node CPU: {:.1} % of a core on average, {:.1} % at most\n",
                mean * 100.0,
                max * 100.0
            ),
            _ => "node CPU: n/a (a --target node without --target-pid)\n".to_string(),
        };
        out
    }

    fn fields(&self, report: &SoakReport) -> Vec<(&'static str, String)> {
        let (h, x) = (&report.honest, &report.hostile);
        let samples: Vec<String> = report
            .samples
            .iter()
            .map(|s| {
                format!(
                    "{{\"t_s\": {:.3}, \"heap\": {}, \"open_files\": {}, \"cpu_cores\": {}, \
                     \"honest_sent\": {}, \"honest_received\": {}, \"hostile_sent\": {}}}",
                    s.at.as_secs_f64(),
                    or_null(s.heap),
                    or_null(s.open_files),
                    or_null(s.cpu.map(|c| format!("{c:.4}"))),
                    s.honest_sent,
                    s.honest_received,
                    s.hostile_sent
                )
            })
            .collect();
        vec![
            ("honest_channels_opened", h.opened.to_string()),
            ("honest_sent", h.sent.to_string()),
            ("honest_received", h.received.to_string()),
            ("honest_p99_us", h.latency_us(0.99).to_string()),
            ("samples_without_replies", self.silent_samples.to_string()),
            ("hostile_sent", x.sent().to_string()),
            (
                "hostile_channel_new",
                x.channel_new.load(Ordering::Relaxed).to_string(),
            ),
            (
                "hostile_garbage",
                x.garbage.load(Ordering::Relaxed).to_string(),
            ),
            ("hostile_init", x.init.load(Ordering::Relaxed).to_string()),
            (
                "hostile_answers",
                x.answers.load(Ordering::Relaxed).to_string(),
            ),
            ("heap_first", or_null(self.heap.map(|h| h.0))),
            ("heap_last", or_null(self.heap.map(|h| h.1))),
            ("heap_max", or_null(self.heap.map(|h| h.2))),
            ("open_files_first", or_null(self.files.map(|f| f.0))),
            ("open_files_last", or_null(self.files.map(|f| f.1))),
            ("open_files_max", or_null(self.files.map(|f| f.2))),
            (
                "cpu_cores_mean",
                or_null(self.cpu_mean.map(|c| format!("{c:.4}"))),
            ),
            (
                "cpu_cores_max",
                or_null(self.cpu_max.map(|c| format!("{c:.4}"))),
            ),
            ("sample_count", report.samples.len().to_string()),
            ("samples", format!("[{}]", samples.join(", "))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours_and_refuse_the_rest() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "",
            "0",
            "0s",
            "s",
            "1.5h",
            "2x",
            "-1s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_sample("0.5").is_ok());
        assert!(parse_sample("0").is_err() && parse_sample("nan").is_err());
    }
}
