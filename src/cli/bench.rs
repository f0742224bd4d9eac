//! `weft bench`: load a node with simulated peers over loopback, then run the raw-UDP baseline
//! with the same shards, batches and sizes, and print weft's figures beside it.

use super::{EXIT_FAILURE, parse_socket_addr};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use weft::channel::EndpointConfig;
use weft::engine::load::{
    LoadConfig, LoadError, LoadReport, Progress, RawEcho, resident_bytes, run_raw_load,
    run_weft_load,
};
use weft::engine::{Engine, EngineConfig, default_shards, run_echo_worker};

/// Messages that may wait for the echo worker, as `weft node --echo` sizes it.
const WORKER_QUEUE: usize = 4096;
use weft::session::Identity;
use weft::wire::{Capabilities, PeerId};

/// Channel modes (PROTOCOL.md §7); only `udp` is implemented until the reliability layer lands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Unreliable, unordered datagrams (capabilities 0).
    Udp,
    /// Resent and ordered, like TCP (RESEND | ORDERED).
    Tcp,
    /// Resent, delivered as they come (RESEND).
    Reliable,
    /// Ordered, late messages dropped (ORDERED).
    Ordered,
}

impl Mode {
    fn capabilities(self) -> Capabilities {
        match self {
            Mode::Udp => Capabilities::NONE,
            Mode::Tcp => Capabilities::RESEND.union(Capabilities::ORDERED),
            Mode::Reliable => Capabilities::RESEND,
            Mode::Ordered => Capabilities::ORDERED,
        }
    }
}

/// Flags of `weft bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Load an existing `weft node --echo` instead of starting one in-process
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    target: Option<SocketAddr>,
    /// The target's peer id (32 hex digits), when --target is given
    #[arg(long, value_name = "HEX", value_parser = parse_peer)]
    target_peer: Option<PeerId>,
    /// Channel mode of the opened channels
    #[arg(long, value_enum, default_value_t = Mode::Udp)]
    mode: Mode,
    /// Bytes of application data per message
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u16).range(8..=1100))]
    size: u16,
    /// Messages per second over all peers; 0 means as fast as each peer's window allows
    #[arg(long, value_name = "PPS", default_value_t = 0)]
    rate: u64,
    /// Simulated peers, each with its own peer id
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    peers: u32,
    /// Client sockets (and threads) the peers share
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    clients: u16,
    /// Seconds of data per run (weft, then the baseline)
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    duration: u32,
    /// Shards of the in-process node and of the baseline echo [default: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    shards: Option<u16>,
    /// Write the figures as JSON to this file
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Move SIZE bytes (1G, 256M, 64K or bytes) over one encrypted TCP-mode channel between
    /// two single-shard processes, and compare with a raw-UDP GSO blast (docs/BULK.md)
    #[arg(long, value_name = "SIZE", value_parser = super::bulk::parse_size)]
    bulk: Option<u64>,
}

fn parse_peer(text: &str) -> Result<PeerId, String> {
    PeerId::from_hex(text).ok_or_else(|| format!("\"{text}\" is not a peer id (32 hex digits)"))
}

/// Prints counters to stderr once a second while a run goes, and notes the resident memory
/// once every channel is open.
fn watch(label: &'static str, progress: Arc<Progress>, peers: u64) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut rss_at_open = 0;
        let mut last_print = Instant::now();
        while Arc::strong_count(&progress) > 1 {
            std::thread::sleep(Duration::from_millis(50));
            let opened = progress.opened.load(Ordering::Relaxed);
            if rss_at_open == 0 && opened >= peers {
                rss_at_open = resident_bytes();
            }
            if last_print.elapsed() >= Duration::from_secs(1) {
                last_print = Instant::now();
                eprint!(
                    "\r{label}: {:>4.0} s  opened {opened}/{peers}  sent {}  answered {}   ",
                    start.elapsed().as_secs_f64(),
                    progress.sent.load(Ordering::Relaxed),
                    progress.received.load(Ordering::Relaxed),
                );
            }
        }
        eprintln!();
        rss_at_open
    })
}

/// Runs `weft bench`: 0 after both runs, 1 when a run cannot start or the mode is refused.
pub(crate) fn run(args: BenchArgs) -> ExitCode {
    if let Some(size) = args.bulk {
        return super::bulk::run(size, args.duration, args.json.as_deref());
    }
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("weft bench: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn bench(args: &BenchArgs) -> Result<(), String> {
    let shards = args.shards.map_or_else(default_shards, usize::from);
    let rss_before = resident_bytes();
    // The node under test: the caller's, or one started here with the echo service.
    let mut node = None;
    let mut node_notes = String::new();
    let (target, target_peer) = match args.target {
        Some(target) => (target, args.target_peer),
        None => {
            let identity = Identity::generate(&mut rand::rngs::OsRng);
            let config = EngineConfig {
                shards,
                ..EngineConfig::new(
                    "127.0.0.1:0".parse().map_err(|_| "bad address")?,
                    EndpointConfig::default(),
                )
            };
            // The echo service runs as a worker, as in `weft node --echo`.
            let (engine, link) =
                Engine::start_with_worker(&config, &identity, rand::random(), WORKER_QUEUE)
                    .map_err(|e| format!("cannot start the node: {e}"))?;
            std::thread::spawn(move || run_echo_worker(link));
            let address = engine.local_addr();
            let stop = engine
                .shutdown_handle()
                .map_err(|e| format!("cannot start the node: {e}"))?;
            let thread = std::thread::spawn(move || engine.run(|_| {}));
            node = Some((stop, thread));
            (address, Some(identity.peer_id()))
        }
    };
    let load = LoadConfig {
        target,
        target_peer,
        peers: args.peers as usize,
        clients: usize::from(args.clients),
        size: usize::from(args.size),
        rate: args.rate,
        duration: Duration::from_secs(u64::from(args.duration)),
        capabilities: args.mode.capabilities(),
    };
    let progress = Arc::new(Progress::default());
    let watcher = watch("weft", Arc::clone(&progress), load.peers as u64);
    let weft = run_weft_load(&load, &progress);
    drop(progress);
    let rss_at_open = watcher.join().unwrap_or(0);
    if let Some((stop, thread)) = node {
        stop.shutdown();
        if let Ok(Ok(shards)) = thread.join() {
            node_notes = drop_summary(&shards);
        }
    }
    let weft = weft.map_err(|e| match e {
        LoadError::Open(reason) => format!(
            "mode {:?} is refused by this build ({reason}); only --mode udp works until the \
             reliability layer lands",
            args.mode
        ),
        other => other.to_string(),
    })?;
    let bytes_per_peer = rss_at_open.saturating_sub(rss_before) / u64::from(args.peers);

    let echo = RawEcho::start("127.0.0.1:0".parse().map_err(|_| "bad address")?, shards)
        .map_err(|e| format!("cannot start the baseline echo: {e}"))?;
    let baseline_load = LoadConfig {
        target: echo.local_addr(),
        ..load.clone()
    };
    let progress = Arc::new(Progress::default());
    let watcher = watch("baseline", Arc::clone(&progress), 0);
    let baseline =
        run_raw_load(&baseline_load, &progress).map_err(|e| format!("baseline run failed: {e}"))?;
    drop(progress);
    let _ = watcher.join();
    drop(echo);

    let table = render(args, shards, &weft, &baseline, bytes_per_peer);
    let _ = write!(std::io::stdout(), "{table}{node_notes}");
    if let Some(path) = &args.json {
        let json = render_json(args, shards, &weft, &baseline, bytes_per_peer);
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The in-process node's drop and refusal counters, when any is non-zero.
fn drop_summary(shards: &[weft::engine::ShardStats]) -> String {
    let mut notes = String::new();
    let merged = weft::engine::merged_endpoint_stats(shards);
    let tables = std::iter::once(&merged).chain(shards.iter().map(|s| &s.engine));
    for table in tables {
        for entry in table.iter() {
            let counted = entry.name.contains("drop")
                || entry.name.contains("error")
                || entry.name.contains("blocked")
                || entry.name.contains("overflow");
            if counted && entry.value > 0 {
                let label = entry
                    .label
                    .map_or(String::new(), |(k, v)| format!("{{{k}={v}}}"));
                notes += &format!("node: {}{label} = {}\n", entry.name, entry.value);
            }
        }
    }
    notes
}

fn gbits(report: &LoadReport, size: u16) -> f64 {
    report.pps() * f64::from(size) * 8.0 / 1e9
}

fn cpu_ns_per_packet(report: &LoadReport) -> f64 {
    // Each message crosses the loop twice (out and back), client and node in one process.
    report.cpu.as_nanos() as f64 / (report.sent + report.received).max(1) as f64
}

fn render(
    args: &BenchArgs,
    shards: usize,
    weft: &LoadReport,
    baseline: &LoadReport,
    bytes_per_peer: u64,
) -> String {
    let ratio = weft.pps() / baseline.pps().max(1e-9);
    let mut out = format!(
        "weft bench: mode={:?} peers={} size={} rate={} duration={}s shards={shards} io=epoll\n",
        args.mode, args.peers, args.size, args.rate, args.duration
    );
    out += &format!("{:<22}{:>14}{:>14}{:>10}\n", "", "weft", "raw UDP", "ratio");
    let row = |name: &str, w: f64, b: f64| {
        format!("{name:<22}{w:>14.1}{b:>14.1}{:>10.3}\n", w / b.max(1e-9))
    };
    out += &row(
        "packets/s out",
        weft.sent as f64 / weft.elapsed.as_secs_f64().max(1e-9),
        baseline.sent as f64 / baseline.elapsed.as_secs_f64().max(1e-9),
    );
    out += &row("packets/s in", weft.pps(), baseline.pps());
    out += &row(
        "Mbit/s in (payload)",
        gbits(weft, args.size) * 1000.0,
        gbits(baseline, args.size) * 1000.0,
    );
    out += &row(
        "p50 latency µs",
        f64::from(weft.latency_us(0.5)),
        f64::from(baseline.latency_us(0.5)),
    );
    out += &row(
        "p99 latency µs",
        f64::from(weft.latency_us(0.99)),
        f64::from(baseline.latency_us(0.99)),
    );
    out += &row(
        "p999 latency µs",
        f64::from(weft.latency_us(0.999)),
        f64::from(baseline.latency_us(0.999)),
    );
    out += &row(
        "CPU ns/packet",
        cpu_ns_per_packet(weft),
        cpu_ns_per_packet(baseline),
    );
    out += &format!(
        "handshakes/s {:.0} ({} channels in {:.3} s)   bytes/peer {bytes_per_peer}   weft/baseline pps {ratio:.3}\n",
        weft.opened as f64 / weft.open_time.as_secs_f64().max(1e-9),
        weft.opened,
        weft.open_time.as_secs_f64()
    );
    out
}

fn render_json(
    args: &BenchArgs,
    shards: usize,
    weft: &LoadReport,
    baseline: &LoadReport,
    bytes_per_peer: u64,
) -> String {
    format!(
        "{{\n  \"mode\": \"{:?}\",\n  \"peers\": {},\n  \"size\": {},\n  \"shards\": {shards},\n  \
         \"io_backend\": \"epoll\",\n  \"weft_pps\": {:.1},\n  \"baseline_pps\": {:.1},\n  \
         \"ratio\": {:.4},\n  \"weft_gbps\": {:.4},\n  \"handshakes_per_s\": {:.1},\n  \
         \"p50_us\": {},\n  \"p99_us\": {},\n  \"p999_us\": {},\n  \"baseline_p99_us\": {},\n  \
         \"cpu_ns_per_packet\": {:.1},\n  \"baseline_cpu_ns_per_packet\": {:.1},\n  \
         \"bytes_per_peer\": {bytes_per_peer}\n}}\n",
        args.mode,
        args.peers,
        args.size,
        weft.pps(),
        baseline.pps(),
        weft.pps() / baseline.pps().max(1e-9),
        gbits(weft, args.size),
        weft.opened as f64 / weft.open_time.as_secs_f64().max(1e-9),
        weft.latency_us(0.5),
        weft.latency_us(0.99),
        weft.latency_us(0.999),
        baseline.latency_us(0.99),
        cpu_ns_per_packet(weft),
        cpu_ns_per_packet(baseline),
    )
}
