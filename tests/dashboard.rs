//! The shipped Grafana dashboard only charts metrics the node exports: every `weft_*` name in
//! its queries must be a metric name the source emits.

use std::collections::BTreeSet;
use std::path::Path;

fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("weft_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        // A name glued to a longer identifier (e.g. `my_weft_x`) is not a metric.
        let free =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if free {
            names.insert(text[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    names
}

fn source_text(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_text(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn every_dashboard_metric_is_one_the_node_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard = std::fs::read_to_string(root.join("dashboards/weft-node.json")).unwrap();
    let wanted = metric_names(&dashboard);
    assert!(
        wanted.len() >= 10,
        "the dashboard charts too little: {wanted:?}"
    );
    let mut source = String::new();
    source_text(&root.join("src"), &mut source);
    let missing: Vec<_> = wanted
        .iter()
        .filter(|name| !source.contains(&format!("\"{name}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "charted but never exported: {missing:?}"
    );
}

#[test]
fn names_are_read_whole() {
    let names = metric_names("rate(weft_a_total[1m]) + my_weft_b + weft_c{x=\"y\"}");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["weft_a_total", "weft_c"]
    );
}
