//! The `process_*` metrics every Prometheus client exports (CPU seconds, resident memory, open
//! files, start time), read from Linux's /proc at scrape time; elsewhere there are none.

use super::exposition::Sample;
use std::fs;

/// Clock ticks per second in /proc's times (USER_HZ): 100 on every Linux architecture, part of
/// the kernel's ABI to user space.
const USER_HZ: f64 = 100.0;

/// The process metrics of this process, whatever /proc could tell.
pub fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // utime and stime are fields 14 and 15 of the line (11 and 12 after the name and state).
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    if let (Some(user), Some(system)) = (tick(11), tick(12)) {
        out.push(Sample::plain(
            "process_cpu_seconds_total",
            (user + system) / USER_HZ,
        ));
    }
    // starttime is field 22: ticks after boot; boot time is `btime` in /proc/stat.
    let boot = fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(start), Some(boot)) = (tick(19), boot) {
        out.push(Sample::plain(
            "process_start_time_seconds",
            boot + start / USER_HZ,
        ));
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.trim().strip_suffix("kB")?;
            rest.trim().parse::<u64>().ok()
        })
    };
    if let Some(rss) = kib("VmRSS:") {
        out.push(Sample::plain(
            "process_resident_memory_bytes",
            rss.saturating_mul(1024),
        ));
    }
    if let Some(size) = kib("VmSize:") {
        out.push(Sample::plain(
            "process_virtual_memory_bytes",
            size.saturating_mul(1024),
        ));
    }
    if let Ok(fds) = fs::read_dir("/proc/self/fd") {
        out.push(Sample::plain("process_open_fds", fds.count()));
    }
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let max_fds = limits.lines().find_map(|l| {
        l.strip_prefix("Max open files")?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    });
    if let Some(max) = max_fds {
        out.push(Sample::plain("process_max_fds", max));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn linux_reports_every_process_metric() {
        let samples = super::samples();
        let names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "process_cpu_seconds_total",
            "process_start_time_seconds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(names.contains(&name), "{name} missing: {names:?}");
        }
        for s in &samples {
            let value: f64 = s.value.parse().unwrap();
            assert!(value >= 0.0 && value.is_finite(), "{s:?}");
        }
        let start = samples
            .iter()
            .find(|s| s.name == "process_start_time_seconds")
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started: f64 = start.value.parse().unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 365.0,
            "{started} vs {now}"
        );
    }
}
