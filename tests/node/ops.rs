//! Issue 13's command-line findings, each as an operator met it: a second node on a held port,
//! `weft bench --target` at nothing, `weft id` at a mistyped directory, `shards` in the file,
//! one log line per session, and logs for machines.

use super::*;

#[test]
fn a_second_node_on_a_port_another_node_holds_exits_1_naming_the_port() {
    let first_data = TempDir::new("held-first");
    let first = start_node(&node_args(&first_data.0, &[]));
    let held = first.udp.to_string();
    let second_data = TempDir::new("held-second");
    let (status, stdout, stderr) = run(&[
        "node",
        "--listen",
        &held,
        "--metrics",
        "127.0.0.1:0",
        "--data",
        second_data.0.to_str().unwrap(),
    ]);
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stdout.contains("ready"), "{stdout}");
    assert!(
        stderr.contains(&format!("UDP {held} is already in use")) && stderr.contains("--listen"),
        "{stderr}"
    );
    // The first node still answers.
    let (status, stdout, _) = run(&["ping", &held, "--count", "1"]);
    assert_eq!(status.code(), Some(0), "{stdout}");
}

#[test]
fn bench_against_a_closed_port_exits_1_saying_nothing_listens() {
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (status, stdout, stderr) = run(&[
        "bench",
        "--target",
        &closed,
        "--duration",
        "1",
        "--peers",
        "2",
    ]);
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("nothing listens there"), "{stderr}");
    assert!(stderr.contains("weft node --echo"), "{stderr}");
    assert!(!stdout.contains("packets/s"), "no table: {stdout}");
}

#[test]
fn bench_against_a_node_without_echo_exits_1_naming_the_flag() {
    let data = TempDir::new("bench-noecho");
    let node = start_node(&node_args(&data.0, &[]));
    let target = node.udp.to_string();
    let (status, stdout, stderr) = run(&[
        "bench",
        "--target",
        &target,
        "--duration",
        "1",
        "--peers",
        "2",
    ]);
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("echoed none") && stderr.contains("--echo"),
        "{stderr}"
    );
}

#[test]
fn id_at_a_directory_without_keys_refuses_and_create_makes_one() {
    let dir = TempDir::new("id-missing");
    let typo = dir.join("wetf-data");
    let typo_text = typo.to_str().unwrap();
    let (status, stdout, stderr) = run(&["id", "--data", typo_text]);
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("holds no identity"), "{stderr}");
    assert!(stderr.contains("--create"), "{stderr}");
    assert!(!typo.exists(), "a refused id must create nothing");
    assert_eq!(stdout, "");

    let (status, stdout, stderr) = run(&["id", "--data", typo_text, "--create"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let peer = stdout.lines().next().unwrap().to_string();
    assert!(peer.starts_with("peer="), "{stdout}");
    // Now it holds one, so the plain command reads the same identity.
    let (status, stdout, _) = run(&["id", "--data", typo_text]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout.lines().next(), Some(peer.as_str()));
}

#[test]
fn shards_is_a_config_field_and_the_flag_overrides_it() {
    let dir = TempDir::new("shards");
    let config = dir.join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\ndata = \"{}\"\nshards = 2\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let node = start_node(&["node", "--config", config]);
    scrape_until(node.metrics, |text| text.contains("shards=\"2\""));
    drop(node);
    let node = start_node(&["node", "--config", config, "--shards", "1"]);
    scrape_until(node.metrics, |text| text.contains("shards=\"1\""));

    std::fs::write(dir.join("bad.toml"), "shards = 0\n").unwrap();
    let bad = dir.join("bad.toml");
    let (status, _, stderr) = run(&["node", "--config", bad.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("field \"shards\""), "{stderr}");
}

#[test]
fn ping_to_a_closed_port_says_the_port_is_unreachable() {
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    // A timeout far above the test's deadline: only the ICMP report can end each wait in time.
    let (status, stdout, stderr) = run(&[
        "ping",
        &closed,
        "--count",
        "2",
        "--timeout",
        "600",
        "--interval",
        "0",
    ]);
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(
        stdout.matches("port unreachable (ICMP)").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("2 sent, 0 received, 100% loss"), "{stdout}");
}

#[test]
fn sessions_are_logged_at_debug_not_one_info_line_each() {
    let data = TempDir::new("quiet");
    let node = start_node(&node_args(&data.0, &[]));
    let target = node.udp.to_string();
    // Each run is a fresh identity, so each starts its own session.
    for _ in 0..3 {
        let (status, stdout, _) = run(&["ping", &target, "--count", "1"]);
        assert_eq!(status.code(), Some(0), "{stdout}");
    }
    node.proc.signal("TERM");
    let (status, _, stderr) = node.proc.wait();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("session established"), "{stderr}");
    assert!(stderr.contains("node running"), "{stderr}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let data = TempDir::new("json-log");
    let node = start_node(&node_args(&data.0, &["--log-format", "json"]));
    node.proc.signal("TERM");
    let (status, _, stderr) = node.proc.wait();
    assert!(status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in &lines {
        assert!(
            line.starts_with("{\"timestamp\":\"") && line.ends_with('}'),
            "not a JSON line: {line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"node running\"")
                && l.contains("\"level\":\"INFO\"")
                && l.contains("\"echo\":false")),
        "{stderr}"
    );
    let (status, _, stderr) = run(&["node", "--log-format", "xml"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
}
