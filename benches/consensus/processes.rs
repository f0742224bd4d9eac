//! The real-process form of the consensus benchmark (issue 14, point 10; `-- --processes`):
//! `n` `weft node` processes on loopback, each a member with its redb store in its own data
//! directory (every sync in), set up as `tests/node/cluster.rs` does (`weft id --create
//! --address`, one `[consensus] members = [...]` config, policy limits raised for the run), and
//! closed-loop clients in this process, each a weft engine of its own on its own loopback
//! address (127.2.x.y: one source per client, as the members' one-pending-request-per-source
//! bound and the policy see it) with encrypted channels to every member. A client sends a
//! request to every member, verifies the signed replies (`Asking`, as `weft id request` does)
//! until a quorum forms the certificate, then sends its next.
//!
//! What it adds over the loopback form: the session layer (handshakes, encryption), the
//! service host, one process per member, and the clients' certificate checks, all on the same
//! cores.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use weft::channel::EndpointConfig;
use weft::consensus::asking::Asking;
use weft::consensus::ids::{MemberKey, NetworkId, NodeIdRequest};
use weft::consensus::links::{LinkEvent, Links};
use weft::engine::{Engine, EngineConfig};
use weft::service::host::{Context, Host, Service, ServiceTag, body};
use weft::service::{Delivery, Input};
use weft::session::{Identity, PeerRecord};
use weft::wire::PeerId;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// A run that takes longer than this has stalled.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// What the clients share: the next request to ask, what is done, and the id latencies.
struct Shared {
    next: AtomicUsize,
    done: AtomicUsize,
    requests: usize,
    latency: Mutex<Histogram<u64>>,
}

/// A closed-loop client: one request at a time to every member, the next once a quorum of
/// verified replies forms its certificate.
struct LoopClient {
    links: Links,
    members: BTreeMap<PeerId, usize>,
    network: NetworkId,
    keys: Vec<MemberKey>,
    address: SocketAddr,
    asking: Option<(Asking, Instant)>,
    shared: Arc<Shared>,
}

impl LoopClient {
    fn next(&mut self, now: Instant) {
        let index = self.shared.next.fetch_add(1, Ordering::Relaxed);
        self.asking = (index < self.shared.requests).then(|| {
            let request = NodeIdRequest {
                key: *blake3::hash(&(index as u64).to_le_bytes()).as_bytes(),
                addresses: vec![self.address],
                salt: 0,
            };
            let asking = Asking::new(now, self.network, self.keys.clone(), request);
            (asking, now)
        });
    }

    fn send_all(&mut self, cx: &mut Context<'_>) {
        if let Some((asking, _)) = &self.asking {
            let bytes = asking.encoded().to_vec();
            for index in 0..self.links.len() {
                if self.links.is_open(index) {
                    self.links.send(index, &bytes, cx);
                }
            }
        }
    }
}

impl Service for LoopClient {
    fn tag(&self) -> ServiceTag {
        ServiceTag::CONSENSUS
    }

    fn name(&self) -> &'static str {
        "consensus-bench-client"
    }

    fn on_message(&mut self, now: Instant, delivery: Delivery, cx: &mut Context<'_>) {
        if !self.members.contains_key(&delivery.peer) {
            return;
        }
        let Some((asking, started)) = &mut self.asking else {
            return;
        };
        if asking.on_reply(body(&delivery)).is_ok() && asking.certificate().is_some() {
            let micros = started.elapsed().as_micros() as u64;
            if let Ok(mut latency) = self.shared.latency.lock() {
                let _ = latency.record(micros.max(1));
            }
            self.shared.done.fetch_add(1, Ordering::Relaxed);
            self.next(now);
            self.send_all(cx);
        }
    }

    fn on_input(&mut self, now: Instant, input: Input, cx: &mut Context<'_>) {
        if let Some(LinkEvent::Opened { index, .. }) = self.links.on_input(now, &input)
            && let Some((asking, _)) = &self.asking
        {
            let bytes = asking.encoded().to_vec();
            self.links.send(index, &bytes, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let asking = self.asking.as_ref().and_then(|(a, _)| a.poll_timeout());
        [self.links.poll_timeout(), asking]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.links.poll(now, cx);
        if let Some((asking, _)) = &mut self.asking
            && asking.due(now)
        {
            self.send_all(cx);
        }
    }
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Runs `weft` with `args`; its stdout, or a panic with its stderr.
fn weft(args: &[&str]) -> String {
    let out = Command::new(WEFT).args(args).output().expect("run weft");
    assert!(
        out.status.success(),
        "weft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The member processes, killed when dropped.
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Makes `n` identities and the config naming them (policy raised), starts the members.
fn start_members(dir: &Path, n: usize, round_base: Duration) -> (Members, Vec<PeerRecord>) {
    let ports: Vec<u16> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let mut texts = Vec::new();
    for port in &ports {
        let data = dir.join(format!("member-{port}"));
        let out = weft(&[
            "id",
            "--create",
            "--data",
            data.to_str().unwrap(),
            "--address",
            &format!("127.0.0.1:{port}"),
        ]);
        let record = out
            .lines()
            .find_map(|l| l.strip_prefix("record="))
            .expect("a record= line")
            .to_string();
        texts.push(record);
    }
    let quoted: Vec<String> = texts.iter().map(|t| format!("\"{t}\"")).collect();
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[consensus]\nmembers = [{}]\nround_base = {}\nipv4_32 = 1000000\n\
             ipv4_24 = 1000000\nipv4_16 = 1000000\nclient_rate = 1000000\n",
            quoted.join(", "),
            round_base.as_secs_f64()
        ),
    )
    .unwrap();
    let mut children = Vec::new();
    for port in &ports {
        let data = dir.join(format!("member-{port}"));
        let mut child = Command::new(WEFT)
            .args([
                "node",
                "--config",
                config.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weft node");
        // The ready line: the node listens.
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.starts_with("ready "), "weft node: {line:?}");
        children.push(child);
    }
    let records = texts
        .iter()
        .map(|t| PeerRecord::from_bytes(&hex_bytes(t)).expect("a record"))
        .collect();
    (Members(children), records)
}

/// What one run measured: ids per second, ids, and the clients' id latency (microseconds).
pub(crate) struct ProcessFigures {
    pub(crate) ids_per_second: f64,
    pub(crate) requests: usize,
    pub(crate) id: Histogram<u64>,
}

/// Runs `n` member processes with `clients` closed-loop clients until `requests` ids are
/// certified.
pub(crate) fn run(
    n: usize,
    clients: usize,
    requests: usize,
    round_base: Duration,
    dir: PathBuf,
) -> ProcessFigures {
    let (members, records) = start_members(&dir, n, round_base);
    let keys: Vec<MemberKey> = {
        let mut keys: Vec<MemberKey> = records.iter().map(|r| MemberKey(r.ed25519)).collect();
        keys.sort_unstable();
        keys
    };
    let network = NetworkId::of_genesis(&keys);
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        requests,
        latency: Mutex::new(Histogram::new(3).unwrap()),
    });
    let start = Instant::now();
    let mut running = Vec::new();
    for i in 0..clients {
        let bind = SocketAddr::from(([127, 2, (i >> 8) as u8, (i & 0xff) as u8 + 1], 0));
        let config = EngineConfig {
            shards: 1,
            ..EngineConfig::new(bind, EndpointConfig::default())
        };
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        let (engine, link) = Engine::start_with_worker(&config, &identity, rand::random(), 1024)
            .expect("a client engine");
        let now = Instant::now();
        let mut links = Links::default();
        let mut by_peer = BTreeMap::new();
        for record in &records {
            let index = links.add(now, Some(record.peer_id()), record.addresses[0]);
            by_peer.insert(record.peer_id(), index);
        }
        let address = engine.local_addr();
        let mut client = LoopClient {
            links,
            members: by_peer,
            network,
            keys: keys.clone(),
            address,
            asking: None,
            shared: Arc::clone(&shared),
        };
        client.next(now);
        let host = Host::new(vec![Box::new(client)], false);
        let worker = thread::spawn(move || host.run(link));
        let stop = engine.shutdown_handle().expect("a shutdown handle");
        let engine = thread::spawn(move || engine.run(|_| {}));
        running.push((stop, engine, worker));
    }
    while shared.done.load(Ordering::Relaxed) < requests {
        assert!(
            start.elapsed() < RUN_LIMIT,
            "{n} member processes: {} of {requests} ids in {RUN_LIMIT:?}: stalled",
            shared.done.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(10));
    }
    let elapsed = start.elapsed();
    let done = shared.done.load(Ordering::Relaxed);
    for (stop, engine, worker) in running {
        stop.shutdown();
        let _ = engine.join();
        let _ = worker.join();
    }
    drop(members);
    let _ = std::fs::remove_dir_all(&dir);
    let id = shared.latency.lock().unwrap().clone();
    ProcessFigures {
        ids_per_second: done as f64 / elapsed.as_secs_f64(),
        requests: done,
        id,
    }
}
