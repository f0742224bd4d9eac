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
        assert!(block.contains("  session: xx, last handshake "), "{block}");
        assert!(block.contains("  path: rtt "), "{block}");
        assert!(!block.contains("  packets: 0 received"), "{block}");
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
