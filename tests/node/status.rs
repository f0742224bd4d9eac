//! `weft status`: a running node's peers and totals through the admin socket in its data
//! directory, which only the node's user may reach.

use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn status_shows_each_peer_with_session_channels_and_path() {
    let data = TempDir::new("status");
    let node = start_node(&node_args(&data.0, &["--echo"]));
    let socket = data.join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "admin.sock must be the node user's alone"
    );

    // Two simulated peers, each with one channel that carried echoed data: udp mode, since a
    // resending channel whose peer went away could close on loss before the status is read.
    let target = node.udp.to_string();
    let (status, stdout, stderr) = run(&[
        "bench",
        "--target",
        &target,
        "--mode",
        "udp",
        "--duration",
        "1",
        "--peers",
        "2",
        "--shards",
        "1",
    ]);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");

    let dir = data.0.to_str().unwrap();
    let (status, stdout, stderr) = run(&["status", "--data", dir]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("node: {}\n", node.peer)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("listening: {} (udp)", node.udp)),
        "{stdout}"
    );
    assert!(stdout.contains("  transfer: "), "{stdout}");
    let loaded: Vec<&str> = stdout
        .split("\npeer: ")
        .skip(1)
        .filter(|block| block.contains("channels: 1 udp, 0 reliable, 0 ordered, 0 tcp"))
        .collect();
    assert_eq!(loaded.len(), 2, "{stdout}");
    for block in loaded {
        assert!(block.contains("  session: xx, age "), "{block}");
        assert!(block.contains(" s, last handshake "), "{block}");
        assert!(block.contains("  path: rtt "), "{block}");
        assert!(block.contains("  transfer: "), "{block}");
        assert!(!block.contains("(0 packets)"), "{block}");
    }

    let (status, json, stderr) = run(&["status", "--data", dir, "--json"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        json.starts_with(&format!("{{\"node\":{{\"peer\":\"{}\"", node.peer)),
        "{json}"
    );
    assert!(json.ends_with("]}"), "{json}");
    assert_eq!(json.matches("\"udp\":1,").count(), 2, "{json}");
    assert!(json.contains("\"session\":\"xx\""), "{json}");

    node.proc.signal("TERM");
    assert!(node.proc.wait().0.success());
    assert!(!socket.exists(), "a stopped node leaves no socket behind");
}

#[test]
fn status_without_a_node_names_the_data_directory() {
    let data = TempDir::new("status-none");
    let dir = data.0.to_str().unwrap();
    let (status, stdout, stderr) = run(&["status", "--data", dir]);
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stderr.contains("admin.sock"), "{stderr}");
    assert!(stderr.contains("is a node running with --data"), "{stderr}");
}

/// The number after `"key":` in `json` (the first such key).
fn number(json: &str, key: &str) -> f64 {
    let pattern = format!("\"{key}\":");
    let at = json
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pattern.len();
    let value: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    value
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

#[test]
fn status_counts_each_peers_traffic_both_ways_and_its_session_age() {
    let data = TempDir::new("status-traffic");
    let node = start_node(&node_args(&data.0, &[]));
    let target = node.udp.to_string();
    let (status, stdout, stderr) = run(&[
        "ping",
        &target,
        "--count",
        "5",
        "--interval",
        "0.2",
        "--peer",
        &node.peer,
    ]);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");

    let dir = data.0.to_str().unwrap();
    let (status, json, stderr) = run(&["status", "--data", dir, "--json"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let (node_totals, peers) = json.split_once("\"peers\":[").unwrap();
    assert_eq!(peers.matches("{\"peer\":").count(), 1, "{json}");
    assert!(peers.contains("\"session\":\"xx\""), "{json}");
    let received = number(peers, "packets_received");
    let sent = number(peers, "packets_sent");
    // One PONG sealed for each PING; the first PING may ride the packet that completes the
    // handshake, which counts only in the node's totals, as handshakes do.
    assert_eq!(sent, 5.0, "{json}");
    assert!(received == 4.0 || received == 5.0, "{json}");
    let ping_size = number(peers, "bytes_received") / received;
    let pong_size = number(peers, "bytes_sent") / sent;
    assert_eq!(
        ping_size, pong_size,
        "PING and PONG are the same size: {json}"
    );
    assert!(
        ping_size >= 57.0,
        "a sealed header and tag at least: {json}"
    );
    for (key, node_key) in [
        ("packets_received", "packets_received"),
        ("bytes_received", "bytes_received"),
        ("packets_sent", "packets_sent"),
        ("bytes_sent", "bytes_sent"),
    ] {
        let peer = number(peers, key);
        let node = number(node_totals, node_key);
        assert!(
            peer < node,
            "{key}: the node's {node} also counts the handshake: {json}"
        );
    }
    let age = number(peers, "session_age_seconds");
    let since = number(peers, "since_handshake_seconds");
    assert!(age > 0.0 && age >= since, "{json}");
    assert!(age < number(node_totals, "uptime_seconds") + 1.0, "{json}");

    // The text shows the same counts (nothing moved since: the pinger is gone).
    let (status, text, stderr) = run(&["status", "--data", dir]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let transfer = format!(
        "  transfer: {} B received ({received} packets), {} B sent ({sent} packets)\n",
        number(peers, "bytes_received"),
        number(peers, "bytes_sent"),
    );
    let block = text.split("\npeer: ").nth(1).unwrap();
    assert!(block.contains(&transfer), "{transfer:?} in\n{text}");
    assert!(block.contains("  session: xx, age "), "{text}");
}
