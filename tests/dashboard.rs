//! The shipped Grafana dashboard, alert rules and operator docs against the metrics catalog
//! (src/stats/catalog.rs): they chart and name only what the node exports, select a job and
//! instance, use Grafana's rate interval and fitting units. `prometheus` runs them against a real
//! Prometheus scraping a real node.

#[path = "dashboard/json.rs"]
mod json;
#[path = "dashboard/prometheus.rs"]
mod prometheus;

use json::Json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use weft::stats::catalog::{self, Type};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Metric names in `text`: `weft_*` and `process_*` identifiers, read whole.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    for prefix in ["weft_", "process_"] {
        let mut i = 0;
        while let Some(at) = text[i..].find(prefix) {
            let start = i + at;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
                end += 1;
            }
            // A name glued to a longer identifier (e.g. `my_weft_x`) is not a metric.
            let free = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            if free {
                names.insert(text[start..end].to_string());
            }
            i = end.max(start + 1);
        }
    }
    names
}

/// The catalog family a series name belongs to (a histogram's `_bucket`, `_sum`, `_count`).
/// A name ending in `_` is a prefix (`weft_shard_*` in prose): some family must start with it.
fn family(name: &str) -> Option<&'static catalog::Metric> {
    if name.ends_with('_') {
        return catalog::METRICS.iter().find(|m| m.name.starts_with(name));
    }
    catalog::find(name).or_else(|| {
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let m = catalog::find(name.strip_suffix(suffix)?)?;
            (m.kind == Type::Histogram).then_some(m)
        })
    })
}

/// A panel: title, unit, description and its queries.
struct Panel {
    kind: String,
    title: String,
    unit: String,
    description: String,
    exprs: Vec<String>,
}

fn dashboard() -> (Json, Vec<Panel>) {
    let json = Json::parse(&read("dashboards/weft-node.json"));
    let panels = json
        .array("panels")
        .iter()
        .map(|p| Panel {
            kind: p.str("type").unwrap_or("").to_string(),
            title: p.str("title").unwrap_or("").to_string(),
            unit: p
                .get("fieldConfig")
                .and_then(|f| f.get("defaults"))
                .and_then(|d| d.str("unit"))
                .unwrap_or("")
                .to_string(),
            description: p.str("description").unwrap_or("").to_string(),
            exprs: p
                .array("targets")
                .iter()
                .filter_map(|t| t.str("expr"))
                .map(str::to_string)
                .collect(),
        })
        .collect();
    (json, panels)
}

/// A dashboard query as Prometheus runs it for one job and instance.
pub(crate) fn substitute(expr: &str, job: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", job)
        .replace("$instance", instance)
}

#[test]
fn every_dashboard_metric_is_one_the_node_exports() {
    let (_, panels) = dashboard();
    let wanted: BTreeSet<String> = panels
        .iter()
        .flat_map(|p| metric_names(&p.exprs.join(" ")))
        .collect();
    assert!(
        wanted.len() >= 30,
        "the dashboard charts too little: {wanted:?}"
    );
    let missing: Vec<_> = wanted.iter().filter(|n| family(n).is_none()).collect();
    assert!(
        missing.is_empty(),
        "charted but not in the catalog: {missing:?}"
    );
}

#[test]
fn every_query_selects_the_job_and_instance_over_the_rate_interval() {
    let (json, panels) = dashboard();
    let variables: Vec<&str> = json
        .get("templating")
        .map(|t| t.array("list"))
        .unwrap_or(&[])
        .iter()
        .filter_map(|v| v.str("name"))
        .collect();
    for wanted in ["datasource", "job", "instance"] {
        assert!(
            variables.contains(&wanted),
            "no ${wanted} variable: {variables:?}"
        );
    }
    let selector = "{job=~\"$job\",instance=~\"$instance\"";
    for panel in &panels {
        for expr in &panel.exprs {
            for name in metric_names(expr).iter().map(String::as_str).chain(["up"]) {
                for (at, _) in expr.match_indices(name) {
                    let before = expr[..at].chars().next_back();
                    let after = &expr[at + name.len()..];
                    let whole = !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
                    if whole && (name != "up" || after.starts_with('{')) {
                        assert!(
                            after.starts_with(selector),
                            "{:?}: {name} without the job/instance selector in {expr}",
                            panel.title
                        );
                    }
                }
            }
            for (at, _) in expr.match_indices('[') {
                assert!(
                    expr[at..].starts_with("[$__rate_interval]"),
                    "{:?}: a fixed range in {expr}",
                    panel.title
                );
            }
        }
    }
}

#[test]
fn panels_are_described_and_their_units_fit() {
    let (_, panels) = dashboard();
    let charts: Vec<&Panel> = panels.iter().filter(|p| p.kind != "row").collect();
    for panel in &charts {
        assert!(!panel.exprs.is_empty(), "{:?} has no query", panel.title);
        assert!(
            panel.description.len() > 20,
            "{:?} has no description",
            panel.title
        );
        let rates = panel
            .exprs
            .iter()
            .any(|e| e.contains("rate(") || e.contains("increase("));
        let per_second = ["pps", "Bps", "bps", "ops", "reqps"].contains(&panel.unit.as_str());
        assert!(
            rates || !per_second,
            "{:?} charts levels in {}",
            panel.title,
            panel.unit
        );
        let names = metric_names(&panel.exprs.join(" "));
        if names.contains("weft_build_info") {
            assert_eq!(
                names.len(),
                1,
                "{:?}: build info charted beside {names:?}",
                panel.title
            );
        }
        for name in &names {
            let m = family(name).unwrap();
            if m.unit == "bytes" && !rates && m.kind == Type::Gauge {
                assert_eq!(panel.unit, "bytes", "{:?} charts {name}", panel.title);
            }
            if m.unit == "seconds" && name.ends_with("_bucket") {
                assert_eq!(panel.unit, "s", "{:?} charts {name}", panel.title);
            }
        }
    }
    let rows: Vec<String> = panels
        .iter()
        .filter(|p| p.kind == "row")
        .map(|p| p.title.to_lowercase())
        .collect();
    for wanted in [
        "rtt",
        "handshakes",
        "sessions",
        "rekeys",
        "retransmissions",
        "loss",
        "shard",
        "overlay",
    ] {
        assert!(
            rows.iter().any(|r| r.contains(wanted)),
            "no row for {wanted}: {rows:?}"
        );
    }
}

#[test]
fn alert_rules_cover_the_failures_and_name_exported_metrics() {
    let alerts = read("dashboards/alerts.yml");
    for wanted in [
        "WeftNodeDown",
        "WeftPacketDropRateHigh",
        "WeftHandshakeRefusals",
        "WeftQueueFull",
        "WeftHeapNearBudget",
    ] {
        assert!(
            alerts.contains(&format!("alert: {wanted}\n")),
            "no {wanted} rule"
        );
    }
    let missing: Vec<_> = metric_names(&alerts)
        .into_iter()
        .filter(|n| family(n).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "alerts on metrics not in the catalog: {missing:?}"
    );
}

#[test]
fn operations_md_names_only_exported_metrics() {
    let text = read("docs/OPERATIONS.md");
    let missing: Vec<_> = metric_names(&text)
        .into_iter()
        .filter(|n| family(n).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/OPERATIONS.md names metrics the node does not export: {missing:?}"
    );
    assert!(
        text.contains("METRICS.md"),
        "docs/OPERATIONS.md does not point at the full list"
    );
}

/// Every literal reason the endpoint drops or refuses with, as the source spells it.
fn literal_arguments(dir: &Path, call: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            literal_arguments(&path, call, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let open = format!("{call}(\"");
            for (at, _) in text.match_indices(&open) {
                let rest = &text[at + open.len()..];
                if let Some(end) = rest.find('"') {
                    out.insert(rest[..end].to_string());
                }
            }
        }
    }
}

#[test]
fn the_catalog_knows_every_reason_the_endpoint_counts() {
    let src = root().join("src/channel");
    let values = |name: &str| catalog::find(name).unwrap().values;
    let check = |call: &str, metric: &str| {
        let mut found = BTreeSet::new();
        literal_arguments(&src, call, &mut found);
        assert!(!found.is_empty(), "no {call}(\"…\") in src/channel");
        let unknown: Vec<_> = found
            .iter()
            .filter(|r| !values(metric).contains(&r.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{metric}: reasons missing from the catalog: {unknown:?}"
        );
    };
    check("drop_packet", "weft_packets_dropped_total");
    check("handshake_failed", "weft_packets_dropped_total");
    check("handshake_failed", "weft_handshake_failures_total");
    check("refuse_handshake", "weft_handshake_refusals_total");
    check("count_refused", "weft_channels_refused_total");
    for kind in weft::wire::ErrorKind::ALL {
        assert!(
            catalog::DROP_REASONS.contains(&kind.reason()),
            "wire reason {} missing from the catalog",
            kind.reason()
        );
    }
}

/// Every `("key", "value")` label the source counts with a literal metric name next to it:
/// `(metric, key, value, file)`. A reader of text, not of Rust: it pairs each literal label
/// with the nearest `"weft_…"` literal before it in the same call.
fn literal_labels(dir: &Path, out: &mut BTreeSet<(String, String, String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            literal_labels(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Production code only: a unit test counts made-up names on purpose.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for (at, _) in text.match_indices("Some((\"") {
            let rest = &text[at + 7..];
            let Some((key, rest)) = rest.split_once('"') else {
                continue;
            };
            let Some(rest) = rest.strip_prefix(", \"") else {
                continue;
            };
            let Some((value, _)) = rest.split_once('"') else {
                continue;
            };
            // The call's metric name: the closest literal before, within the same statement.
            let before = &text[at.saturating_sub(200)..at];
            let before = before.rsplit(';').next().unwrap_or(before);
            let Some(start) = before.rfind("\"weft_") else {
                continue;
            };
            let Some((name, _)) = before[start + 1..].split_once('"') else {
                continue;
            };
            out.insert((
                name.to_string(),
                key.to_string(),
                value.to_string(),
                path.display().to_string(),
            ));
        }
    }
}

#[test]
fn every_label_value_the_source_counts_is_in_the_catalog() {
    // All of `src/`, so the services' drop reasons are held to the same rule as the endpoint's.
    let mut found = BTreeSet::new();
    literal_labels(&root().join("src"), &mut found);
    assert!(
        found
            .iter()
            .any(|(name, _, value, _)| name == "weft_shard_socket_errors_total" && value == "recv"),
        "the reader found none of the endpoint's own reasons: {found:?}"
    );
    let missing: Vec<_> = found
        .iter()
        .filter(|(name, key, _, _)| {
            // A histogram's per-bucket counters, labelled by bucket.
            !catalog::METRICS.iter().any(|m| {
                m.histogram
                    .is_some_and(|h| h.bucket == name.as_str() && h.label == key.as_str())
            })
        })
        .filter(|(name, key, value, _)| match family(name) {
            None => name.starts_with("weft_"),
            Some(metric) => {
                metric.labels.contains(&key.as_str())
                    && !metric.values.is_empty()
                    && !metric.values.contains(&value.as_str())
                    || !metric.labels.contains(&key.as_str())
            }
        })
        .collect();
    assert!(
        missing.is_empty(),
        "counted in the source but not in src/stats/catalog.rs (metric, label, value, file): \
         {missing:?}"
    );
}

#[test]
fn names_are_read_whole() {
    let names =
        metric_names("rate(weft_a_total[1m]) + my_weft_b + weft_c{x=\"y\"} + process_open_fds");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["process_open_fds", "weft_a_total", "weft_c"]
    );
}
