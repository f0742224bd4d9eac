//! The demo's DHT step: three overlay nodes join through the first (`--bootstrap`), a record
//! is put through one by `weft dht put` and got through another by `weft dht get`, each a
//! short-lived client-mode node of its own.

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

/// Starts the overlay nodes, puts and gets a record, and returns the nodes (stopped when
/// dropped) and the step's report.
pub(super) fn step(dir: &Path) -> Result<(Vec<DemoNode>, String), String> {
    let begun = Instant::now();
    let mut nodes: Vec<DemoNode> = Vec::with_capacity(NODES);
    for index in 0..NODES {
        let first = nodes.first().map(|n| n.udp.to_string());
        let extra: Vec<&str> = match &first {
            Some(addr) => vec!["--bootstrap", addr.as_str()],
            None => Vec::new(),
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
