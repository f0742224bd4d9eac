//! The node's local admin interface: a Unix socket, `admin.sock` in the data directory, mode
//! 0600 in a 0700 directory, so only the node's own user reaches it. `weft status` writes one
//! request line, `status` or `status json`, and reads the answer to the end.
//!
//! Peers are gathered only on request: the admin thread raises the engine's
//! [`peers_wanted`](crate::engine::Engine::peers_wanted) flag, each shard adds its peers to its
//! next snapshot (about a second later), and the node's publish loop hands the merged view here.

use crate::channel::PeerSnapshot;
use crate::consensus::service::{SharedView, View as ConsensusView, hex};
use crate::engine::ShardStats;
use crate::stats::Stats;
use crate::wire::PeerId;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The socket's file name in the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// How long a request waits for the shards' peers: two snapshot intervals and slack.
const GATHER_DEADLINE: Duration = Duration::from_secs(5);
/// How long a client may take to send its request line, in all: the admin thread answers one
/// client at a time, so one that trickles a byte just within a per-read timeout must not hold
/// it (and every `weft status`) for 64 such timeouts.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The longest request line read.
const MAX_REQUEST: usize = 64;
/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// Facts about the node that do not change while it runs.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    /// The node's peer id.
    pub peer: PeerId,
    /// The bound UDP address.
    pub udp: SocketAddr,
    /// The bound metrics address.
    pub metrics: SocketAddr,
    /// The I/O backend.
    pub io: &'static str,
    /// Shards running.
    pub shards: usize,
    /// When the node started.
    pub started: Instant,
    /// The consensus service's view: the network, where the member stands, the node's id.
    pub consensus: Option<SharedView>,
}

/// The latest merged view, and how many the publish loop has made since start.
#[derive(Default)]
struct View {
    seq: u64,
    totals: Stats,
    peers: Vec<PeerSnapshot>,
}

struct Shared {
    view: Mutex<View>,
    updated: Condvar,
    wanted: Arc<AtomicBool>,
    stop: AtomicBool,
}

/// The admin socket and its thread; dropping it stops the thread and removes the socket.
pub struct AdminServer {
    shared: Arc<Shared>,
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `DATA/admin.sock` (replacing a stale one a crashed node left) and serves it on a
    /// thread. A socket another live process answers on is left alone: an error.
    pub fn start(
        data: &Path,
        wanted: Arc<AtomicBool>,
        facts: NodeFacts,
    ) -> io::Result<AdminServer> {
        let path = data.join(ADMIN_SOCKET);
        if UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} answers: another node runs with this data directory",
                    path.display()
                ),
            ));
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)?;
        // The directory is 0700 already; the socket's own mode says the same to anyone who
        // copies it elsewhere.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            view: Mutex::new(View::default()),
            updated: Condvar::new(),
            wanted,
            stop: AtomicBool::new(false),
        });
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("weft-admin".into())
            .spawn(move || serve(&listener, &serving, &facts))?;
        Ok(AdminServer {
            shared,
            path,
            thread: Some(thread),
        })
    }

    /// Called by the node's publish loop about once a second: while a request waits, keeps the
    /// merged counters and every shard's peers for it.
    /// `services` are the worker's counters (the overlay's table and records among them).
    pub fn publish(&self, totals: &Stats, services: &Stats, shards: &[ShardStats]) {
        if !self.shared.wanted.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut view) = self.shared.view.lock() {
            view.seq = view.seq.wrapping_add(1);
            view.totals.clone_from(totals);
            for entry in services.iter() {
                view.totals.set(entry.name, entry.label, entry.value);
            }
            view.peers.clear();
            for shard in shards {
                view.peers.extend_from_slice(&shard.peers);
            }
        }
        self.shared.updated.notify_all();
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.updated.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(listener: &UnixListener, shared: &Shared, facts: &NodeFacts) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, shared, facts) {
                    tracing::debug!(error = %e, "admin request failed");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "admin socket failed; weft status is unavailable");
                return;
            }
        }
    }
}

fn answer(mut stream: UnixStream, shared: &Shared, facts: &NodeFacts) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REQUEST_DEADLINE))?;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut request = Vec::with_capacity(MAX_REQUEST);
    let mut byte = [0u8; 1];
    while request.len() < MAX_REQUEST && !request.ends_with(b"\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        if stream.read(&mut byte)? == 0 {
            break;
        }
        request.push(byte[0]);
    }
    let json = match String::from_utf8_lossy(&request).trim() {
        "status" => false,
        "status json" => true,
        other => {
            return stream.write_all(
                format!("error: unknown request {other:?}; send \"status\" or \"status json\"\n")
                    .as_bytes(),
            );
        }
    };
    let view = gather(shared);
    let text = match view {
        Some((totals, peers)) if json => render_json(facts, &totals, &peers),
        Some((totals, peers)) => render_text(facts, &totals, &peers),
        None => "error: the shards did not report their peers in time; try again\n".into(),
    };
    stream.write_all(text.as_bytes())
}

/// Raises the flag and waits for the second view after it: the first may hold snapshots the
/// shards took before they saw the flag.
fn gather(shared: &Shared) -> Option<(Stats, Vec<PeerSnapshot>)> {
    shared.wanted.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + GATHER_DEADLINE;
    let result = (|| {
        let mut view = shared.view.lock().ok()?;
        let wanted_seq = view.seq.wrapping_add(2);
        while view.seq < wanted_seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || shared.stop.load(Ordering::Relaxed) {
                return None;
            }
            view = shared.updated.wait_timeout(view, left).ok()?.0;
        }
        Some((view.totals.clone(), std::mem::take(&mut view.peers)))
    })();
    shared.wanted.store(false, Ordering::Relaxed);
    result
}

/// The sum of a statistic over its labels.
fn total(stats: &Stats, name: &str) -> u64 {
    stats
        .iter()
        .filter(|entry| entry.name == name)
        .fold(0, |sum, entry| sum.saturating_add(entry.value))
}

/// Node totals, in the order both renderings show them.
fn totals(stats: &Stats) -> [(&'static str, u64); 10] {
    [
        ("peers", total(stats, "weft_peers")),
        ("sessions", total(stats, "weft_sessions")),
        ("channels", total(stats, "weft_channels")),
        (
            "packets_received",
            total(stats, "weft_packets_received_total"),
        ),
        ("bytes_received", total(stats, "weft_received_bytes_total")),
        ("packets_sent", total(stats, "weft_packets_sent_total")),
        ("bytes_sent", total(stats, "weft_sent_bytes_total")),
        (
            "packets_dropped",
            total(stats, "weft_packets_dropped_total"),
        ),
        (
            "handshakes",
            total(stats, "weft_handshakes_completed_total"),
        ),
        ("rekeys", total(stats, "weft_rekeys_total")),
    ]
}

/// The overlay's routing-table fill, records and channels, when the node runs the overlay.
fn overlay(stats: &Stats) -> Option<[u64; 5]> {
    stats
        .iter()
        .any(|e| e.name == "weft_overlay_contacts")
        .then(|| {
            [
                total(stats, "weft_overlay_contacts"),
                total(stats, "weft_overlay_buckets"),
                total(stats, "weft_overlay_records"),
                total(stats, "weft_overlay_channels"),
                total(stats, "weft_overlay_peer_records"),
            ]
        })
}

/// Records the overlay's store holds on disk, when the node keeps one (a client does not).
fn on_disk(stats: &Stats) -> Option<u64> {
    stats
        .iter()
        .any(|e| e.name == "weft_overlay_store_records")
        .then(|| total(stats, "weft_overlay_store_records"))
}

/// The session kind's name as `weft ping` prints it.
fn kind_name(kind: Option<u8>) -> &'static str {
    match kind {
        Some(1) => "ik",
        Some(2) => "xx",
        Some(3) => "ikpsk2",
        _ => "none",
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// The `wg show`-like text: the node, then one block per peer.
pub fn render_text(facts: &NodeFacts, stats: &Stats, peers: &[PeerSnapshot]) -> String {
    let t = totals(stats);
    let value = |name: &str| t.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v);
    let mut out = String::new();
    let _ = writeln!(out, "node: {}", facts.peer);
    let _ = writeln!(
        out,
        "  listening: {} (udp), metrics {}, io {}, {} shard(s), up {}",
        facts.udp,
        facts.metrics,
        facts.io,
        facts.shards,
        seconds(facts.started.elapsed())
    );
    let _ = writeln!(
        out,
        "  peers: {}, sessions: {}, channels: {}",
        value("peers"),
        value("sessions"),
        value("channels")
    );
    let _ = writeln!(
        out,
        "  transfer: {} B received ({} packets), {} B sent ({} packets), {} packets dropped",
        value("bytes_received"),
        value("packets_received"),
        value("bytes_sent"),
        value("packets_sent"),
        value("packets_dropped")
    );
    if let Some([contacts, buckets, records, channels, keys]) = overlay(stats) {
        let disk = on_disk(stats).map_or(String::new(), |n| format!(" ({n} on disk)"));
        let _ = writeln!(
            out,
            "  overlay: {contacts} contacts in {buckets} buckets, {records} records held{disk}, \
             {channels} channels, {keys} peer records (for IK)"
        );
    }
    let _ = writeln!(
        out,
        "  handshakes: {} completed, {} rekeys",
        value("handshakes"),
        value("rekeys")
    );
    if let Some(view) = facts
        .consensus
        .as_ref()
        .and_then(|v| v.lock().ok().map(|v| v.clone()))
    {
        consensus_text(&mut out, &view);
    }
    for peer in peers {
        let _ = writeln!(out, "\npeer: {}", peer.peer);
        let _ = writeln!(out, "  address: {}", peer.address);
        match peer.since_handshake {
            Some(since) => {
                let age = peer.session_age.unwrap_or(since);
                let _ = writeln!(
                    out,
                    "  session: {}, age {}, last handshake {} ago",
                    kind_name(peer.session_kind),
                    seconds(age),
                    seconds(since)
                );
            }
            None => {
                let _ = writeln!(out, "  session: none (plaintext)");
            }
        }
        if let Some(heard) = peer.since_heard {
            let _ = writeln!(out, "  last heard: {} ago", seconds(heard));
        }
        let c = peer.channels;
        let _ = writeln!(
            out,
            "  channels: {} udp, {} reliable, {} ordered, {} tcp",
            c.udp, c.reliable, c.ordered, c.tcp
        );
        let _ = writeln!(
            out,
            "  transfer: {} B received ({} packets), {} B sent ({} packets)",
            peer.bytes_received, peer.packets_received, peer.bytes_sent, peer.packets_sent
        );
        match (peer.congestion_window, peer.congestion_events) {
            (Some(cwnd), Some(events)) => {
                let rtt = peer.rtt.map_or("not measured yet".to_string(), |rtt| {
                    format!("{:.3} ms", rtt.as_secs_f64() * 1000.0)
                });
                let _ = writeln!(
                    out,
                    "  path: rtt {rtt}, cwnd {cwnd} B, {} B in flight, {events} loss events",
                    peer.bytes_in_flight.unwrap_or(0)
                );
            }
            _ => {
                let _ = writeln!(out, "  path: no data sent yet");
            }
        }
    }
    out
}

/// The consensus lines of the text status.
fn consensus_text(out: &mut String, view: &ConsensusView) {
    let Some(network) = view.network.map(|n| hex(&n.0[..8])) else {
        let _ = writeln!(
            out,
            "  consensus: waiting for the member list (consensus.members_url); no cluster joined or started"
        );
        return;
    };
    let role = if view.is_member {
        let round = view
            .round
            .map_or_else(|| "idle".to_string(), |r| format!("round {r}"));
        let last = view.last_decision.map_or_else(
            || "no decision yet".to_string(),
            |(height, at)| format!("last decision {height}, {} ago", seconds(at.elapsed())),
        );
        format!("member, height {} {round}, {last}", view.height)
    } else {
        "client".to_string()
    };
    let _ = writeln!(
        out,
        "  consensus: network {network}… ({} member(s)), {role}, links {}/{} open",
        view.members, view.links.0, view.links.1
    );
    if let Some(network) = view.network {
        let _ = writeln!(
            out,
            "  network id: {} ({})",
            hex(&network.0),
            if view.network_trust.is_empty() {
                "its own"
            } else {
                view.network_trust
            }
        );
    }
    match view.list_version {
        Some((version, links)) => {
            let _ = writeln!(
                out,
                "  member list: version {version} ({links} link(s) from genesis)"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  member list: a later list, its chain not learned yet (asking the members)"
            );
        }
    }
    match view.node_id {
        Some((id, height)) => {
            let _ = writeln!(
                out,
                "  node id: {} (certified, ordered at height {height})",
                hex(&id.0)
            );
        }
        None => {
            let _ = writeln!(out, "  node id: not certified yet (asking the cluster)");
        }
    }
}

fn json_opt(value: Option<u64>) -> String {
    value.map_or_else(|| "null".to_string(), |v| v.to_string())
}

fn json_seconds(value: Option<Duration>) -> String {
    value.map_or_else(|| "null".to_string(), |d| format!("{:.6}", d.as_secs_f64()))
}

/// The same as one JSON object: `{"node": {...}, "peers": [{...}, ...]}`. Every value is a
/// number, null or a string of hex digits, digits and punctuation, so none needs escaping.
pub fn render_json(facts: &NodeFacts, stats: &Stats, peers: &[PeerSnapshot]) -> String {
    let mut out = String::from("{\"node\":{");
    let _ = write!(
        out,
        "\"peer\":\"{}\",\"udp\":\"{}\",\"metrics\":\"{}\",\"io\":\"{}\",\"shards\":{},\
         \"uptime_seconds\":{:.3}",
        facts.peer,
        facts.udp,
        facts.metrics,
        facts.io,
        facts.shards,
        facts.started.elapsed().as_secs_f64()
    );
    for (name, value) in totals(stats) {
        let _ = write!(out, ",\"{name}\":{value}");
    }
    if let Some([contacts, buckets, records, channels, keys]) = overlay(stats) {
        let _ = write!(
            out,
            ",\"overlay\":{{\"contacts\":{contacts},\"buckets\":{buckets},\
             \"records\":{records},\"channels\":{channels},\"peer_records\":{keys}"
        );
        if let Some(n) = on_disk(stats) {
            let _ = write!(out, ",\"records_on_disk\":{n}");
        }
        out.push('}');
    }
    if let Some(view) = facts
        .consensus
        .as_ref()
        .and_then(|v| v.lock().ok().map(|v| v.clone()))
    {
        let text = |v: Option<String>| v.map_or_else(|| "null".to_string(), |v| format!("\"{v}\""));
        let _ = write!(
            out,
            ",\"consensus\":{{\"network\":{},\"members\":{},\"member\":{},\"height\":{},\
             \"round\":{},\"last_decision\":{},\"pending\":{},\"links_open\":{},\
             \"node_id\":{},\"node_id_height\":{},\"network_trust\":{}}}",
            text(view.network.map(|n| hex(&n.0))),
            view.members,
            view.is_member,
            view.height,
            json_opt(view.round.map(u64::from)),
            json_opt(view.last_decision.map(|(h, _)| h)),
            view.pending,
            view.links.0,
            text(view.node_id.map(|(id, _)| hex(&id.0))),
            json_opt(view.node_id.map(|(_, h)| h)),
            text((!view.network_trust.is_empty()).then(|| view.network_trust.to_string())),
        );
    }
    out.push_str("},\"peers\":[");
    for (index, peer) in peers.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let c = peer.channels;
        let session = match peer.session_kind {
            Some(_) => format!("\"{}\"", kind_name(peer.session_kind)),
            None => "null".into(),
        };
        let _ = write!(
            out,
            "{{\"peer\":\"{}\",\"address\":\"{}\",\"session\":{session},\
             \"session_age_seconds\":{},\"since_handshake_seconds\":{},\
             \"since_heard_seconds\":{},\
             \"channels\":{{\"udp\":{},\"reliable\":{},\"ordered\":{},\"tcp\":{}}},\
             \"packets_received\":{},\"bytes_received\":{},\"packets_sent\":{},\
             \"bytes_sent\":{},\"rtt_seconds\":{},\
             \"cwnd_bytes\":{},\"bytes_in_flight\":{},\"loss_events\":{}}}",
            peer.peer,
            peer.address,
            json_seconds(peer.session_age),
            json_seconds(peer.since_handshake),
            json_seconds(peer.since_heard),
            c.udp,
            c.reliable,
            c.ordered,
            c.tcp,
            peer.packets_received,
            peer.bytes_received,
            peer.packets_sent,
            peer.bytes_sent,
            json_seconds(peer.rtt),
            json_opt(peer.congestion_window),
            json_opt(peer.bytes_in_flight),
            json_opt(peer.congestion_events),
        );
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local client that trickles its request a byte at a time, each within the read
    /// timeout, is cut at the whole-request deadline; the next `weft status` is answered.
    #[test]
    fn a_trickling_client_holds_the_admin_socket_no_longer_than_the_deadline() {
        let dir = std::env::temp_dir().join(format!("weft-admin-loris-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let facts = NodeFacts {
            peer: PeerId::ZERO,
            udp: "127.0.0.1:1".parse().unwrap(),
            metrics: "127.0.0.1:2".parse().unwrap(),
            io: "test",
            shards: 1,
            started: Instant::now(),
            consensus: None,
        };
        let server = AdminServer::start(&dir, Arc::new(AtomicBool::new(false)), facts).unwrap();
        let path = dir.join(ADMIN_SOCKET);
        let stop = Arc::new(AtomicBool::new(false));
        let (trickle_path, trickle_stop) = (path.clone(), Arc::clone(&stop));
        let loris = std::thread::spawn(move || {
            let mut stream = UnixStream::connect(trickle_path).unwrap();
            // 60 bytes, a byte every 250 ms (15 s), never a newline.
            for _ in 0..60 {
                if trickle_stop.load(Ordering::Relaxed) || stream.write_all(b"s").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let mut client = UnixStream::connect(&path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.write_all(b"bogus\n").unwrap();
        let mut answer = String::new();
        let read = client.read_to_string(&mut answer);
        stop.store(true, Ordering::Relaxed);
        loris.join().unwrap();
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        read.expect("the next client is answered");
        assert!(answer.starts_with("error: unknown request"), "{answer}");
    }
}
