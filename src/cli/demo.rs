//! `weft demo`: several nodes on loopback in one command — started, pinged, loaded with channels
//! of every mode, one asked for a node id by the consensus service — and a report with timings; `--keep` leaves them running for Prometheus.
//!
//! Each node is a `weft node` child process of this one, so each has its own metrics endpoint
//! (the metrics recorder is per process) and its own log file in the demo's directory.

use super::EXIT_FAILURE;

mod dht;
use clap::Args;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weft::bench::Pinger;
use weft::bench::load::{DEFAULT_WINDOW, LoadConfig, Progress, run_weft_load};
use weft::consensus::client::Goal;
use weft::consensus::ids::NodeIdRequest;
use weft::consensus::service::hex;
use weft::session::Identity;
use weft::wire::{Capabilities, PeerId};

/// How long a node may take to print its ready line.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long each PING may wait for its PONG.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Simulated peers per mode, each with one channel.
const PEERS_PER_MODE: usize = 8;
/// Messages per second per mode: enough to exercise the path, little enough for a laptop.
const RATE: u64 = 2000;
/// Bytes of application data per message.
const SIZE: usize = 64;

/// The channel modes the demo opens (PROTOCOL.md §6).
fn modes() -> [(&'static str, Capabilities); 4] {
    [
        ("udp", Capabilities::NONE),
        ("reliable", Capabilities::RESEND),
        ("ordered", Capabilities::ORDERED),
        ("tcp", Capabilities::RESEND.union(Capabilities::ORDERED)),
    ]
}

/// Flags of `weft demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Nodes to start
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    /// Seconds of load per channel mode
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
    duration: Duration,
    /// Directory for the nodes' data and logs [default: a new one under the temp dir]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Leave the nodes running after the report, print their metrics addresses and a
    /// Prometheus scrape config, and stop them on Ctrl-C (SIGINT) or SIGTERM
    #[arg(long)]
    keep: bool,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("\"{text}\" is not a number of seconds from 0.1 to 3600"))
}

/// A `weft node` child; stopped (SIGTERM, then killed) when dropped.
struct DemoNode {
    child: Child,
    udp: SocketAddr,
    metrics: SocketAddr,
    peer: PeerId,
    ready_in: Duration,
    log: PathBuf,
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        // A clean stop first, so the node's last counters and log lines are written.
        let _ = Command::new("kill")
            .args(["-s", "TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `weft demo`: 0 when every node started, answered and echoed; 1 otherwise.
pub(crate) fn run(args: DemoArgs) -> ExitCode {
    match demo(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("weft demo: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn demo(args: &DemoArgs) -> Result<(), String> {
    let started = Instant::now();
    let (dir, temporary) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("weft-demo-{}", std::process::id())),
            true,
        ),
    };
    create_private_dir(&dir)?;
    let result = run_nodes(args, &dir, started);
    // A temporary directory goes with the nodes; one the operator named stays.
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The handlers replace the default stop, so each step checks whether one came.
fn interrupted(stop: &AtomicBool) -> Result<(), String> {
    if stop.load(Ordering::Relaxed) {
        return Err("interrupted; stopping the nodes".into());
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}; choose another --dir", dir.display()))
}

fn run_nodes(args: &DemoArgs, dir: &Path, started: Instant) -> Result<(), String> {
    // Armed first, so a Ctrl-C during the start-up still stops every node cleanly (on drop).
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    }
    say(&format!(
        "weft demo: {} nodes on loopback, data and logs in {}",
        args.nodes,
        dir.display()
    ));
    let mut nodes = Vec::with_capacity(usize::from(args.nodes));
    for index in 0..args.nodes {
        interrupted(&stop)?;
        nodes.push(start_node(dir, &format!("node-{index}"), &["--echo"])?);
    }
    let mut report = String::from(
        "\nnodes\nnode  udp                    metrics                peer                              ready in\n",
    );
    for (index, node) in nodes.iter().enumerate() {
        let _ = writeln!(
            report,
            "{index:<4}  {:<21}  {:<21}  {}  {:>8.1} ms",
            node.udp.to_string(),
            node.metrics.to_string(),
            node.peer,
            millis(node.ready_in)
        );
    }
    say(&report);

    let mut report = String::from(
        "pings (each from a fresh identity: the first PONG waits for an XX handshake, the \
         second rides the session)\nnode  first PONG    second PONG\n",
    );
    for (index, node) in nodes.iter().enumerate() {
        interrupted(&stop)?;
        let mut pinger = Pinger::new(node.udp, Some(node.peer))
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        let mut times = [Duration::ZERO; 2];
        for time in &mut times {
            *time = match pinger.ping(PING_TIMEOUT) {
                Ok(Some(reply)) => reply.rtt,
                Ok(None) => {
                    return Err(format!(
                        "node {index} ({}) sent no PONG within {} s; its log: {}",
                        node.udp,
                        PING_TIMEOUT.as_secs(),
                        node.log.display()
                    ));
                }
                Err(e) => return Err(format!("ping node {index} ({}): {e}", node.udp)),
            };
        }
        let _ = writeln!(
            report,
            "{index:<4}  {:>9.3} ms  {:>9.3} ms",
            millis(times[0]),
            millis(times[1])
        );
    }
    say(&report);

    let mut report = format!(
        "channels and load ({PEERS_PER_MODE} peers per mode, one channel each, {SIZE}-byte \
         messages at {RATE}/s for {:.1} s, echoed by the node)\n\
         node  mode      channels  open time   sent    echoed  p50 µs  p99 µs\n",
        args.duration.as_secs_f64()
    );
    for (turn, (mode, capabilities)) in modes().into_iter().enumerate() {
        interrupted(&stop)?;
        let index = turn % nodes.len();
        let node = &nodes[index];
        let load = LoadConfig {
            target: node.udp,
            target_peer: Some(node.peer),
            peers: PEERS_PER_MODE,
            clients: 1,
            size: SIZE,
            rate: RATE,
            duration: args.duration,
            capabilities,
            window: DEFAULT_WINDOW,
        };
        let result = run_weft_load(&load, &Arc::new(Progress::default()), || {})
            .map_err(|e| format!("load on node {index} ({mode}): {e}"))?;
        let _ = writeln!(
            report,
            "{index:<4}  {mode:<8}  {:>3}/{:<4}  {:>7.1} ms  {:>6}  {:>6}  {:>6}  {:>6}",
            result.opened,
            PEERS_PER_MODE,
            millis(result.open_time),
            result.sent,
            result.received,
            result.latencies.value_at_quantile(0.5),
            result.latencies.value_at_quantile(0.99),
        );
        if result.received == 0 {
            say(&report);
            return Err(format!(
                "node {index} echoed none of the {} {mode} messages; its log: {}",
                result.sent,
                node.log.display()
            ));
        }
    }
    say(&report);

    // The consensus service: a node without --echo and without members is the lone member of
    // its own network; a fresh key asks it for an id twice and gets the same one.
    interrupted(&stop)?;
    let cluster = start_node(dir, &format!("node-{}", args.nodes), &[])?;
    let cluster_report = cluster_step(&cluster, args.nodes);
    nodes.push(cluster);
    say(&cluster_report?);
    interrupted(&stop)?;
    let (dht_nodes, report) = dht::step(dir)?;
    let mut report = report;
    let _ = write!(report, "\ndone in {:.1} s", started.elapsed().as_secs_f64());
    say(&report);

    if args.keep {
        say(&keep_report(&nodes));
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        say("stopping the nodes");
    }
    drop((nodes, dht_nodes));
    Ok(())
}

/// Asks the lone cluster of `node` for a fresh key's id twice (PROTOCOL.md §11); the report.
fn cluster_step(node: &DemoNode, index: u16) -> Result<String, String> {
    let reach = super::cluster::Reach {
        via: node.udp,
        network: None,
        timeout: READY_DEADLINE.as_secs_f64(),
    };
    let request = NodeIdRequest {
        key: Identity::generate(&mut rand::rngs::OsRng)
            .ed25519_public()
            .to_bytes(),
        addresses: vec![node.udp],
        salt: 0,
    };
    let mut ids = Vec::with_capacity(2);
    for _ in 0..2 {
        let begun = Instant::now();
        let progress = super::cluster::reach(&reach, Goal::Id(request.clone()), |p| {
            p.certificate.is_some()
        })
        .map_err(|e| format!("node {index}'s cluster: {e}"))?;
        let certificate = progress.certificate.ok_or_else(|| {
            format!(
                "node {index}'s cluster issued no id within {} s; its log: {}",
                READY_DEADLINE.as_secs(),
                node.log.display()
            )
        })?;
        let network = progress.network.map_or_else(String::new, |n| hex(&n.0));
        ids.push((certificate, network, begun.elapsed()));
    }
    let (first, network, took) = &ids[0];
    if ids[1].0.node_id != first.node_id {
        return Err(format!(
            "node {index}'s cluster issued two ids for one key and salt"
        ));
    }
    Ok(format!(
        "cluster (node {index}: no members configured, so the lone member of its own network)\n\
         network   {network}\n\
         node id   {} for a fresh key, ordered at height {}, certified by {} reply in {:.1} ms\n\
         again     the same id ({:.1} ms)\n",
        hex(&first.node_id.0),
        first.height,
        first.replies.len(),
        millis(*took),
        millis(ids[1].2)
    ))
}

/// Starts node `index` (named `index` in its paths, given `extra` flags) and waits for its
/// ready line.
fn start_node(dir: &Path, index: &str, extra: &[&str]) -> Result<DemoNode, String> {
    let data = dir.join(index);
    let log = dir.join(format!("{index}.log"));
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the weft binary: {e}"))?;
    let begun = Instant::now();
    // A step that needs a known address (a cluster member's record names it) passes its own.
    let listen: &[&str] = if extra.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut child = Command::new(exe)
        .arg("node")
        .args(listen)
        .args(["--metrics", "127.0.0.1:0"])
        .arg("--data")
        .arg(&data)
        .args(["--shards", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start node {index}: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(format!("node {index} has no stdout"));
    };
    // The ready line is read on a thread so a node that never prints it cannot hang the demo.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(READY_DEADLINE).unwrap_or_default();
    let ready_in = begun.elapsed();
    match parse_ready(&line) {
        Some((udp, metrics, peer)) => Ok(DemoNode {
            child,
            udp,
            metrics,
            peer,
            ready_in,
            log,
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "node {index} did not start; its log: {}",
                log.display()
            ))
        }
    }
}

/// `ready udp=ADDR metrics=ADDR peer=HEX io=…`.
fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr, PeerId)> {
    let mut words = line.split_whitespace();
    if words.next()? != "ready" {
        return None;
    }
    let udp = words.next()?.strip_prefix("udp=")?.parse().ok()?;
    let metrics = words.next()?.strip_prefix("metrics=")?.parse().ok()?;
    let peer = PeerId::from_hex(words.next()?.strip_prefix("peer=")?)?;
    Some((udp, metrics, peer))
}

/// The metrics addresses and a Prometheus `scrape_configs` entry for them.
fn keep_report(nodes: &[DemoNode]) -> String {
    let mut out = String::from("\nmetrics\n");
    for (index, node) in nodes.iter().enumerate() {
        let _ = writeln!(out, "node {index}: http://{}/metrics", node.metrics);
    }
    out.push_str("\nPrometheus scrape config (prometheus.yml):\nscrape_configs:\n  - job_name: weft-demo\n    scrape_interval: 5s\n    static_configs:\n      - targets:\n");
    for node in nodes {
        let _ = writeln!(out, "          - '{}'", node.metrics);
    }
    out.push_str("\nthe nodes keep running; Ctrl-C stops them");
    out
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Prints and flushes, so a script reading the report sees each part as it comes; a closed
/// stdout is no reason to stop the nodes uncleanly.
fn say(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_parse_and_others_do_not() {
        let line = "ready udp=127.0.0.1:1 metrics=127.0.0.1:2 \
                    peer=5f3c0d0e8a1b4c2d9e7f6a5b4c3d2e1f io=epoll\n";
        let (udp, metrics, peer) = parse_ready(line).unwrap();
        assert_eq!((udp.port(), metrics.port()), (1, 2));
        assert_eq!(peer.to_string(), "5f3c0d0e8a1b4c2d9e7f6a5b4c3d2e1f");
        assert_eq!(parse_ready(""), None);
        assert_eq!(parse_ready("ready udp=x"), None);
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("1e9").is_err());
    }
}
