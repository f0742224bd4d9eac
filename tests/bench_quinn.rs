//! `weft bench --bulk --quinn-json FILE`: quinn-perf's JSON output is read, its download goodput
//! printed beside weft's with the ratio, and a file that is not quinn-perf's output is an error
//! naming the flag before any transfer starts. The JSON reader underneath gets its properties.

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use weft::bench::json::Json;
use weft::bench::quinn::QuinnPerf;

/// Three one-second intervals of 600, 650 and 700 MB downloaded: 5.2 Gbit/s.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quinn-perf.json")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-bench-quinn-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .unwrap()
}

/// The value of `"key": value` in the flat JSON `weft bench --json` writes.
fn field(json: &str, key: &str) -> f64 {
    let at = json
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 4..];
    let value = rest[..rest.find([',', '\n']).unwrap_or(rest.len())].trim();
    value
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number: {value}"))
}

#[test]
fn the_fixture_reads_as_its_download_goodput() {
    let quinn = QuinnPerf::read(&fixture()).unwrap();
    assert_eq!(quinn.bytes, 1_950_000_000);
    assert_eq!(quinn.seconds, 3.0);
    assert_eq!(quinn.intervals, 3);
    assert!((quinn.gbps() - 5.2).abs() < 1e-9, "{}", quinn.gbps());
}

#[test]
fn real_quinn_perf_output_reads() {
    // `quinn-perf client --ip 127.0.0.1 --duration 3 --upload-size 0 --download-size 100G
    // --json F localhost:4433` as written by quinn a1931ab (on a busy machine: 0.27 Gbit/s).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quinn-perf-a1931ab.json");
    let quinn = QuinnPerf::read(&path).unwrap();
    assert_eq!(quinn.bytes, 36_162_195 + 31_700_230 + 35_672_046);
    assert_eq!(quinn.intervals, 3);
    assert!((quinn.seconds - 3.058_758_356).abs() < 1e-9, "{quinn:?}");
    assert!((quinn.gbps() - 0.270_788).abs() < 1e-6, "{quinn:?}");
}

#[test]
fn bulk_prints_quinn_beside_weft_with_the_ratio() {
    let dir = scratch("ok");
    let json_path = dir.join("bulk.json");
    let fixture = fixture();
    let output = weft(&[
        "bench",
        "--bulk",
        "4M",
        "--duration",
        "120",
        "--quinn-json",
        fixture.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = std::fs::read_to_string(&json_path).unwrap();
    let weft_gbps = field(&json, "bulk_gbps");
    assert_eq!(field(&json, "quinn_gbps"), 5.2, "{json}");
    assert_eq!(field(&json, "quinn_bytes"), 1_950_000_000.0, "{json}");
    assert_eq!(field(&json, "quinn_intervals"), 3.0, "{json}");
    let ratio = field(&json, "quinn_ratio");
    assert!(
        (ratio - weft_gbps / 5.2).abs() < 1e-3,
        "ratio {ratio} for weft {weft_gbps} vs quinn 5.2"
    );
    // The table's row: weft's goodput, quinn's, and the same ratio to three places.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("goodput vs quinn-perf Gbit/s"))
        .unwrap_or_else(|| panic!("no quinn row in {stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let cell = |i: usize| -> f64 { cells[i].parse().unwrap_or_else(|_| panic!("{row}")) };
    assert!((cell(4) - weft_gbps).abs() <= 0.0051, "{row}");
    assert_eq!(cells[5], "5.20", "{row}");
    assert!((cell(6) - ratio).abs() <= 0.0006, "{row}");
    assert!(
        row.contains("AES-128-GCM") && row.contains("AES-256-GCM"),
        "{row}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_file_is_an_error_naming_the_flag() {
    let dir = scratch("bad");
    let truncated = dir.join("truncated.json");
    std::fs::write(&truncated, "{\"intervals\": [{\"streams\": [").unwrap();
    let other = dir.join("other.json");
    std::fs::write(&other, "{\"weft_pps\": 1}").unwrap();
    let missing = dir.join("missing.json");
    for (path, says) in [
        (
            &truncated,
            "not JSON: unexpected end of the text at byte 28",
        ),
        (&other, "no \"intervals\" array"),
        (&missing, "cannot read it"),
    ] {
        let output = weft(&[
            "bench",
            "--bulk",
            "1G",
            "--quinn-json",
            path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("--quinn-json {}", path.display())) && stderr.contains(says),
            "{stderr}"
        );
        // Refused before the transfer: nothing was measured.
        assert!(output.stdout.is_empty(), "{:?}", output.stdout);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quinn_json_needs_bulk() {
    let fixture = fixture();
    let output = weft(&["bench", "--quinn-json", fixture.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bulk"));
}

/// A quinn-perf file with these (download bytes, seconds) intervals and an upload stream that
/// must not count.
fn quinn_file(intervals: &[(u64, u32)], pretty: bool) -> String {
    let sep = if pretty { ",\n  " } else { "," };
    let items: Vec<String> = intervals
        .iter()
        .map(|&(bytes, ms)| {
            let seconds = f64::from(ms) / 1000.0;
            format!(
                "{{\"streams\":[{{\"id\":0,\"seconds\":{seconds},\"bytes\":{bytes},\
                 \"sender\":false}}{sep}{{\"id\":2,\"seconds\":{seconds},\"bytes\":99,\
                 \"sender\":true}}],\"sum\":{{\"seconds\":{seconds},\"bytes\":{bytes},\
                 \"bits_per_second\":1e9,\"sender\":false}}}}"
            )
        })
        .collect();
    format!(
        "{{\"start\":{{\"timestamp\":{{\"timesecs\":1}}}},\"intervals\":[{}]}}",
        items.join(sep)
    )
}

proptest! {
    #[test]
    fn any_text_parses_or_errs_without_panicking(text in "\\PC{0,200}") {
        let _ = Json::parse(&text);
        let _ = QuinnPerf::parse(&text);
    }

    #[test]
    fn json_like_bytes_never_panic(text in "[\\[\\]{}\",:0-9eE.+\\-a-z\\\\ ]{0,300}") {
        if let Ok(value) = Json::parse(&text) {
            // What parsed parses again the same from its own text with space around it.
            prop_assert_eq!(Json::parse(&format!(" {text}\n")), Ok(value));
        }
    }

    #[test]
    fn goodput_is_download_bytes_over_summed_seconds(
        intervals in prop::collection::vec((0u64..2_000_000_000, 1u32..2_000), 1..20),
        pretty in any::<bool>(),
    ) {
        let bytes: u64 = intervals.iter().map(|&(b, _)| b).sum();
        let text = quinn_file(&intervals, pretty);
        let seconds: f64 = intervals.iter().map(|&(_, ms)| f64::from(ms) / 1000.0).sum();
        match QuinnPerf::parse(&text) {
            Ok(quinn) => {
                prop_assert_eq!(quinn.bytes, bytes);
                prop_assert_eq!(quinn.intervals, intervals.len());
                prop_assert!((quinn.seconds - seconds).abs() < 1e-9);
            }
            Err(e) => prop_assert!(bytes == 0 && e.contains("nothing to compare"), "{}", e),
        }
        // Cut anywhere, the file is an error, never a panic or a figure from half a run.
        let cut = text.len() * 2 / 3;
        prop_assert!(QuinnPerf::parse(&text[..cut]).is_err());
    }
}
