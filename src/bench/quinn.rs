//! quinn-perf's figures, read from its client's `--json` file, for `weft bench --bulk
//! --quinn-json FILE` to print beside weft's own (issue 12's bulk gate compares the two).
//!
//! The file is what `quinn-perf client --json F` writes (quinn's `perf/src/stats.rs`):
//! `{"start": {...}, "intervals": [{"streams": [{"id", "start", "end", "seconds", "bytes",
//! "bits_per_second", "sender"}, ...], "sum": {"start", "end", "seconds", "bytes", ...}}, ...]}`,
//! one interval per reporting period (a second by default). Goodput is the download: the bytes
//! of every stream with `"sender": false` over the intervals' summed seconds, the whole run as
//! iperf's summary would count it.

use super::json::Json;
use std::path::Path;

/// Largest file read: a ten-second run writes a few KiB; anything near this is not one.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// What a quinn-perf client run moved.
#[derive(Clone, Debug, PartialEq)]
pub struct QuinnPerf {
    /// Bytes the client received (the download direction) over all intervals.
    pub bytes: u64,
    /// The intervals' seconds, summed.
    pub seconds: f64,
    /// Intervals in the file.
    pub intervals: usize,
}

impl QuinnPerf {
    /// Reads and parses quinn-perf's JSON file at `path`.
    pub fn read(path: &Path) -> Result<QuinnPerf, String> {
        let size = std::fs::metadata(path)
            .map_err(|e| format!("cannot read it: {e}"))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "{size} bytes is too large for quinn-perf's JSON (at most {MAX_FILE_BYTES})"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
        QuinnPerf::parse(&text)
    }

    /// Parses the text of quinn-perf's JSON output.
    pub fn parse(text: &str) -> Result<QuinnPerf, String> {
        let json = Json::parse(text).map_err(|e| format!("not JSON: {e}"))?;
        let intervals = json
            .get("intervals")
            .and_then(Json::as_array)
            .ok_or("no \"intervals\" array: not the output of quinn-perf client --json")?;
        let mut bytes = 0u64;
        let mut seconds = 0.0f64;
        for (i, interval) in intervals.iter().enumerate() {
            let period = interval
                .get("sum")
                .and_then(|sum| sum.get("seconds"))
                .and_then(Json::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("interval {i} has no \"sum\".\"seconds\" of 0 or more"))?;
            seconds += period;
            let streams = interval
                .get("streams")
                .and_then(Json::as_array)
                .ok_or_else(|| format!("interval {i} has no \"streams\" array"))?;
            for stream in streams {
                let sender = stream
                    .get("sender")
                    .and_then(Json::as_bool)
                    .ok_or_else(|| format!("a stream of interval {i} has no boolean \"sender\""))?;
                let count = stream
                    .get("bytes")
                    .and_then(Json::as_f64)
                    .and_then(whole_bytes)
                    .ok_or_else(|| {
                        format!("a stream of interval {i} has no whole \"bytes\" of 0 or more")
                    })?;
                if !sender {
                    bytes = bytes
                        .checked_add(count)
                        .ok_or_else(|| format!("interval {i}: the byte count overflows"))?;
                }
            }
        }
        if bytes == 0 || seconds <= 0.0 {
            return Err(format!(
                "{} intervals, {seconds:.3} s, {bytes} bytes downloaded: nothing to compare \
                 (run the client with --download-size 100G --upload-size 0 --duration 10)",
                intervals.len()
            ));
        }
        Ok(QuinnPerf {
            bytes,
            seconds,
            intervals: intervals.len(),
        })
    }

    /// Download goodput in Gbit/s.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds.max(1e-9) / 1e9
    }
}

/// A byte count as JSON carries it: a whole number that fits a `u64`.
fn whole_bytes(n: f64) -> Option<u64> {
    // 2^64 as an f64 is exact; anything below it and whole converts without loss of meaning.
    (n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n < 18_446_744_073_709_551_616.0)
        .then_some(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two intervals as quinn-perf writes them: 1 s and 0.5 s, the upload stream carrying
    /// nothing that counts.
    const TWO: &str = r#"{"start":{"timestamp":{"timesecs":1764676800}},"intervals":[
        {"streams":[{"id":0,"start":0.0,"end":1.0,"seconds":1.0,"bytes":500000000,
          "bits_per_second":4e9,"sender":false},
          {"id":4,"start":0.0,"end":1.0,"seconds":1.0,"bytes":7,"bits_per_second":56.0,"sender":true}],
         "sum":{"start":0.0,"end":1.0,"seconds":1.0,"bytes":7,"bits_per_second":56.0,"sender":true}},
        {"streams":[{"id":0,"start":1.0,"end":1.5,"seconds":0.5,"bytes":250000000,
          "bits_per_second":4e9,"sender":false}],
         "sum":{"start":1.0,"end":1.5,"seconds":0.5,"bytes":250000000,"bits_per_second":4e9,"sender":false}}]}"#;

    #[test]
    fn download_bytes_over_summed_seconds() {
        let quinn = QuinnPerf::parse(TWO).unwrap();
        assert_eq!(quinn.bytes, 750_000_000);
        assert_eq!(quinn.seconds, 1.5);
        assert_eq!(quinn.intervals, 2);
        assert!((quinn.gbps() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn wrong_files_say_what_is_missing() {
        for (text, says) in [
            ("{", "not JSON"),
            ("[]", "no \"intervals\""),
            ("{\"intervals\": 3}", "no \"intervals\""),
            ("{\"intervals\": [{}]}", "interval 0 has no \"sum\""),
            (
                "{\"intervals\": [{\"sum\": {\"seconds\": 1}}]}",
                "no \"streams\"",
            ),
            (
                "{\"intervals\": [{\"sum\": {\"seconds\": -1}, \"streams\": []}]}",
                "of 0 or more",
            ),
            (
                "{\"intervals\": [{\"sum\": {\"seconds\": 1}, \"streams\": [{\"bytes\": 1}]}]}",
                "boolean \"sender\"",
            ),
            (
                "{\"intervals\": [{\"sum\": {\"seconds\": 1}, \"streams\": [{\"sender\": false, \"bytes\": 1.5}]}]}",
                "whole \"bytes\"",
            ),
            ("{\"intervals\": []}", "nothing to compare"),
            (
                "{\"intervals\": [{\"sum\": {\"seconds\": 1}, \"streams\": [{\"sender\": true, \"bytes\": 9}]}]}",
                "nothing to compare",
            ),
        ] {
            let error = QuinnPerf::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
