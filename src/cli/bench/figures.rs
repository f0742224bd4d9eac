//! The figures of a load run: the table `weft bench` prints and the JSON it writes, weft's
//! column beside the raw echo's.

use super::BenchArgs;
use weft::bench::load::LoadReport;

/// Memory figures read around the open phase.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Memory {
    pub(super) node_at_zero: i64,
    pub(super) node_at_open: i64,
    pub(super) harness_at_zero: i64,
    pub(super) harness_at_open: i64,
    pub(super) rss_at_zero: u64,
    pub(super) rss_at_open: u64,
}

impl Memory {
    /// Node heap per peer whose channel opened (the others hold next to nothing).
    fn node_per_peer(&self, opened: u64) -> u64 {
        (self.node_at_open - self.node_at_zero).max(0) as u64 / opened.max(1)
    }

    /// Harness heap per simulated peer, opened or not.
    fn harness_per_peer(&self, peers: u32) -> u64 {
        (self.harness_at_open - self.harness_at_zero).max(0) as u64 / u64::from(peers.max(1))
    }
}

/// Everything a load run reports, for the table and the JSON.
pub(super) struct Figures<'a> {
    pub(super) args: &'a BenchArgs,
    pub(super) shards: usize,
    pub(super) io_backend: &'static str,
    pub(super) weft: &'a LoadReport,
    pub(super) baseline: &'a LoadReport,
    pub(super) memory: Memory,
    pub(super) counting: bool,
    /// Messages each peer kept in flight (1: ping-pong).
    pub(super) window: u8,
}

/// CPU time of the whole process (clients and node) per packet moved, out or back.
fn cpu_ns_per_packet(report: &LoadReport) -> f64 {
    report.cpu.as_nanos() as f64 / (report.sent + report.received).max(1) as f64
}

/// CPU time of the echo's own threads (the node's shards and echo worker, or the raw echo's
/// threads) per datagram echoed back to the clients; `None` for a node in another process.
fn echo_cpu_ns_per_datagram(report: &LoadReport) -> Option<f64> {
    let cpu = report.echo_cpu?;
    Some(cpu.as_nanos() as f64 / report.received.max(1) as f64)
}

impl Figures<'_> {
    fn ratio(&self) -> f64 {
        self.weft.pps() / self.baseline.pps().max(1e-9)
    }

    /// weft's p99 round trip over the raw echo's: the ping-pong gate's figure.
    fn p99_ratio(&self) -> f64 {
        self.weft.latency_us(0.99) as f64 / self.baseline.latency_us(0.99).max(1) as f64
    }

    pub(super) fn table(&self) -> String {
        let (w, b) = (self.weft, self.baseline);
        let mut out = format!(
            "weft bench: mode={} peers={} payload={} B (packet {} B, baseline datagram {} B) \
             rate={} window={} duration={}s shards={} clients={} io={}\n",
            self.args.mode.name(),
            self.args.peers,
            self.args.size,
            w.packet_bytes,
            b.packet_bytes,
            self.args.rate,
            self.window,
            self.args.duration,
            self.shards,
            self.args.clients,
            self.io_backend,
        );
        out += &format!("{:<20}{:>14}{:>14}{:>9}\n", "", "weft", "raw UDP", "ratio");
        let row = |name: &str, w: f64, b: f64, digits: usize| {
            format!(
                "{name:<20}{w:>14.digits$}{b:>14.digits$}{:>9.3}\n",
                w / b.max(1e-9)
            )
        };
        out += &row("packets/s out", w.pps_out(), b.pps_out(), 0);
        out += &row("packets/s in", w.pps(), b.pps(), 0);
        out += &row("Gbit/s out", w.gbps_out(), b.gbps_out(), 3);
        out += &row("Gbit/s in", w.gbps_in(), b.gbps_in(), 3);
        for (name, q) in [("p50 µs", 0.5), ("p99 µs", 0.99), ("p999 µs", 0.999)] {
            out += &row(name, w.latency_us(q) as f64, b.latency_us(q) as f64, 0);
        }
        out += &row(
            "CPU ns/packet",
            cpu_ns_per_packet(w),
            cpu_ns_per_packet(b),
            0,
        );
        out += &match (echo_cpu_ns_per_datagram(w), echo_cpu_ns_per_datagram(b)) {
            (Some(n), Some(r)) => row("node CPU ns/dgram", n, r, 0),
            (n, r) => {
                let or_na = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
                format!(
                    "{:<20}{:>14}{:>14}\n",
                    "node CPU ns/dgram",
                    or_na(n),
                    or_na(r)
                )
            }
        };
        out += &format!("{:<20}{:>14}{:>14}\n", "window stalls", w.stalls, b.stalls);
        out += &format!("{:<20}{:>14}{:>14}\n", "late answers", w.late, b.late);
        out += &format!(
            "handshakes/s {:.0} ({} channels open, {} failed, in {:.3} s)\n",
            w.handshakes_per_s(),
            w.opened,
            w.open_failed,
            w.open_time.as_secs_f64(),
        );
        let m = &self.memory;
        if self.counting {
            out += &format!(
                "node bytes/peer {} (live heap {} B at 0 peers, {} B with {} open and idle); \
                 harness bytes/peer {}; process RSS {} -> {} MiB\n",
                m.node_per_peer(w.opened),
                m.node_at_zero,
                m.node_at_open,
                w.opened,
                m.harness_per_peer(self.args.peers),
                m.rss_at_zero >> 20,
                m.rss_at_open >> 20,
            );
        } else {
            out += "node bytes/peer n/a (a --target node, or no counting allocator)\n";
        }
        out += &format!("weft/baseline packets/s {:.3}\n", self.ratio());
        if self.args.pingpong {
            out += &format!(
                "ping-pong: one message in flight per peer, rate asked {} (0: as fast as round \
                 trips allow), answered weft {:.0}/s, raw {:.0}/s; p99 weft/raw {:.3}\n",
                self.args.rate,
                w.pps(),
                b.pps(),
                self.p99_ratio(),
            );
        }
        out
    }

    pub(super) fn json(&self) -> String {
        let (w, b, m) = (self.weft, self.baseline, &self.memory);
        let peers = self.args.peers;
        let fields: Vec<(&str, String)> = vec![
            ("mode", format!("\"{}\"", self.args.mode.name())),
            ("window", self.window.to_string()),
            ("peers", peers.to_string()),
            ("size", self.args.size.to_string()),
            ("packet_bytes", w.packet_bytes.to_string()),
            ("rate", self.args.rate.to_string()),
            ("duration_s", self.args.duration.to_string()),
            ("shards", self.shards.to_string()),
            ("clients", self.args.clients.to_string()),
            ("io_backend", format!("\"{}\"", self.io_backend)),
            ("weft_sent", w.sent.to_string()),
            ("weft_received", w.received.to_string()),
            ("baseline_sent", b.sent.to_string()),
            ("baseline_received", b.received.to_string()),
            ("weft_pps", format!("{:.1}", w.pps())),
            ("weft_pps_out", format!("{:.1}", w.pps_out())),
            ("baseline_pps", format!("{:.1}", b.pps())),
            ("baseline_pps_out", format!("{:.1}", b.pps_out())),
            ("ratio", format!("{:.4}", self.ratio())),
            ("weft_gbps_in", format!("{:.4}", w.gbps_in())),
            ("weft_gbps_out", format!("{:.4}", w.gbps_out())),
            ("baseline_gbps_in", format!("{:.4}", b.gbps_in())),
            ("baseline_gbps_out", format!("{:.4}", b.gbps_out())),
            ("handshakes_per_s", format!("{:.1}", w.handshakes_per_s())),
            ("channels_opened", w.opened.to_string()),
            ("channels_failed", w.open_failed.to_string()),
            ("p50_us", w.latency_us(0.5).to_string()),
            ("p99_us", w.latency_us(0.99).to_string()),
            ("p999_us", w.latency_us(0.999).to_string()),
            ("baseline_p50_us", b.latency_us(0.5).to_string()),
            ("baseline_p99_us", b.latency_us(0.99).to_string()),
            ("baseline_p999_us", b.latency_us(0.999).to_string()),
            ("p99_ratio", format!("{:.4}", self.p99_ratio())),
            ("cpu_ns_per_packet", format!("{:.1}", cpu_ns_per_packet(w))),
            (
                "baseline_cpu_ns_per_packet",
                format!("{:.1}", cpu_ns_per_packet(b)),
            ),
            (
                "node_cpu_ns_per_datagram",
                json_number(echo_cpu_ns_per_datagram(w)),
            ),
            (
                "baseline_cpu_ns_per_datagram",
                json_number(echo_cpu_ns_per_datagram(b)),
            ),
            ("weft_stalls", w.stalls.to_string()),
            ("baseline_stalls", b.stalls.to_string()),
            ("weft_late_answers", w.late.to_string()),
            ("bytes_per_peer", m.node_per_peer(w.opened).to_string()),
            ("node_heap_at_zero", m.node_at_zero.to_string()),
            ("node_heap_at_open", m.node_at_open.to_string()),
            (
                "harness_bytes_per_peer",
                m.harness_per_peer(peers).to_string(),
            ),
        ];
        render_json(&fields)
    }
}

/// A figure with one decimal, or `null` where it could not be read.
fn json_number(value: Option<f64>) -> String {
    value.map_or("null".to_string(), |v| format!("{v:.1}"))
}

pub(super) fn render_json(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  \"{k}\": {v}"))
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}
