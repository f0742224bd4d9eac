//! The text a scrape gets: the `metrics` recorder's rendering, put in the catalog's order and
//! shape ([`crate::stats::catalog`]).
//!
//! The recorder keeps families in hash maps (their order changes every scrape), knows only
//! counters and gauges fed absolute values, and has no series until a first count. This pass
//! sorts families and series, writes every family's HELP and TYPE from the catalog, adds the
//! series whose label values are known at 0, and rebuilds histograms from the per-bucket counters
//! the layers keep: cumulative `le` buckets in base units, `_sum` and `_count`.

use crate::stats::catalog::{self, Histogram, Metric, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Labels of one series, in exposition order; values as the recorder escaped them.
type Labels = Vec<(String, String)>;

/// One sample line: metric name, labels, value as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Value text.
    pub value: String,
}

impl Sample {
    /// An unlabelled sample.
    pub fn plain(name: &str, value: impl ToString) -> Sample {
        Sample {
            name: name.to_string(),
            labels: Vec::new(),
            value: value.to_string(),
        }
    }
}

/// Parses the sample lines of an exposition, with the type of each family that declared one.
pub fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_string(), kind.to_string());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(sample) = parse_sample(line) {
            samples.push(sample);
        }
    }
    (samples, types)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key_start = 0;
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i);
                    break;
                }
                '=' => {
                    let key = inner[key_start..i].trim_start_matches(',').trim();
                    // The value: a quoted string with backslash escapes.
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return None;
                    }
                    let value_start = i.checked_add(2)?;
                    let mut escaped = false;
                    let mut value_end = None;
                    for (j, c) in chars.by_ref() {
                        match (escaped, c) {
                            (true, _) => escaped = false,
                            (false, '\\') => escaped = true,
                            (false, '"') => {
                                value_end = Some(j);
                                break;
                            }
                            _ => {}
                        }
                    }
                    let value_end = value_end?;
                    labels.push((key.to_string(), inner[value_start..value_end].to_string()));
                    key_start = value_end.checked_add(1)?;
                }
                _ => {}
            }
        }
        rest = &inner[end?.checked_add(1)?..];
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value: value.to_string(),
    })
}

/// A histogram series being rebuilt: bucket counts by their source label, and the sum.
#[derive(Default)]
struct Rebuilt {
    buckets: BTreeMap<String, f64>,
    sum: f64,
}

/// The labels of `sample` without `key`.
fn without(labels: &Labels, key: &str) -> Labels {
    labels.iter().filter(|(k, _)| k != key).cloned().collect()
}

/// Labels in the catalog's order of keys, unknown keys after it in name order.
fn ordered(metric: Option<&Metric>, mut labels: Labels) -> Labels {
    let rank = |key: &str| {
        metric
            .and_then(|m| m.labels.iter().position(|&k| k == key))
            .unwrap_or(usize::MAX)
    };
    labels.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then_with(|| a.0.cmp(&b.0)));
    labels
}

fn write_series(out: &mut String, name: &str, labels: &Labels, value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{value}\"");
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// The label sets every series of `metric` starts from: one per shard seen where the engine
/// labels it per shard, else the empty set.
fn bases(metric: &Metric, shards: &BTreeSet<String>) -> Vec<Labels> {
    if metric.per_shard() {
        shards
            .iter()
            .map(|s| vec![("shard".to_string(), s.clone())])
            .collect()
    } else {
        vec![Vec::new()]
    }
}

/// The exposition of `samples` (the recorder's, and any the node adds), in the catalog's shape.
pub fn expose(samples: Vec<Sample>, types: &BTreeMap<String, String>) -> String {
    let histograms: Vec<(&Metric, &Histogram)> = catalog::METRICS
        .iter()
        .filter_map(|m| m.histogram.map(|h| (m, h)))
        .collect();
    let shards: BTreeSet<String> = samples
        .iter()
        .flat_map(|s| s.labels.iter())
        .filter(|(k, _)| k == "shard")
        .map(|(_, v)| v.clone())
        .collect();
    let mut plain: BTreeMap<String, BTreeMap<Labels, String>> = BTreeMap::new();
    let mut rebuilt: BTreeMap<&'static str, BTreeMap<Labels, Rebuilt>> = BTreeMap::new();
    for sample in samples {
        let metric = catalog::find(&sample.name);
        let mut consumed = false;
        for &(m, h) in &histograms {
            if sample.name == h.bucket {
                let Some((_, label)) = sample.labels.iter().find(|(k, _)| k == h.label) else {
                    continue;
                };
                let label = label.clone();
                let series = ordered(Some(m), without(&sample.labels, h.label));
                let count: f64 = sample.value.parse().unwrap_or(0.0);
                let entry = rebuilt
                    .entry(m.name)
                    .or_default()
                    .entry(series)
                    .or_default();
                *entry.buckets.entry(label).or_insert(0.0) += count;
                consumed = true;
            } else if sample.name == h.sum {
                let series = ordered(Some(m), sample.labels.clone());
                let sum: f64 = sample.value.parse().unwrap_or(0.0);
                rebuilt
                    .entry(m.name)
                    .or_default()
                    .entry(series)
                    .or_default()
                    .sum += sum;
                // A sum that is a family of its own (datagrams received) is exported too.
                consumed = metric.is_none();
            }
        }
        if !consumed {
            let labels = ordered(metric, sample.labels);
            plain
                .entry(sample.name)
                .or_default()
                .insert(labels, sample.value);
        }
    }
    // Known series at 0 from the start.
    for metric in catalog::METRICS {
        let free: Vec<&&str> = metric.labels.iter().filter(|&&k| k != "shard").collect();
        for base in bases(metric, &shards) {
            if metric.kind == Type::Histogram {
                rebuilt
                    .entry(metric.name)
                    .or_default()
                    .entry(base)
                    .or_default();
                continue;
            }
            let series = plain.entry(metric.name.to_string()).or_default();
            match (free.last(), metric.values) {
                (None, _) => {
                    series.entry(base).or_insert_with(|| "0".to_string());
                }
                (Some(key), values) => {
                    for value in values {
                        let mut labels = base.clone();
                        labels.push((key.to_string(), value.to_string()));
                        series
                            .entry(ordered(Some(metric), labels))
                            .or_insert_with(|| "0".to_string());
                    }
                }
            }
        }
    }
    let mut names: BTreeSet<&str> = plain
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    names.extend(rebuilt.keys().copied());
    let mut out = String::new();
    for name in names {
        let metric = catalog::find(name);
        let (help, kind) = match metric {
            Some(m) => (m.help, m.kind.word()),
            None => (
                "Not in the metrics catalog (src/stats/catalog.rs).",
                types.get(name).map_or("untyped", String::as_str),
            ),
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        if let Some(series) = plain.get(name) {
            for (labels, value) in series {
                write_series(&mut out, name, labels, value);
            }
        }
        if let (Some(series), Some(h)) = (rebuilt.get(name), metric.and_then(|m| m.histogram)) {
            write_histogram(&mut out, name, h, series);
        }
    }
    out
}

fn write_histogram(
    out: &mut String,
    name: &str,
    h: &Histogram,
    series: &BTreeMap<Labels, Rebuilt>,
) {
    let bucket = format!("{name}_bucket");
    for (labels, r) in series {
        let mut total = 0.0;
        for &(_, label) in h.bounds {
            total += r.buckets.get(label).copied().unwrap_or(0.0);
            let mut with_le = labels.clone();
            with_le.push((
                "le".to_string(),
                h.le_of(label).unwrap_or(label).to_string(),
            ));
            write_series(out, &bucket, &with_le, &total.to_string());
        }
        write_series(
            out,
            &format!("{name}_sum"),
            labels,
            &(r.sum / h.sum_divisor).to_string(),
        );
        write_series(out, &format!("{name}_count"), labels, &total.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn samples_parse_with_labels_and_escapes() {
        let (samples, types) =
            parse("# HELP a x\n# TYPE a counter\na{b=\"c\",d=\"e\\\"}\"} 3\n\nf 1.5\n");
        assert_eq!(types.get("a").map(String::as_str), Some("counter"));
        assert_eq!(
            samples[0].labels,
            [("b".into(), "c".into()), ("d".into(), "e\\\"}".into())]
        );
        assert_eq!(samples[0].value, "3");
        assert_eq!(samples[1], Sample::plain("f", "1.5"));
    }

    #[test]
    fn families_are_sorted_typed_and_zero_filled() {
        let raw = "# TYPE weft_peers gauge\nweft_peers 2\n\
                   # TYPE weft_packets_dropped_total counter\n\
                   weft_packets_dropped_total{reason=\"oversize\"} 4\n\
                   # TYPE weft_shard_truncated_total counter\n\
                   weft_shard_truncated_total{shard=\"1\"} 3\n";
        let (samples, types) = parse(raw);
        let text = expose(samples, &types);
        let names = families(&text);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for m in catalog::METRICS {
            // Every family whose series are known is there (info gauges wait for their labels).
            if m.values.is_empty() && m.labels.iter().any(|&l| l != "shard") {
                continue;
            }
            assert!(
                names.iter().any(|n| n == m.name),
                "{} missing:\n{text}",
                m.name
            );
        }
        assert!(text.contains("weft_packets_dropped_total{reason=\"oversize\"} 4\n"));
        assert!(text.contains("weft_packets_dropped_total{reason=\"truncated\"} 0\n"));
        assert!(text.contains("weft_shard_socket_errors_total{shard=\"1\",op=\"send\"} 0\n"));
        assert!(text.contains("weft_shard_truncated_total{shard=\"1\"} 3\n"));
        assert!(text.contains("weft_rekeys_total 0\n"));
        assert!(text.contains("# HELP weft_peers Peers"));
        assert_eq!(
            text,
            expose(parse(raw).0, &types),
            "the same input, the same text"
        );
    }

    #[test]
    fn histograms_are_rebuilt_cumulative_in_base_units() {
        let raw = "weft_rtt_seconds_bucket{le=\"0.001\"} 2\n\
                   weft_rtt_seconds_bucket{le=\"+Inf\"} 1\n\
                   weft_rtt_seconds_bucket{le=\"5e-05\"} 1\n\
                   weft_rtt_seconds_sum 3000000\n\
                   weft_shard_recv_batch_size_total{shard=\"0\",size=\"2-4\"} 5\n\
                   weft_shard_recv_batch_size_total{shard=\"0\",size=\"1\"} 1\n\
                   weft_shard_datagrams_received_total{shard=\"0\"} 16\n";
        let (samples, types) = parse(raw);
        let text = expose(samples, &types);
        assert!(
            text.contains("# TYPE weft_rtt_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("weft_rtt_seconds_bucket{le=\"5e-05\"} 1\n"));
        assert!(text.contains("weft_rtt_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("weft_rtt_seconds_bucket{le=\"0.001\"} 3\n"));
        assert!(text.contains("weft_rtt_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("weft_rtt_seconds_sum 3\n"));
        assert!(text.contains("weft_rtt_seconds_count 4\n"));
        assert!(text.contains("weft_shard_recv_batch_datagrams_bucket{shard=\"0\",le=\"4\"} 6\n"));
        assert!(text.contains("weft_shard_recv_batch_datagrams_sum{shard=\"0\"} 16\n"));
        assert!(text.contains("weft_shard_datagrams_received_total{shard=\"0\"} 16\n"));
        assert!(!text.contains("batch_size_total"));
        assert!(!text.contains("weft_rtt_seconds_sum 3000000"));
        // An unused histogram is there at 0.
        assert!(text.contains("weft_congestion_window_bytes_count 0\n"));
    }

    #[test]
    fn a_family_outside_the_catalog_is_kept_and_marked() {
        let (samples, types) = parse("# TYPE weft_new gauge\nweft_new 1\n");
        let text = expose(samples, &types);
        assert!(
            text.contains("# TYPE weft_new gauge\nweft_new 1\n"),
            "{text}"
        );
    }
}
