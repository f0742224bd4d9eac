//! `weft bench`: load a node with simulated peers over loopback, then run the raw-UDP baseline
//! with the same shards, batches and packet sizes, and print weft's figures beside it; or, with
//! `--flood`, flood the node with spoofed CHANNEL_NEW and watch its heap; or, with `--soak`,
//! run honest and hostile load together for a long time and sample what the node holds.

use super::{EXIT_FAILURE, parse_socket_addr};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weft::bench::load::{
    DEFAULT_WINDOW, FloodConfig, FloodReport, LoadConfig, LoadError, Phase, Progress, RawEcho,
    resident_bytes, run_flood, run_raw_load, run_weft_load,
};
use weft::channel::EndpointConfig;
use weft::heap::{self, Account};

mod figures;
mod soak;
use figures::{Figures, Memory, render_json};
use soak::{parse_duration, parse_sample};
use weft::engine::{Engine, EngineConfig, ShardStats, ShutdownHandle, default_shards};
use weft::session::{Identity, TokenRate};
use weft::wire::{Capabilities, PeerId};

/// Messages that may wait for the echo worker, as `weft node --echo` sizes it.
const WORKER_QUEUE: usize = 4096;

/// Time the node gets to settle before its heap is read (answers in flight, timers).
const SETTLE: Duration = Duration::from_millis(300);

/// Channel modes (PROTOCOL.md §7).
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

    fn name(self) -> &'static str {
        match self {
            Mode::Udp => "udp",
            Mode::Tcp => "tcp",
            Mode::Reliable => "reliable",
            Mode::Ordered => "ordered",
        }
    }
}

/// Where the in-process node answers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum EchoAt {
    /// The echo service as a worker (PROTOCOL.md §12), as `weft node --echo` runs it.
    Worker,
    /// The endpoint's own echo, inside the shard.
    Inline,
}

/// Flags of `weft bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Load an existing `weft node --echo` instead of starting one in-process (node memory is
    /// then not measured)
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    target: Option<SocketAddr>,
    /// The target's peer id (32 hex digits), when --target is given
    #[arg(long, value_name = "HEX", value_parser = parse_peer)]
    target_peer: Option<PeerId>,
    /// Channel mode of the opened channels
    #[arg(long, value_enum, default_value_t = Mode::Udp)]
    mode: Mode,
    /// Bytes of application data (payload) per message; the table prints the packet size on
    /// the wire, which adds weft's header, framing and AEAD tag. The raw baseline sends
    /// datagrams of that packet size
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u16).range(8..=1300))]
    size: u16,
    /// Messages per second over all peers; 0 means as fast as each peer's window allows
    #[arg(long, value_name = "PPS", default_value_t = 0)]
    rate: u64,
    /// Simulated peers, each with its own peer id, session and channel
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    peers: u32,
    /// Client sockets (and threads) the peers share
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=250))]
    clients: u16,
    /// Seconds of data per run (weft, then the baseline), or of flooding
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    duration: u32,
    /// Shards of the in-process node and of the baseline echo [default: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    shards: Option<u16>,
    /// I/O backend of the in-process node: auto, uring or epoll (as `weft node --io`)
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = ["auto", "uring", "epoll"])]
    io: String,
    /// Where the in-process node echoes: in a worker thread fed by the shards' queues, as
    /// `weft node --echo` does, or inline in the shard's endpoint (no thread hop; what the
    /// engine alone costs)
    #[arg(long, value_enum, default_value_t = EchoAt::Worker)]
    echo: EchoAt,
    /// Instead of the load: flood the node with spoofed CHANNEL_NEW (random sender ids, many
    /// 127.x.y.z sources) for --duration and report its answers and heap growth
    #[arg(long)]
    flood: bool,
    /// Source addresses per flood thread
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    flood_sources: u16,
    /// Instead of the load: for DURATION (90s, 30m, 1h), run honest echo peers at --rate (2000
    /// messages/s when 0) and hostile traffic at --hostile-rate together, printing the node's
    /// live heap, open files and CPU every --sample seconds
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with_all = ["flood", "bulk"])]
    soak: Option<Duration>,
    /// Seconds between two soak samples
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = parse_sample)]
    sample: f64,
    /// Hostile datagrams per second in a soak: spoofed CHANNEL_NEW, random bytes and handshake
    /// INITs without a cookie, in turn, from --flood-sources addresses
    #[arg(long, value_name = "PPS", default_value_t = 10_000)]
    hostile_rate: u64,
    /// The --target node's process id, so a soak can sample its open files and CPU
    #[arg(long, value_name = "PID")]
    target_pid: Option<u32>,
    /// Ping-pong latency: each peer keeps one message in flight (at --rate over all peers; 0
    /// is as fast as round trips allow), so p50/p99 time a lone round trip beside the raw
    /// echo's (issue 12's ping-pong gate: `--pingpong --rate 2000 --size 64`)
    #[arg(long, conflicts_with_all = ["flood", "bulk", "soak"])]
    pingpong: bool,
    /// Write the figures as JSON to this file
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Move SIZE bytes (1G, 256M, 64K or bytes) over one encrypted TCP-mode channel between
    /// two single-shard processes, and compare with a raw-UDP GSO blast (docs/BULK.md)
    #[arg(long, value_name = "SIZE", value_parser = super::bulk::parse_size)]
    bulk: Option<u64>,
    /// With --bulk: quinn-perf client's --json output, whose download goodput is printed beside
    /// weft's with the ratio (docs/PERFORMANCE.md)
    #[arg(long, value_name = "FILE", requires = "bulk")]
    quinn_json: Option<PathBuf>,
    /// With --bulk: leave the receiving shard unpinned, as quinn-perf runs (issue 12's fair
    /// terms: both sides unpinned or both pinned alike)
    #[arg(long, requires = "bulk")]
    no_pin: bool,
}

fn parse_peer(text: &str) -> Result<PeerId, String> {
    PeerId::from_hex(text).ok_or_else(|| format!("\"{text}\" is not a peer id (32 hex digits)"))
}

/// Runs `weft bench`: 0 after both runs, 1 when a run cannot start or the mode is refused.
pub(crate) fn run(args: BenchArgs) -> ExitCode {
    if let Some(size) = args.bulk {
        return super::bulk::run(
            size,
            args.duration,
            args.json.as_deref(),
            args.quinn_json.as_deref(),
            !args.no_pin,
        );
    }
    // Everything this thread and the harness's threads allocate is the harness's; the node's
    // heap is everything else (PROTOCOL.md §12 figures: node memory per peer).
    heap::set_thread_account(Account::Harness);
    let result = if let Some(duration) = args.soak {
        soak::run(&args, duration)
    } else if args.flood {
        flood(&args)
    } else {
        bench(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("weft bench: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The node under test when none is targeted: an engine with the echo service, in-process.
struct LocalNode {
    stop: ShutdownHandle,
    thread: JoinHandle<std::io::Result<Vec<ShardStats>>>,
    io_backend: &'static str,
}

impl LocalNode {
    fn start(
        shards: usize,
        allow_plaintext: bool,
        io: &str,
        echo: EchoAt,
    ) -> Result<(LocalNode, SocketAddr, PeerId), String> {
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        let config = EngineConfig {
            shards,
            io: io.parse().map_err(|e: String| format!("--io: {e}"))?,
            ..EngineConfig::new(
                "127.0.0.1:0".parse().map_err(|_| "bad address")?,
                EndpointConfig {
                    allow_plaintext,
                    echo: echo == EchoAt::Inline,
                    // Every simulated peer comes from 127.0.0.1: the per-source shares that
                    // protect a public node would throttle the load the bench means to apply.
                    max_sessions_per_address: usize::MAX,
                    max_sessions_per_prefix: usize::MAX,
                    handshake_rate_per_address: TokenRate::UNLIMITED,
                    handshake_rate_per_prefix: TokenRate::UNLIMITED,
                    ..EndpointConfig::default()
                },
            )
        };
        // The shards' endpoints are built on this thread: charge them to the node.
        let engine = match echo {
            EchoAt::Inline => heap::with_account(Account::Node, || {
                Engine::start(&config, &identity, rand::random())
            })
            .map_err(|e| format!("cannot start the node: {e}"))?,
            EchoAt::Worker => {
                let (engine, link) = heap::with_account(Account::Node, || {
                    Engine::start_with_worker(&config, &identity, rand::random(), WORKER_QUEUE)
                })
                .map_err(|e| format!("cannot start the node: {e}"))?;
                // The echo service runs as a worker, as in `weft node --echo`; named like the
                // node's, so a soak finds its CPU time.
                std::thread::Builder::new()
                    .name("weft-echo".into())
                    .spawn(move || weft::service::echo::run_echo_worker(link))
                    .map_err(|e| format!("cannot start the echo worker: {e}"))?;
                engine
            }
        };
        let address = engine.local_addr();
        let io_backend = engine.io_backend();
        let stop = engine
            .shutdown_handle()
            .map_err(|e| format!("cannot start the node: {e}"))?;
        let thread = std::thread::spawn(move || {
            heap::set_thread_account(Account::Node);
            engine.run(|_| {})
        });
        Ok((
            LocalNode {
                stop,
                thread,
                io_backend,
            },
            address,
            identity.peer_id(),
        ))
    }

    /// Stops the node; returns its drop and refusal counters, when any is non-zero.
    fn stop(self) -> String {
        self.stop.shutdown();
        match self.thread.join() {
            Ok(Ok(shards)) => drop_summary(&shards),
            _ => String::new(),
        }
    }
}

/// The node's live heap as the counting allocator sees it: everything but the harness's.
fn node_heap() -> i64 {
    heap::live_except(Account::Harness)
}

/// The node a run loads: `--target`'s (its backend is not known here: `remote`), or one started
/// here.
type NodeUnderTest = (Option<LocalNode>, SocketAddr, Option<PeerId>, &'static str);

fn node_under_test(
    args: &BenchArgs,
    shards: usize,
    allow_plaintext: bool,
) -> Result<NodeUnderTest, String> {
    match args.target {
        Some(target) => {
            probe_target(target, args.target_peer)?;
            Ok((None, target, args.target_peer, "remote"))
        }
        None => {
            let (local, address, peer) =
                LocalNode::start(shards, allow_plaintext, &args.io, args.echo)?;
            let io = local.io_backend;
            Ok((Some(local), address, Some(peer), io))
        }
    }
}

/// PINGs `--target` before loading it, so a closed port or a host that is not a weft node is a
/// clear error rather than a table of zeros (issue 13).
fn probe_target(target: SocketAddr, peer: Option<PeerId>) -> Result<(), String> {
    const TRIES: u32 = 3;
    const WAIT: Duration = Duration::from_secs(1);
    let mut pinger =
        weft::bench::Pinger::new(target, peer).map_err(|e| format!("--target {target}: {e}"))?;
    for _ in 0..TRIES {
        match pinger.ping(WAIT) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(format!(
                    "--target {target}: nothing listens there (ICMP port unreachable); start a \
                     node first: weft node --echo --listen {target}"
                ));
            }
            Err(e) => return Err(format!("--target {target}: {e}")),
        }
    }
    Err(format!(
        "--target {target}: no PONG to {TRIES} PINGs within {} s; is a weft node running there \
         (weft node --echo --listen {target}), and does a firewall let UDP through?",
        (WAIT * TRIES).as_secs()
    ))
}

fn bench(args: &BenchArgs) -> Result<(), String> {
    let shards = args.shards.map_or_else(default_shards, usize::from);
    let (node, target, target_peer, io_backend) = node_under_test(args, shards, false)?;
    let counting = node.is_some() && heap::is_counting();
    let load = LoadConfig {
        target,
        target_peer,
        peers: args.peers as usize,
        clients: usize::from(args.clients),
        size: usize::from(args.size),
        rate: args.rate,
        duration: Duration::from_secs(u64::from(args.duration)),
        capabilities: args.mode.capabilities(),
        window: if args.pingpong { 1 } else { DEFAULT_WINDOW },
    };

    std::thread::sleep(SETTLE);
    let mut memory = Memory {
        node_at_zero: node_heap(),
        harness_at_zero: heap::live_bytes(Account::Harness),
        rss_at_zero: resident_bytes(),
        ..Memory::default()
    };
    let progress = Arc::new(Progress::default());
    let watcher = watch(
        "weft",
        Arc::clone(&progress),
        load.peers as u64,
        load.duration,
    );
    let settle = SETTLE + Duration::from_micros(5) * args.peers;
    let weft = run_weft_load(&load, &progress, || {
        std::thread::sleep(settle);
        memory.node_at_open = node_heap();
        memory.harness_at_open = heap::live_bytes(Account::Harness);
        memory.rss_at_open = resident_bytes();
    });
    drop(progress);
    let _ = watcher.join();
    let node_notes = node.map(LocalNode::stop).unwrap_or_default();
    let weft = weft.map_err(|e| match e {
        LoadError::Open(reason) => format!(
            "mode {} is refused by this build ({reason})",
            args.mode.name()
        ),
        other => other.to_string(),
    })?;
    if weft.received == 0 {
        // A table of zeros would read as a result (issue 13).
        return Err(match args.target {
            Some(target) => format!(
                "--target {target} echoed none of the {} messages sent on {} open channels; \
                 the node must run with --echo (weft node --echo --listen {target})",
                weft.sent, weft.opened
            ),
            None => format!(
                "the node echoed none of the {} messages sent on {} open channels",
                weft.sent, weft.opened
            ),
        });
    }
    if !counting {
        memory = Memory::default();
    }

    // The baseline sends datagrams as large as weft's packets were.
    let echo = RawEcho::start("127.0.0.1:0".parse().map_err(|_| "bad address")?, shards)
        .map_err(|e| format!("cannot start the baseline echo: {e}"))?;
    let baseline_load = LoadConfig {
        target: echo.local_addr(),
        size: if weft.packet_bytes > 0 {
            weft.packet_bytes
        } else {
            load.size
        },
        ..load.clone()
    };
    let progress = Arc::new(Progress::default());
    let watcher = watch("baseline", Arc::clone(&progress), 0, load.duration);
    let baseline =
        run_raw_load(&baseline_load, &progress).map_err(|e| format!("baseline run failed: {e}"))?;
    drop(progress);
    let _ = watcher.join();
    drop(echo);

    let figures = Figures {
        args,
        shards,
        io_backend,
        weft: &weft,
        baseline: &baseline,
        memory,
        counting,
        window: load.window,
    };
    let _ = write!(std::io::stdout(), "{}{node_notes}", figures.table());
    if let Some(path) = &args.json {
        std::fs::write(path, figures.json())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn bar(prefix: &'static str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(1)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>8} {msg:<24} [{elapsed_precise}] {wide_bar} {pos}/{len}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(prefix);
    bar
}

/// Draws a run's progress until the run drops its end of `progress`.
fn watch(
    label: &'static str,
    progress: Arc<Progress>,
    peers: u64,
    duration: Duration,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        heap::set_thread_account(Account::Harness);
        let bar = bar(label);
        let mut data_start = None;
        let mut last = (Instant::now(), 0u64);
        while Arc::strong_count(&progress) > 1 {
            std::thread::sleep(Duration::from_millis(100));
            let (sent, received) = (
                progress.sent.load(Ordering::Relaxed),
                progress.received.load(Ordering::Relaxed),
            );
            match progress.phase() {
                Phase::Starting | Phase::Opening => {
                    bar.set_message("handshakes + opens");
                    bar.set_length(peers.max(1));
                    bar.set_position(progress.opened.load(Ordering::Relaxed));
                }
                Phase::Idle => bar.set_message("idle: node heap"),
                Phase::Data => {
                    let started = *data_start.get_or_insert_with(Instant::now);
                    let rate =
                        (received - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
                    last = (Instant::now(), received);
                    bar.set_message(format!("{sent} sent, {rate:.0}/s"));
                    bar.set_length(duration.as_secs());
                    bar.set_position(started.elapsed().as_secs().min(duration.as_secs()));
                }
            }
        }
        bar.finish_and_clear();
    })
}

/// The in-process node's drop and refusal counters, when any is non-zero.
fn drop_summary(shards: &[ShardStats]) -> String {
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

/// `weft bench --flood`: spoofed CHANNEL_NEW against the node, its heap before and after.
fn flood(args: &BenchArgs) -> Result<(), String> {
    let shards = args.shards.map_or_else(default_shards, usize::from);
    // Kind-0 CHANNEL_NEW is answered only where plaintext is allowed (PROTOCOL.md §3); a node
    // that refuses it drops the flood silently, which proves less.
    let (node, target, target_peer, io_backend) = node_under_test(args, shards, true)?;
    let counting = node.is_some() && heap::is_counting();
    let config = FloodConfig {
        target,
        target_peer,
        clients: usize::from(args.clients),
        sources: usize::from(args.flood_sources),
        duration: Duration::from_secs(u64::from(args.duration)),
        count: None,
    };
    std::thread::sleep(SETTLE);
    let before_warm_up = node_heap();
    // A short warm-up first: what the node allocates once (counters, tables reaching their
    // steady size) is not growth per packet.
    let bar = bar("flood");
    bar.set_message("warm-up");
    run_flood(&FloodConfig {
        duration: Duration::from_millis(500),
        ..config.clone()
    })
    .map_err(|e| format!("flood failed: {e}"))?;
    std::thread::sleep(SETTLE);
    let before = node_heap();
    bar.set_message("flooding");
    let ticker = {
        let bar = bar.clone();
        let seconds = u64::from(args.duration);
        bar.set_length(seconds);
        std::thread::spawn(move || {
            heap::set_thread_account(Account::Harness);
            for s in 1..=seconds {
                std::thread::sleep(Duration::from_secs(1));
                bar.set_position(s);
            }
        })
    };
    let report = run_flood(&config).map_err(|e| format!("flood failed: {e}"))?;
    let _ = ticker.join();
    bar.finish_and_clear();
    std::thread::sleep(SETTLE);
    let after = node_heap();
    let node_notes = node.map(LocalNode::stop).unwrap_or_default();
    let text = flood_table(
        args,
        shards,
        io_backend,
        &report,
        counting,
        (before_warm_up, before, after),
    );
    let _ = write!(std::io::stdout(), "{text}{node_notes}");
    if let Some(path) = &args.json {
        let growth = if counting { after - before } else { 0 };
        let fields: Vec<(&str, String)> = vec![
            ("mode", "\"flood\"".to_string()),
            ("shards", shards.to_string()),
            ("clients", args.clients.to_string()),
            ("io_backend", format!("\"{io_backend}\"")),
            ("flood_sent", report.sent.to_string()),
            ("flood_sent_per_s", format!("{:.1}", report.sent_per_s())),
            (
                "flood_answers_per_s",
                format!("{:.1}", report.answers_per_s()),
            ),
            (
                "flood_amplification",
                format!("{:.3}", report.amplification()),
            ),
            ("node_heap_before", before.to_string()),
            ("node_heap_after", after.to_string()),
            ("node_heap_growth", growth.to_string()),
            ("heap_counted", counting.to_string()),
        ];
        std::fs::write(path, render_json(&fields))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn flood_table(
    args: &BenchArgs,
    shards: usize,
    io_backend: &str,
    report: &FloodReport,
    counting: bool,
    (before_warm_up, before, after): (i64, i64, i64),
) -> String {
    let mut out = format!(
        "weft bench --flood: spoofed CHANNEL_NEW for {}s, {} threads x {} sources, shards={shards} io={io_backend}\n",
        args.duration, args.clients, args.flood_sources
    );
    out += &format!(
        "datagrams/s sent    {:>12.0}   ({} in all, {} B each on average)\n",
        report.sent_per_s(),
        report.sent,
        report.bytes_sent / report.sent.max(1)
    );
    out += &format!(
        "answers/s received  {:>12.0}   ({} in all)\n",
        report.answers_per_s(),
        report.answers
    );
    out += &format!(
        "answer bytes / request bytes {:.3} (PROTOCOL.md §5: at most 3)\n",
        report.amplification()
    );
    if counting {
        out += &format!(
            "node live heap: {before_warm_up} B before the warm-up, {before} B before the flood, \
             {after} B after: growth {} B\n",
            after - before
        );
    } else {
        out += "node live heap: n/a (a --target node, or no counting allocator)\n";
    }
    out
}
