//! `weft bench` as a user runs it: a short run writes every figure to its JSON file.

use metrics_exporter_prometheus::PrometheusBuilder;
use std::collections::HashMap;
use std::process::Command;
use support::{TempDir, succeeded};
use weft::heap::{self, CountingAlloc};

mod support;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Reads the flat `"key": value` lines `weft bench --json` writes.
fn parse(json: &str) -> HashMap<String, String> {
    json.lines()
        .filter_map(|line| {
            let (key, value) = line.trim().trim_end_matches(',').split_once(": ")?;
            Some((
                key.trim_matches('"').to_string(),
                value.trim_matches('"').to_string(),
            ))
        })
        .collect()
}

fn number(fields: &HashMap<String, String>, key: &str) -> f64 {
    let value = fields
        .get(key)
        .unwrap_or_else(|| panic!("no \"{key}\" in {fields:?}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("\"{key}\" is not a number: {value}"))
}

#[test]
fn a_short_run_writes_every_figure_with_sane_values() {
    let dir = TempDir::new("bench");
    let json = dir.join("bench.json");
    let output = succeeded(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["bench", "--duration", "1", "--peers", "20", "--shards", "1"])
            .arg("--json")
            .arg(&json),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The table names weft, the baseline and the ratio, and the packet size on the wire.
    assert!(
        stdout.contains("raw UDP") && stdout.contains("ratio"),
        "{stdout}"
    );
    assert!(stdout.contains("payload=64 B (packet "), "{stdout}");
    let fields = parse(&std::fs::read_to_string(&json).unwrap());
    assert!(number(&fields, "weft_pps") > 0.0, "{fields:?}");
    assert!(number(&fields, "baseline_pps") > 0.0, "{fields:?}");
    assert!(number(&fields, "ratio") > 0.0, "{fields:?}");
    assert!(number(&fields, "handshakes_per_s") > 0.0, "{fields:?}");
    assert!(number(&fields, "p99_us") >= 1.0, "{fields:?}");
    assert!(number(&fields, "baseline_p99_us") >= 1.0, "{fields:?}");
    assert!(number(&fields, "p99_us") <= number(&fields, "p999_us"));
    // Every peer's session and channel costs the node some heap; 20 peers opened.
    assert!(number(&fields, "bytes_per_peer") > 0.0, "{fields:?}");
    assert_eq!(number(&fields, "channels_opened"), 20.0, "{fields:?}");
    // A 64-byte payload is sealed in a header and an AEAD tag: the packet is larger.
    assert!(number(&fields, "packet_bytes") > 64.0, "{fields:?}");
    assert!(!fields["io_backend"].is_empty());
    // The node's own threads and the raw echo's are read from their clocks: both echoed
    // something, so both spent CPU on it.
    for key in ["node_cpu_ns_per_datagram", "baseline_cpu_ns_per_datagram"] {
        let ns = number(&fields, key);
        assert!(ns.is_finite() && ns > 0.0, "{key}: {fields:?}");
    }
    assert!(stdout.contains("node CPU ns/dgram"), "{stdout}");
}

#[test]
fn a_short_flood_reports_answers_within_the_amplification_limit() {
    let dir = TempDir::new("flood");
    let json = dir.join("flood.json");
    succeeded(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["bench", "--flood", "--duration", "1", "--shards", "1"])
            .args(["--clients", "1", "--flood-sources", "4", "--json"])
            .arg(&json),
    );
    let fields = parse(&std::fs::read_to_string(&json).unwrap());
    assert!(number(&fields, "flood_sent_per_s") > 0.0, "{fields:?}");
    assert!(number(&fields, "flood_answers_per_s") > 0.0, "{fields:?}");
    let amplification = number(&fields, "flood_amplification");
    // PROTOCOL.md §5: an unvalidated address gets at most 3x the bytes it sent.
    assert!(amplification > 0.0 && amplification <= 3.0, "{fields:?}");
    assert_eq!(fields["heap_counted"], "true");
}

#[test]
fn the_metrics_endpoint_exports_the_live_heap_under_the_counting_allocator() {
    assert!(heap::is_counting());
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let held = vec![0u8; 1 << 20];
    metrics::with_local_recorder(&recorder, weft::node::metrics::publish_heap);
    let text = handle.render();
    let value: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("weft_heap_live_bytes "))
        .unwrap_or_else(|| panic!("no weft_heap_live_bytes in {text}"))
        .parse()
        .unwrap();
    // At least the megabyte this test holds.
    assert!(value >= (1 << 20) as f64, "{text}");
    drop(held);
}

/// The README's `$ weft bench FLAG …` example, as its words after `weft`.
fn readme_example(flag: &str) -> Vec<String> {
    let readme = include_str!("../README.md");
    let prefix = format!("$ weft bench {flag}");
    let line = readme
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("README.md shows a `{prefix}` example"));
    ["bench", flag]
        .into_iter()
        .map(str::to_string)
        .chain(line.split_whitespace().map(str::to_string))
        .collect()
}

/// Runs `weft ARGS --json FILE`, which must succeed; its stdout and the JSON's fields.
fn run_with_json(args: &[String], json: &std::path::Path) -> (String, HashMap<String, String>) {
    let output = succeeded(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .arg("--json")
            .arg(json),
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (stdout, parse(&std::fs::read_to_string(json).unwrap()))
}

#[test]
fn a_short_soak_samples_heap_files_and_cpu_while_honest_echoes_keep_arriving() {
    let dir = TempDir::new("soak");
    let (stdout, fields) = run_with_json(&readme_example("--soak"), &dir.join("soak.json"));
    // A header, the column names, then a row per sample: time, heap, files, CPU, three counts.
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().starts_with("weft bench --soak "));
    assert!(lines.next().unwrap().contains("node heap B"), "{stdout}");
    let rows = lines
        .take_while(|l| !l.starts_with("honest:"))
        .filter(|l| l.split_whitespace().count() == 8)
        .count();
    assert_eq!(fields["mode"], "soak");
    let samples = number(&fields, "sample_count");
    assert!(samples >= 1.0, "{fields:?}");
    assert_eq!(rows as f64, samples, "{stdout}");
    assert_eq!(fields["samples"].matches("\"t_s\"").count() as f64, samples);
    assert!(
        number(&fields, "honest_channels_opened") > 0.0,
        "{fields:?}"
    );
    assert!(number(&fields, "honest_received") > 0.0, "{fields:?}");
    assert!(number(&fields, "hostile_sent") > 0.0, "{fields:?}");
    assert!(number(&fields, "hostile_init") > 0.0, "{fields:?}");
    // In-process: the counting allocator, /proc/self/fd and the node's thread clocks.
    assert_eq!(fields["heap_counted"], "true");
    assert!(number(&fields, "heap_max") > 0.0, "{fields:?}");
    assert!(number(&fields, "open_files_max") > 0.0, "{fields:?}");
    assert!(number(&fields, "cpu_cores_mean") >= 0.0, "{fields:?}");
}

#[test]
fn ping_pong_keeps_one_message_in_flight_per_peer_and_sets_p99_beside_raw() {
    let dir = TempDir::new("pingpong");
    let json = dir.join("pingpong.json");
    let readme = readme_example("--pingpong");
    assert!(readme.iter().any(|w| w == "--rate"), "{readme:?}");
    // As the README shows it, then unthrottled: with no rate to hold them back, peers with a
    // larger window would have several messages out at the end.
    let mut unthrottled = readme.clone();
    let at = unthrottled.iter().position(|w| w == "--rate").unwrap();
    unthrottled[at + 1] = "0".to_string();
    for args in [readme, unthrottled] {
        let (stdout, fields) = run_with_json(&args, &json);
        assert!(
            stdout.contains("ping-pong: one message in flight per peer"),
            "{stdout}"
        );
        assert!(stdout.contains("window=1"), "{stdout}");
        assert_eq!(number(&fields, "window"), 1.0);
        let peers = number(&fields, "peers");
        let rate = number(&fields, "rate");
        let seconds = number(&fields, "duration_s");
        for side in ["weft", "baseline"] {
            let sent = number(&fields, &format!("{side}_sent"));
            let received = number(&fields, &format!("{side}_received"));
            assert!(received > 0.0, "{side}: {fields:?}");
            // One in flight per peer: what was sent and not answered is at most a message a
            // peer, plus one for each time a peer gave up waiting (then it may send again).
            let stalls = number(&fields, &format!("{side}_stalls"));
            assert!(sent - received <= peers + stalls, "{side}: {fields:?}");
            if rate > 0.0 {
                // The rate holds: a second's allowance at most on top of rate x duration.
                assert!(sent <= rate * (seconds + 1.0) + peers, "{side}: {fields:?}");
            }
        }
        assert!(number(&fields, "p99_us") >= number(&fields, "p50_us"));
        assert!(number(&fields, "baseline_p99_us") >= 1.0, "{fields:?}");
        let ratio = number(&fields, "p99_ratio");
        let expected = number(&fields, "p99_us") / number(&fields, "baseline_p99_us");
        assert!((ratio - expected).abs() < 1e-3, "{fields:?}");
    }
}

#[test]
fn pingpong_refuses_the_other_modes() {
    for other in [&["--bulk", "1M"][..], &["--flood"], &["--soak", "1s"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["bench", "--pingpong"])
            .args(other)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{other:?}: {stderr}");
        assert!(
            stderr.contains("cannot be used with"),
            "{other:?}: {stderr}"
        );
    }
}
