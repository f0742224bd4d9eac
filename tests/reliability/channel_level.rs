//! The reliability layer alone (PROTOCOL.md §7): the two sides of one bare
//! `ChannelReliability`, below sessions and handshakes, as [`ChannelNode`]s on the same
//! simulated network as the endpoint-level scenarios of this file's parent. These scenarios ran
//! on a second simulator inside the reliability module before; they are unchanged in what they
//! send and assert.

use crate::sim::{ChannelNode, LinkConfig, Network, NodeId, SimRng, addr, channel_pair, seeds};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;
use weft::channel::reliability::{Delivery, ReliabilityConfig, SendError};
use weft::wire::{Capabilities, CloseReason};

/// 10 ms each way, up to 0.3 ms of jitter (so packets reorder), 1 % duplicated, 1500-byte MTU.
fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(10),
        jitter: Duration::from_micros(300),
        loss,
        duplicate: 0.01,
        mtu: 1500,
        ..LinkConfig::default()
    }
}

fn caps(bits: u8) -> Capabilities {
    Capabilities::from_bits(bits).unwrap()
}

/// The bytes of message `number` in a run with `seed`.
fn message_bytes(seed: u64, number: u64, len: usize) -> Vec<u8> {
    let mut rng = SimRng::new(seed ^ number.wrapping_mul(0x1234_5678_9abc_def1));
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Records the message numbers of every packet `a` sent that a link dropped.
fn record_drops(net: &mut Network<ChannelNode>) -> Rc<RefCell<BTreeSet<u64>>> {
    let dropped = Rc::new(RefCell::new(BTreeSet::new()));
    let sink = dropped.clone();
    net.on_drop(move |from, _, bytes| {
        if *from == addr(1) {
            sink.borrow_mut()
                .extend(ChannelNode::message_numbers(bytes));
        }
    });
    dropped
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

/// One run: the network, its two sides, and the message numbers the links dropped.
struct Run {
    net: Network<ChannelNode>,
    a: NodeId,
    b: NodeId,
    dropped: Rc<RefCell<BTreeSet<u64>>>,
}

/// Sends `count` messages a → b (sizes mixed, some fragmented) and drives the pair until idle.
fn run(capabilities: Capabilities, loss: f64, seed: u64, count: u64) -> (Outcome, Run) {
    let config = ReliabilityConfig::default();
    let (mut net, a, b) = channel_pair(seed, capabilities, &config, lossy(loss));
    let dropped = record_drops(&mut net);
    let mut rng = SimRng::new(seed.wrapping_mul(31));
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
            match net.channel(a).send(&data) {
                Ok(number) => {
                    assert_eq!(number, outcome.sent);
                    outcome.sent += 1;
                }
                Err(SendError::QueueFull) | Err(SendError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        while let Some(event) = net.node_mut(a).poll_event() {
            if let Delivery::Failed(reason) = event {
                outcome.sender_failed = Some(reason);
            }
        }
        while let Some(event) = net.node_mut(b).poll_event() {
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
        if net.elapsed() > Duration::from_secs(300) || !net.step() {
            break;
        }
        steps += 1;
        assert!(steps < 2_000_000, "simulation does not settle");
    }
    (outcome, Run { net, a, b, dropped })
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
            for seed in seeds() {
                let (outcome, run) = run(caps(bits), loss, seed * 1000 + u64::from(bits), COUNT);
                let dropped = run.dropped.borrow();
                let ctx = format!(
                    "mode {bits:03b} loss {loss} seed {seed} (WEFT_SEED={seed}): {outcome:?} \
                     {:?} {:?} dropped {dropped:?}",
                    run.net.node(run.a).channel.stats(),
                    run.net.node(run.b).channel.stats(),
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
                            assert!(dropped.contains(&n), "{n} never lost, {ctx}");
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

/// Drives the network until `done` says so (or `limit` of virtual time passes).
fn drive_until(
    net: &mut Network<ChannelNode>,
    limit: Duration,
    mut done: impl FnMut(&mut Network<ChannelNode>) -> bool,
) {
    while net.elapsed() < limit && !done(net) {
        if !net.step() {
            // Idle: only the application can move things on, so let its time pass.
            net.drive_for(Duration::from_millis(10));
        }
    }
}

#[test]
fn retransmission_happens_under_loss() {
    let (outcome, run) = run(caps(0b111), 0.10, 7, 40);
    assert_eq!(outcome.delivered, (0..40).collect::<Vec<_>>());
    let stats = run.net.node(run.a).channel.stats();
    assert!(
        stats.packets_lost > 0 && stats.retransmitted_bytes > 0,
        "{stats:?}"
    );
}

#[test]
fn congestion_window_shrinks_when_loss_starts() {
    let config = ReliabilityConfig::default();
    // No reordering: a spurious loss verdict would shrink the window before loss starts.
    let clean = LinkConfig {
        duplicate: 0.0,
        jitter: Duration::ZERO,
        ..lossy(0.0)
    };
    let (mut net, a, b) = channel_pair(3, caps(0b111), &config, clean);
    let chunk = vec![7u8; 1000];
    let mut keep_sending = |net: &mut Network<ChannelNode>| {
        while net.channel(a).send(&chunk).is_ok() {}
        while net.node_mut(b).poll_event().is_some() {}
        false
    };
    drive_until(&mut net, Duration::from_secs(2), &mut keep_sending);
    let grown = net.node(a).path.congestion_window();
    assert!(grown > 12_000, "slow start grew the window: {grown}");
    assert_eq!(net.node(a).path.congestion_events(), 0);
    net.set_default_link(LinkConfig {
        loss: 0.05,
        ..clean
    });
    drive_until(&mut net, Duration::from_secs(4), &mut keep_sending);
    let after = net.node(a).path.congestion_window();
    assert!(net.node(a).path.congestion_events() > 0);
    assert!(after < grown, "window {after} after loss, {grown} before");
}

#[test]
fn flow_control_holds_the_sender_to_a_slow_reader() {
    let config = ReliabilityConfig {
        receive_window: (16, 16 << 10),
        initial_window: (16, 16 << 10),
        ..ReliabilityConfig::default()
    };
    let (mut net, a, b) = channel_pair(11, caps(0b111), &config, lossy(0.05));
    let mut sent = 0u64;
    let mut received = Vec::new();
    let mut next_read = net.now();
    drive_until(&mut net, Duration::from_secs(120), |net| {
        while sent < 200 {
            let data = message_bytes(11, sent, 900);
            if net.channel(a).send(&data).is_err() {
                break;
            }
            sent += 1;
        }
        let receiver = &net.node(b).channel;
        let (messages, bytes) = receiver.buffered();
        let (adv_messages, adv_bytes) = receiver.advertised_window();
        // PROTOCOL.md §7.4: never more buffered than advertised beyond what was consumed.
        assert!(messages <= 16 && bytes <= 16 << 10, "{messages} {bytes}");
        assert!(adv_messages >= messages && adv_bytes >= bytes);
        // The application reads one message every 50 ms.
        if net.now() >= next_read {
            if let Some(Delivery::Message { number, data }) = net.node_mut(b).poll_event() {
                assert_eq!(data, message_bytes(11, number, 900));
                received.push(number);
            }
            next_read = net.now() + Duration::from_millis(50);
        }
        received.len() == 200
    });
    assert_eq!(received, (0..200).collect::<Vec<_>>());
    assert_eq!(net.node(b).channel.stats().credit_drops, 0);
    // 200 messages at one per 50 ms: the reader, not the link, set the pace.
    assert!(net.elapsed() >= Duration::from_millis(199 * 50));
}

#[test]
fn a_two_mib_message_crosses_a_lossy_link_in_tcp_mode() {
    let config = ReliabilityConfig::default();
    let (mut net, a, b) = channel_pair(5, caps(0b111), &config, lossy(0.10));
    let big = message_bytes(5, 0, 2 << 20);
    assert_eq!(net.channel(a).send(&big), Ok(0));
    assert!(matches!(
        net.channel(a).send(&vec![0; (2 << 20) + 1]),
        Err(SendError::TooLarge { .. })
    ));
    let mut got = None;
    let mut progress = 0;
    drive_until(&mut net, Duration::from_secs(120), |net| {
        while let Some(event) = net.node_mut(b).poll_event() {
            match event {
                Delivery::Message { data, .. } => got = Some(data.into_vec()),
                Delivery::Progress { .. } => progress += 1,
                other => panic!(
                    "{other:?} at {:?}: {:?} cwnd {} rtt {:?}",
                    net.elapsed(),
                    net.node(a).channel.stats(),
                    net.node(a).path.congestion_window(),
                    net.node(a).path.rtt()
                ),
            }
        }
        got.is_some()
    });
    assert!(got == Some(big), "the message arrives intact");
    assert!(progress > 0);
    assert_eq!(
        net.node(b).budget.peer_used(),
        0,
        "reassembly memory given back"
    );
}

#[test]
fn a_black_hole_fails_the_modes_that_close_on_loss() {
    for bits in [0b100u8, 0b110, 0b101, 0b111] {
        let config = ReliabilityConfig::default();
        let (mut net, a, b) = channel_pair(9, caps(bits), &config, lossy(0.0));
        let mut failed = None;
        drive_until(&mut net, Duration::from_secs(60), |net| {
            // From one second on the path swallows everything.
            if net.elapsed() >= Duration::from_secs(1) {
                net.set_default_link(LinkConfig::black_hole());
            }
            let _ = net.channel(a).send(&[1; 500]);
            while net.node_mut(b).poll_event().is_some() {}
            while let Some(event) = net.node_mut(a).poll_event() {
                if let Delivery::Failed(reason) = event {
                    failed = Some(reason);
                }
            }
            failed.is_some()
        });
        assert_eq!(failed, Some(CloseReason::Loss), "mode {bits:03b}");
        assert_eq!(net.channel(a).send(b"x"), Err(SendError::Closed));
    }
}

#[test]
fn queue_full_is_reported_never_dropped() {
    let config = ReliabilityConfig {
        send_queue_bytes: 10_000,
        ..ReliabilityConfig::default()
    };
    let (mut net, a, b) = channel_pair(1, caps(0b111), &config, lossy(0.0));
    let mut accepted = 0;
    while net.channel(a).send(&[0; 1000]).is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 10);
    assert_eq!(net.channel(a).send(&[0; 1000]), Err(SendError::QueueFull));
    net.drive();
    let mut delivered = 0;
    while let Some(Delivery::Message { .. }) = net.node_mut(b).poll_event() {
        delivered += 1;
    }
    assert_eq!(delivered, 10);
    assert!(net.channel(a).send(&[0; 1000]).is_ok(), "room again");
}
