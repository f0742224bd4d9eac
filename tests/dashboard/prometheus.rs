//! A real Prometheus scraping a real node: the dashboard's queries and the alert rules run
//! against what the node exports, and promtool checks the scrape and the rules.
//!
//! Needs Debian's `prometheus` package (`prometheus` and `promtool` on PATH; `.ci/run` installs
//! it). Under `CI` a missing binary fails the test; elsewhere it is skipped with the reason.

use super::{dashboard, read, root, substitute};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const JOB: &str = "weft";
/// Bounds every wait; only a hang meets it.
const DEADLINE: Duration = Duration::from_secs(60);

/// A child killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let path = std::env::temp_dir().join(format!("weft-prometheus-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    TempDir(path)
}

/// The path of `tool` on PATH.
fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

fn http_get(address: SocketAddr, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(stream, "GET {target} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query; the JSON answer, or `None` while Prometheus is not ready (503) or
/// not listening yet.
fn try_query(prometheus: SocketAddr, promql: &str) -> Option<super::Json> {
    TcpStream::connect(prometheus).ok()?;
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", encode(promql)),
    );
    (status == 200).then(|| super::Json::parse(&body))
}

/// Runs an instant query that must be answered; the JSON answer.
fn query(prometheus: SocketAddr, promql: &str) -> super::Json {
    try_query(prometheus, promql).unwrap_or_else(|| panic!("Prometheus refused {promql}"))
}

fn result_len(answer: &super::Json) -> usize {
    answer.get("data").map_or(0, |d| d.array("result").len())
}

/// Waits, bounded, until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_real_prometheus_evaluates_every_panel_and_rule() {
    let (Some(prometheus_bin), Some(_)) = (which("prometheus"), which("promtool")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set and prometheus/promtool are missing: install Debian's `prometheus` package (.ci/run does)"
        );
        eprintln!("skipped: prometheus and promtool are not on PATH (apt-get install prometheus)");
        return;
    };
    let dir = temp_dir();

    // A node with two shards, echoing.
    let data = dir.0.join("data");
    let mut node = Command::new(BIN)
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--echo",
        ])
        .arg("--data")
        .arg(&data)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weft node");
    let mut stdout = node.stdout.take().unwrap();
    let node = Guard(node);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let field = |key: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the ready line {line:?}"))
            .to_string()
    };
    let (udp, metrics, peer) = (field("udp="), field("metrics="), field("peer="));
    let metrics: SocketAddr = metrics.parse().unwrap();

    // Before any traffic: the series whose labels are known are there at 0, and two scrapes list
    // the same families in the same order.
    let families = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
            .collect()
    };
    let (_, first) = http_get(metrics, "/metrics");
    for series in [
        "weft_packets_dropped_total{reason=\"oversize\"} 0\n",
        "weft_handshake_refusals_total{reason=\"session_limit\"} 0\n",
        "weft_channels_closed_total{reason=\"idle\"} 0\n",
        "weft_cookie_failures_total{reason=\"expired\"} 0\n",
        "weft_rtt_seconds_count 0\n",
    ] {
        assert!(
            first.contains(series),
            "{series} missing at start:\n{first}"
        );
    }
    let (_, second) = http_get(metrics, "/metrics");
    assert_eq!(families(&first), families(&second), "family order changed");
    let mut sorted = families(&first);
    sorted.sort();
    assert_eq!(families(&first), sorted, "families not sorted");

    // Prometheus on its own port and config (the package's service may hold :9090).
    let port = free_port();
    let web: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{metrics}']\n",
            root().join("dashboards/alerts.yml").display()
        ),
    )
    .unwrap();
    let prometheus = Guard(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus"),
    );
    wait_for("the target to be up", || {
        try_query(web, &format!("up{{job=\"{JOB}\"}} == 1")).is_some_and(|a| result_len(&a) == 1)
    });

    // Traffic: sessions, channels and RTT samples from a short bench, and datagrams the node
    // must drop (a bad version nibble, a truncated header).
    let bench = Command::new(BIN)
        .args([
            "bench",
            "--target",
            &udp,
            "--target-peer",
            &peer,
            "--mode",
            "tcp",
        ])
        .args([
            "--peers",
            "4",
            "--clients",
            "1",
            "--duration",
            "1",
            "--rate",
            "2000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(bench.success(), "weft bench against the node failed");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for garbage in [
        &[0xf0u8; 40][..],
        &[0x10, 0x00][..],
        b"not a weft packet at all",
    ] {
        socket.send_to(garbage, &udp).unwrap();
    }
    wait_for("the drops to be scraped", || {
        let drops = format!("sum(weft_packets_dropped_total{{job=\"{JOB}\"}}) > 0");
        let rtt = format!("weft_rtt_seconds_count{{job=\"{JOB}\"}} > 0");
        result_len(&query(web, &drops)) == 1 && result_len(&query(web, &rtt)) == 1
    });
    // Enough samples for every rate over a minute.
    wait_for("three scrapes", || {
        result_len(&query(
            web,
            &format!("count_over_time(up{{job=\"{JOB}\"}}[1m]) >= 3"),
        )) == 1
    });

    // Every dashboard query, as Grafana would send it for this target.
    let (_, panels) = dashboard();
    let mut empty = Vec::new();
    for panel in panels.iter().filter(|p| p.kind != "row") {
        for expr in &panel.exprs {
            let promql = substitute(expr, JOB, &metrics.to_string());
            let answer = query(web, &promql);
            assert_eq!(
                answer.str("status"),
                Some("success"),
                "{:?}: {promql}",
                panel.title
            );
            if result_len(&answer) == 0 {
                empty.push(format!("{:?}: {promql}", panel.title));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "queries that return no data:\n{}",
        empty.join("\n")
    );

    // Every alert rule evaluates without error.
    wait_for("every rule to be evaluated", || {
        let (_, body) = http_get(web, "/api/v1/rules");
        let rules = super::Json::parse(&body);
        let all: Vec<super::Json> = rules
            .get("data")
            .map(|d| d.array("groups"))
            .unwrap_or(&[])
            .iter()
            .flat_map(|g| g.array("rules").to_vec())
            .collect();
        for rule in &all {
            assert_ne!(rule.str("health"), Some("err"), "rule failed: {rule:?}");
        }
        all.len() == 5 && all.iter().all(|r| r.str("health") == Some("ok"))
    });

    // promtool on a real scrape and on the rules.
    let (status, scrape) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    let (ok, said) = promtool(&["check", "metrics"], Some(&scrape));
    assert!(ok, "promtool check metrics:\n{said}");
    let rules = root().join("dashboards/alerts.yml");
    let (ok, said) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "promtool check rules:\n{said}");
    let _ = read("dashboards/alerts.yml");
    drop(prometheus);
    drop(node);
}
