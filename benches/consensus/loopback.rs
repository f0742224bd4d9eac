//! The loopback form of the consensus benchmark (issue 14, point 10): every member on its own
//! thread with its own `DiskStore` (redb, immediate durability: an fsync per commit) in a
//! temporary directory, members meshed over TCP on 127.0.0.1, clients sending requests over UDP
//! from their own loopback addresses (127.1.x.y, so each is its own source as the policy sees
//! it). What it leaves out: the engine's encrypted channels (plain TCP and UDP here) and the
//! service host; what it keeps: every sync, every signature, the real decoder and Malachite.
//!
//! Each member thread takes what arrived since its last pass as one batch
//! ([`Member::feed_batch`]), sends what may leave before the commit (a round-0 proposal),
//! commits ([`Member::sync`]: one store commit for the batch, unless a decision waits for the
//! next proposal), then sends what the member polled. Clients are closed-loop: each of `CLIENTS` addresses sends one request to every
//! member, waits for a quorum of matching signed replies (counted, not verified: verifying is
//! the client's cost, not the cluster's), then sends its next.

use ed25519_dalek::SigningKey;
use hdrhistogram::Histogram;
use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use weft::consensus::config::MemberConfig;
use weft::consensus::ids::{MemberKey, NetworkId, NodeIdRequest, RequestDigest};
use weft::consensus::member::{Event, Member, Peer};
use weft::consensus::policy::PolicyConfig;
use weft::consensus::schema::{self, Message};
use weft::consensus::signed::member_key;
use weft::consensus::store::disk::DiskStore;
use weft::consensus::store::{Changes, Store, StoreError, Stored};

/// Inputs a member takes in one pass (one store commit) at most.
const MAX_PASS: usize = 1024;
/// A run that takes longer than this has stalled.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// A client asks again when no quorum answered within this.
const CLIENT_RESEND: Duration = Duration::from_secs(2);

/// The raised policy for the run: every quota far above what the run asks for (said in the
/// output), so no request is NACKed and none waits for a window.
pub(crate) fn raised_policy() -> PolicyConfig {
    PolicyConfig {
        ipv4: [1_000_000; 3],
        ipv6: [1_000_000; 3],
        ..PolicyConfig::default()
    }
}

/// `WEFT_BENCH_DECISION_WAIT_MS`: how long a decision's commit waits for the next proposal
/// (the member's `DECISION_WAIT` unless set), to compare settings in one build.
pub(crate) fn decision_wait() -> Option<Duration> {
    std::env::var("WEFT_BENCH_DECISION_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// What one run measured.
pub(crate) struct Figures {
    pub(crate) ids_per_second: f64,
    pub(crate) requests: usize,
    pub(crate) heights: u64,
    /// Of those, heights decided past round 0, and member 0's refusals by reason.
    pub(crate) late: u64,
    pub(crate) refused: String,
    /// Member 0's time from a height's start to its decision, microseconds.
    pub(crate) decision: Histogram<u64>,
    /// A client's time from sending a request to holding a quorum of replies, microseconds.
    pub(crate) id: Histogram<u64>,
    /// Store commits (each one fsync) and their total time, all members.
    pub(crate) commits: u64,
    pub(crate) commit_time: Duration,
    /// Inputs handed to the members and passes that took them.
    pub(crate) inputs: u64,
    pub(crate) passes: u64,
}

/// A store that counts its commits and their time.
struct Counted {
    inner: DiskStore,
    commits: Arc<AtomicU64>,
    micros: Arc<AtomicU64>,
}

impl Store for Counted {
    fn load(&mut self) -> Result<Stored, StoreError> {
        self.inner.load()
    }

    fn commit(&mut self, changes: &Changes) -> Result<(), StoreError> {
        let start = Instant::now();
        let result = self.inner.commit(changes);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        result
    }
}

fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(bytes.len() + 4);
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame)
}

fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).ok()?;
    let length = u32::from_be_bytes(length) as usize;
    if length > schema::MAX_MESSAGE_BYTES + 16 {
        return None;
    }
    let mut bytes = vec![0u8; length];
    stream.read_exact(&mut bytes).ok()?;
    Some(bytes)
}

type Input = (Peer, Vec<u8>);

/// Member 0's record of its decisions.
struct Decisions {
    latency: Histogram<u64>,
    heights: u64,
    /// Heights decided past round 0 (a round timed out).
    late: u64,
    /// Messages it refused, by reason, at the end.
    refused: String,
}

/// A fresh temporary directory for one run.
fn temp_dir(n: usize) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "weft-consensus-bench-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

struct MemberSide {
    member: Member<weft::consensus::malachite::MalachiteEngine, Counted>,
    inbox: Receiver<Input>,
    links: Vec<Option<TcpStream>>,
    keys: Vec<MemberKey>,
    clients: UdpSocket,
    stop: Arc<AtomicBool>,
    /// Member 0 reports its decisions here.
    decisions: Option<Arc<Mutex<Decisions>>>,
    counts: Arc<[AtomicU64; 2]>,
}

impl MemberSide {
    fn run(mut self) {
        let mut started: Option<(u64, Instant)> = None;
        // The round of the height being decided, as of the last pass.
        let mut round = 0u32;
        let mut batch: Vec<Input> = Vec::with_capacity(MAX_PASS);
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self
                .member
                .poll_timeout()
                .map_or(Duration::from_millis(50), |at| {
                    at.saturating_duration_since(now)
                })
                .min(Duration::from_millis(50));
            match self.inbox.recv_timeout(wait) {
                Ok(input) => batch.push(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < MAX_PASS {
                match self.inbox.try_recv() {
                    Ok(input) => batch.push(input),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            // A height that starts and decides within this pass (a lone member) began here.
            let pass = now;
            if !batch.is_empty() {
                self.counts[0].fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.counts[1].fetch_add(1, Ordering::Relaxed);
                self.member
                    .feed_batch(now, batch.iter().map(|(from, bytes)| (*from, &bytes[..])));
                batch.clear();
                // A round-0 proposal leaves while the disk syncs; nothing else does.
                self.send();
                self.member.sync();
            }
            if self.member.poll_timeout().is_some_and(|at| at <= now) {
                self.member.handle_timeout(now);
            }
            round = round.max(self.member.round().unwrap_or(0));
            assert!(self.member.failed().is_none(), "store failed");
            self.send();
            let now = Instant::now();
            while let Some(event) = self.member.poll_event() {
                if let (Event::Decided { height, .. }, Some(decisions)) = (event, &self.decisions) {
                    let mut decisions = decisions.lock().unwrap();
                    let at = match started.take() {
                        Some((h, at)) if h == height => at,
                        _ => pass,
                    };
                    let micros = now.saturating_duration_since(at).as_micros() as u64;
                    decisions.latency.record(micros.max(1)).unwrap();
                    decisions.heights += 1;
                    decisions.late += u64::from(round > 0);
                }
            }
            round = self.member.round().unwrap_or(0);
            if self.member.round().is_some()
                && started.is_none_or(|(h, _)| h != self.member.height())
            {
                started = Some((self.member.height(), pass));
            }
        }
        self.report_refusals();
    }

    fn report_refusals(&self) {
        if let Some(decisions) = &self.decisions {
            decisions.lock().unwrap().refused = self
                .member
                .refused()
                .iter()
                .map(|(reason, count)| format!("{} {count}", reason.label()))
                .collect::<Vec<_>>()
                .join(", ");
        }
    }

    fn send(&mut self) {
        while let Some(transmit) = self.member.poll_transmit() {
            match transmit.to {
                Peer::Member(key) => {
                    let to = self.keys.iter().position(|k| *k == key).unwrap();
                    if let Some(stream) = &mut self.links[to] {
                        write_frame(stream, &transmit.bytes).expect("member link");
                    }
                }
                Peer::Client(address) => {
                    let _ = self.clients.send_to(&transmit.bytes, address);
                }
            }
        }
    }
}

/// The client side: `clients` loopback addresses, closed loop, `requests` in all.
fn drive_clients(
    n: usize,
    members: &[SocketAddr],
    clients: usize,
    requests: usize,
) -> (Histogram<u64>, usize) {
    let quorum = weft::consensus::quorum(n);
    let mut poll = Poll::new().unwrap();
    let mut sockets = Vec::new();
    for i in 0..clients {
        let address = SocketAddr::from(([127, 1, (i >> 8) as u8, (i & 0xff) as u8 + 1], 0));
        let mut socket = MioUdp::bind(address).expect("bind a loopback client address");
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)
            .unwrap();
        sockets.push(socket);
    }
    struct Asking {
        digest: RequestDigest,
        bytes: Vec<u8>,
        sent: Instant,
        first: Instant,
        answered: BTreeSet<MemberKey>,
    }
    let mut next = 0usize;
    let mut asking: Vec<Option<Asking>> = Vec::new();
    let ask = |socket: &MioUdp, next: &mut usize| -> Option<Asking> {
        if *next >= requests {
            return None;
        }
        let index = *next;
        *next += 1;
        let request = NodeIdRequest {
            key: *blake3::hash(&(index as u64).to_le_bytes()).as_bytes(),
            addresses: vec![socket.local_addr().unwrap()],
            salt: 0,
        };
        let bytes = schema::encode(&Message::Request(request.clone()));
        for member in members {
            let _ = socket.send_to(&bytes, *member);
        }
        let now = Instant::now();
        Some(Asking {
            digest: request.digest(),
            bytes,
            sent: now,
            first: now,
            answered: BTreeSet::new(),
        })
    };
    for socket in &sockets {
        asking.push(ask(socket, &mut next));
    }
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let mut done = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; 65536];
    let deadline = Instant::now() + RUN_LIMIT;
    while done < requests {
        assert!(
            Instant::now() < deadline,
            "{n} members: {done} of {requests} ids in {RUN_LIMIT:?}: stalled"
        );
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for event in &events {
            let i = event.token().0;
            while let Ok((length, _)) = sockets[i].recv_from(&mut buffer) {
                let Some(current) = &mut asking[i] else {
                    continue;
                };
                match schema::decode(&buffer[..length]) {
                    Ok(Message::Reply(reply)) if reply.body.digest == current.digest => {
                        current.answered.insert(reply.body.member);
                        if current.answered.len() >= quorum {
                            let micros = current.first.elapsed().as_micros() as u64;
                            latency.record(micros.max(1)).unwrap();
                            done += 1;
                            asking[i] = ask(&sockets[i], &mut next);
                        }
                    }
                    Ok(Message::Nack(_)) => panic!("a request was NACKed: policy not raised"),
                    _ => {}
                }
            }
        }
        let now = Instant::now();
        for (i, current) in asking.iter_mut().enumerate() {
            if let Some(current) = current
                && now.duration_since(current.sent) > CLIENT_RESEND
            {
                current.sent = now;
                for member in members {
                    let _ = sockets[i].send_to(&current.bytes, *member);
                }
            }
        }
    }
    (latency, done)
}

/// Runs `n` members on loopback with `clients` closed-loop clients until `requests` ids are
/// certified; `round_base` as the members' round timeout base.
pub(crate) fn run(n: usize, clients: usize, requests: usize, round_base: Duration) -> Figures {
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    let mut members: Vec<MemberKey> = keys.iter().map(member_key).collect();
    members.sort_unstable();
    let keys: Vec<SigningKey> = members
        .iter()
        .map(|m| keys.iter().find(|k| member_key(k) == *m).unwrap().clone())
        .collect();
    let network = NetworkId::of_genesis(&members);
    let config = MemberConfig {
        network,
        members: members.clone(),
        round_base,
        resend: Duration::from_secs(1),
    };
    let dir = temp_dir(n);
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let micros = Arc::new(AtomicU64::new(0));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let decisions = Arc::new(Mutex::new(Decisions {
        latency: Histogram::<u64>::new(3).unwrap(),
        heights: 0,
        late: 0,
        refused: String::new(),
    }));
    // Listeners first, so every link can connect.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let listen_at: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let udp: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let client_at: Vec<SocketAddr> = udp.iter().map(|s| s.local_addr().unwrap()).collect();
    let (senders, inboxes): (Vec<Sender<Input>>, Vec<Receiver<Input>>) =
        (0..n).map(|_| mpsc::channel()).unzip();
    let mut readers = Vec::new();
    // Each member accepts n-1 links; the first frame names the member that opened it.
    for (index, listener) in listeners.into_iter().enumerate() {
        let inbox = senders[index].clone();
        let members = members.clone();
        readers.push(thread::spawn(move || {
            for _ in 0..n.saturating_sub(1) {
                let (mut stream, _) = listener.accept().unwrap();
                let inbox = inbox.clone();
                let members = members.clone();
                thread::spawn(move || {
                    let Some(hello) = read_frame(&mut stream) else {
                        return;
                    };
                    let from = Peer::Member(members[hello[0] as usize]);
                    while let Some(bytes) = read_frame(&mut stream) {
                        if inbox.send((from, bytes)).is_err() {
                            return;
                        }
                    }
                });
            }
        }));
    }
    for (index, socket) in udp.iter().enumerate() {
        let socket = socket.try_clone().unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let inbox = senders[index].clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buffer = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((length, source)) = socket.recv_from(&mut buffer)
                    && inbox
                        .send((Peer::Client(source), buffer[..length].to_vec()))
                        .is_err()
                {
                    return;
                }
            }
        });
    }
    drop(senders);
    let mut threads = Vec::new();
    let now = Instant::now();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (index, (key, inbox)) in keys.iter().zip(inboxes).enumerate() {
        let links: Vec<Option<TcpStream>> = (0..n)
            .map(|to| {
                (to != index).then(|| {
                    let mut stream = TcpStream::connect(listen_at[to]).unwrap();
                    stream.set_nodelay(true).unwrap();
                    write_frame(&mut stream, &[index as u8]).unwrap();
                    stream
                })
            })
            .collect();
        let store_dir = dir.join(format!("member-{index}"));
        std::fs::create_dir_all(&store_dir).unwrap();
        let store = Counted {
            inner: DiskStore::open(&store_dir).expect("open the store"),
            commits: Arc::clone(&commits),
            micros: Arc::clone(&micros),
        };
        let mut member = Member::open(now, key.clone(), config.clone(), store)
            .expect("a fresh store opens")
            .with_policy(raised_policy());
        if let Some(wait) = decision_wait() {
            member = member.with_decision_wait(wait);
        }
        member.set_wall_clock(now, unix);
        let side = MemberSide {
            member,
            inbox,
            links,
            keys: members.clone(),
            clients: udp[index].try_clone().unwrap(),
            stop: Arc::clone(&stop),
            decisions: (index == 0).then(|| Arc::clone(&decisions)),
            counts: Arc::clone(&counts),
        };
        threads.push(thread::spawn(move || side.run()));
    }
    for reader in readers {
        reader.join().unwrap();
    }
    let start = Instant::now();
    let (id, done) = drive_clients(n, &client_at, clients, requests);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let decisions = Arc::into_inner(decisions)
        .expect("the members are done")
        .into_inner()
        .unwrap();
    Figures {
        ids_per_second: done as f64 / elapsed.as_secs_f64(),
        requests: done,
        heights: decisions.heights,
        late: decisions.late,
        refused: decisions.refused,
        decision: decisions.latency,
        id,
        commits: commits.load(Ordering::Relaxed),
        commit_time: Duration::from_micros(micros.load(Ordering::Relaxed)),
        inputs: counts[0].load(Ordering::Relaxed),
        passes: counts[1].load(Ordering::Relaxed),
    }
}
