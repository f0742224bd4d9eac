//! `weft node` and `weft ping` as an operator runs them: real processes on loopback sockets.
//!
//! Every child is killed when its guard drops, and every wait has a deadline, so a hung node
//! fails its test instead of hanging the suite.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "node/chain.rs"]
mod chain;
#[path = "node/cluster.rs"]
mod cluster;
#[path = "node/demo.rs"]
mod demo;
#[path = "node/dht.rs"]
mod dht;
#[path = "node/docs.rs"]
mod docs;
#[path = "node/host.rs"]
mod host;
#[path = "node/members_url.rs"]
mod members_url;
#[path = "node/ops.rs"]
mod ops;
#[path = "node/status.rs"]
mod status;
mod support;

use support::{TempDir, succeeded};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

/// Generous: the test machine is shared, and the deadline only guards against hangs.
const DEADLINE: Duration = Duration::from_secs(20);

/// How long a command may run before the test gives up on it: the README's `weft ping --count 20`
/// alone takes ~20 s at its 1 s interval, more with both cores busy.
const EXIT_DEADLINE: Duration = Duration::from_secs(90);

/// A child process whose output is collected by threads; killed on drop.
struct Proc {
    child: Child,
    stdout_lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft");
        let (tx, stdout_lines) = channel();
        let stdout = child.stdout.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut pipe = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            child,
            stdout_lines,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn next_line(&self) -> String {
        match self.stdout_lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(e) => panic!("no line on stdout ({e}); stderr:\n{}", self.stderr()),
        }
    }

    /// Waits for the exit; returns the status, the rest of stdout and all of stderr.
    fn wait(mut self) -> (ExitStatus, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > EXIT_DEADLINE {
                panic!("weft did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stdout: Vec<String> = self.stdout_lines.try_iter().collect();
        (status, stdout.join("\n"), self.stderr())
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running node and what its ready line says.
struct Node {
    proc: Proc,
    udp: SocketAddr,
    metrics: SocketAddr,
    peer: String,
}

fn node_args<'a>(data: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "node",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

fn start_node(args: &[&str]) -> Node {
    let proc = Proc::spawn(args);
    let line = proc.next_line();
    let (udp, metrics, peer) = parse_ready(&line)
        .unwrap_or_else(|| panic!("bad ready line {line:?}; stderr:\n{}", proc.stderr()));
    Node {
        proc,
        udp,
        metrics,
        peer,
    }
}

/// `ready udp=ADDR metrics=ADDR peer=HEX io=uring|epoll`, nothing else.
fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr, String)> {
    let mut words = line.split(' ');
    if words.next()? != "ready" {
        return None;
    }
    let udp = words.next()?.strip_prefix("udp=")?.parse().ok()?;
    let metrics = words.next()?.strip_prefix("metrics=")?.parse().ok()?;
    let peer = words.next()?.strip_prefix("peer=")?.to_string();
    let is_hex = peer.len() == 32 && peer.bytes().all(|b| b.is_ascii_hexdigit());
    let io = words.next()?.strip_prefix("io=")?;
    let is_backend = io == "uring" || io == "epoll";
    (words.next().is_none() && is_hex && is_backend).then_some((udp, metrics, peer))
}

/// `weft ping` to `node` by its id, `count` PINGs 0.1 s apart.
fn ping_node(node: &Node, count: &str) -> (ExitStatus, String, String) {
    let target = node.udp.to_string();
    run(&[
        "ping",
        &target,
        "--count",
        count,
        "--interval",
        "0.1",
        "--peer",
        &node.peer,
    ])
}

/// Runs a command that should exit by itself.
fn run(args: &[&str]) -> (ExitStatus, String, String) {
    Proc::spawn(args).wait()
}

/// One HTTP GET; returns the whole response.
fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&address, DEADLINE).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Scrapes until `wanted` holds for the body (metrics are published about once a second).
fn scrape_until(address: SocketAddr, wanted: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let response = http_get(address, "/metrics");
        if wanted(&response) {
            return response;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "metrics never matched:\n{response}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn ready_line_names_bound_addresses_and_peer_id() {
    let data = TempDir::new("ready");
    let node = start_node(&node_args(&data.0, &[]));
    assert_eq!(node.udp.ip().to_string(), "127.0.0.1");
    assert_ne!(node.udp.port(), 0, "must print the bound port, not 0");
    assert_eq!(node.metrics.ip().to_string(), "127.0.0.1");
    assert_ne!(node.metrics.port(), 0);
    node.proc.signal("TERM");
    let (status, rest, _) = node.proc.wait();
    assert!(status.success());
    assert_eq!(rest, "", "stdout must hold exactly one line");
}

#[test]
fn sigterm_and_sigint_stop_the_node_with_status_0() {
    for signal in ["TERM", "INT"] {
        let data = TempDir::new("signal");
        let node = start_node(&node_args(&data.0, &[]));
        node.proc.signal(signal);
        let (status, _, stderr) = node.proc.wait();
        assert_eq!(status.code(), Some(0), "SIG{signal}; stderr:\n{stderr}");
        assert!(stderr.contains("shutting down"), "{stderr}");
    }
}

#[test]
fn identity_survives_restart() {
    let data = TempDir::new("restart");
    let first = start_node(&node_args(&data.0, &[]));
    let peer = first.peer.clone();
    first.proc.signal("TERM");
    assert!(first.proc.wait().0.success());
    let second = start_node(&node_args(&data.0, &[]));
    assert_eq!(second.peer, peer);

    let other = TempDir::new("restart-other");
    let third = start_node(&node_args(&other.0, &[]));
    assert_ne!(
        third.peer, peer,
        "a new data directory means a new identity"
    );
}

#[test]
fn group_readable_key_file_is_refused_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let data = TempDir::new("mode");
    let node = start_node(&node_args(&data.0, &[]));
    node.proc.signal("TERM");
    assert!(node.proc.wait().0.success());
    let key = data.join("ed25519.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, stdout, stderr) = run(&node_args(&data.0, &[]));
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stdout.contains("ready"), "{stdout}");
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_group_or_world_writable_data_directory_is_refused_by_node_and_id() {
    use std::os::unix::fs::PermissionsExt;
    for mode in [0o775, 0o777] {
        let data = TempDir::new("writable");
        std::fs::set_permissions(&data.0, std::fs::Permissions::from_mode(mode)).unwrap();
        let dir = data.0.to_str().unwrap();
        for args in [node_args(&data.0, &[]), vec!["id", "--data", dir]] {
            let (status, stdout, stderr) = run(&args);
            assert_eq!(status.code(), Some(1), "{args:?}: stderr:\n{stderr}");
            assert!(
                !stdout.contains("ready") && !stdout.contains("peer="),
                "{stdout}"
            );
            assert!(stderr.contains(&format!("chmod go-w {dir}")), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        assert!(
            !data.join("ed25519.key").exists(),
            "no key is written into a directory others may write"
        );
    }
}

#[test]
fn a_key_file_reached_through_a_symlink_is_refused_by_node_and_id() {
    let data = TempDir::new("symlink");
    let elsewhere = TempDir::new("symlink-target");
    let dir = data.0.to_str().unwrap();
    let (status, _, stderr) = run(&["id", "--data", dir, "--create"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let key = data.join("x25519.key");
    let moved = elsewhere.join("x25519.key");
    std::fs::rename(&key, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &key).unwrap();
    for args in [node_args(&data.0, &[]), vec!["id", "--data", dir]] {
        let (status, stdout, stderr) = run(&args);
        assert_eq!(status.code(), Some(1), "{args:?}: stderr:\n{stderr}");
        assert!(
            !stdout.contains("ready") && !stdout.contains("peer="),
            "{stdout}"
        );
        assert!(stderr.contains(&key.display().to_string()), "{stderr}");
        assert!(stderr.contains("symbolic link"), "{stderr}");
        assert!(stderr.contains("replace the link"), "{stderr}");
    }
}

#[test]
fn garbage_key_file_is_refused_naming_the_file() {
    use std::os::unix::fs::OpenOptionsExt;
    let data = TempDir::new("garbage");
    for name in ["ed25519.key", "x25519.key"] {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(data.join(name))
            .unwrap();
        file.write_all(b"this is not a key\n").unwrap();
    }
    let (status, _, stderr) = run(&node_args(&data.0, &[]));
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("ed25519.key"), "{stderr}");
    assert!(stderr.contains("64 hex digits"), "{stderr}");
    assert!(
        stderr.contains("peer id"),
        "must warn a new key changes the peer id: {stderr}"
    );
}

#[test]
fn unknown_config_field_exits_2_naming_it() {
    let dir = TempDir::new("unknown-field");
    let config = dir.join("weft.toml");
    std::fs::write(&config, "listne = \"0.0.0.0:7700\"\n").unwrap();
    let (status, _, stderr) = run(&["node", "--config", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    let expected = format!("config {}: unknown field \"listne\"", config.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr
            .contains("listen, metrics, data, echo, allow_plaintext, log_level, log_format, peers")
    );
}

#[test]
fn bad_config_address_exits_2_naming_the_field() {
    let dir = TempDir::new("bad-address");
    let config = dir.join("weft.toml");
    std::fs::write(&config, "metrics = \"abc\"\n").unwrap();
    let (status, _, stderr) = run(&["node", "--config", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("field \"metrics\": \"abc\" is not a socket address like"),
        "{stderr}"
    );
}

#[test]
fn config_file_is_used_and_flags_override_it() {
    let dir = TempDir::new("override");
    let data = dir.join("data");
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = dir.join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{}\"\nmetrics = \"127.0.0.1:0\"\ndata = \"{}\"\necho = true\n",
            busy.local_addr().unwrap(),
            data.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    // The file's listen address is taken, so only the flag lets the node start.
    let (status, _, stderr) = run(&["node", "--config", config]);
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");

    let node = start_node(&["node", "--config", config, "--listen", "127.0.0.1:0"]);
    assert_ne!(node.udp, busy.local_addr().unwrap());
    assert!(
        data.join("ed25519.key").exists(),
        "data comes from the file"
    );
}

#[test]
fn metrics_endpoint_serves_counters_and_build_info() {
    let data = TempDir::new("metrics");
    let node = start_node(&node_args(&data.0, &[]));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"not a weft packet", node.udp).unwrap();
    let response = scrape_until(node.metrics, |text| {
        metric_value(text, "weft_packets_received_total").is_some_and(|n| n >= 1)
    });
    let head = response.split("\r\n\r\n").next().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    // The build-info gauge names the backend the engine really runs (`--io auto` decides).
    let build_info = |backend: &str| {
        format!(
            "weft_build_info{{version=\"{}\",io_backend=\"{backend}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )
    };
    assert!(
        response.contains(&build_info("epoll")) || response.contains(&build_info("uring")),
        "{response}"
    );
    let not_found = http_get(node.metrics, "/");
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
}

#[test]
fn ping_to_a_closed_port_exits_1() {
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let target = closed.to_string();
    let (status, stdout, stderr) = run(&[
        "ping",
        &target,
        "--count",
        "2",
        "--timeout",
        "0.2",
        "--interval",
        "0",
    ]);
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("PONG from")),
        "{stdout}"
    );
    assert!(stdout.contains("no PONG from"), "{stdout}");
    assert!(stdout.contains("2 sent, 0 received, 100% loss"), "{stdout}");
}

#[test]
fn ping_with_a_bad_address_exits_2() {
    let (status, _, stderr) = run(&["ping", "127.0.0.1"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:7700"),
        "must show an example: {stderr}"
    );
}

#[test]
fn ping_gets_pong_from_a_node_and_metrics_count_it() {
    let data = TempDir::new("ping");
    let node = start_node(&node_args(&data.0, &[]));
    let target = node.udp.to_string();
    let (status, stdout, stderr) = ping_node(&node, "2");
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Encrypted by default (PROTOCOL.md §5): a bare address and a peer id give XX.
    let prefix = format!(
        "PONG from {target} peer={} session=xx seq=0 time=",
        node.peer
    );
    assert!(stdout.lines().any(|l| l.starts_with(&prefix)), "{stdout}");
    assert!(stdout.contains("2 sent, 2 received, 0% loss"), "{stdout}");

    // Without --peer the PING names no recipient and is still answered (PROTOCOL.md §3).
    let (status, stdout, _) = run(&["ping", &target, "--count", "1"]);
    assert_eq!(status.code(), Some(0), "{stdout}");

    scrape_until(node.metrics, |text| {
        metric_value(text, "weft_packets_received_total").is_some_and(|n| n >= 3)
    });
}

#[test]
fn weft_id_prints_a_record_that_makes_ping_use_ik() {
    let data = TempDir::new("id");
    let node = start_node(&node_args(&data.0, &[]));
    let data_dir = data.0.to_string_lossy().to_string();
    let (status, stdout, stderr) = run(&["id", "--data", &data_dir]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(&format!("peer={}", node.peer)), "{stdout}");
    let record = stdout
        .lines()
        .find_map(|l| l.strip_prefix("record="))
        .expect("a record= line")
        .to_string();
    let target = node.udp.to_string();
    let (status, stdout, stderr) = run(&["ping", &target, "--count", "1", "--record", &record]);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(" session=ik "), "{stdout}");
    // A record that does not parse is a usage error naming the flag.
    let (status, _, stderr) = run(&["ping", &target, "--record", "abcd"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("--record"), "{stderr}");
}

/// The README's own example, at the count that lost every PONG after the third (issue 10,
/// finding 9: each PING from a bare address started a new XX, and the node's replacement
/// sessions drifted onto the wrong KEY_PHASE).
#[test]
fn readme_ping_example_gets_all_twenty_pongs_under_one_handshake() {
    let data = TempDir::new("ping20");
    let node = start_node(&node_args(&data.0, &[]));
    let target = format!("127.0.0.1:{}", node.udp.port());
    let (status, stdout, stderr) = run(&["ping", &target, "--count", "20"]);
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("20 sent, 20 received, 0% loss"), "{stdout}");
    let text = scrape_until(node.metrics, |text| {
        metric_value(text, "weft_handshakes_completed_total{kind=\"xx\"}").is_some()
    });
    assert_eq!(
        metric_value(&text, "weft_handshakes_completed_total{kind=\"xx\"}"),
        Some(1),
        "{text}"
    );
    assert_eq!(metric_value(&text, "weft_rekeys_total").unwrap_or(0), 0);
}

/// A client that sends a request head one byte a second and never finishes it.
struct SlowLoris {
    stop: Arc<std::sync::atomic::AtomicBool>,
    writer: Option<JoinHandle<()>>,
    closed: Receiver<()>,
}

impl SlowLoris {
    fn start(address: SocketAddr) -> SlowLoris {
        let mut stream = TcpStream::connect_timeout(&address, DEADLINE).unwrap();
        let mut reader = stream.try_clone().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let writer = std::thread::spawn(move || {
            let head = b"GET /metrics HTTP/1.1\r\nX-Slow: ";
            for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                if stopped.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let (tx, closed) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            // Ends when the server closes the connection (0 or a reset).
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = tx.send(());
        });
        SlowLoris {
            stop,
            writer: Some(writer),
            closed,
        }
    }
}

impl Drop for SlowLoris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[test]
fn a_slow_loris_and_idle_connections_do_not_stop_a_concurrent_scrape() {
    let data = TempDir::new("loris");
    let node = start_node(&node_args(&data.0, &[]));
    let loris = SlowLoris::start(node.metrics);
    // Fewer than the endpoint's connection cap: none is evicted, each waits for its deadline.
    let mut idle: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect_timeout(&node.metrics, DEADLINE).unwrap())
        .collect();
    let response = http_get(node.metrics, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    // The whole-request deadline closes the trickling client however steadily it sends.
    loris
        .closed
        .recv_timeout(DEADLINE)
        .expect("the slow client was never closed");
    // More silent connections than the cap: the oldest silent ones make room for a scrape.
    idle.extend((0..48).map(|_| TcpStream::connect_timeout(&node.metrics, DEADLINE).unwrap()));
    let text = scrape_until(node.metrics, |text| {
        metric_value(
            text,
            "weft_metrics_connections_dropped_total{reason=\"deadline\"}",
        )
        .is_some_and(|n| n >= 1)
    });
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        metric_value(
            &text,
            "weft_metrics_connections_dropped_total{reason=\"evicted\"}"
        )
        .is_some_and(|n| n >= 1),
        "{text}"
    );
    drop(idle);
}

#[test]
fn a_bad_limit_in_the_config_exits_2_naming_the_field() {
    let dir = TempDir::new("bad-limit");
    let config = dir.join("weft.toml");
    for (text, expected) in [
        (
            "[limits]\nmax_sessions_per_address = 0\n",
            "field \"limits.max_sessions_per_address\": 0 is out of range",
        ),
        (
            "[limits]\nmax_session = 10\n",
            "unknown field \"limits.max_session\" (did you mean \"max_sessions\"?)",
        ),
        // PROTOCOL.md §7.1: peers allow for an ACK delay of 25 ms at most.
        (
            "[limits]\nmax_ack_delay = 0.1\n",
            "field \"limits.max_ack_delay\": 0.1 is out of range",
        ),
        (
            "[limits]\nack_eliciting_threshold = 0\n",
            "field \"limits.ack_eliciting_threshold\": 0 is out of range",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let (status, _, stderr) = run(&["node", "--config", config.to_str().unwrap()]);
        assert_eq!(status.code(), Some(2), "{text}: stderr:\n{stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
}

#[test]
fn max_sessions_per_address_from_the_config_refuses_a_second_session() {
    let dir = TempDir::new("limits");
    let config = dir.join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\ndata = \"{}\"\n\
             [limits]\nmax_sessions_per_address = 1\nmax_sessions_per_prefix = 1\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    // Limits hold per shard, and a fresh identity may land on either shard: one shard makes
    // the second ping meet the first one's table.
    let node = start_node(&[
        "node",
        "--config",
        config.to_str().unwrap(),
        "--shards",
        "1",
    ]);
    let target = node.udp.to_string();
    let ping = [
        "ping",
        &target,
        "--count",
        "1",
        "--timeout",
        "2",
        "--peer",
        &node.peer,
    ];
    // Each ping is a fresh identity from 127.0.0.1: the first holds the address's one session.
    let (status, stdout, stderr) = run(&ping);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let (status, stdout, stderr) = run(&ping);
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    let text = scrape_until(node.metrics, |text| {
        text.contains("weft_handshake_refusals_total{reason=\"address_limit\"}")
    });
    assert!(text.contains("address_limit"), "{text}");
}
