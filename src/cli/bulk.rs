//! `weft bench --bulk SIZE`: one encrypted TCP-mode stream between two single-shard processes,
//! then a raw-UDP GSO/GRO blast between two processes for as long, and the two side by side
//! (docs/BULK.md).
//!
//! The receiving process is this binary again, started as the hidden `weft bulk-sink`; it
//! prints `ready ADDR PEER` once listening and one `done key=value …` line at the end.

use super::{EXIT_FAILURE, EXIT_USAGE};
use clap::Args;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use weft::bench::bulk::{
    BulkConfig, BulkReport, BulkSink, MESSAGE_BYTES, PACKET_BYTES, RawReport, RawSink, raw_blast,
    run_bulk_sender,
};
use weft::bench::quinn::QuinnPerf;
use weft::wire::PeerId;

/// How long the sender waits for the sink's report after its own end.
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// Shortest baseline blast, so that a tiny transfer still gets a stable baseline figure.
const MIN_BASELINE: Duration = Duration::from_millis(200);

/// Parses a size like `1G`, `256M`, `64K` (binary units) or plain bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let error = || format!("\"{text}\" is not a size like 1G, 256M, 64K or 1000000");
    let trimmed = text.trim();
    let (digits, unit) = match trimmed.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&trimmed[..i], c.to_ascii_uppercase()),
        _ => (trimmed, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return Err(error()),
    };
    let value: u64 = digits.parse().map_err(|_| error())?;
    let bytes = value.checked_shl(shift).filter(|b| b >> shift == value);
    match bytes {
        Some(b) if b > 0 => Ok(b),
        _ => Err(error()),
    }
}

/// Flags of the hidden `weft bulk-sink`, the receiving process of `weft bench --bulk`.
#[derive(Debug, Args)]
pub(crate) struct SinkArgs {
    /// Stream bytes to wait for
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1G")]
    size: u64,
    /// Seconds to wait before reporting what arrived
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u32,
    /// Count raw datagrams instead (the baseline) until a line arrives on stdin
    #[arg(long)]
    raw: bool,
    /// Leave the receiving shard's thread unpinned
    #[arg(long)]
    no_pin: bool,
}

/// Runs `weft bulk-sink`.
pub(crate) fn sink(args: SinkArgs) -> ExitCode {
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let timeout = Duration::from_secs(u64::from(args.timeout));
    let mut out = std::io::stdout();
    if args.raw {
        let sink = match RawSink::bind(listen) {
            Ok(s) => s,
            Err(e) => return fail(&format!("cannot bind: {e}")),
        };
        let Ok(address) = sink.local_addr() else {
            return fail("no local address");
        };
        let _ = writeln!(out, "ready {address} -");
        let _ = out.flush();
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = Arc::clone(&stop);
        // A line or the end of stdin stops the count; the watchdog stops an orphan.
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_line(&mut String::new());
            stopper.store(true, Ordering::Release);
        });
        let watchdog = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            watchdog.store(true, Ordering::Release);
        });
        let report = sink.run(&stop);
        let _ = writeln!(
            out,
            "done bytes={} datagrams={} calls={} first_ns={} last_ns={} cpu_ns={}",
            report.bytes,
            report.datagrams,
            report.calls,
            report.first_unix_ns,
            report.last_unix_ns,
            report.cpu.as_nanos()
        );
        return ExitCode::SUCCESS;
    }
    let sink = match BulkSink::start(listen, !args.no_pin) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot start the node: {e}")),
    };
    let _ = writeln!(out, "ready {} {}", sink.local_addr(), sink.peer_id());
    let _ = out.flush();
    let report = sink.wait(args.size, timeout);
    for note in &report.notes {
        eprintln!("sink: {note}");
    }
    let _ = writeln!(
        out,
        "done bytes={} messages={} bad={} first_ns={} last_ns={} cpu_ns={} datagrams={} \
         worker_drops={} complete={}",
        report.bytes,
        report.messages,
        report.first_bad.map_or(-1, |b| b as i64),
        report.first_unix_ns,
        report.last_unix_ns,
        report.cpu.as_nanos(),
        report.datagrams,
        report.worker_drops,
        u8::from(report.complete),
    );
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("weft bench --bulk: {message}");
    ExitCode::from(EXIT_FAILURE)
}

/// glibc's setting of how much free memory at the top of a heap it keeps before giving pages
/// back to the kernel.
const TRIM_THRESHOLD: &str = "MALLOC_TRIM_THRESHOLD_";
/// The sink's: 64 MiB, far above the messages its credit lets it hold (64 of 64 KiB).
const SINK_TRIM_THRESHOLD: &str = "67108864";

/// A started sink process: its address, peer id and output.
struct SinkProcess {
    child: Child,
    lines: BufReader<ChildStdout>,
    address: SocketAddr,
    peer: Option<PeerId>,
}

impl SinkProcess {
    fn start(extra: &[&str]) -> Result<SinkProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut command = Command::new(exe);
        // The sink's shard fills a fresh 64 KiB buffer per message and its worker frees it on
        // another thread; glibc then hands the pages back to the kernel (its 128 KiB trim
        // threshold), and the shard faults in zeroed pages again for the next messages: about
        // a sixth of the receiver's CPU per packet went to page faults and unmapping, the
        // allocator's cost and not the protocol's (docs/PERFORMANCE.md, branch `hot`). A
        // threshold the operator set is kept.
        if std::env::var_os(TRIM_THRESHOLD).is_none() {
            command.env(TRIM_THRESHOLD, SINK_TRIM_THRESHOLD);
        }
        let mut child = command
            .arg("bulk-sink")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the sink process: {e}"))?;
        let stdout = child.stdout.take().ok_or("the sink has no stdout")?;
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let _ = lines.read_line(&mut line);
        let mut words = line.split_whitespace();
        let (Some("ready"), Some(address), Some(peer)) = (words.next(), words.next(), words.next())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the sink did not start (it said {:?})",
                line.trim()
            ));
        };
        let address = address
            .parse()
            .map_err(|_| format!("the sink gave a bad address: {address}"))?;
        Ok(SinkProcess {
            child,
            lines,
            address,
            peer: PeerId::from_hex(peer),
        })
    }

    /// Waits for the `done` line on another thread, so the caller can watch for it.
    fn watch(
        mut self,
    ) -> (
        Arc<AtomicBool>,
        std::thread::JoinHandle<Result<Fields, String>>,
    ) {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            let fields = self.read_done();
            flag.store(true, Ordering::Release);
            let _ = self.child.wait();
            fields
        });
        (done, thread)
    }

    fn read_done(&mut self) -> Result<Fields, String> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.lines.read_line(&mut line) {
                Ok(0) | Err(_) => return Err("the sink ended without a report".into()),
                Ok(_) if line.starts_with("done ") => return Ok(Fields::parse(&line)),
                Ok(_) => {}
            }
        }
    }
}

/// The `key=value` words of a `done` line.
struct Fields(HashMap<String, String>);

impl Fields {
    fn parse(line: &str) -> Fields {
        Fields(
            line.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn u64(&self, key: &str) -> u64 {
        self.0.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    fn i64(&self, key: &str) -> i64 {
        self.0.get(key).and_then(|v| v.parse().ok()).unwrap_or(-1)
    }
}

/// Everything the two runs measured.
struct Figures {
    size: u64,
    sender: BulkReport,
    sink: Fields,
    raw_sender: RawReport,
    raw_sink: Fields,
    /// quinn-perf's run, when `--quinn-json` named one.
    quinn: Option<QuinnPerf>,
    /// Whether the receiving shard was pinned to a core.
    pinned: bool,
}

impl Figures {
    /// Seconds from the first byte sent to the last byte delivered.
    fn seconds(&self) -> f64 {
        let end = self.sink.u64("last_ns");
        end.saturating_sub(self.sender.first_send_unix_ns) as f64 / 1e9
    }

    fn delivered(&self) -> u64 {
        self.sink.u64("bytes")
    }

    fn gbps(&self) -> f64 {
        self.delivered() as f64 * 8.0 / self.seconds().max(1e-9) / 1e9
    }

    fn baseline_seconds(&self) -> f64 {
        let end = self.raw_sink.u64("last_ns");
        end.saturating_sub(self.raw_sender.first_unix_ns) as f64 / 1e9
    }

    fn baseline_gbps(&self) -> f64 {
        self.raw_sink.u64("bytes") as f64 * 8.0 / self.baseline_seconds().max(1e-9) / 1e9
    }

    /// No byte arrived wrong, and a finished transfer lost nothing to the worker queue. A run
    /// cut off by `--duration` stops its shard with messages still queued for the worker,
    /// which the shard discards: those are the stop, not damage (they are reported apart).
    fn intact(&self) -> bool {
        self.sink.i64("bad") < 0 && (!self.complete() || self.sink.u64("worker_drops") == 0)
    }

    fn complete(&self) -> bool {
        self.sink.u64("complete") == 1
    }
}

/// Runs `weft bench --bulk SIZE`; `duration` bounds the transfer, `json` gets the figures,
/// `quinn_json` is quinn-perf's output to set beside them.
pub(crate) fn run(
    size: u64,
    duration: u32,
    json: Option<&Path>,
    quinn_json: Option<&Path>,
    pin: bool,
) -> ExitCode {
    // A bad file is found before a transfer that may take a minute, not after it.
    let quinn = match quinn_json.map(QuinnPerf::read).transpose() {
        Ok(quinn) => quinn,
        Err(message) => {
            let path = quinn_json.map_or(String::new(), |p| p.display().to_string());
            eprintln!("weft bench --bulk: --quinn-json {path}: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match bench(size, duration, json, quinn, pin) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILURE),
        Err(message) => fail(&message),
    }
}

fn bench(
    size: u64,
    duration: u32,
    json: Option<&Path>,
    quinn: Option<QuinnPerf>,
    pin: bool,
) -> Result<bool, String> {
    let timeout = Duration::from_secs(u64::from(duration));
    let (size_text, timeout_text) = (size.to_string(), duration.to_string());
    let mut sink_args = vec!["--size", &size_text, "--timeout", &timeout_text];
    if !pin {
        sink_args.push("--no-pin");
    }
    let sink = SinkProcess::start(&sink_args)?;
    let config = BulkConfig {
        target: sink.address,
        target_peer: sink.peer.ok_or("the sink gave no peer id")?,
        bytes: size,
        message: MESSAGE_BYTES,
        timeout: timeout + REPORT_GRACE,
    };
    let (done, reader) = sink.watch();
    let sender = run_bulk_sender(&config, &done).map_err(|e| format!("sender: {e}"))?;
    let sink = reader
        .join()
        .map_err(|_| "the sink reader panicked".to_string())??;

    // PROTOCOL.md has no say here: the baseline blasts for as long as weft took, so both
    // figures come from the same stretch of a shared machine's time.
    let blast = Duration::from_nanos(
        sink.u64("last_ns")
            .saturating_sub(sender.first_send_unix_ns),
    )
    .clamp(MIN_BASELINE, timeout.max(MIN_BASELINE));
    let mut raw = SinkProcess::start(&["--raw", "--timeout", &(duration + 10).to_string()])?;
    let raw_sender = raw_blast(raw.address, blast).map_err(|e| format!("baseline: {e}"))?;
    // Let the sink drain its socket buffer before it stops counting.
    std::thread::sleep(Duration::from_millis(50));
    if let Some(stdin) = raw.child.stdin.as_mut() {
        let _ = stdin.write_all(b"stop\n");
    }
    let raw_sink = raw.read_done()?;
    let _ = raw.child.wait();

    let figures = Figures {
        size,
        sender,
        sink,
        raw_sender,
        raw_sink,
        quinn,
        pinned: pin,
    };
    print!("{}", render(&figures));
    if let Some(path) = json {
        std::fs::write(path, render_json(&figures))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if !figures.intact() {
        return Err(format!(
            "the stream arrived damaged: first bad byte at offset {}, {} messages dropped by the \
             worker queue",
            figures.sink.i64("bad"),
            figures.sink.u64("worker_drops")
        ));
    }
    Ok(true)
}

fn per_second(count: u64, seconds: f64) -> f64 {
    count as f64 / seconds.max(1e-9)
}

fn ns_per(cpu_ns: u64, count: u64) -> f64 {
    cpu_ns as f64 / count.max(1) as f64
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "IK",
        2 => "XX",
        3 => "IKpsk2",
        _ => "none",
    }
}

fn render(f: &Figures) -> String {
    let seconds = f.seconds();
    let raw_seconds = f.baseline_seconds();
    let mut out = format!(
        "weft bench --bulk {}: one TCP-mode channel, session {}, messages of {} bytes, packets \
         <= {PACKET_BYTES} bytes, 1 shard each side, receiving shard {}\n",
        f.size,
        kind_name(f.sender.session_kind),
        MESSAGE_BYTES,
        if f.pinned { "pinned" } else { "unpinned" },
    );
    out += &format!(
        "{:<30}{:>14}{:>16}{:>10}\n",
        "", "weft", "raw UDP GSO", "ratio"
    );
    let row = |name: &str, w: f64, b: f64| {
        format!("{name:<30}{w:>14.2}{b:>16.2}{:>10.3}\n", w / b.max(1e-9))
    };
    out += &row("goodput Gbit/s", f.gbps(), f.baseline_gbps());
    out += &row("seconds", seconds, raw_seconds);
    out += &row(
        "packets/s sent",
        per_second(f.sender.datagrams, seconds),
        per_second(f.raw_sender.datagrams, raw_seconds),
    );
    out += &row(
        "packets/s received",
        per_second(f.sink.u64("datagrams"), seconds),
        per_second(f.raw_sink.u64("datagrams"), raw_seconds),
    );
    out += &row(
        "sender CPU ns/packet",
        ns_per(f.sender.cpu.as_nanos() as u64, f.sender.datagrams),
        ns_per(f.raw_sender.cpu.as_nanos() as u64, f.raw_sender.datagrams),
    );
    out += &row(
        "receiver CPU ns/packet",
        ns_per(f.sink.u64("cpu_ns"), f.sink.u64("datagrams")),
        ns_per(f.raw_sink.u64("cpu_ns"), f.raw_sink.u64("datagrams")),
    );
    if let Some(quinn) = &f.quinn {
        out += &format!(
            "{:<30}{:>14.2}{:>16.2}{:>10.3}   (quinn-perf download: {} bytes in {:.2} s over {} \
             intervals; quinn negotiates AES-128-GCM, weft seals with AES-256-GCM)\n",
            "goodput vs quinn-perf Gbit/s",
            f.gbps(),
            quinn.gbps(),
            f.gbps() / quinn.gbps().max(1e-9),
            quinn.bytes,
            quinn.seconds,
            quinn.intervals,
        );
    }
    // Everything the sink sends after the handshake is an ACK, a WINDOW or both (PROTOCOL.md
    // §7.1, §7.4): the cost of acknowledging, which the ACK frequency sets.
    out += &format!(
        "the sink sent {} packets: {:.2} per 100 it received\n",
        f.sender.datagrams_received,
        100.0 * f.sender.datagrams_received as f64 / f.sink.u64("datagrams").max(1) as f64,
    );
    let (cwnd, srtt, mtu) = f.sender.path;
    out += &format!(
        "delivered {} of {} bytes ({}), intact: {}; lost packets {} (resent {} bytes), probe \
         timeouts {}; end cwnd {} B, srtt {} µs, mtu {}, largest datagram {} B; handshake+open {:.2} ms; baseline \
         delivered {:.1} % of {} datagrams sent\n",
        f.delivered(),
        f.size,
        if f.complete() {
            "complete"
        } else {
            "timed out"
        },
        match (f.intact(), f.complete(), f.sink.u64("worker_drops")) {
            (false, _, _) => "NO".to_string(),
            (true, false, drops) if drops > 0 => {
                format!("yes ({drops} messages still queued for the worker at the stop)")
            }
            (true, _, _) => "yes".to_string(),
        },
        f.sender.packets_lost,
        f.sender.retransmitted_bytes,
        f.sender.probe_timeouts,
        cwnd,
        srtt.as_micros(),
        mtu,
        f.sender.largest_datagram,
        f.sender.open_time.as_secs_f64() * 1e3,
        100.0 * f.raw_sink.u64("datagrams") as f64 / f.raw_sender.datagrams.max(1) as f64,
        f.raw_sender.datagrams,
    );
    out
}

fn render_json(f: &Figures) -> String {
    // quinn-perf's figures lead, when there are any; the rest is the same either way.
    let quinn = f.quinn.as_ref().map_or(String::new(), |q| {
        format!(
            "  \"quinn_gbps\": {:.4},\n  \"quinn_ratio\": {:.4},\n  \"quinn_bytes\": {},\n  \
             \"quinn_seconds\": {:.3},\n  \"quinn_intervals\": {},\n",
            q.gbps(),
            f.gbps() / q.gbps().max(1e-9),
            q.bytes,
            q.seconds,
            q.intervals,
        )
    });
    format!(
        "{{\n{quinn}  \"bulk_gbps\": {:.4},\n  \"baseline_gbps\": {:.4},\n  \"ratio\": {:.4},\n  \
         \"bytes\": {},\n  \"requested_bytes\": {},\n  \"seconds\": {:.6},\n  \
         \"retransmissions\": {},\n  \"packets_lost\": {},\n  \"probe_timeouts\": {},\n  \
         \"retransmitted_bytes\": {},\n  \"intact\": {},\n  \
         \"complete\": {},\n  \"packets_sent\": {},\n  \"packets_received\": {},\n  \
         \"sink_packets_sent\": {},\n  \
         \"sender_cpu_ns_per_packet\": {:.1},\n  \"receiver_cpu_ns_per_packet\": {:.1},\n  \
         \"baseline_packets_sent\": {},\n  \"baseline_packets_received\": {},\n  \
         \"largest_datagram\": {},\n  \"path_mtu\": {},\n  \"srtt_us\": {},\n  \"session_kind\": \"{}\",\n  \
         \"pinned\": {},\n  \"message_bytes\": {MESSAGE_BYTES},\n  \"packet_bytes\": {PACKET_BYTES}\n}}\n",
        f.gbps(),
        f.baseline_gbps(),
        f.gbps() / f.baseline_gbps().max(1e-9),
        f.delivered(),
        f.size,
        f.seconds(),
        // Data goes out again after a loss verdict or a probe timeout (PROTOCOL.md §7.2).
        f.sender.packets_lost + f.sender.probe_timeouts,
        f.sender.packets_lost,
        f.sender.probe_timeouts,
        f.sender.retransmitted_bytes,
        f.intact(),
        f.complete(),
        f.sender.datagrams,
        f.sink.u64("datagrams"),
        f.sender.datagrams_received,
        ns_per(f.sender.cpu.as_nanos() as u64, f.sender.datagrams),
        ns_per(f.sink.u64("cpu_ns"), f.sink.u64("datagrams")),
        f.raw_sender.datagrams,
        f.raw_sink.u64("datagrams"),
        f.sender.largest_datagram,
        f.sender.path.2,
        f.sender.path.1.as_micros(),
        kind_name(f.sender.session_kind),
        f.pinned,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn a_run_cut_off_by_its_duration_is_timed_out_not_damaged() {
        let figures = |done: &str| Figures {
            size: 1 << 30,
            sender: Default::default(),
            sink: Fields::parse(done),
            raw_sender: Default::default(),
            raw_sink: Fields::parse("done\n"),
            quinn: None,
            pinned: false,
        };
        // Cut off: the shard discarded what it still queued for the worker.
        let cut = figures("done bytes=1000 bad=-1 complete=0 worker_drops=7\n");
        assert!(cut.intact());
        assert!(render(&cut).contains("timed out), intact: yes (7 messages still queued"));
        // Finished, yet the worker queue dropped messages: damage.
        assert!(!figures("done bytes=1000 bad=-1 complete=1 worker_drops=7\n").intact());
        // A wrong byte is damage either way.
        assert!(!figures("done bytes=1000 bad=12 complete=0 worker_drops=0\n").intact());
        assert!(figures("done bytes=1000 bad=-1 complete=1 worker_drops=0\n").intact());
    }

    #[test]
    fn done_lines_parse() {
        let fields = Fields::parse("done bytes=8388608 bad=-1 complete=1\n");
        assert_eq!(fields.u64("bytes"), 8 << 20);
        assert_eq!(fields.i64("bad"), -1);
        assert_eq!(fields.u64("complete"), 1);
        assert_eq!(fields.u64("missing"), 0);
    }
}
