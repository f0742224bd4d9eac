//! Fuzzes the JSON reader behind `weft bench --bulk --quinn-json` and quinn-perf's schema on
//! top of it: any bytes give a value or an error, never a panic; a value parses again the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::bench::json::Json;
use weft::bench::quinn::QuinnPerf;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = Json::parse(text) {
        assert_eq!(Json::parse(&format!(" {text} ")), Ok(value));
    }
    if let Ok(quinn) = QuinnPerf::parse(text) {
        assert!(quinn.bytes > 0 && quinn.seconds > 0.0 && quinn.gbps().is_finite());
    }
});
