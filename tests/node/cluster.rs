//! The consensus service in real nodes (issue 14, points 7 to 9): a lone node certifies its own
//! id; the three-member cluster of docs/CONSENSUS.md, set up by exactly its block, issues ids
//! to `weft id request` and reports to `weft cluster status`; a member killed with SIGKILL and
//! restarted, then all three at once, leave every id unchanged (each member resumes from its
//! store in its data directory).

use super::*;

/// `weft status` of the node with data directory `data` until `wanted` holds.
pub(crate) fn status_until(data: &Path, wanted: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let (_, out, _) = run(&["status", "--data", data.to_str().unwrap()]);
        if wanted(&out) {
            return out;
        }
        assert!(
            start.elapsed() < EXIT_DEADLINE,
            "status never matched:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_with_no_members_configured_certifies_its_own_id_as_a_lone_cluster() {
    let data = TempDir::new("lone");
    let node = start_node(&node_args(&data.0, &[]));
    let status = status_until(&data.0, |s| s.contains("(certified"));
    assert!(
        status.contains("(1 member(s)), member"),
        "a lone member of its own network:\n{status}"
    );
    assert!(
        status.contains("  network id: ") && status.contains(" (pinned)"),
        "the network pinned on the first start:\n{status}"
    );
    assert!(data.join("network-id").exists());
    let metrics = scrape_until(node.metrics, |m| {
        metric_value(m, "weft_consensus_node_id_certified") == Some(1)
    });
    assert_eq!(metric_value(&metrics, "weft_consensus_members"), Some(1));
    assert!(metric_value(&metrics, "weft_consensus_decisions_total").unwrap() >= 2);
    assert!(
        node.proc
            .stderr()
            .contains("node id certified by the cluster")
    );
}

/// `count` free loopback UDP ports (a node binds them a moment later).
pub(crate) fn free_ports(count: usize) -> Vec<u16> {
    let sockets: Vec<UdpSocket> = (0..count)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

/// Runs docs/CONSENSUS.md's setup block in `dir` with `ports` for 7701–7703.
fn run_documented_setup(dir: &Path, ports: &[u16]) {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONSENSUS.md")).unwrap();
    let start = docs.find("<!-- cluster-setup -->").expect("setup marker");
    let end = docs
        .find("<!-- /cluster-setup -->")
        .expect("setup end marker");
    let block = &docs[start..end];
    let script = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .map(|(script, _)| script)
        .expect("a sh block");
    let documented = "PORTS=\"7701 7702 7703\"";
    assert!(script.contains(documented), "{script}");
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let script = script.replace(documented, &format!("PORTS=\"{}\"", ports.join(" ")));
    let script = format!("set -eu\nweft() {{ \"{BIN}\" \"$@\"; }}\n{script}");
    succeeded(Command::new("bash").arg("-c").arg(&script).current_dir(dir));
}

fn start_member(dir: &Path, port: u16) -> Node {
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.join("cluster.toml");
    start_with(dir, &format!("member-{port}"), &config, Some(listen))
}

/// A node with data directory `dir/name` and `config`, listening on `listen` (else any port of
/// 127.0.0.1).
pub(crate) fn start_with(
    dir: &Path,
    name: &str,
    config: &Path,
    listen: Option<SocketAddr>,
) -> Node {
    let data = dir.join(name);
    let listen = listen.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
    start_node(&[
        "node",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--listen",
        &listen,
        "--metrics",
        "127.0.0.1:0",
    ])
}

/// `weft id request --via VIA` for a new identity in `dir/name`, waiting at most `timeout` s.
pub(crate) fn new_client_asks(
    dir: &Path,
    name: &str,
    via: &str,
    timeout: &str,
) -> (ExitStatus, String, String) {
    let client = dir.join(name);
    let client = client.to_str().unwrap();
    let (created, _, err) = run(&["id", "--create", "--data", client]);
    assert!(created.success(), "{err}");
    run(&[
        "id",
        "request",
        "--via",
        via,
        "--data",
        client,
        "--timeout",
        timeout,
    ])
}

/// `weft id request` for the client in `dir`; its `node_id=` line.
fn request_id(dir: &Path, via: &str) -> String {
    let client = dir.join("client");
    let (status, out, err) = run(&[
        "id",
        "request",
        "--via",
        via,
        "--data",
        client.to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains("certificate=") && out.contains("replies=3 of 3 members"),
        "{out}"
    );
    out.lines()
        .find_map(|l| l.strip_prefix("node_id="))
        .expect("node_id= line")
        .to_string()
}

#[test]
fn the_documented_three_member_cluster_issues_ids_and_killed_members_change_none() {
    let dir = TempDir::new("cluster");
    let ports = free_ports(3);
    run_documented_setup(&dir.0, &ports);
    let mut members: Vec<Node> = ports.iter().map(|&p| start_member(&dir.0, p)).collect();
    let via = format!("127.0.0.1:{}", ports[0]);
    for port in &ports {
        let data = dir.0.join(format!("member-{port}"));
        status_until(&data, |s| {
            s.contains("(3 member(s)), member") && s.contains("(certified")
        });
    }
    let (status, out, err) = run(&["cluster", "status", "--via", &via, "--timeout", "30"]);
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("members: 3 (quorum 3), 3 answered"), "{out}");
    // Issue 14 point 9: network id, members, each one's height/round, last decision and lag.
    for column in ["network: ", "height", "round", "last decision", "lag"] {
        assert!(out.contains(column), "no {column:?} in:\n{out}");
    }
    assert!(
        out.contains("(pinned: as the node asked presented it)"),
        "{out}"
    );
    for port in &ports {
        assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    }
    let (status, _, err) = run(&[
        "id",
        "--create",
        "--data",
        dir.join("client").to_str().unwrap(),
    ]);
    assert!(status.success(), "{err}");
    let first = request_id(&dir.0, &via);
    assert_eq!(first.len(), 40);
    assert_eq!(
        request_id(&dir.0, &via),
        first,
        "the same key and salt: the same id"
    );

    // Point 8 against what exists: SIGKILL the third member and start it again.
    members.pop().unwrap().proc.signal("KILL");
    members.push(start_member(&dir.0, ports[2]));
    let other_via = format!("127.0.0.1:{}", ports[1]);
    assert_eq!(
        request_id(&dir.0, &other_via),
        first,
        "the id after a member's SIGKILL and restart"
    );
    // Every member killed at once and restarted from its store in the data directory.
    for member in &members {
        member.proc.signal("KILL");
    }
    drop(members);
    let members: Vec<Node> = ports.iter().map(|&p| start_member(&dir.0, p)).collect();
    assert_eq!(
        request_id(&dir.0, &via),
        first,
        "the id after every member's SIGKILL and restart"
    );
    drop(members);
}

#[test]
fn policy_settings_reach_the_member_and_its_refusals_are_counted_by_limit() {
    let dir = TempDir::new("policy");
    let config = dir.0.join("policy.toml");
    std::fs::write(&config, "[consensus]\nipv4_32 = 2\nwindow = 3600\n").unwrap();
    let data = dir.0.join("node");
    let node = start_node(&node_args(&data, &["--config", config.to_str().unwrap()]));
    status_until(&data, |s| s.contains("(certified"));
    let via = node.udp.to_string();
    let ask = |name: &str, timeout: &str| new_client_asks(&dir.0, name, &via, timeout);
    // The node's own id took one of the two 127.0.0.1 may get per window; a client the other.
    let (first, out, err) = ask("first", "60");
    assert!(first.success() && out.contains("node_id="), "{out}\n{err}");
    // The next is NACKed: never proposed, so never certified; the command names the limit
    // from the member's signed NACK and exits 1 at once rather than waiting out its timeout.
    let (second, out, err) = ask("second", "120");
    assert!(!second.success() && !out.contains("node_id="), "{out}");
    assert!(
        out.contains("refused: per-/32 limit 2 per 1 h (ipv4_32), signed by 1 of 1 members")
            && out.contains("retry_after="),
        "{out}\n{err}"
    );
    assert_eq!(second.code(), Some(1), "{err}");
    let metrics = scrape_until(node.metrics, |m| {
        metric_value(m, "weft_consensus_policy_refusals_total{limit=\"ipv4_32\"}")
            .is_some_and(|n| n >= 1)
    });
    assert_eq!(
        metric_value(
            &metrics,
            "weft_consensus_policy_refusals_total{limit=\"ipv4_24\"}"
        ),
        Some(0)
    );
}
