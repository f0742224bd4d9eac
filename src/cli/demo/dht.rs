//! The demo's DHT step: three overlay nodes join through the first (`--bootstrap`), a record
//! is put through one by `weft dht put` and got through another by `weft dht get`, each a
//! short-lived client-mode node of its own. The nodes share one network, whose ids alone
//! enter their tables: the first is its lone member, the others ask it for their ids.

use super::{DemoNode, millis, start_node};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Overlay nodes the step starts.
const NODES: usize = 3;
/// Tries of the put while the joins settle (a node enters the others' tables once its
/// announcement is answered), 200 ms apart.
const PUT_TRIES: usize = 25;

/// Runs `weft dht ARGS` as a child of this process; `(success, stdout, stderr)`.
fn weft_dht(args: &[&str]) -> Result<(bool, String, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the weft binary: {e}"))?;
    let output = Command::new(exe)
        .arg("dht")
        .args(args)
        .args(["--timeout", "10"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run weft dht: {e}"))?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned(),
        String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_owned(),
    ))
}

/// The first node's address and the config file that makes the others clients of its
/// network: its identity is made first, so its member record can name it.
fn one_network(dir: &Path) -> Result<(String, String), String> {
    let listen = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .to_string();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the weft binary: {e}"))?;
    let output = Command::new(exe)
        .args(["id", "--create", "--address", &listen, "--data"])
        .arg(dir.join("dht-0"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run weft id: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let record = stdout
        .lines()
        .find_map(|l| l.strip_prefix("record="))
        .ok_or_else(|| format!("weft id: {}", String::from_utf8_lossy(&output.stderr)))?;
    let config = dir.join("dht-joiner.toml");
    std::fs::write(&config, format!("[consensus]\nmembers = [\"{record}\"]\n"))
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    Ok((listen, config.display().to_string()))
}

/// Starts the overlay nodes, puts and gets a record, and returns the nodes (stopped when
/// dropped) and the step's report.
pub(super) fn step(dir: &Path) -> Result<(Vec<DemoNode>, String), String> {
    let begun = Instant::now();
    let (listen, config) = one_network(dir)?;
    let mut nodes: Vec<DemoNode> = Vec::with_capacity(NODES);
    for index in 0..NODES {
        let first = nodes.first().map(|n| n.udp.to_string());
        let extra: Vec<&str> = match &first {
            Some(addr) => vec!["--bootstrap", addr.as_str(), "--config", config.as_str()],
            None => vec!["--listen", listen.as_str()],
        };
        nodes.push(start_node(dir, &format!("dht-{index}"), &extra)?);
    }
    let joined = begun.elapsed();
    let (via_put, via_get) = (nodes[1].udp.to_string(), nodes[2].udp.to_string());
    let value = "hello from weft demo";
    let mut put = None;
    for _ in 0..PUT_TRIES {
        let started = Instant::now();
        let (ok, stdout, stderr) = weft_dht(&["put", "demo", value, "--via", &via_put])?;
        // Stored on every node: the joins have settled.
        if ok && stdout.contains(&format!(" on {NODES} node(s)")) {
            put = Some((started.elapsed(), stdout));
            break;
        }
        if !ok && !stderr.contains("no node acknowledged") {
            return Err(format!("weft dht put: {stderr}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let Some((put_time, put_line)) = put else {
        return Err(format!(
            "the DHT nodes did not all take the record; their logs: {}",
            dir.join("dht-0.log").display()
        ));
    };
    let started = Instant::now();
    let (ok, got, stderr) = weft_dht(&["get", "demo", "--via", &via_get])?;
    let get_time = started.elapsed();
    if !ok || got != value {
        return Err(format!(
            "weft dht get through dht-2 found {got:?}: {stderr}"
        ));
    }
    let mut report = format!(
        "dht ({NODES} overlay nodes joined through dht-0 in {:.1} ms; each put and get is a \
         client-mode node of its own)\nstep  via    took       result\n",
        millis(joined)
    );
    let _ = writeln!(
        report,
        "put   dht-1  {:>7.1} ms  {put_line}",
        millis(put_time)
    );
    let _ = writeln!(
        report,
        "get   dht-2  {:>7.1} ms  found {got:?}",
        millis(get_time)
    );
    Ok((nodes, report))
}
