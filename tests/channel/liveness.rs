//! Liveness of the reliability layer (PROTOCOL.md §7) under periodic and bursty loss: the stall
//! suspected at stop 22 (a channel left with data queued or a WINDOW owed and no timer armed,
//! silent until its peer speaks). Two bare channels send to each other in every mode, with
//! small windows so that WINDOW updates matter, and go idle between rounds, shedding their busy
//! state. After every simulator step each side is checked: what it owes (data the credit lets
//! out, unacknowledged packets, a WINDOW, an ACK) has a timer armed, and whatever anyone still
//! has to do, the network is not idle. After the loss stops, every queue drains and every
//! message sent then arrives within a bounded simulated time (in the modes that tolerate loss,
//! but for what the receiver dropped past its credit and counted). The same runs at the
//! endpoint, where four channels share one peer's path and the connection's data timer, and
//! the idle check sheds their state.
//!
//! `WEFT_SEEDS=N` runs more seeds, `WEFT_MODE=BITS` one mode of the bare-channel scenario. Found
//! so far, in 300 seeds of each: no stall.

use crate::sim::{ChannelNode, LinkConfig, Network, NodeId, SimRng, addr, channel_pair, seeds};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;
use weft::channel::reliability::{Delivery, ReliabilityConfig, SendError};
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig, Event};
use weft::wire::Capabilities;

/// Which datagrams of one direction the links drop, by their index in that direction.
#[derive(Copy, Clone, Debug)]
enum Pattern {
    /// None.
    Clean,
    /// Every `every`-th, from `phase` on.
    Periodic { every: u64, phase: u64 },
    /// The first `burst` of every `period`.
    Bursty { burst: u64, period: u64 },
}

impl Pattern {
    fn drops(self, index: u64) -> bool {
        match self {
            Pattern::Clean => false,
            Pattern::Periodic { every, phase } => index % every == phase,
            Pattern::Bursty { burst, period } => index % period < burst,
        }
    }

    fn draw(rng: &mut SimRng) -> Pattern {
        match rng.below(5) {
            0 => Pattern::Clean,
            1 | 2 => {
                let every = 2 + rng.below(4);
                Pattern::Periodic {
                    every,
                    phase: rng.below(every),
                }
            }
            _ => {
                let burst = 1 + rng.below(8);
                Pattern::Bursty {
                    burst,
                    period: burst + 2 + rng.below(12),
                }
            }
        }
    }
}

/// The loss both directions suffer while `on`.
struct Loss {
    on: bool,
    patterns: [Pattern; 2],
    sent: [u64; 2],
}

/// Drops datagrams by two patterns drawn from `rng`, one per direction, while the returned
/// switch is on (it starts on).
fn lossy_links<N: crate::sim::SimNode>(
    net: &mut Network<N>,
    rng: &mut SimRng,
) -> Rc<RefCell<Loss>> {
    let loss = Rc::new(RefCell::new(Loss {
        on: true,
        patterns: [Pattern::draw(rng), Pattern::draw(rng)],
        sent: [0; 2],
    }));
    let hook = loss.clone();
    net.on_deliver(move |from, _, _| {
        let mut loss = hook.borrow_mut();
        if !loss.on {
            return true;
        }
        let direction = usize::from(*from != addr(1));
        let index = loss.sent[direction];
        loss.sent[direction] += 1;
        !loss.patterns[direction].drops(index)
    });
    loss
}

/// What one side's application sent and received.
#[derive(Default)]
struct App {
    /// Messages handed to the channel.
    sent: u64,
    /// Messages sent once the loss had stopped: each must arrive.
    after_loss: BTreeSet<u64>,
    delivered: BTreeSet<u64>,
    failed: bool,
}

/// SCTP and TCP: every message arrives. In the modes that tolerate loss, a message the sender
/// wrongly judged lost (reordering, acknowledgements lost until the retry budget ran out, a
/// fragment the receiver timed out) lets it run one message past the credit, and the receiver
/// drops that one and counts it (reliability/mod.rs, "Flow control where messages can
/// vanish"): never silently.
fn reliable(bits: u8) -> bool {
    bits & 5 == 5
}

/// Small windows (so WINDOW updates matter), a short reassembly timeout (so a fragmented
/// message that lost a piece frees its credit well within the bound below).
fn config() -> ReliabilityConfig {
    ReliabilityConfig {
        initial_window: (8, 8 << 10),
        receive_window: (8, 8 << 10),
        reassembly_timeout: Duration::from_secs(2),
        ..ReliabilityConfig::default()
    }
}

fn size(rng: &mut SimRng) -> usize {
    match rng.below(20) {
        0 => 0,
        1..=3 => 1_200 + rng.below(1_800) as usize,
        _ => 1 + rng.below(600) as usize,
    }
}

/// Queues `count` messages at `node`, as far as its queue takes them.
fn send_batch(net: &mut Network<ChannelNode>, node: NodeId, app: &mut App, count: u64, late: bool) {
    for _ in 0..count {
        let len = size(net.rng());
        match net.channel(node).send(&vec![0x5a; len]) {
            Ok(number) => {
                assert_eq!(number, app.sent);
                app.sent += 1;
                if late {
                    app.after_loss.insert(number);
                }
            }
            Err(SendError::QueueFull | SendError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

fn drain(net: &mut Network<ChannelNode>, node: NodeId, app: &mut App) {
    while let Some(event) = net.node_mut(node).poll_event() {
        match event {
            Delivery::Message { number, .. } => {
                assert!(app.delivered.insert(number), "message {number} twice");
            }
            Delivery::Failed(_) => app.failed = true,
            Delivery::Skipped { .. } | Delivery::Progress { .. } => {}
        }
    }
}

/// The invariant, checked after every step: each side's debts have a timer, and while anyone
/// has anything to do the network has a next event.
fn check(net: &mut Network<ChannelNode>, nodes: [NodeId; 2], what: &str) {
    let mut anything = false;
    let mut failed = false;
    for node in nodes {
        let now = net.now();
        let side = net.node(node);
        let pending = side.channel.pending();
        anything |= pending.any();
        failed |= side.channel.is_failed();
        let owes = pending.sendable || pending.unacked || pending.window || pending.ack;
        assert!(
            !owes
                || side.channel.poll_timeout().is_some()
                || side.channel.wants_to_send(now, &side.path),
            "{what}: node {node:?} owes {pending:?} with no timer armed, busy {}, at {:?}",
            side.channel.is_busy(),
            net.elapsed(),
        );
        if !side.channel.is_busy() {
            // Shed only when nothing is owed (what the idle channel would rebuild).
            assert!(
                !pending.any() && side.channel.poll_timeout().is_none(),
                "{what}: node {node:?} shed its state owing {pending:?}"
            );
        }
    }
    // A failed channel is closed by its endpoint, whose CHANNEL_CLOSE tells the peer
    // (PROTOCOL.md §6): bare channels have no such message, so a peer left waiting on a failed
    // side is no stall.
    if anything && !failed {
        assert!(
            net.next_event().is_some(),
            "{what}: the network is idle while {:?} / {:?} are pending at {:?}",
            net.node(nodes[0]).channel.pending(),
            net.node(nodes[1]).channel.pending(),
            net.elapsed(),
        );
    }
}

/// Steps for `span` of simulated time (or until idle), checking the invariant after each step
/// and letting the applications read; now and then an idle check sheds what it can.
fn run_for(
    net: &mut Network<ChannelNode>,
    nodes: [NodeId; 2],
    apps: &mut [App; 2],
    span: Duration,
    what: &str,
) {
    let end = net.now() + span;
    while net.next_event().is_some_and(|next| next <= end) {
        net.step();
        for (node, app) in nodes.into_iter().zip(apps.iter_mut()) {
            drain(net, node, app);
        }
        if net.rng().below(16) == 0 {
            // The endpoint's idle check (PROTOCOL.md §12): it may come at any moment.
            let node = nodes[net.rng().below(2) as usize];
            net.node_mut(node).channel.shrink_idle();
        }
        check(net, nodes, what);
    }
    net.drive_until(end);
}

/// One run of `bits`'s mode under `seed`'s loss patterns.
fn scenario(bits: u8, seed: u64) {
    let capabilities = Capabilities::from_bits(bits).unwrap();
    let link = LinkConfig {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(2),
        duplicate: 0.01,
        reorder: 0.02,
        ..LinkConfig::default()
    };
    let (mut net, a, b) = channel_pair(seed, capabilities, &config(), link);
    let nodes = [a, b];
    let mut rng = SimRng::new(seed.wrapping_mul(0x9e37_79b9).wrapping_add(u64::from(bits)));
    let loss = lossy_links(&mut net, &mut rng);
    let patterns = loss.borrow().patterns;
    let what = format!("mode {bits:03b} seed {seed} (WEFT_SEED={seed}) loss {patterns:?}");
    let mut apps = [App::default(), App::default()];
    for round in 0..4 {
        for (index, node) in nodes.into_iter().enumerate() {
            let count = rng.below(40);
            send_batch(&mut net, node, &mut apps[index], count, false);
        }
        let busy = Duration::from_millis(200 + rng.below(2_000));
        run_for(
            &mut net,
            nodes,
            &mut apps,
            busy,
            &format!("{what} round {round}"),
        );
        // Quiet for a while: the channels may idle and shed their state.
        let quiet = Duration::from_millis(rng.below(3_000));
        run_for(
            &mut net,
            nodes,
            &mut apps,
            quiet,
            &format!("{what} quiet {round}"),
        );
    }
    loss.borrow_mut().on = false;
    let drops_before = nodes.map(|node| net.node(node).channel.stats().credit_drops);
    for (index, node) in nodes.into_iter().enumerate() {
        send_batch(&mut net, node, &mut apps[index], 20, true);
    }
    // The bound: a few probe timeouts (capped at an eighth of the 10 s retry time) and the
    // 2 s reassembly timeout, well inside it.
    let bound = Duration::from_secs(15);
    run_for(
        &mut net,
        nodes,
        &mut apps,
        bound,
        &format!("{what} after loss"),
    );
    let failed = apps.iter().any(|app| app.failed);
    let close_on_loss = bits & 4 != 0;
    assert!(
        !failed || close_on_loss,
        "{what}: a mode that does not close on loss failed"
    );
    if failed {
        return;
    }
    for (from, to) in [(0, 1), (1, 0)] {
        let side = net.node(nodes[from]);
        assert_eq!(
            side.channel.queued_bytes(),
            0,
            "{what}: node {from}'s queue did not drain within {bound:?}: {:?} {:?}",
            side.channel.pending(),
            side.channel.stats(),
        );
        assert!(
            !side.channel.pending().any(),
            "{what}: node {from} still owes {:?}",
            side.channel.pending()
        );
        let missing: Vec<u64> = apps[from]
            .after_loss
            .difference(&apps[to].delivered)
            .copied()
            .collect();
        let counted = if reliable(bits) {
            0
        } else {
            net.node(nodes[to]).channel.stats().credit_drops - drops_before[to]
        };
        assert!(
            missing.len() as u64 <= counted,
            "{what}: {from} → {to} sent {missing:?} after the loss stopped and they never \
             arrived within {bound:?} ({counted} counted as credit drops); sender {:?}, \
             receiver {:?}",
            net.node(nodes[from]).channel.stats(),
            net.node(nodes[to]).channel.stats(),
        );
    }
}

/// Every mode stays live under periodic and bursty loss in both directions, with idle spells
/// in between; modes 0 and 1 (UDP, Z) were the suspects.
#[test]
fn no_channel_stalls_under_periodic_or_bursty_loss() {
    let modes: Vec<u8> = match std::env::var("WEFT_MODE") {
        Ok(mode) => vec![
            mode.trim()
                .parse()
                .expect("WEFT_MODE is a mode's capability bits, 0-7"),
        ],
        Err(_) => (0..8).collect(),
    };
    for seed in seeds() {
        for &bits in &modes {
            scenario(bits, seed);
        }
    }
}

/// One channel of the endpoint-level scenario: its handle at each end and what each end's
/// application sent and saw (index 0 is `a`).
struct Lane {
    bits: u8,
    ends: [ChannelHandle; 2],
    apps: [App; 2],
}

/// Reads every event of `node` (index `side`) into its lanes.
fn drain_endpoint(net: &mut Network<Endpoint>, node: NodeId, side: usize, lanes: &mut [Lane]) {
    while let Some(event) = net.node_mut(node).poll_event() {
        let (channel, number) = match event {
            Event::Message {
                channel,
                message_number,
                ..
            } => (channel, Some(message_number)),
            Event::ChannelClosed { channel, .. } => (channel, None),
            _ => continue,
        };
        let Some(lane) = lanes.iter_mut().find(|lane| lane.ends[side] == channel) else {
            continue;
        };
        match number {
            Some(number) => {
                assert!(
                    lane.apps[side].delivered.insert(number),
                    "message {number} twice"
                );
            }
            None => lane.apps[side].failed = true,
        }
    }
}

/// Queues `count` messages on every lane at both ends.
fn send_endpoint(
    net: &mut Network<Endpoint>,
    nodes: [NodeId; 2],
    lanes: &mut [Lane],
    count: u64,
    late: bool,
) {
    for lane in lanes.iter_mut() {
        for (side, node) in nodes.into_iter().enumerate() {
            for _ in 0..count {
                let len = size(net.rng());
                let now = net.now();
                let app = &mut lane.apps[side];
                match net
                    .node_mut(node)
                    .send(now, lane.ends[side], &vec![0xa5; len])
                {
                    Ok(number) => {
                        assert_eq!(number, app.sent);
                        app.sent += 1;
                        if late {
                            app.after_loss.insert(number);
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

fn credit_drops(net: &Network<Endpoint>, node: NodeId, channel: ChannelHandle) -> u64 {
    net.node(node)
        .channel_stats(channel)
        .map_or(0, |stats| stats.credit_drops)
}

/// Steps for `span`, reading events after each step.
fn run_endpoints(
    net: &mut Network<Endpoint>,
    nodes: [NodeId; 2],
    lanes: &mut [Lane],
    span: Duration,
) {
    let end = net.now() + span;
    while net.next_event().is_some_and(|next| next <= end) {
        net.step();
        for (side, node) in nodes.into_iter().enumerate() {
            drain_endpoint(net, node, side, lanes);
        }
    }
    net.drive_until(end);
}

/// The same at the endpoint: four channels of modes UDP, Z, Streaming 2 and TCP share one
/// peer's path (window, pacer, the connection's data timer) under periodic and bursty loss,
/// both ways, with quiet spells longer than the keep-alive interval, so the idle check sheds
/// their busy state. After the loss stops, what either side sends on a mode that resends
/// arrives well before the keep-alive interval, which could otherwise hide a stall (a channel
/// that waits for its peer to speak first).
#[test]
fn endpoint_channels_stay_live_under_periodic_or_bursty_loss() {
    const MODES: [u8; 4] = [0, 1, 3, 7];
    let keep_alive = Duration::from_secs(15);
    for seed in seeds() {
        let mut config = EndpointConfig {
            keep_alive_interval: keep_alive,
            ..EndpointConfig::default()
        };
        config.reliability = ReliabilityConfig {
            reassembly_timeout: Duration::from_secs(2),
            ..self::config()
        };
        let mut net = Network::new(seed);
        net.set_default_link(LinkConfig {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(2),
            duplicate: 0.01,
            reorder: 0.02,
            ..LinkConfig::default()
        });
        let a = net.add_endpoint(addr(1), config.clone());
        let b = net.add_endpoint(addr(2), config);
        let nodes = [a, b];
        let peer = net.node(b).local_peer_id();
        let mut lanes = Vec::new();
        for bits in MODES {
            let now = net.now();
            let capabilities = Capabilities::from_bits(bits).unwrap();
            let at_a = net
                .node_mut(a)
                .open_channel(now, addr(2), Some(peer), None, capabilities)
                .unwrap();
            net.drive_for(Duration::from_millis(300));
            let _ = std::iter::from_fn(|| net.node_mut(a).poll_event()).count();
            let at_b = std::iter::from_fn(|| net.node_mut(b).poll_event())
                .find_map(|event| match event {
                    Event::ChannelOpened {
                        channel,
                        initiator: false,
                        ..
                    } => Some(channel),
                    _ => None,
                })
                .expect("the channel opened at b");
            lanes.push(Lane {
                bits,
                ends: [at_a, at_b],
                apps: [App::default(), App::default()],
            });
        }
        let mut rng = SimRng::new(seed ^ 0x5eed_1ead);
        let loss = lossy_links(&mut net, &mut rng);
        let what = format!(
            "seed {seed} (WEFT_SEED={seed}) loss {:?}",
            loss.borrow().patterns
        );
        for _ in 0..3 {
            let count = rng.below(30);
            send_endpoint(&mut net, nodes, &mut lanes, count, false);
            run_endpoints(
                &mut net,
                nodes,
                &mut lanes,
                Duration::from_millis(500 + rng.below(2_000)),
            );
            // Quiet past the keep-alive interval: the idle check runs and sheds what it can.
            let quiet = keep_alive + Duration::from_millis(rng.below(2_000));
            run_endpoints(&mut net, nodes, &mut lanes, quiet);
        }
        loss.borrow_mut().on = false;
        let drops_before: Vec<[u64; 2]> = lanes
            .iter()
            .map(|lane| [0, 1].map(|side| credit_drops(&net, nodes[side], lane.ends[side])))
            .collect();
        send_endpoint(&mut net, nodes, &mut lanes, 20, true);
        run_endpoints(&mut net, nodes, &mut lanes, Duration::from_secs(10));
        for (lane, drops_before) in lanes.iter().zip(&drops_before) {
            let bits = lane.bits;
            if lane.apps.iter().any(|app| app.failed) {
                assert!(bits & 4 != 0, "{what}: mode {bits:03b} closed");
                continue;
            }
            for (from, to) in [(0, 1), (1, 0)] {
                let queued = net.node(nodes[from]).send_queued(lane.ends[from]);
                assert_eq!(
                    queued,
                    Some(0),
                    "{what}: mode {bits:03b} side {from} kept its queue"
                );
                let missing: Vec<u64> = lane.apps[from]
                    .after_loss
                    .difference(&lane.apps[to].delivered)
                    .copied()
                    .collect();
                let counted = if reliable(bits) {
                    0
                } else {
                    credit_drops(&net, nodes[to], lane.ends[to]) - drops_before[to]
                };
                assert!(
                    missing.len() as u64 <= counted,
                    "{what}: mode {bits:03b} {from} → {to} sent {missing:?} after the loss \
                     stopped and they did not arrive within 10 s ({counted} counted as credit \
                     drops): {:?} / {:?}",
                    net.node(nodes[from]).channel_stats(lane.ends[from]),
                    net.node(nodes[to]).channel_stats(lane.ends[to]),
                );
            }
        }
    }
}
