//! Liveness of the reliability layer (PROTOCOL.md §7) under periodic and bursty loss: the stall
//! suspected at stop 22 (a channel left with data queued or a WINDOW owed and no timer armed,
//! silent until its peer speaks). Two bare channels send to each other in every mode, with
//! small windows so that WINDOW updates matter, and go idle between rounds, shedding their busy
//! state. After every simulator step each side is checked: what it owes (data the credit lets
//! out, unacknowledged packets, a WINDOW, an ACK) has a timer armed, and whatever anyone still
//! has to do, the network is not idle. After the loss stops, every queue drains and every
//! message sent then arrives within a bounded simulated time.

use crate::sim::{ChannelNode, LinkConfig, Network, NodeId, SimRng, addr, channel_pair, seeds};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;
use weft::channel::reliability::{Delivery, ReliabilityConfig, SendError};
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
    for node in nodes {
        let now = net.now();
        let side = net.node(node);
        let pending = side.channel.pending();
        anything |= pending.any();
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
    if anything {
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
    let loss = Rc::new(RefCell::new(Loss {
        on: true,
        patterns: [Pattern::draw(&mut rng), Pattern::draw(&mut rng)],
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
    let patterns = loss.borrow().patterns;
    let what = format!("mode {bits:03b} seed {seed} (WEFT_SEED={seed}) loss {patterns:?}");
    let mut apps = [App::default(), App::default()];
    for round in 0..4 {
        for (index, node) in nodes.into_iter().enumerate() {
            let count = rng.below(40);
            send_batch(&mut net, node, &mut apps[index], count, false);
        }
        let busy = Duration::from_millis(200 + rng.below(2_000));
        run_for(&mut net, nodes, &mut apps, busy, &format!("{what} round {round}"));
        // Quiet for a while: the channels may idle and shed their state.
        let quiet = Duration::from_millis(rng.below(3_000));
        run_for(&mut net, nodes, &mut apps, quiet, &format!("{what} quiet {round}"));
    }
    loss.borrow_mut().on = false;
    for (index, node) in nodes.into_iter().enumerate() {
        send_batch(&mut net, node, &mut apps[index], 20, true);
    }
    // The bound: a few probe timeouts (capped at an eighth of the 10 s retry time) and the
    // 2 s reassembly timeout, well inside it.
    let bound = Duration::from_secs(15);
    run_for(&mut net, nodes, &mut apps, bound, &format!("{what} after loss"));
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
        assert!(
            missing.is_empty(),
            "{what}: {from} → {to} sent {missing:?} after the loss stopped and they never \
             arrived within {bound:?}; sender {:?}, receiver {:?}",
            net.node(nodes[from]).channel.stats(),
            net.node(nodes[to]).channel.stats(),
        );
    }
}

/// Every mode stays live under periodic and bursty loss in both directions, with idle spells
/// in between; modes 0 and 1 (UDP, Z) were the suspects.
#[test]
fn no_channel_stalls_under_periodic_or_bursty_loss() {
    if std::env::var("SURVEY").is_ok() {
        for bits in 0..8u8 {
            let mut fails = Vec::new();
            for seed in seeds() {
                if let Err(e) = std::panic::catch_unwind(|| scenario(bits, seed)) {
                    let m = e.downcast_ref::<String>().cloned().unwrap_or_default();
                    fails.push((seed, m.chars().take(1500).collect::<String>()));
                }
            }
            eprintln!("MODE {bits:03b}: {} failures", fails.len());
            for f in fails.iter().take(4) {
                eprintln!("   {f:?}");
            }
        }
        return;
    }
    for seed in seeds() {
        for bits in 0..8u8 {
            scenario(bits, seed);
        }
    }
}
