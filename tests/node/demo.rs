//! `weft demo`: a few nodes in one command, pinged and loaded in every channel mode; `--keep`
//! leaves them for Prometheus and stops them on SIGTERM.

use super::*;

/// The report's load rows: `(node, mode, echoed)`.
fn load_rows(stdout: &str) -> Vec<(String, String, u64)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("channels and load"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (
                words[0].to_string(),
                words[1].to_string(),
                words[6].parse().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn demo_starts_nodes_pings_them_and_echoes_every_mode() {
    let (status, stdout, stderr) = run(&["demo", "--nodes", "2", "--duration", "0.3"]);
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.starts_with("weft demo: 2 nodes on loopback"),
        "{stdout}"
    );
    let nodes: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("node  udp"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(nodes.len(), 2, "{stdout}");
    let pongs = stdout
        .lines()
        .skip_while(|l| !l.starts_with("node  first PONG"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.matches(" ms").count() == 2)
        .count();
    assert_eq!(pongs, 2, "{stdout}");
    let rows = load_rows(&stdout);
    let modes: Vec<&str> = rows.iter().map(|(_, mode, _)| mode.as_str()).collect();
    assert_eq!(modes, ["udp", "reliable", "ordered", "tcp"], "{stdout}");
    // Spread over both nodes, and every mode echoed.
    assert!(rows.iter().any(|(node, _, _)| node == "1"), "{stdout}");
    assert!(rows.iter().all(|(_, _, echoed)| *echoed > 0), "{stdout}");
    // The DHT step: a record put through one overlay node is found through another.
    assert!(stdout.contains("\nput   dht-1 "), "{stdout}");
    assert!(
        stdout.contains("found \"hello from weft demo\""),
        "{stdout}"
    );
    assert!(stdout.contains("\ndone in "), "{stdout}");
    assert!(
        stdout.contains("cluster (node 2: no members configured"),
        "{stdout}"
    );
    assert!(stdout.contains("again     the same id"), "{stdout}");
}

#[test]
fn demo_keep_leaves_nodes_for_prometheus_until_sigterm() {
    let dir = TempDir::new("demo-keep");
    let demo = Proc::spawn(&[
        "demo",
        "--nodes",
        "2",
        "--duration",
        "0.2",
        "--keep",
        "--dir",
        dir.0.to_str().unwrap(),
    ]);
    let mut lines = Vec::new();
    loop {
        let line = demo.next_line();
        let last = line.contains("Ctrl-C stops them");
        lines.push(line);
        if last {
            break;
        }
    }
    let metrics: Vec<SocketAddr> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("node ")?.split_once(": http://"))
        .map(|(_, url)| url.trim_end_matches("/metrics").parse().unwrap())
        .collect();
    assert_eq!(
        metrics.len(),
        3,
        "the two echo nodes and the cluster step's node: {lines:#?}"
    );
    // The scrape config names the same targets.
    for address in &metrics {
        assert!(
            lines.iter().any(|l| l.trim() == format!("- '{address}'")),
            "{lines:#?}"
        );
    }
    assert!(lines.iter().any(|l| l == "scrape_configs:"), "{lines:#?}");
    // Each node has its own metrics: the load just echoed through them.
    for address in &metrics {
        scrape_until(*address, |text| {
            metric_value(text, "weft_packets_received_total").is_some_and(|n| n > 0)
        });
    }
    let udp: SocketAddr = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("0     ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("node 0's row");
    assert!(dir.join("node-0.log").exists());

    demo.signal("TERM");
    let (status, _, stderr) = demo.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // The nodes went with it: nothing listens on node 0's port any more.
    let target = udp.to_string();
    let (status, stdout, _) = run(&["ping", &target, "--count", "1", "--timeout", "600"]);
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("port unreachable"), "{stdout}");
}
