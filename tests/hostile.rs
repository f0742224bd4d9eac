//! Hostile peers against a real `weft node` process (issue 10): one scripted attacker per finding
//! and class, built on the library's attacker toolkit (`weft::bench::load::attacker`).
//!
//! Every test asserts behaviour, never time: an honest peer's PINGs, sent all through the attack
//! and after it, are every one answered (each within a generous timeout); the node's live heap
//! (`weft_heap_live_bytes`, rendered at each scrape) grows by less than the test's budget; and
//! the node process is still alive. The honest round-trip times are printed (run with
//! `--nocapture`) for docs/SECURITY.md.
//!
//! Encrypted attacks run against a node in its default mode, plaintext ones against
//! `--allow-plaintext`. Every node runs one shard, so attacker and honest peer share it (the
//! issue's findings are about one shard's time and memory). Every attack is bounded in count
//! and time, every receive has a deadline, and every child is killed when its guard drops, so a
//! frozen node fails its test instead of hanging the suite.
//!
//! Other "source addresses" are other loopback addresses: on Linux all of 127.0.0.0/8 is
//! loopback, and 127.0.1.x and 127.0.2.x are different /24 prefixes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weft::bench::load::attacker::{AttackError, Attacker};
use weft::session::Identity;
use weft::wire::{Capabilities, ChannelId, Message, PeerId};

mod support;

#[path = "hostile/services.rs"]
mod services;

use support::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_weft");

/// How long one honest PING may wait for its PONG before it counts as lost: generous, since the
/// test machine is shared and a debug build is slow; only a node that stopped answering misses it.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the honest peer pings while an attack runs.
const PING_INTERVAL: Duration = Duration::from_millis(20);

/// How long the honest peer keeps pinging after an attack ended (the node must still answer).
const AFTER: Duration = Duration::from_millis(1500);

/// Deadline for set-up steps (a handshake, a channel open) on a shared machine.
const STEP: Duration = Duration::from_secs(5);

/// The live-heap growth an attack may cause: the per-peer reassembly budget (8 MiB by default,
/// the largest single budget one authenticated peer may fill) plus room for bookkeeping.
const HEAP_BUDGET: i64 = 10 << 20;

/// Whatever an attack that must create no lasting state (made-up channel ids, closed channels)
/// may leave behind: allocator noise from scrapes and the honest peer, not per-packet state.
const NO_STATE_BUDGET: i64 = 512 << 10;

/// Datagrams a flood sends before it waits for the node to have read them: far below what
/// the node's socket receive buffer holds even where the kernel caps it (net.core.rmem_max).
const FLOOD_CHUNK: usize = 256;

// ---------------------------------------------------------------------------------- the node

/// A running `weft node`, killed on drop.
struct Node {
    child: Child,
    udp: SocketAddr,
    metrics: SocketAddr,
    peer: PeerId,
    stderr: Arc<Mutex<String>>,
    _lines: Receiver<String>,
    _data: TempDir,
}

impl Node {
    fn start(tag: &str, extra: &[&str]) -> Node {
        let data = TempDir::new(tag);
        let dir = data.0.join("data");
        let mut args = vec![
            "node",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--data",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(BIN)
            .args(&args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft node");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no ready line ({e}); stderr:\n{}", stderr.lock().unwrap()));
        let (udp, metrics, peer) =
            parse_ready(&line).unwrap_or_else(|| panic!("bad ready line {line:?}"));
        Node {
            child,
            udp,
            metrics,
            peer,
            stderr,
            _lines: lines,
            _data: data,
        }
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the node died ({status}); stderr:\n{}",
                self.stderr.lock().unwrap()
            );
        }
    }

    /// The last lines the node logged (a panic message, for one).
    fn stderr_tail(&self) -> String {
        let text = self.stderr.lock().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }

    /// Where the node dropped datagrams, read from its metrics endpoint: its drop counters by
    /// reason and the kernel's receive-queue overflows (a datagram the kernel dropped never
    /// reached the node, so a PING lost there is the machine's load, not the node's answer).
    fn drops(&self) -> String {
        match scrape(self.metrics, Duration::from_secs(10)) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| l.contains("drop") || l.contains("rxq_overflows"))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("(scrape failed: {e})"),
        }
    }

    /// The node's live heap, read from its metrics endpoint.
    fn heap(&self) -> i64 {
        let text = scrape(self.metrics, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("scrape failed: {e}"));
        text.lines()
            .find_map(|l| l.strip_prefix("weft_heap_live_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no weft_heap_live_bytes in {text}")) as i64
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ready udp=ADDR metrics=ADDR peer=HEX io=...`.
fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr, PeerId)> {
    let mut words = line.split(' ');
    (words.next()? == "ready").then_some(())?;
    let udp = words.next()?.strip_prefix("udp=")?.parse().ok()?;
    let metrics = words.next()?.strip_prefix("metrics=")?.parse().ok()?;
    let peer = PeerId::from_hex(words.next()?.strip_prefix("peer=")?)?;
    Some((udp, metrics, peer))
}

/// One `GET /metrics` with a deadline on every step; the whole response.
fn scrape(address: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: weft\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bad answer {response:?}")));
    }
    Ok(response)
}

fn loopback(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

// ---------------------------------------------------------------------------------- the honest peer

/// An honest peer that pings the node on its own thread and logs every round trip.
struct HonestPeer {
    stop: Arc<AtomicBool>,
    attacking: Arc<AtomicBool>,
    thread: JoinHandle<PingLog>,
}

/// What the honest peer saw: round trips during and after the attack, and PINGs never answered.
#[derive(Debug, Default)]
struct PingLog {
    during: Vec<Duration>,
    after: Vec<Duration>,
    lost: Vec<String>,
}

impl HonestPeer {
    /// Completes an XX handshake from `bind` and starts pinging (the attack starts "now").
    fn start(node: &Node, bind: IpAddr, seed: u64) -> HonestPeer {
        let mut peer = Attacker::new(bind, node.udp, seed).unwrap();
        peer.handshake_xx(STEP)
            .expect("the honest peer's handshake");
        let stop = Arc::new(AtomicBool::new(false));
        let attacking = Arc::new(AtomicBool::new(true));
        let (stop2, attacking2) = (Arc::clone(&stop), Arc::clone(&attacking));
        let thread = std::thread::spawn(move || {
            let mut log = PingLog::default();
            // After the stop, a few PINGs sent after the attack must still have been answered:
            // a node still busy with the attack is waited for, each PING up to its timeout.
            while !stop2.load(Ordering::Relaxed) || log.after.len() < 3 {
                let during = attacking2.load(Ordering::Relaxed);
                match peer.ping(PING_TIMEOUT) {
                    Ok(rtt) if during => log.during.push(rtt),
                    Ok(rtt) => log.after.push(rtt),
                    Err(e) => {
                        log.lost.push(e.to_string());
                        // A node that stopped answering is not pinged again and again.
                        break;
                    }
                }
                std::thread::sleep(PING_INTERVAL);
            }
            log
        });
        HonestPeer {
            stop,
            attacking,
            thread,
        }
    }

    /// The attack is over: keeps pinging for [`AFTER`] (and until three PINGs sent after the
    /// attack were answered, or one was lost), then stops and returns the log.
    fn finish(self) -> PingLog {
        self.attacking.store(false, Ordering::Relaxed);
        std::thread::sleep(AFTER);
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the honest peer's thread")
    }
}

fn summary(rtts: &[Duration]) -> String {
    if rtts.is_empty() {
        return "none".to_string();
    }
    let mut sorted: Vec<Duration> = rtts.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        sorted.len(),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]),
        ms(sorted[sorted.len() - 1])
    )
}

/// Runs `attack` against `node` while an honest peer pings, then checks the three properties:
/// every honest PING answered (during and after), heap growth under `budget`, node alive.
fn under_attack(
    name: &str,
    node: &mut Node,
    budget: i64,
    attack: impl FnOnce(&Node) -> Result<(), AttackError>,
) {
    let honest = HonestPeer::start(node, loopback(0, 0, 1), 0x5eed_0001);
    let before = node.heap();
    let outcome = attack(node);
    let log = honest.finish();
    node.assert_alive();
    // State a closed channel or a finished handshake holds only until its timer reaps it is
    // not state kept per attack: read the heap again while it settles (up to 3 s, stopping as
    // soon as it is within the budget), so a loaded machine's late timers do not count.
    let mut growth = node.heap() - before;
    let settle = Instant::now() + Duration::from_secs(3);
    while growth > budget && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
        growth = growth.min(node.heap() - before);
    }
    println!(
        "hostile {name}: honest PING during attack {}; after {}; lost {}; heap growth {} B",
        summary(&log.during),
        summary(&log.after),
        log.lost.len(),
        growth
    );
    node.assert_alive();
    let failed = !log.lost.is_empty() || outcome.is_err();
    let drops = if failed { node.drops() } else { String::new() };
    assert!(
        log.lost.is_empty(),
        "{name}: honest PINGs went unanswered: {:?} (the attack script: {outcome:?}); the node's \
         drop counters:\n{drops}\nits stderr ends:\n{}",
        log.lost,
        node.stderr_tail()
    );
    let stderr = node.stderr.lock().unwrap().clone();
    assert!(
        !stderr.contains("panicked"),
        "{name}: a node thread panicked:\n{stderr}"
    );
    if let Err(e) = outcome {
        panic!("{name}: the attack script failed: {e}; the node's drop counters:\n{drops}");
    }
    assert!(
        !log.after.is_empty(),
        "{name}: no honest PING was answered after the attack"
    );
    assert!(
        growth <= budget,
        "{name}: the node's live heap grew by {growth} B, over the budget of {budget} B"
    );
}

/// An attacker from `bind` with a completed XX session.
fn authenticated(node: &Node, bind: IpAddr, seed: u64) -> Attacker {
    let mut attacker = Attacker::new(bind, node.udp, seed).unwrap();
    attacker
        .handshake_xx(STEP)
        .expect("the attacker's handshake");
    attacker
}

/// Sends `datagrams`, pausing briefly every few so that the kernel's receive buffer, not the
/// node, is not what drops them (the attack is on the node's work, not its socket).
fn send_paced(attacker: &Attacker, datagrams: impl IntoIterator<Item = Vec<u8>>) {
    for (i, datagram) in datagrams.into_iter().enumerate() {
        attacker.send_raw(&datagram).unwrap();
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

// ---------------------------------------------------------------------------------- findings

/// Finding 1: a fresh channel's first DATA with message number 2^64−1 must be refused, not
/// wrap the duplicate window's arithmetic and spin (or panic) the shard.
#[test]
fn data_with_message_number_2_pow_64_minus_1_leaves_the_shard_answering() {
    let mut node = Node::start("max-message-number", &[]);
    under_attack("data-2^64-1", &mut node, HEAP_BUDGET, |node| {
        let mut attacker = authenticated(node, loopback(0, 1, 1), 1);
        let modes = [
            Capabilities::NONE,
            Capabilities::ORDERED,
            Capabilities::RESEND
                .union(Capabilities::ORDERED)
                .union(Capabilities::CLOSE_ON_LOSS),
        ];
        for (c1, mode) in (1u16..).zip(modes) {
            let id = attacker.open_channel(c1, mode, STEP)?;
            attacker.send_sealed(
                id,
                &[Message::Data {
                    message_number: u64::MAX,
                    payload: b"wrap",
                }],
            )?;
            attacker.send_sealed(
                id,
                &[Message::DataFragment {
                    message_number: u64::MAX - 1,
                    total_length: 2,
                    offset: 1,
                    bytes: b"f",
                }],
            )?;
        }
        Ok(())
    });
}

/// Finding 2: 1-byte fragments at descending offsets (no two adjacent, so nothing merges) of one
/// message within the initial credit, ~114 to a datagram, ~1,150 datagrams: the shard's work must
/// not grow with the square of the fragment count, nor its memory past the reassembly budget.
#[test]
fn descending_one_byte_fragment_storm_leaves_the_shard_answering() {
    let mut node = Node::start("fragment-storm", &[]);
    under_attack("fragment-storm", &mut node, HEAP_BUDGET, |node| {
        let mut attacker = authenticated(node, loopback(0, 1, 1), 2);
        let reliable = Capabilities::RESEND.union(Capabilities::ORDERED);
        let id = attacker.open_channel(7, reliable, STEP)?;
        // Within the initial credit of 256 KiB (PROTOCOL.md §4, WINDOW).
        let total: u64 = 262_000;
        let mut offsets = (0..total / 2).rev().map(|k| 2 * k).peekable();
        let mut datagrams = Vec::new();
        while offsets.peek().is_some() {
            let batch: Vec<u64> = offsets.by_ref().take(114).collect();
            let messages: Vec<Message<'_>> = batch
                .iter()
                .map(|&offset| Message::DataFragment {
                    message_number: 0,
                    total_length: total,
                    offset,
                    bytes: b"x",
                })
                .collect();
            datagrams.push(attacker.seal(id, &messages)?);
        }
        assert!(datagrams.iter().all(|d| d.len() <= 1200));
        println!("fragment-storm: {} datagrams", datagrams.len());
        send_paced(&attacker, datagrams);
        Ok(())
    });
}

/// Finding 3: 400 XX handshakes with fresh identities from one address. The node must cap what
/// one address (and its /24) holds — some of the 400 are refused — while an honest peer from
/// another /24 still completes a handshake and is answered.
#[test]
fn handshake_flood_from_one_address_is_capped_and_another_prefix_still_completes() {
    const ATTACKS: usize = 400;
    let mut node = Node::start("session-flood", &[]);
    let completed = Arc::new(AtomicUsize::new(0));
    let done = Arc::clone(&completed);
    under_attack("xx-flood-400", &mut node, HEAP_BUDGET, move |node| {
        let started = Instant::now();
        for seed in 0..ATTACKS as u64 {
            // The first refusal shows the cap; bounded in time whatever the node does.
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
            let mut attacker = Attacker::new(loopback(0, 1, 1), node.udp, 1000 + seed)?;
            if attacker.handshake_xx(Duration::from_millis(700)).is_err() {
                break;
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
        // A newcomer from another /24 (127.0.2.x, the flood came from 127.0.1.x) completes.
        let mut newcomer = Attacker::new(loopback(0, 2, 1), node.udp, 77)?;
        newcomer.handshake_xx(STEP)?;
        newcomer.ping(PING_TIMEOUT)?;
        Ok(())
    });
    let completed = completed.load(Ordering::Relaxed);
    println!("xx-flood-400: {completed} of {ATTACKS} handshakes from one address completed");
    assert!(
        completed < ATTACKS,
        "all {ATTACKS} handshakes from one address completed: nothing limits sessions per address"
    );
}

/// Finding 4: an authenticated peer seals PINGs on 20,000 channel ids that do not exist. Nothing
/// is open on them, so nothing may be kept for them.
#[test]
fn sealed_pings_on_20000_made_up_channel_ids_keep_no_state() {
    let mut node = Node::start("made-up-ids", &[]);
    under_attack("made-up-channel-ids", &mut node, NO_STATE_BUDGET, |node| {
        let mut attacker = authenticated(node, loopback(0, 1, 1), 4);
        // The flood's barrier PINGs come from another prefix: the flooder's own may be shed
        // by the shard's fair admission (PROTOCOL.md §12) until its window of datagrams ends.
        let mut prober = authenticated(node, loopback(0, 2, 1), 0x4_0002);
        let token = attacker.token();
        let mut datagrams = Vec::with_capacity(20_000);
        for n in 0..20_000u32 {
            // Ascending ids: the cost measured is what each id keeps, not the shifting of a
            // sorted table (which random ids would add).
            let id = ChannelId(0x0100_0001 + n);
            datagrams.push(attacker.seal(id, &[Message::Ping { token: &token }])?);
        }
        // The node has read a chunk once it answers a PING sent after it: a node starved of
        // CPU on a loaded machine then never has more than a chunk waiting in its socket's
        // receive queue, whose overflow would drop the honest peer's PINGs before the node
        // could see them (weft_shard_rxq_overflows), a loss of the machine's, not the node's.
        for chunk in datagrams.chunks(FLOOD_CHUNK) {
            send_paced(&attacker, chunk.iter().cloned());
            prober.ping(PING_TIMEOUT)?;
        }
        Ok(())
    });
}

/// Finding 5: a peer that opens and closes channels in a loop must not make the node keep an
/// entry per channel it ever had.
///
/// What is measured is the state left per closed channel once the node has caught up: the
/// loop runs in quarters, and after each the heap is read once the node has caught up
/// ([`caught_up_heap`]). The first quarter warms the node up (tables and slabs grow to their
/// working size). A node that fell behind (a loaded machine) keeps, for good, the
/// shard-to-worker hand-over batches it needed then (each queue keeps up to 64 emptied batches
/// for reuse, `service/queue.rs`): up to ~850 KB, a step in one quarter, the same however many
/// channels closed; read as one total, it failed this test in about half the runs at load ~20.
/// State left per closed channel grows in every quarter instead, so the later quarter that grew
/// least must stay within the no-state budget's share of its channels (26 B per closed channel).
#[test]
fn open_close_channel_loop_keeps_no_state_per_closed_channel() {
    const CHANNELS: usize = 20_000;
    const QUARTERS: usize = 4;
    // CHANNEL_ACKNOWLEDGEs for one datagram of opens fit one answer datagram.
    const BATCH: usize = 24;
    let mut node = Node::start("open-close", &[]);
    // (channels opened and closed, heap growth) per quarter.
    let mut quarters: Vec<(usize, i64)> = Vec::new();
    under_attack("open-close-loop", &mut node, HEAP_BUDGET, |node| {
        let mut attacker = authenticated(node, loopback(0, 1, 1), 5);
        // The loop gets 6 s in all, the heap reads between its quarters not counted.
        let mut looping = Duration::ZERO;
        let (mut opened, mut rekeys) = (0usize, 0usize);
        let mut c1 = 0u16;
        // None until the warm-up quarter is over.
        let mut heap: Option<i64> = None;
        for quarter in 1..=QUARTERS {
            let (from, started) = (opened, Instant::now());
            while opened < CHANNELS * quarter / QUARTERS
                && looping + started.elapsed() < Duration::from_secs(6)
            {
                // BATCH opens in one datagram (PROTOCOL.md §6 allows many per packet), then their
                // FINALIZEs together, then their CLOSEs together.
                let mut cookies = Vec::with_capacity(BATCH);
                for _ in 0..BATCH {
                    c1 = c1.wrapping_add(1).max(1);
                    let cookie1: [u8; 16] = [attacker.token(), attacker.token()]
                        .concat()
                        .try_into()
                        .unwrap();
                    cookies.push((c1, cookie1));
                }
                let news: Vec<Message<'_>> = cookies
                    .iter()
                    .map(|(c1, cookie1)| Message::ChannelNew { c1: *c1, cookie1 })
                    .collect();
                attacker.send_sealed(ChannelId::DEFAULT, &news)?;
                let mut acks: Vec<(ChannelId, [u8; 16])> = Vec::new();
                let mut init = None;
                // Whatever answers come, come together; a node that stops answering ends the loop.
                let deadline = Instant::now() + Duration::from_secs(1);
                while acks.len() < BATCH {
                    let quiet = Instant::now() + Duration::from_millis(300);
                    let wait = if acks.is_empty() {
                        deadline
                    } else {
                        quiet.min(deadline)
                    };
                    let Some(received) = attacker.recv(wait)? else {
                        break;
                    };
                    for message in received.messages() {
                        match message {
                            Message::ChannelAcknowledge {
                                channel, cookie2, ..
                            } => acks.push((channel, *cookie2)),
                            Message::HandshakeInit { .. } => init = Some(received.clone()),
                            _ => {}
                        }
                    }
                }
                if let Some(init) = init {
                    // A node may replace a session whose channel ids run out (PROTOCOL.md §6): the
                    // attacker completes the rekey, as an honest peer would, and goes on.
                    let responded = attacker.answer_xx_init(&init)?;
                    attacker.finish_xx_responder(responded, Instant::now() + STEP)?;
                    rekeys += 1;
                    continue;
                }
                if acks.is_empty() {
                    break;
                }
                let finals: Vec<Message<'_>> = acks
                    .iter()
                    .map(|(channel, cookie2)| Message::ChannelFinalize {
                        channel: *channel,
                        cookie2,
                        capabilities: Capabilities::NONE,
                    })
                    .collect();
                attacker.send_sealed(ChannelId::DEFAULT, &finals)?;
                let closes: Vec<Message<'_>> = acks
                    .iter()
                    .map(|(channel, _)| Message::ChannelClose {
                        channel: *channel,
                        reason: weft::wire::CloseReason::Normal,
                    })
                    .collect();
                attacker.send_sealed(ChannelId::DEFAULT, &closes)?;
                opened += acks.len();
            }
            looping += started.elapsed();
            let now = caught_up_heap(node, &mut attacker)?;
            quarters.push((opened - from, now - heap.unwrap_or(now)));
            heap = Some(now);
        }
        println!(
            "open-close-loop: {opened} channels opened and closed, {rekeys} rekeys; (channels, \
             heap growth) per quarter {quarters:?}"
        );
        Ok(())
    });
    let per_channel = NO_STATE_BUDGET / CHANNELS as i64;
    let least = quarters[1..]
        .iter()
        .filter(|&&(channels, _)| channels > 0)
        .map(|&(channels, growth)| growth / channels as i64)
        .min()
        .expect("the node opened channels after the first quarter");
    assert!(
        least <= per_channel,
        "open-close-loop: every quarter kept over {per_channel} B per closed channel, at least \
         {least} B: (channels, heap growth) {quarters:?}"
    );
}

/// The node's live heap once it has caught up with what `attacker` sent: it answered a PING
/// sent after it, its heap has not moved for longer than the shards' gauge snapshot interval
/// (1 s), and the workers' queues are empty by those gauges (`weft_shard_worker_queue_depth`,
/// `weft_shard_worker_held`), so a worker that was merely starved of CPU is not read as
/// caught up; at most 6 s, then the least heap read.
fn caught_up_heap(node: &Node, attacker: &mut Attacker) -> Result<i64, AttackError> {
    attacker.ping(PING_TIMEOUT)?;
    let deadline = Instant::now() + Duration::from_secs(6);
    let (mut last, mut least, mut since) = (None, i64::MAX, Instant::now());
    loop {
        let text = scrape(node.metrics, Duration::from_secs(10))?;
        let read = |name: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|r| r.starts_with([' ', '{']))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let heap = read("weft_heap_live_bytes") as i64;
        least = least.min(heap);
        if last != Some(heap) {
            (last, since) = (Some(heap), Instant::now());
        }
        let idle =
            read("weft_shard_worker_queue_depth") == 0.0 && read("weft_shard_worker_held") == 0.0;
        if idle && since.elapsed() > Duration::from_millis(1_200) {
            return Ok(heap);
        }
        if Instant::now() > deadline {
            return Ok(least);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finding 6: a forged XX INIT that claims to come from a peer with a lower id must not cancel
/// the node's own pending handshake to that peer (an XX INIT proves nothing until its third
/// message). The node's handshake to the victim — started by the victim's RESET — completes.
#[test]
fn forged_crossing_init_does_not_cancel_the_nodes_pending_handshake() {
    let mut node = Node::start("crossing-init", &[]);
    let node_peer = node.peer;
    under_attack(
        "forged-crossing-init",
        &mut node,
        HEAP_BUDGET,
        move |node| {
            // The victim's id must be the lower one: crossing INITs from the lower id win (§5).
            let identity = (0u64..)
                .map(|seed| {
                    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
                    Identity::generate(&mut rng)
                })
                .find(|identity| identity.peer_id() < node_peer)
                .unwrap();
            let victim_id = identity.peer_id();
            let mut victim = Attacker::with_identity(loopback(0, 0, 1), node.udp, identity, 6)?;
            victim.handshake_xx(STEP)?;
            // The node answers a RESET with a new handshake towards the victim (§4).
            victim.send_reset()?;
            let init = victim.await_init(Instant::now() + STEP)?;
            // An off-path host (another /24) claims to be the victim and crosses that handshake.
            let mut forger = Attacker::new(loopback(0, 5, 1), node.udp, 66)?;
            forger.set_node_peer(node.peer);
            let acted = forger.forge_xx_init(victim_id, Duration::from_secs(2))?;
            println!("forged-crossing-init: node answered the forged INIT: {acted}");
            // The victim answers the node's INIT; the node must finish its handshake.
            let responded = victim.answer_xx_init(&init)?;
            victim.finish_xx_responder(responded, Instant::now() + STEP)?;
            victim.ping(PING_TIMEOUT)?;
            Ok(())
        },
    );
}

/// Finding 7 (`--allow-plaintext`): one datagram of plaintext PINGs from an unvalidated address
/// is answered by at most one datagram (PROTOCOL.md §5 anti-amplification, issue point 4).
#[test]
fn one_datagram_of_plaintext_pings_gets_at_most_one_answer_datagram() {
    let mut node = Node::start("plaintext-pings", &["--allow-plaintext"]);
    let answers = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&answers);
    under_attack(
        "plaintext-ping-datagram",
        &mut node,
        HEAP_BUDGET,
        move |node| {
            for (round, count) in [(0u64, 128usize), (1, 6_000)] {
                let mut attacker =
                    Attacker::new(loopback(0, 7, 1 + round as u8), node.udp, 70 + round)?;
                let tokens: Vec<[u8; 8]> = (0..count).map(|_| attacker.token()).collect();
                let pings: Vec<Message<'_>> =
                    tokens.iter().map(|token| Message::Ping { token }).collect();
                let datagram =
                    attacker.plain_packet(None, PeerId::ZERO, ChannelId::DEFAULT, None, &pings)?;
                attacker.send_raw(&datagram)?;
                let (datagrams, bytes) =
                    attacker.count_datagrams(Instant::now() + Duration::from_secs(1))?;
                seen.lock()
                    .unwrap()
                    .push((datagram.len(), datagrams, bytes));
            }
            Ok(())
        },
    );
    let answers = answers.lock().unwrap();
    for (sent, datagrams, bytes) in answers.iter() {
        println!("plaintext-ping-datagram: {sent} B sent, {datagrams} datagrams ({bytes} B) back");
    }
    for (sent, datagrams, bytes) in answers.iter() {
        assert!(
            *datagrams <= 1,
            "one {sent}-byte datagram of PINGs got {datagrams} answer datagrams"
        );
        assert!(*bytes <= 3 * sent, "answered with more than 3x the bytes");
    }
}

/// The metrics endpoint (finding 8): a client trickling a byte at a time must not hold off
/// other scrapes; every scrape made while it trickles is served.
#[test]
fn metrics_slow_loris_does_not_block_scrapes() {
    let mut node = Node::start("slow-loris", &[]);
    let metrics = node.metrics;
    under_attack("metrics-slow-loris", &mut node, HEAP_BUDGET, move |_node| {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let loris = std::thread::spawn(move || {
            let Ok(mut stream) = TcpStream::connect_timeout(&metrics, STEP) else {
                return;
            };
            // A byte a second, under any per-read timeout, for at most 8 s.
            for byte in b"GET /metrics".iter().take(8) {
                if stop2.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let mut failed = None;
        for _ in 0..3 {
            if let Err(e) = scrape(metrics, Duration::from_secs(4)) {
                failed = Some(e);
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::Relaxed);
        let _ = loris.join();
        match failed {
            Some(e) => Err(AttackError::Io(e)),
            None => Ok(()),
        }
    });
}

/// Oversize datagrams (issue point 4): a sealed 64 KiB datagram is dropped, not served, and the
/// sender's next normal PING is still answered.
#[test]
fn oversize_sealed_datagram_is_dropped_not_answered() {
    let mut node = Node::start("oversize", &[]);
    let answered = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&answered);
    under_attack("oversize-datagram", &mut node, HEAP_BUDGET, move |node| {
        let mut attacker = authenticated(node, loopback(0, 1, 1), 9);
        let token = attacker.token();
        let probe = 65_000;
        let datagram = attacker.seal(
            ChannelId::DEFAULT,
            &[
                Message::Ping { token: &token },
                Message::PmtuProbe { len: probe },
            ],
        )?;
        assert!(datagram.len() > 60_000);
        attacker.send_raw(&datagram)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(received) = attacker.recv(deadline)? {
            let pong = received
                .messages()
                .iter()
                .any(|m| matches!(m, Message::Pong { token: t } if **t == token));
            if pong {
                flag.store(true, Ordering::Relaxed);
            }
        }
        attacker.ping(PING_TIMEOUT)?;
        Ok(())
    });
    assert!(
        !answered.load(Ordering::Relaxed),
        "a 65 kB datagram was served (PONG) instead of dropped"
    );
}
