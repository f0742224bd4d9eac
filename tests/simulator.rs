//! Tests of the simulated network itself (tests/sim), driven with a toy node.

mod sim;

use sim::{
    LinkConfig, Network, NodeId, SimNode, SimRng, TraceKind, addr, parse_seeds, run_seeds,
    serialisation_time,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::{Endpoint, EndpointConfig, Transmit};

/// How the toy answers what it receives.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// Answers nothing.
    Silent,
    /// Answers a datagram starting with `?` with the same bytes starting with `!`.
    Echo,
    /// Sends every datagram straight back: two reflectors never go quiet.
    Reflect,
}

/// A test-only node: sends what the test queues (now or at a set time), records what it gets,
/// and checks that the clock it is shown never goes backwards.
struct Toy {
    answer: Answer,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    timers: BTreeMap<(Instant, u64), (SocketAddr, Vec<u8>)>,
    timer_seq: u64,
    /// A deadline `handle_timeout` never clears: a broken node for the live-lock test.
    stuck: Option<Instant>,
    received: Vec<(Instant, SocketAddr, Vec<u8>)>,
    last_now: Option<Instant>,
    /// The clock the network last showed it before collecting its datagrams.
    clocked: Option<Instant>,
}

impl Toy {
    fn new(answer: Answer) -> Toy {
        Toy {
            answer,
            outbox: VecDeque::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            stuck: None,
            received: Vec::new(),
            last_now: None,
            clocked: None,
        }
    }

    fn send(&mut self, to: SocketAddr, bytes: &[u8]) {
        self.outbox.push_back((to, bytes.to_vec()));
    }

    fn send_at(&mut self, at: Instant, to: SocketAddr, bytes: &[u8]) {
        self.timers
            .insert((at, self.timer_seq), (to, bytes.to_vec()));
        self.timer_seq += 1;
    }

    fn observe(&mut self, now: Instant) {
        if let Some(last) = self.last_now {
            assert!(now >= last, "time went backwards: {now:?} after {last:?}");
        }
        self.last_now = Some(now);
    }

    /// What arrived, as (time since `epoch`, source, bytes).
    fn log(&self, epoch: Instant) -> Vec<(Duration, SocketAddr, Vec<u8>)> {
        self.received
            .iter()
            .map(|(at, from, bytes)| (*at - epoch, *from, bytes.clone()))
            .collect()
    }
}

impl SimNode for Toy {
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        self.observe(now);
        self.received.push((now, from, datagram.to_vec()));
        match self.answer {
            Answer::Echo if datagram.first() == Some(&b'?') => {
                let mut reply = datagram.to_vec();
                reply[0] = b'!';
                self.outbox.push_back((from, reply));
            }
            Answer::Reflect => self.outbox.push_back((from, datagram.to_vec())),
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let message = entry.remove();
            self.outbox.push_back(message);
        }
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (destination, bytes) = self.outbox.pop_front()?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        Some(Transmit {
            destination,
            len: bytes.len(),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.keys().next().map(|&(at, _)| at);
        match (timer, self.stuck) {
            (Some(t), Some(s)) => Some(t.min(s)),
            (t, s) => t.or(s),
        }
    }
    fn clock(&mut self, now: Instant) {
        self.clocked = Some(now);
    }
}

/// Two toys: `a` at addr(1) (silent), `b` at addr(2) answering as told.
fn pair(seed: u64, b_answer: Answer) -> (Network<Toy>, NodeId, NodeId) {
    let mut net = Network::new(seed);
    let a = net.add_node(addr(1), Toy::new(Answer::Silent));
    let b = net.add_node(addr(2), Toy::new(b_answer));
    (net, a, b)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A 4-byte big-endian number after a one-byte tag.
fn numbered(tag: u8, n: u32) -> Vec<u8> {
    let mut bytes = vec![tag];
    bytes.extend_from_slice(&n.to_be_bytes());
    bytes
}

fn number_of(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[1..5].try_into().expect("numbered datagram"))
}

#[test]
fn delivery_with_delay_is_exact() {
    let (mut net, a, b) = pair(1, Answer::Echo);
    net.set_link(a, b, LinkConfig::with_delay(ms(25)));
    net.set_link(b, a, LinkConfig::with_delay(ms(40)));
    let epoch = net.epoch();
    net.node_mut(a).send(addr(2), b"?now");
    let later = net.at(ms(7));
    net.node_mut(a).send_at(later, addr(2), b"?later");
    net.drive();

    assert_eq!(
        net.node(b).log(epoch),
        vec![
            (ms(25), addr(1), b"?now".to_vec()),
            (ms(32), addr(1), b"?later".to_vec()),
        ]
    );
    assert_eq!(
        net.node(a).log(epoch),
        vec![
            (ms(65), addr(2), b"!now".to_vec()),
            (ms(72), addr(2), b"!later".to_vec()),
        ]
    );
    assert_eq!(net.elapsed(), ms(72), "the clock stops at the last event");
}

#[test]
fn zero_delay_links_work_within_one_instant() {
    let (mut net, a, b) = pair(1, Answer::Echo);
    net.set_path(a, b, LinkConfig::with_delay(Duration::ZERO));
    net.node_mut(a).send(addr(2), b"?ping");
    assert!(net.step());
    assert_eq!(net.elapsed(), Duration::ZERO);
    assert_eq!(
        net.node(a).log(net.epoch()),
        vec![(Duration::ZERO, addr(2), b"!ping".to_vec())]
    );
    assert!(!net.step(), "nothing left after the exchange");
}

#[test]
fn loss_rate_matches_configuration() {
    let (mut net, a, b) = pair(7, Answer::Silent);
    net.set_link(
        a,
        b,
        LinkConfig {
            loss: 0.2,
            ..LinkConfig::default()
        },
    );
    for n in 0..10_000 {
        net.node_mut(a).send(addr(2), &numbered(b'd', n));
    }
    net.drive();

    let stats = net.link_stats(a, b);
    assert_eq!(stats.sent, 10_000);
    // 0.2 ± 3.75σ (σ = 40 packets); the seed is fixed, so this never flickers.
    assert!(
        (1_850..=2_150).contains(&stats.lost),
        "lost {} of 10000 at loss 0.2",
        stats.lost
    );
    assert_eq!(stats.delivered, stats.sent - stats.lost);
    assert_eq!(net.node(b).received.len() as u64, stats.delivered);
}

#[test]
fn black_hole_loses_everything_and_can_be_lifted_mid_run() {
    let (mut net, a, b) = pair(3, Answer::Silent);
    for n in 0..100u32 {
        let at = net.at(ms(10 * u64::from(n)));
        net.node_mut(a).send_at(at, addr(2), &numbered(b'd', n));
    }
    net.drive_until(net.at(ms(295)));
    net.set_link(a, b, LinkConfig::black_hole());
    net.drive_until(net.at(ms(595)));
    net.clear_link(a, b);
    net.drive();

    let numbers: Vec<u32> = net
        .node(b)
        .received
        .iter()
        .map(|(_, _, bytes)| number_of(bytes))
        .collect();
    let expected: Vec<u32> = (0..30).chain(60..100).collect();
    assert_eq!(numbers, expected);
    assert_eq!(net.link_stats(a, b).lost, 30);
}

/// One run of a lossless link with duplication and reordering: the receiver's log.
fn duplicating_run(seed: u64) -> (Vec<(Duration, SocketAddr, Vec<u8>)>, sim::LinkStats) {
    let (mut net, a, b) = pair(seed, Answer::Silent);
    net.set_link(
        a,
        b,
        LinkConfig {
            delay: ms(20),
            duplicate: 0.05,
            reorder: 0.1,
            ..LinkConfig::default()
        },
    );
    for n in 0..1_000u32 {
        let at = net.at(ms(u64::from(n)));
        net.node_mut(a).send_at(at, addr(2), &numbered(b'd', n));
    }
    net.drive();
    (net.node(b).log(net.epoch()), net.link_stats(a, b))
}

#[test]
fn duplication_and_reordering_happen() {
    let (log, stats) = duplicating_run(11);
    let mut copies = BTreeMap::<u32, u32>::new();
    let mut highest = None;
    let mut overtaken = 0;
    for (_, _, bytes) in &log {
        let n = number_of(bytes);
        *copies.entry(n).or_default() += 1;
        if highest.is_some_and(|h| n < h) {
            overtaken += 1;
        }
        highest = highest.max(Some(n));
    }
    assert_eq!(copies.len(), 1_000, "lossless: every packet arrives");
    let twice = copies.values().filter(|&&c| c == 2).count() as u64;
    assert!(twice > 0, "no duplicates at duplicate = 0.05");
    assert_eq!(twice, stats.duplicated);
    assert!(copies.values().all(|&c| c <= 2));
    assert!(stats.reordered > 0);
    assert!(overtaken > 0, "no packet arrived after a later one");
}

#[test]
fn runs_are_reproducible_from_the_seed() {
    let (first, _) = duplicating_run(5);
    let (again, _) = duplicating_run(5);
    let (other, _) = duplicating_run(6);
    assert_eq!(first, again, "same seed, same delivery trace");
    assert_ne!(first, other, "another seed, another trace");
}

#[test]
fn jitter_stays_within_its_bounds_and_is_seeded() {
    let run = |seed| {
        let (mut net, a, b) = pair(seed, Answer::Silent);
        net.set_link(
            a,
            b,
            LinkConfig {
                delay: ms(10),
                jitter: ms(5),
                ..LinkConfig::default()
            },
        );
        for n in 0..200 {
            net.node_mut(a).send(addr(2), &numbered(b'd', n));
        }
        net.drive();
        net.node(b).log(net.epoch())
    };
    let log = run(9);
    assert_eq!(log.len(), 200);
    assert!(log.iter().all(|(at, _, _)| (ms(10)..=ms(15)).contains(at)));
    assert!(
        log.iter().any(|(at, _, _)| *at != ms(10)),
        "no jitter drawn"
    );
    assert_eq!(log, run(9));
}

#[test]
fn links_draw_from_independent_streams() {
    let run = |extra_traffic: bool| {
        let mut net = Network::new(21);
        let a = net.add_node(addr(1), Toy::new(Answer::Silent));
        let b = net.add_node(addr(2), Toy::new(Answer::Silent));
        let c = net.add_node(addr(3), Toy::new(Answer::Silent));
        let lossy = LinkConfig {
            loss: 0.3,
            jitter: ms(3),
            ..LinkConfig::default()
        };
        net.set_default_link(lossy);
        for n in 0..300 {
            net.node_mut(a).send(addr(2), &numbered(b'd', n));
            if extra_traffic {
                net.node_mut(c).send(addr(2), &numbered(b'x', n));
            }
        }
        net.drive();
        let from_a: Vec<_> = net
            .node(b)
            .log(net.epoch())
            .into_iter()
            .filter(|(_, from, _)| *from == addr(1))
            .collect();
        (from_a, net.link_stats(a, b), net.link_stats(c, b).sent)
    };
    let (quiet, quiet_stats, none) = run(false);
    let (busy, busy_stats, some) = run(true);
    assert_eq!((none, some), (0, 300));
    assert_eq!(quiet, busy, "traffic on c→b changed the fate of a→b");
    assert_eq!(quiet_stats, busy_stats);
}

#[test]
fn bandwidth_spaces_packets_by_serialisation_time() {
    let (mut net, a, b) = pair(1, Answer::Silent);
    net.set_link(
        a,
        b,
        LinkConfig {
            bandwidth_bps: Some(8_000_000),
            ..LinkConfig::with_delay(ms(10))
        },
    );
    assert_eq!(serialisation_time(1_000, 8_000_000), ms(1));
    for n in 0..5 {
        let mut bytes = numbered(b'd', n);
        bytes.resize(1_000, 0);
        net.node_mut(a).send(addr(2), &bytes);
    }
    // Once the link is idle again a packet does not wait for the earlier burst.
    let later = net.at(ms(100));
    net.node_mut(a).send_at(later, addr(2), &[0; 500]);
    net.drive();

    let times: Vec<Duration> = net
        .node(b)
        .log(net.epoch())
        .iter()
        .map(|(at, _, _)| *at)
        .collect();
    let half_ms = Duration::from_micros(500);
    assert_eq!(
        times,
        vec![ms(11), ms(12), ms(13), ms(14), ms(15), ms(110) + half_ms]
    );
}

#[test]
fn full_queue_tail_drops() {
    let (mut net, a, b) = pair(1, Answer::Silent);
    // 1 byte per millisecond: a 100-byte packet holds the link for 100 ms.
    net.set_link(
        a,
        b,
        LinkConfig {
            bandwidth_bps: Some(8_000),
            queue_bytes: Some(300),
            ..LinkConfig::with_delay(ms(10))
        },
    );
    for n in 0..10 {
        let mut bytes = numbered(b'd', n);
        bytes.resize(100, 0);
        net.node_mut(a).send(addr(2), &bytes);
    }
    // At 150 ms the first packet has left: room for exactly one more.
    let at = net.at(ms(150));
    for n in [100, 101] {
        let mut bytes = numbered(b'd', n);
        bytes.resize(100, 0);
        net.node_mut(a).send_at(at, addr(2), &bytes);
    }
    net.drive();

    let log: Vec<(Duration, u32)> = net
        .node(b)
        .log(net.epoch())
        .iter()
        .map(|(at, _, bytes)| (*at, number_of(bytes)))
        .collect();
    assert_eq!(
        log,
        vec![(ms(110), 0), (ms(210), 1), (ms(310), 2), (ms(410), 100)]
    );
    let stats = net.link_stats(a, b);
    assert_eq!(
        (stats.sent, stats.dropped_queue, stats.delivered),
        (12, 8, 4)
    );
}

#[test]
fn oversize_datagrams_are_dropped() {
    let (mut net, a, b) = pair(1, Answer::Silent);
    let c = net.add_node(addr(3), Toy::new(Answer::Silent));
    net.set_link(
        a,
        b,
        LinkConfig {
            mtu: 500,
            ..LinkConfig::default()
        },
    );
    net.node_mut(a).send(addr(2), &[1; 500]);
    net.node_mut(a).send(addr(2), &[2; 501]);
    net.node_mut(a).send(addr(3), &[3; sim::ETHERNET_UDP_MTU]);
    net.node_mut(a)
        .send(addr(3), &[4; sim::ETHERNET_UDP_MTU + 1]);
    net.drive();

    let lens = |id| -> Vec<usize> {
        net.node(id)
            .received
            .iter()
            .map(|(_, _, bytes)| bytes.len())
            .collect()
    };
    assert_eq!(lens(b), vec![500]);
    assert_eq!(lens(c), vec![sim::ETHERNET_UDP_MTU]);
    assert_eq!(net.link_stats(a, b).dropped_mtu, 1);
    assert_eq!(net.total_stats().dropped_mtu, 2);
}

#[test]
fn rewrite_source_changes_the_observed_address() {
    let (mut net, a, b) = pair(1, Answer::Echo);
    net.node_mut(a).send(addr(2), b"?before");
    net.drive();
    net.rewrite_source(a, addr(100));
    net.node_mut(a).send(addr(2), b"?after");
    net.drive();

    let sources: Vec<SocketAddr> = net.node(b).received.iter().map(|r| r.1).collect();
    assert_eq!(sources, vec![addr(1), addr(100)]);
    let answers: Vec<&[u8]> = net
        .node(a)
        .received
        .iter()
        .map(|r| r.2.as_slice())
        .collect();
    assert_eq!(
        answers,
        vec![&b"!before"[..], b"!after"],
        "reply reached the new address"
    );
    assert_eq!(net.node_at(addr(100)), Some(a));
    assert_eq!(net.node_at(addr(1)), None);

    net.node_mut(b).send(addr(1), b"to the old mapping");
    net.drive();
    assert_eq!(net.unroutable(), 1);
    assert_eq!(net.node(a).received.len(), 2);
}

#[test]
fn drive_terminates_with_timers() {
    let (mut net, a, _b) = pair(1, Answer::Echo);
    for n in 1..=5 {
        let at = net.at(ms(100 * n));
        net.node_mut(a).send_at(at, addr(2), b"?tick");
    }
    net.drive();
    assert_eq!(net.node(a).received.len(), 5);
    assert_eq!(net.elapsed(), ms(520));
    assert!(!net.step());
    assert_eq!(
        net.elapsed(),
        ms(520),
        "an idle step leaves the clock alone"
    );
}

#[test]
fn drive_for_advances_the_clock_even_when_idle() {
    let (mut net, a, _b) = pair(1, Answer::Echo);
    let at = net.at(ms(300));
    net.node_mut(a).send_at(at, addr(2), b"?late");
    net.drive_for(ms(100));
    assert_eq!(net.elapsed(), ms(100));
    assert!(net.node(a).received.is_empty());
    assert_eq!(net.next_event(), Some(at), "the timer is still pending");
    net.drive_for(ms(1_000));
    assert_eq!(net.elapsed(), ms(1_100));
    assert_eq!(net.node(a).received.len(), 1);
}

#[test]
fn run_until_stops_when_the_condition_holds() {
    let (mut net, a, _b) = pair(1, Answer::Echo);
    for n in 1..=5 {
        let at = net.at(ms(100 * n));
        net.node_mut(a).send_at(at, addr(2), b"?tick");
    }
    assert!(net.run_until(|net| net.node(a).received.len() == 2));
    assert_eq!(net.elapsed(), ms(220));
    assert!(!net.run_until(|net| net.node(a).received.len() == 6));
    assert_eq!(net.node(a).received.len(), 5);
}

#[test]
#[should_panic(expected = "live-lock")]
fn a_timer_that_never_advances_is_reported() {
    let (mut net, a, _b) = pair(1, Answer::Silent);
    net.set_step_budget(1_000);
    let epoch = net.epoch();
    net.node_mut(a).stuck = Some(epoch);
    net.drive();
}

#[test]
#[should_panic(expected = "live-lock")]
fn a_zero_delay_ping_pong_is_reported() {
    let mut net = Network::new(1);
    let a = net.add_node(addr(1), Toy::new(Answer::Reflect));
    let b = net.add_node(addr(2), Toy::new(Answer::Reflect));
    net.set_path(a, b, LinkConfig::with_delay(Duration::ZERO));
    net.set_step_budget(1_000);
    net.node_mut(a).send(addr(2), b"ball");
    net.drive();
}

#[test]
fn time_never_goes_backwards() {
    sim::for_each_seed(|seed| {
        let (mut net, a, b) = pair(seed, Answer::Echo);
        net.set_path(
            a,
            b,
            LinkConfig {
                delay: ms(5),
                jitter: ms(30),
                duplicate: 0.1,
                reorder: 0.3,
                ..LinkConfig::default()
            },
        );
        net.drive_for(ms(1_000));
        // Deadlines already in the past fire at the current time, not before it.
        let past = net.epoch();
        for n in 0..50u32 {
            let at = net.at(ms(1_000 + 3 * u64::from(n)));
            net.node_mut(a).send_at(at, addr(2), &numbered(b'?', n));
            net.node_mut(a)
                .send_at(past, addr(2), &numbered(b'?', 1_000 + n));
        }
        let mut last = net.now();
        while net.step() {
            assert!(net.now() >= last, "the network clock went backwards");
            last = net.now();
        }
        assert!(
            net.node(a).received.len() >= 100,
            "seed {seed}: echoes lost"
        );
        // The toys assert monotonic time on every call; they were called.
        assert!(net.node(b).last_now.is_some());
    });
}

#[test]
fn the_hook_can_inspect_tamper_and_drop() {
    let (mut net, a, b) = pair(1, Answer::Silent);
    net.record_trace();
    net.on_deliver(|from, to, bytes| {
        assert_eq!((*from, *to), (addr(1), addr(2)));
        if bytes.as_slice() == b"drop me" {
            return false;
        }
        if let Some(last) = bytes.last_mut() {
            *last ^= 0xFF;
        }
        true
    });
    net.node_mut(a).send(addr(2), b"abc");
    net.node_mut(a).send(addr(2), b"drop me");
    net.drive();
    net.inject(addr(99), b, b"spoofed");

    let got: Vec<(SocketAddr, &[u8])> = net
        .node(b)
        .received
        .iter()
        .map(|(_, from, bytes)| (*from, bytes.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![(addr(1), &b"ab\x9c"[..]), (addr(99), &b"spoofed"[..])]
    );
    assert_eq!(net.link_stats(a, b).dropped_by_hook, 1);
    let kinds: Vec<TraceKind> = net.trace().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            TraceKind::Delivered,
            TraceKind::DroppedByHook,
            TraceKind::Injected
        ]
    );
    assert_eq!(net.trace()[0].digest, sim::digest(b"ab\x9c"));
}

#[test]
fn the_trace_records_every_fate() {
    let (mut net, a, b) = pair(1, Answer::Silent);
    net.record_trace();
    net.set_link(
        a,
        b,
        LinkConfig {
            mtu: 100,
            ..LinkConfig::default()
        },
    );
    net.node_mut(a).send(addr(2), b"fine");
    net.node_mut(a).send(addr(2), &[0; 101]);
    net.node_mut(a).send(addr(77), b"nobody");
    net.drive();
    let trace = net.take_trace();
    let summary: Vec<(Duration, TraceKind, usize)> =
        trace.iter().map(|e| (e.at, e.kind, e.len)).collect();
    assert_eq!(
        summary,
        vec![
            (Duration::ZERO, TraceKind::DroppedMtu, 101),
            (Duration::ZERO, TraceKind::Unroutable, 6),
            (ms(10), TraceKind::Delivered, 4),
        ]
    );
    assert!(net.trace().is_empty(), "take_trace empties the record");
}

#[test]
fn seeds_come_from_the_environment_variables() {
    assert_eq!(parse_seeds(None, None), (0..32).collect::<Vec<u64>>());
    assert_eq!(parse_seeds(None, Some("5")), vec![0, 1, 2, 3, 4]);
    assert_eq!(parse_seeds(Some("17"), Some("5")), vec![17]);
}

#[test]
#[should_panic(expected = "WEFT_SEEDS must be a number")]
fn a_malformed_seed_count_is_refused() {
    parse_seeds(None, Some("many"));
}

#[test]
fn run_seeds_runs_every_seed() {
    let mut seen = Vec::new();
    run_seeds(&[4, 8, 15], |seed| seen.push(seed));
    assert_eq!(seen, vec![4, 8, 15]);
}

#[test]
#[should_panic(expected = "seed 15 (rerun: WEFT_SEED=15): boom at 15")]
fn run_seeds_names_the_failing_seed() {
    run_seeds(&[4, 8, 15, 16], |seed| {
        assert!(seed != 15, "boom at {seed}")
    });
}

#[test]
fn sim_rng_is_seeded_and_bounded() {
    let draw = |seed| {
        let mut rng = SimRng::new(seed);
        (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
    let mut rng = SimRng::new(0);
    assert!((0..1_000).all(|_| rng.below(7) < 7));
    assert!((0..1_000).all(|_| (0.0..1.0).contains(&rng.next_f64())));
    let before = rng.clone().next_u64();
    assert!(!rng.chance(0.0));
    assert!(rng.chance(1.0));
    assert_eq!(rng.next_u64(), before, "certain outcomes draw nothing");
}

#[test]
fn endpoints_run_in_the_simulator() {
    let build = |seed| {
        let mut net: Network<Endpoint> = Network::new(seed);
        let a = net.add_endpoint(addr(1), EndpointConfig::default());
        let b = net.add_endpoint(addr(2), EndpointConfig::default());
        (net, a, b)
    };
    let (mut net, a, b) = build(2);
    assert_ne!(net.node(a).local_peer_id(), net.node(b).local_peer_id());
    let (again, a2, _) = build(2);
    assert_eq!(
        net.node(a).local_peer_id(),
        again.node(a2).local_peer_id(),
        "keys follow the seed"
    );
    net.drive();
    net.inject(addr(9), b, &[0; 40]);
    net.drive_for(ms(50));
    let received = net.node(b).stats().get("weft_packets_received_total", None);
    assert_eq!(received, 1);
}

#[test]
fn different_node_kinds_share_a_network() {
    let mut net: Network<Box<dyn SimNode>> = Network::new(1);
    let mut toy = Toy::new(Answer::Silent);
    toy.send(addr(2), &[0; 40]);
    let toy = net.add_node(addr(1), Box::new(toy));
    let mut rng = SimRng::new(1);
    let mut keys = [[0u8; 32]; 3];
    for key in &mut keys {
        rng.fill(key);
    }
    let identity = weft::session::Identity::from_secret_bytes(keys[0], keys[1]);
    let endpoint = Endpoint::new(EndpointConfig::default(), identity, keys[2], net.now());
    let endpoint = net.add_node(addr(2), Box::new(endpoint));
    net.drive();
    assert_eq!(net.link_stats(toy, endpoint).delivered, 1);
    assert_eq!(net.elapsed(), ms(10));
}

#[test]
fn the_drop_hook_sees_every_refused_datagram() {
    let (mut net, a, b) = pair(3, Answer::Silent);
    net.set_link(
        a,
        b,
        LinkConfig {
            loss: 0.3,
            mtu: 100,
            ..LinkConfig::default()
        },
    );
    let dropped = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = dropped.clone();
    net.on_drop(move |from, to, bytes| {
        assert_eq!((*from, *to), (addr(1), addr(2)));
        sink.borrow_mut().push(bytes.to_vec());
    });
    for n in 0..1_000 {
        let mut datagram = numbered(b'd', n);
        // Every tenth is too big for the path.
        if n % 10 == 0 {
            datagram.resize(200, 0);
        }
        net.node_mut(a).send(addr(2), &datagram);
    }
    net.drive();
    let stats = net.link_stats(a, b);
    assert_eq!(stats.dropped_mtu, 100);
    assert!(stats.lost > 0);
    let dropped = dropped.borrow();
    assert_eq!(dropped.len() as u64, stats.lost + stats.dropped_mtu);
    // The hook sees the bytes the node sent, and exactly the ones that did not arrive.
    let arrived: Vec<u32> = net
        .node(b)
        .received
        .iter()
        .map(|(_, _, bytes)| number_of(bytes))
        .collect();
    for bytes in dropped.iter() {
        assert!(!arrived.contains(&number_of(bytes)));
    }
}

/// A bare reliability channel (one side of it per node) on the same network as the endpoints:
/// a TCP-mode channel across a lossy, reordering path, run twice from one seed.
fn channel_run(seed: u64) -> (Vec<sim::TraceEvent>, Vec<Vec<u8>>) {
    use weft::channel::reliability::{Delivery, ReliabilityConfig};
    let link = LinkConfig {
        loss: 0.1,
        jitter: ms(3),
        duplicate: 0.05,
        ..LinkConfig::default()
    };
    let tcp = weft::wire::Capabilities::from_bits(7).unwrap();
    let (mut net, a, b) = sim::channel_pair(seed, tcp, &ReliabilityConfig::default(), link);
    net.record_trace();
    let messages: Vec<Vec<u8>> = (0..30u32)
        .map(|n| {
            let mut m = numbered(b'm', n);
            m.resize(1 + (n as usize * 97) % 3000, n as u8);
            m
        })
        .collect();
    for m in &messages {
        net.channel(a).send(m).unwrap();
    }
    net.drive();
    let delivered = std::iter::from_fn(|| net.node_mut(b).poll_event())
        .filter_map(|event| match event {
            Delivery::Message { data, .. } => Some(data.into_vec()),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(
        delivered, messages,
        "TCP mode delivers everything, in order"
    );
    (net.take_trace(), delivered)
}

#[test]
fn bare_channels_run_on_the_same_network_reproducibly() {
    let (first, _) = channel_run(4);
    let (again, _) = channel_run(4);
    let (other, _) = channel_run(5);
    assert!(first.iter().any(|e| e.kind == TraceKind::Lost));
    assert_eq!(first, again, "same seed, same trace");
    assert_ne!(first, other, "another seed, another trace");
}

#[test]
fn a_node_is_shown_the_clock_before_it_is_collected() {
    let (mut net, a, _) = pair(2, Answer::Silent);
    net.drive_for(Duration::from_secs(5));
    // Queued between events: the node has seen no event at this time, so only the network's
    // clock tells it when it is writing (a bare channel stamps its packets with it).
    net.node_mut(a).send(addr(2), b"late");
    net.drive();
    assert_eq!(net.node(a).clocked, Some(net.at(Duration::from_secs(5))));
}
