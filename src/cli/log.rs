//! Logging for `weft node`: text lines for people, or one JSON object per line for log shippers
//! (`--log-format json`), both on stderr.
//!
//! The JSON lines are written here rather than by `tracing-subscriber`'s `json` feature, which
//! would pull in `tracing-serde` (docs/DEPENDENCIES.md): an event is a flat list of fields, and
//! a few lines of escaping cover it.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use weft::node::config::LogFormat;

/// Logs to stderr; `RUST_LOG` wins over `log_level` so an operator can turn up one run's
/// logging without editing the file.
pub(crate) fn init(log_level: Option<&str>, format: LogFormat) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let mut bad_env = None;
    let filter = match from_env.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => filter,
        other => {
            if let Some(Err(e)) = other {
                bad_env = Some(e);
            }
            // log_level was checked when the config was read.
            EnvFilter::try_new(log_level.unwrap_or("info"))
                .unwrap_or_else(|_| EnvFilter::new("info"))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes would garble log files and journald.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).init(),
    }
    if let Some(e) = bad_env {
        tracing::warn!(error = %e, "RUST_LOG is not a valid filter; ignoring it");
    }
}

/// `{"timestamp":"…","level":"INFO","target":"weft::…","message":"…","field":…}` per event.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let metadata = event.metadata();
        let mut line = String::from("{\"timestamp\":");
        push_json_string(&mut line, &timestamp);
        line.push_str(",\"level\":");
        push_json_string(&mut line, metadata.level().as_str());
        line.push_str(",\"target\":");
        push_json_string(&mut line, metadata.target());
        let mut fields = JsonFields(&mut line);
        event.record(&mut fields);
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Appends each field as `,"name":value`; numbers and booleans stay JSON numbers and booleans.
struct JsonFields<'a>(&'a mut String);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        push_json_string(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_json_string(self.0, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(self.0, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            // JSON has no NaN or infinity.
            push_json_string(self.0, &value.to_string());
        }
    }
}

/// Appends `text` as a JSON string literal (RFC 8259 §7).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn events_become_one_json_object_per_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(peers = 3u64, ok = true, name = "x\"y", "summary");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().next().unwrap();
        assert!(line.starts_with("{\"timestamp\":\""), "{line}");
        assert!(
            line.ends_with(
                ",\"level\":\"INFO\",\"target\":\"weft::cli::log::tests\",\
                 \"message\":\"summary\",\"peers\":3,\"ok\":true,\"name\":\"x\\\"y\"}"
            ),
            "{line}"
        );
    }
}
