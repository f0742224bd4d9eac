//! A deterministic two-channel network: two `ChannelReliability` + `PathState` pairs joined by
//! an in-memory link with seeded loss, duplication, reordering and delay, on a virtual clock.
//! No real time, no sleep; randomness from a splitmix generator. `WEFT_SEEDS=N` runs N seeds.
// A test harness: the numbers here are the test's own, not a peer's.
#![allow(clippy::arithmetic_side_effects)]

use super::*;
use crate::channel::pool::BufferPool;
use crate::wire::Message;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// The messages of a payload this harness's channels wrote.
fn messages(mut payload: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    while !payload.is_empty() {
        let (message, len) = Message::parse(payload).expect("own messages parse");
        out.push(message);
        payload = &payload[len..];
    }
    out
}

/// splitmix64.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the link does to packets.
#[derive(Clone, Debug)]
pub(super) struct LinkConfig {
    pub(super) loss: f64,
    pub(super) duplicate: f64,
    pub(super) delay: Duration,
    /// Extra delay of up to this much, making reordering.
    pub(super) jitter: Duration,
    pub(super) mtu: usize,
    /// From this virtual time on, everything is dropped.
    pub(super) black_hole_after: Option<Duration>,
}

impl LinkConfig {
    pub(super) fn lossy(loss: f64) -> Self {
        LinkConfig {
            loss,
            duplicate: 0.01,
            delay: Duration::from_millis(10),
            jitter: Duration::from_micros(300),
            mtu: 1500,
            black_hole_after: None,
        }
    }
}

pub(super) struct Side {
    pub(super) channel: ChannelReliability,
    pub(super) path: PathState,
    next_pn: u64,
    budget: ReassemblyBudget,
}

struct InFlight {
    at: Instant,
    order: u64,
    to: usize,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Two endpoints of one channel and the link between them.
pub(super) struct Pair {
    pub(super) start: Instant,
    pub(super) now: Instant,
    pub(super) sides: [Side; 2],
    pub(super) link: LinkConfig,
    rng: Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    /// Message numbers (a → b) carried by packets the link dropped.
    pub(super) dropped_messages: BTreeSet<u64>,
    pub(super) trace: bool,
}

const OVERHEAD: usize = 57;

impl Pair {
    pub(super) fn new(
        capabilities: Capabilities,
        config: &ReliabilityConfig,
        link: LinkConfig,
        seed: u64,
    ) -> Self {
        let start = Instant::now();
        let mut rng = Rng(seed);
        let side = |rng: &mut Rng| Side {
            channel: ChannelReliability::new(capabilities, config, start),
            path: PathState::new(config, start),
            // PROTOCOL.md §3: plaintext channels start at a random 32-bit value.
            next_pn: rng.next() & 0xFFFF_FFFF,
            budget: ReassemblyBudget::new(64 << 20, 16 << 20),
        };
        let sides = [side(&mut rng), side(&mut rng)];
        Pair {
            start,
            now: start,
            sides,
            link,
            rng,
            queue: BinaryHeap::new(),
            order: 0,
            dropped_messages: BTreeSet::new(),
            trace: false,
        }
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn transmit(&mut self, from: usize, bytes: Vec<u8>) {
        let size = bytes.len() - 4 + OVERHEAD;
        let black = self
            .link
            .black_hole_after
            .is_some_and(|after| self.elapsed() >= after);
        let lost = black || size > self.link.mtu || self.rng.chance(self.link.loss);
        if self.trace {
            let kinds: Vec<String> = messages(&bytes[4..])
                .into_iter()
                .map(|f| match f {
                    Message::Ack(a) => format!("ACK{:?}", a.iter().count()),
                    Message::DataFragment { offset, .. } => format!("F{offset}"),
                    other => format!("{other:?}").chars().take(12).collect(),
                })
                .collect();
            eprintln!(
                "{:?} {from}->  len {} pn {} lost {lost} {kinds:?}",
                self.elapsed(),
                bytes.len(),
                u32::from_be_bytes(bytes[..4].try_into().unwrap())
            );
        }
        if lost {
            if from == 0 {
                for message in messages(&bytes[4..]) {
                    match message {
                        Message::Data { message_number, .. }
                        | Message::DataFragment { message_number, .. } => {
                            self.dropped_messages.insert(message_number);
                        }
                        _ => {}
                    }
                }
            }
            return;
        }
        let copies = if self.rng.chance(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.rng.below(self.link.jitter.as_nanos() as u64 + 1);
            let at = self.now + self.link.delay + Duration::from_nanos(jitter);
            self.order += 1;
            self.queue.push(Reverse(InFlight {
                at,
                order: self.order,
                to: 1 - from,
                bytes: bytes.clone(),
            }));
        }
    }

    fn receive(&mut self, to: usize, bytes: &[u8]) {
        let now = self.now;
        let side = &mut self.sides[to];
        let wire = u32::from_be_bytes(bytes[..4].try_into().unwrap());
        let pn = decode_packet_number(side.channel.largest_received(), wire);
        let payload = &bytes[4..];
        let frames = messages(payload);
        let eliciting = frames.iter().any(|f| !matches!(f, Message::Ack(_)));
        side.channel.on_packet_received(now, pn, eliciting);
        for f in frames {
            match f {
                Message::Data {
                    message_number,
                    payload,
                } => side
                    .channel
                    .on_data(now, message_number, payload, &mut BufferPool::new()),
                Message::DataFragment {
                    message_number,
                    total_length,
                    offset,
                    bytes,
                } => side.channel.on_fragment(
                    now,
                    message_number,
                    total_length,
                    offset,
                    bytes,
                    &mut side.budget,
                    &mut BufferPool::new(),
                ),
                Message::Ack(ack) => side.channel.on_ack(
                    now,
                    ack.iter(),
                    Duration::from_micros(ack.ack_delay_us),
                    &mut side.path,
                ),
                Message::Window {
                    max_message,
                    max_bytes,
                } => side.channel.on_window(max_message, max_bytes),
                _ => {}
            }
        }
    }

    /// Lets both sides send what they want now.
    pub(super) fn flush(&mut self) {
        let mut buf = vec![0u8; 4 + 1452];
        for from in 0..2 {
            for _ in 0..10_000 {
                let now = self.now;
                let side = &mut self.sides[from];
                if !side.channel.wants_to_send(now, &side.path) {
                    break;
                }
                let pn = side.next_pn;
                let n = side
                    .channel
                    .write_frames(now, pn, &mut side.path, &mut buf[4..]);
                if n == 0 {
                    break;
                }
                side.next_pn += 1;
                buf[..4].copy_from_slice(&(pn as u32).to_be_bytes());
                let packet = buf[..4 + n].to_vec();
                self.transmit(from, packet);
            }
        }
    }

    /// Advances to the next event (a packet arriving or a timer); `false` once idle.
    pub(super) fn step(&mut self) -> bool {
        self.flush();
        let timers = self.sides.iter().filter_map(|s| s.channel.poll_timeout());
        let arrival = self.queue.peek().map(|Reverse(p)| p.at);
        let Some(next) = timers.chain(arrival).min() else {
            return false;
        };
        self.now = self.now.max(next);
        while self.queue.peek().is_some_and(|Reverse(p)| p.at <= self.now) {
            let Some(Reverse(packet)) = self.queue.pop() else {
                break;
            };
            self.receive(packet.to, &packet.bytes);
        }
        let now = self.now;
        for side in &mut self.sides {
            if side.channel.poll_timeout().is_some_and(|at| at <= now) {
                side.channel.handle_timeout(now, &mut side.path);
            }
        }
        true
    }
}

/// The bytes of message `number` in a run with `seed`.
fn message_bytes(seed: u64, number: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed ^ number.wrapping_mul(0x1234_5678_9abc_def1));
    (0..len).map(|_| rng.next() as u8).collect()
}

/// What one scenario run saw at the receiver.
#[derive(Debug, Default)]
struct Outcome {
    delivered: Vec<u64>,
    skipped: Vec<(u64, u64)>,
    receiver_failed: Option<CloseReason>,
    sender_failed: Option<CloseReason>,
    sent: u64,
}

/// Sends `count` messages a → b (sizes mixed, some fragmented) and drives the pair until idle.
fn run(capabilities: Capabilities, loss: f64, seed: u64, count: u64) -> (Outcome, Pair) {
    let config = ReliabilityConfig::default();
    let mut pair = Pair::new(capabilities, &config, LinkConfig::lossy(loss), seed);
    let mut rng = Rng(seed.wrapping_mul(31));
    let sizes: Vec<usize> = (0..count)
        .map(|_| match rng.below(10) {
            0 => 1500 + rng.below(3000) as usize,
            1 => 0,
            _ => 1 + rng.below(700) as usize,
        })
        .collect();
    let mut outcome = Outcome::default();
    let mut steps = 0;
    loop {
        while outcome.sent < count && outcome.sender_failed.is_none() {
            let data = message_bytes(seed, outcome.sent, sizes[outcome.sent as usize]);
            match pair.sides[0]
                .channel
                .send(pair.now, &data, &mut BufferPool::new())
            {
                Ok(number) => {
                    assert_eq!(number, outcome.sent);
                    outcome.sent += 1;
                }
                Err(SendError::QueueFull) | Err(SendError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        while let Some(event) = pair.sides[0].channel.poll_event() {
            if let Delivery::Failed(reason) = event {
                outcome.sender_failed = Some(reason);
            }
        }
        while let Some(event) = pair.sides[1].channel.poll_event() {
            match event {
                Delivery::Message { number, data } => {
                    assert_eq!(data, message_bytes(seed, number, sizes[number as usize]));
                    outcome.delivered.push(number);
                }
                Delivery::Skipped { first, last } => outcome.skipped.push((first, last)),
                Delivery::Progress {
                    received, total, ..
                } => assert!(received < total),
                Delivery::Failed(reason) => outcome.receiver_failed = Some(reason),
            }
        }
        if pair.elapsed() > Duration::from_secs(300) || !pair.step() {
            break;
        }
        steps += 1;
        assert!(steps < 2_000_000, "simulation does not settle");
    }
    (outcome, pair)
}

fn seeds() -> u64 {
    std::env::var("WEFT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32)
}

fn caps(bits: u8) -> Capabilities {
    Capabilities::from_bits(bits).unwrap()
}

/// Each of the eight modes delivers what its row of PROTOCOL.md §7 promises.
#[test]
fn every_mode_keeps_its_promise() {
    const COUNT: u64 = 40;
    for bits in 0..8u8 {
        let resend = bits & 1 != 0;
        let ordered = bits & 2 != 0;
        let close = bits & 4 != 0;
        for loss in [0.0, 0.01, 0.10, 0.30] {
            for seed in 0..seeds() {
                let (outcome, pair) = run(caps(bits), loss, seed * 1000 + u64::from(bits), COUNT);
                let ctx = format!(
                    "mode {bits:03b} loss {loss} seed {seed}: {outcome:?} {:?} {:?} dropped {:?}",
                    pair.sides[0].channel.stats(),
                    pair.sides[1].channel.stats(),
                    pair.dropped_messages
                );
                let unique: BTreeSet<u64> = outcome.delivered.iter().copied().collect();
                assert_eq!(
                    unique.len(),
                    outcome.delivered.len(),
                    "duplicate delivery, {ctx}"
                );
                let failed = outcome.sender_failed.or(outcome.receiver_failed);
                if ordered {
                    assert!(
                        outcome.delivered.windows(2).all(|w| w[0] < w[1]),
                        "out of order, {ctx}"
                    );
                }
                if resend && close {
                    // SCTP and TCP: reliable; they never close at these loss rates.
                    assert_eq!(failed, None, "{ctx}");
                    assert_eq!(outcome.sent, COUNT, "{ctx}");
                    let expected: Vec<u64> = (0..COUNT).collect();
                    if ordered {
                        assert_eq!(outcome.delivered, expected, "{ctx}");
                    } else {
                        assert_eq!(unique, expected.into_iter().collect(), "{ctx}");
                    }
                }
                if loss == 0.0 {
                    assert_eq!(failed, None, "no loss, no failure, {ctx}");
                    assert_eq!(outcome.delivered.len() as u64, COUNT, "{ctx}");
                }
                if !resend && !close {
                    // UDP and Streaming 1: whatever is missing was really lost on the link.
                    for n in 0..outcome.sent {
                        if !unique.contains(&n) {
                            assert!(pair.dropped_messages.contains(&n), "{n} never lost, {ctx}");
                        }
                    }
                }
                if ordered && !close {
                    // Streaming 1 and 2 report what they skip.
                    for &(first, last) in &outcome.skipped {
                        assert!(first <= last);
                        for n in first..=last {
                            assert!(!unique.contains(&n), "{ctx}");
                        }
                    }
                }
            }
        }
    }
}

/// Drives the pair until `done` says so (or `limit` of virtual time passes).
fn drive_until(pair: &mut Pair, limit: Duration, mut done: impl FnMut(&mut Pair) -> bool) {
    while pair.elapsed() < limit && !done(pair) {
        if !pair.step() {
            // Idle: only the application can move things on, so let its time pass.
            pair.now += Duration::from_millis(10);
        }
    }
}

#[test]
fn retransmission_happens_under_loss() {
    let (outcome, pair) = run(caps(0b111), 0.10, 7, 40);
    assert_eq!(outcome.delivered, (0..40).collect::<Vec<_>>());
    let stats = pair.sides[0].channel.stats();
    assert!(
        stats.packets_lost > 0 && stats.retransmitted_bytes > 0,
        "{stats:?}"
    );
}

#[test]
fn congestion_window_shrinks_when_loss_starts() {
    let config = ReliabilityConfig::default();
    let mut pair = Pair::new(caps(0b111), &config, LinkConfig::lossy(0.0), 3);
    // No reordering: a spurious loss verdict would shrink the window before loss starts.
    pair.link.duplicate = 0.0;
    pair.link.jitter = Duration::ZERO;
    let chunk = vec![7u8; 1000];
    let keep_sending = |pair: &mut Pair| {
        while pair.sides[0]
            .channel
            .send(pair.now, &chunk, &mut BufferPool::new())
            .is_ok()
        {}
        while pair.sides[1].channel.poll_event().is_some() {}
    };
    drive_until(&mut pair, Duration::from_secs(2), |pair| {
        keep_sending(pair);
        false
    });
    let grown = pair.sides[0].path.congestion_window();
    assert!(grown > 12_000, "slow start grew the window: {grown}");
    assert_eq!(pair.sides[0].path.congestion_events(), 0);
    pair.link.loss = 0.05;
    drive_until(&mut pair, Duration::from_secs(4), |pair| {
        keep_sending(pair);
        false
    });
    let after = pair.sides[0].path.congestion_window();
    assert!(pair.sides[0].path.congestion_events() > 0);
    assert!(after < grown, "window {after} after loss, {grown} before");
}

#[test]
fn flow_control_holds_the_sender_to_a_slow_reader() {
    let config = ReliabilityConfig {
        receive_window: (16, 16 << 10),
        initial_window: (16, 16 << 10),
        ..ReliabilityConfig::default()
    };
    let mut pair = Pair::new(caps(0b111), &config, LinkConfig::lossy(0.05), 11);
    let mut sent = 0u64;
    let mut received = Vec::new();
    let mut next_read = pair.now;
    drive_until(&mut pair, Duration::from_secs(120), |pair| {
        while sent < 200 {
            let data = message_bytes(11, sent, 900);
            if pair.sides[0]
                .channel
                .send(pair.now, &data, &mut BufferPool::new())
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        let receiver = &pair.sides[1].channel;
        let (messages, bytes) = receiver.buffered();
        let (adv_messages, adv_bytes) = receiver.advertised_window();
        // PROTOCOL.md §7.4: never more buffered than advertised beyond what was consumed.
        assert!(messages <= 16 && bytes <= 16 << 10, "{messages} {bytes}");
        assert!(adv_messages >= messages && adv_bytes >= bytes);
        // The application reads one message every 50 ms.
        if pair.now >= next_read {
            if let Some(Delivery::Message { number, data }) = pair.sides[1].channel.poll_event() {
                assert_eq!(data, message_bytes(11, number, 900));
                received.push(number);
            }
            next_read = pair.now + Duration::from_millis(50);
        }
        received.len() == 200
    });
    assert_eq!(received, (0..200).collect::<Vec<_>>());
    assert_eq!(pair.sides[1].channel.stats().credit_drops, 0);
    // 200 messages at one per 50 ms: the reader, not the link, set the pace.
    assert!(pair.elapsed() >= Duration::from_millis(199 * 50));
}

#[test]
fn a_two_mib_message_crosses_a_lossy_link_in_tcp_mode() {
    let config = ReliabilityConfig::default();
    let mut pair = Pair::new(caps(0b111), &config, LinkConfig::lossy(0.10), 5);
    let big = message_bytes(5, 0, 2 << 20);
    assert_eq!(
        pair.sides[0]
            .channel
            .send(pair.now, &big, &mut BufferPool::new()),
        Ok(0)
    );
    assert!(matches!(
        pair.sides[0]
            .channel
            .send(pair.now, &vec![0; (2 << 20) + 1], &mut BufferPool::new()),
        Err(SendError::TooLarge { .. })
    ));
    let mut got = None;
    let mut progress = 0;
    drive_until(&mut pair, Duration::from_secs(120), |pair| {
        while let Some(event) = pair.sides[1].channel.poll_event() {
            match event {
                Delivery::Message { data, .. } => got = Some(data),
                Delivery::Progress { .. } => progress += 1,
                other => panic!(
                    "{other:?} at {:?}: {:?} cwnd {} rtt {:?}",
                    pair.elapsed(),
                    pair.sides[0].channel.stats(),
                    pair.sides[0].path.congestion_window(),
                    pair.sides[0].path.rtt()
                ),
            }
        }
        got.is_some()
    });
    assert!(got == Some(big), "the message arrives intact");
    assert!(progress > 0);
    assert_eq!(
        pair.sides[1].budget.peer_used(),
        0,
        "reassembly memory given back"
    );
}

#[test]
fn a_black_hole_fails_the_modes_that_close_on_loss() {
    for bits in [0b100u8, 0b110, 0b101, 0b111] {
        let config = ReliabilityConfig::default();
        let mut link = LinkConfig::lossy(0.0);
        link.black_hole_after = Some(Duration::from_secs(1));
        let mut pair = Pair::new(caps(bits), &config, link, 9);
        let mut failed = None;
        drive_until(&mut pair, Duration::from_secs(60), |pair| {
            let _ = pair.sides[0]
                .channel
                .send(pair.now, &[1; 500], &mut BufferPool::new());
            while pair.sides[1].channel.poll_event().is_some() {}
            while let Some(event) = pair.sides[0].channel.poll_event() {
                if let Delivery::Failed(reason) = event {
                    failed = Some(reason);
                }
            }
            failed.is_some()
        });
        assert_eq!(failed, Some(CloseReason::Loss), "mode {bits:03b}");
        assert!(
            pair.sides[0]
                .channel
                .send(pair.now, b"x", &mut BufferPool::new())
                == Err(SendError::Closed)
        );
    }
}

#[test]
fn queue_full_is_reported_never_dropped() {
    let config = ReliabilityConfig {
        send_queue_bytes: 10_000,
        ..ReliabilityConfig::default()
    };
    let mut pair = Pair::new(caps(0b111), &config, LinkConfig::lossy(0.0), 1);
    let mut accepted = 0;
    while pair.sides[0]
        .channel
        .send(pair.now, &[0; 1000], &mut BufferPool::new())
        .is_ok()
    {
        accepted += 1;
    }
    assert_eq!(accepted, 10);
    assert_eq!(
        pair.sides[0]
            .channel
            .send(pair.now, &[0; 1000], &mut BufferPool::new()),
        Err(SendError::QueueFull)
    );
    while pair.step() {}
    let mut delivered = 0;
    while let Some(Delivery::Message { .. }) = pair.sides[1].channel.poll_event() {
        delivered += 1;
    }
    assert_eq!(delivered, 10);
    assert!(
        pair.sides[0]
            .channel
            .send(pair.now, &[0; 1000], &mut BufferPool::new())
            .is_ok(),
        "room again"
    );
}
