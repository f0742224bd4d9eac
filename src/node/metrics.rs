//! The Prometheus endpoint (PROTOCOL.md §12): the `metrics` facade's recorder, rendered on
//! `GET /metrics` by the small HTTP server in [`super::scrape`].
//!
//! The exporter's own HTTP listener would pull in tokio and hyper, so the node serves the text
//! itself; binding the listener here also means port 0 works and the bound address is known.
//! Every family's name, type, unit and help come from [`crate::stats::catalog`]: they are
//! registered with the recorder, and [`super::exposition`] writes each scrape in the catalog's
//! shape (stable order, known series at 0, histograms, `process_*`).

use super::exposition;
use super::scrape::{self, Answer, ScrapeLimits, ScrapeStats};
use crate::stats::catalog::{self, Type};
use crate::stats::{StatKind, Stats};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listener could not bind.
    #[error(
        "cannot serve metrics on {address} (--metrics / `metrics`): {source}; choose a free \
         address, e.g. 127.0.0.1:0"
    )]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The process already has a `metrics` recorder.
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
}

/// A running metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    handle: PrometheusHandle,
    dropped: Arc<ScrapeStats>,
}

impl MetricsServer {
    /// Binds `address`, installs the process-wide recorder and serves it under the default
    /// [`ScrapeLimits`] from threads that live as long as the process.
    pub fn start(address: SocketAddr) -> Result<MetricsServer, MetricsError> {
        MetricsServer::start_with(address, ScrapeLimits::default())
    }

    /// Like [`MetricsServer::start`], under `limits`.
    pub fn start_with(
        address: SocketAddr,
        limits: ScrapeLimits,
    ) -> Result<MetricsServer, MetricsError> {
        let bind_error = |source| MetricsError::Bind { address, source };
        let listener = TcpListener::bind(address).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| MetricsError::Recorder(e.to_string()))?;
        describe();
        let served = handle.clone();
        let dropped = Arc::new(ScrapeStats::default());
        let counted = Arc::clone(&dropped);
        scrape::spawn(listener, limits, Arc::clone(&dropped), move |head| {
            answer(head, &served, &counted)
        })
        .map_err(bind_error)?;
        Ok(MetricsServer {
            local_addr,
            handle,
            dropped,
        })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The current exposition text, as a scrape would see it.
    pub fn render(&self) -> String {
        publish_heap();
        publish_scrape_drops(&self.dropped);
        render(&self.handle)
    }
}

/// Registers every catalog family's help text and unit with the installed recorder.
pub fn describe() {
    for m in catalog::METRICS {
        match m.kind {
            Type::Counter => metrics::describe_counter!(m.name, m.help),
            Type::Gauge => metrics::describe_gauge!(m.name, m.help),
            Type::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The exposition of what `handle` holds and of this process, in the catalog's shape.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    let (mut samples, types) = exposition::parse(&handle.render());
    samples.extend(super::process::samples());
    exposition::expose(samples, &types)
}

/// Sets `weft_metrics_connections_dropped_total{reason=...}`: scrape connections the endpoint
/// closed unanswered (over its cap, evicted while silent, or past the request deadline).
pub fn publish_scrape_drops(dropped: &ScrapeStats) {
    for (reason, count) in dropped.by_reason() {
        metrics::counter!("weft_metrics_connections_dropped_total", "reason" => reason)
            .absolute(count);
    }
}

/// Sets `weft_build_info{version="…", io_backend="…"}` to 1, the usual way to export a version,
/// with the I/O backend the engine really runs (PROTOCOL.md §12): published once the engine has
/// started, since `--io auto` decides only then.
pub fn publish_build_info(io_backend: &'static str) {
    metrics::gauge!(
        "weft_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "io_backend" => io_backend
    )
    .set(1.0);
}

/// Sets `weft_heap_live_bytes` to the process's live heap when it runs the counting allocator
/// ([`crate::heap`]); called before each scrape is rendered.
pub fn publish_heap() {
    if crate::heap::is_counting() {
        metrics::gauge!("weft_heap_live_bytes").set(crate::heap::live_total() as f64);
    }
}

/// Copies every statistic to the `metrics` recorder. The engine calls this about once a second,
/// never per packet (PROTOCOL.md §12).
pub fn publish(stats: &Stats) {
    for entry in stats.iter() {
        match (entry.kind, entry.label) {
            (StatKind::Counter, None) => metrics::counter!(entry.name).absolute(entry.value),
            (StatKind::Counter, Some((key, value))) => {
                metrics::counter!(entry.name, key => value).absolute(entry.value)
            }
            (StatKind::Gauge, None) => metrics::gauge!(entry.name).set(entry.value as f64),
            (StatKind::Gauge, Some((key, value))) => {
                metrics::gauge!(entry.name, key => value).set(entry.value as f64)
            }
        }
    }
}

/// Sets `weft_engine_info{io_backend="…", shards="N"}` to 1: which backend and how many shards
/// this node runs.
pub fn publish_engine_info(io_backend: &'static str, shards: usize) {
    metrics::gauge!("weft_engine_info", "io_backend" => io_backend, "shards" => shards.to_string())
        .set(1.0);
}

/// Sets `weft_io_fallback_total{reason="EPERM"}` to 1: `--io auto` wanted io_uring, the kernel
/// refused it with that errno, and the node runs epoll.
pub fn publish_io_fallback(reason: &'static str) {
    metrics::counter!("weft_io_fallback_total", "reason" => reason).absolute(1);
}

/// Like [`publish`], with one more label (`key = value`) on every metric, e.g. a shard's index.
pub fn publish_labelled(key: &'static str, value: impl ToString, stats: &Stats) {
    let value = value.to_string();
    for entry in stats.iter() {
        let mut labels = vec![metrics::Label::new(key, value.clone())];
        if let Some((k, v)) = entry.label {
            labels.push(metrics::Label::new(k, v));
        }
        match entry.kind {
            StatKind::Counter => metrics::counter!(entry.name, labels).absolute(entry.value),
            StatKind::Gauge => metrics::gauge!(entry.name, labels).set(entry.value as f64),
        }
    }
}

/// The answer to one request head.
fn answer(head: &[u8], handle: &PrometheusHandle, dropped: &ScrapeStats) -> Answer {
    match route(head) {
        Route::Metrics => {
            publish_heap();
            publish_scrape_drops(dropped);
            ("200 OK", CONTENT_TYPE, render(handle))
        }
        Route::NotFound => (
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n".to_string(),
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
}

/// Chooses the answer from the request line; anything but `GET /metrics` is not found.
fn route(head: &[u8]) -> Route {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Route::NotFound;
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    if method == b"GET" && path == b"/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_routed() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b""), Route::NotFound);
        assert_eq!(route(b"\xff\xfe"), Route::NotFound);
    }

    #[test]
    fn publish_exports_counters_gauges_and_labels() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut stats = Stats::new();
        stats.add("weft_packets_received_total", None, 3);
        stats.add("weft_drops_total", Some(("reason", "parse")), 2);
        stats.set("weft_peers", None, 7);
        metrics::with_local_recorder(&recorder, || {
            publish(&stats);
            publish_build_info("epoll");
        });
        let text = handle.render();
        assert!(text.contains("weft_packets_received_total 3"), "{text}");
        assert!(
            text.contains("weft_drops_total{reason=\"parse\"} 2"),
            "{text}"
        );
        assert!(text.contains("weft_peers 7"), "{text}");
        assert!(
            text.contains(&format!(
                "weft_build_info{{version=\"{}\",io_backend=\"epoll\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );

        // Publishing again sets absolute values; it does not add.
        stats.add("weft_packets_received_total", None, 1);
        metrics::with_local_recorder(&recorder, || publish(&stats));
        assert!(handle.render().contains("weft_packets_received_total 4"));
    }

    proptest::proptest! {
        #[test]
        fn any_request_bytes_route_without_panicking(head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let routed = route(&head);
            proptest::prop_assert!(routed == Route::NotFound || head.starts_with(b"GET /metrics"));
        }
    }
}
