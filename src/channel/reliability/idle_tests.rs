//! A channel that gave its state back and woke again is the channel it was: in every mode,
//! after traffic both ways, the rebuilt state equals the dropped one field by field, what the
//! idle channel answers is what the busy one answered, and a pair that idled sends and
//! delivers exactly what a twin pair that never did sends and delivers.
#![allow(clippy::arithmetic_side_effects)]

use super::*;
use crate::channel::reliability::decode_packet_number;
use crate::wire::{ChannelId, Flags, Header, Message, PeerId, parse_payload};
use std::time::{Duration, Instant};

/// One end of a lossless link: a channel, its path, and the packet numbers it sends.
struct End {
    channel: ChannelReliability,
    path: PathState,
    budget: ReassemblyBudget,
    pool: BufferPool,
    next_pn: u64,
    delivered: Vec<Delivery>,
}

fn end(capabilities: Capabilities, config: &Arc<ReliabilityConfig>, now: Instant) -> End {
    End {
        channel: ChannelReliability::shared(capabilities, config.clone(), now),
        path: PathState::new(config, now),
        budget: ReassemblyBudget::new(16 << 20, 4 << 20),
        pool: BufferPool::new(),
        next_pn: 0,
        delivered: Vec::new(),
    }
}

fn header(pn: u64) -> Header {
    Header {
        flags: Flags::SEQUENCED,
        sender: PeerId([1; 16]),
        recipient: PeerId([2; 16]),
        channel: ChannelId(7),
        sequence: Some(pn as u32),
    }
}

/// The payloads `from` writes now, as its packets.
fn transmit(from: &mut End, now: Instant) -> Vec<(u64, Vec<u8>)> {
    let mut packets = Vec::new();
    while packets.len() < 64 && from.channel.wants_to_send(now, &from.path) {
        let mut buf = vec![0; 1200];
        let n = from
            .channel
            .write_frames(now, from.next_pn, &mut from.path, &mut buf);
        if n == 0 {
            break;
        }
        buf.truncate(n);
        packets.push((from.next_pn, buf));
        from.next_pn += 1;
    }
    packets
}

fn receive(to: &mut End, now: Instant, pn: u32, payload: &[u8]) {
    let pn = decode_packet_number(to.channel.largest_received(), pn);
    let header = header(pn);
    let messages: Vec<Message<'_>> = parse_payload(&header, payload).expect("parses").collect();
    let eliciting = messages.iter().any(|m| !matches!(m, Message::Ack(_)));
    let ch = &mut to.channel;
    ch.on_packet_received(now, pn, eliciting);
    for message in messages {
        match message {
            Message::Data {
                message_number,
                payload,
            } => ch.on_data(now, message_number, payload, &mut to.pool),
            Message::DataFragment {
                message_number,
                total_length,
                offset,
                bytes,
            } => ch.on_fragment(
                now,
                message_number,
                total_length,
                offset,
                bytes,
                &mut to.budget,
                &mut to.pool,
            ),
            Message::Ack(ack) => {
                let delay = Duration::from_micros(ack.ack_delay_us);
                ch.on_ack(now, ack.iter(), delay, &mut to.path);
                ch.reclaim(&mut to.pool);
            }
            Message::Window {
                max_message,
                max_bytes,
            } => ch.on_window(max_message, max_bytes),
            _ => {}
        }
    }
    while let Some(event) = ch.poll_event() {
        to.delivered.push(event);
    }
}

/// Runs the link for `ms` milliseconds (5 ms one way), dropping the packets whose number
/// `lose` picks; returns every payload sent, in order, for comparison with a twin.
fn run(
    a: &mut End,
    b: &mut End,
    now: &mut Instant,
    ms: u64,
    lose: &dyn Fn(u64) -> bool,
) -> Vec<Vec<u8>> {
    let mut wire: Vec<(Instant, bool, u64, Vec<u8>)> = Vec::new();
    let mut log = Vec::new();
    let end = *now + Duration::from_millis(ms);
    while *now < end {
        for (to_b, from) in [(true, &mut *a), (false, &mut *b)] {
            if from.channel.poll_timeout().is_some_and(|t| t <= *now) {
                from.channel.handle_timeout(*now, &mut from.path);
            }
            for (pn, payload) in transmit(from, *now) {
                log.push(payload.clone());
                if !lose(pn) {
                    wire.push((*now + Duration::from_millis(5), to_b, pn, payload));
                }
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = wire.into_iter().partition(|p| p.0 <= *now);
        wire = later;
        for (_, to_b, pn, payload) in due {
            let to = if to_b { &mut *b } else { &mut *a };
            receive(to, *now, pn as u32, &payload);
        }
        // Between packets, on to the next timer: nothing else happens meanwhile.
        let step = *now + Duration::from_millis(1);
        *now = match wire.is_empty() {
            true => [
                a.channel.poll_timeout(),
                b.channel.poll_timeout(),
                Some(end),
            ]
            .into_iter()
            .flatten()
            .min()
            .map_or(step, |next| next.max(step)),
            false => step,
        };
    }
    log
}

const MODES: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

fn capabilities(bits: u8) -> Capabilities {
    Capabilities::from_bits(bits).expect("a mode")
}

/// Messages of a few sizes, some fragmented, so credit, windows and fragments all move.
fn load(end: &mut End, now: Instant, round: usize) {
    for i in 0..6 {
        let len = [10, 300, 2500, 0, 1100, 4000][(i + round) % 6];
        let data = vec![(i + round) as u8; len];
        let sent = end.channel.send(now, &data, &mut end.pool);
        assert!(
            sent.is_ok(),
            "{:?} round {round}: {sent:?}",
            end.channel.capabilities()
        );
    }
}

/// What an idle channel answers, read through the public methods.
fn answers(end: &End, now: Instant) -> String {
    let c = &end.channel;
    format!(
        "{:?} {} {} {:?} {:?} {:?} {} {:?} {} {:?}",
        c.capabilities(),
        c.is_failed(),
        c.queued_bytes(),
        c.buffered(),
        c.advertised_window(),
        c.largest_received(),
        c.wants_to_send(now, &end.path),
        c.poll_timeout(),
        c.has_event(),
        c.stats(),
    )
}

#[test]
fn a_shed_state_comes_back_equal_and_the_channel_acts_as_if_it_never_idled() {
    let config = Arc::new(ReliabilityConfig::default());
    for bits in MODES {
        let caps = capabilities(bits);
        let start = Instant::now();
        // Twins: the same inputs, one pair sheds its state while idle, the other never does.
        let (mut a, mut b) = (end(caps, &config, start), end(caps, &config, start));
        let (mut ta, mut tb) = (end(caps, &config, start), end(caps, &config, start));
        // A fresh channel's first WINDOW (the receive window exceeds the initial credit) is
        // work: it holds its state until that is sent.
        assert!(a.channel.is_busy(), "mode {bits}");
        // A mode that closes on loss runs lossless (a periodic loss can outlast its budget).
        let lossy = !caps.contains(Capabilities::CLOSE_ON_LOSS);
        let lose = |pn: u64| lossy && pn % 7 == 3;
        let (mut now, mut twin_now) = (start, start);
        let mut shed = 0;
        for round in 0..3 {
            load(&mut a, now, round);
            load(&mut b, now, round + 1);
            load(&mut ta, twin_now, round);
            load(&mut tb, twin_now, round + 1);
            // Long enough for every loss to be resent or given up (10 s), every half message
            // to time out (10 s) and every ACK to leave.
            let log = run(&mut a, &mut b, &mut now, 11_000, &lose);
            let twin_log = run(&mut ta, &mut tb, &mut twin_now, 11_000, &lose);
            assert_eq!(log, twin_log, "mode {bits} round {round}: the same packets");
            assert_eq!(a.delivered, ta.delivered, "mode {bits} round {round}");
            assert_eq!(b.delivered, tb.delivered, "mode {bits} round {round}");
            for end in [&mut a, &mut b] {
                // A channel that carried few packets may have idled already: wake it.
                end.channel.wake();
                let busy = end.channel.busy.as_mut().expect("woken");
                busy.shrink_idle();
                if !busy.quiet() {
                    // Work left (data or a WINDOW waiting for credit or the window): the
                    // channel keeps its state.
                    end.channel.shrink_idle();
                    assert!(end.channel.is_busy(), "mode {bits} round {round}");
                    continue;
                }
                shed += 1;
                let before = format!("{busy:?}");
                let answers_busy = answers(end, now);
                end.channel.shrink_idle();
                assert!(!end.channel.is_busy(), "mode {bits} round {round}: shed");
                assert_eq!(answers(end, now), answers_busy, "mode {bits} round {round}");
                assert_eq!(end.channel.evict_reassembly(1 << 20), 0);
                end.channel.wake();
                let after = format!("{:?}", end.channel.busy.as_ref().expect("woken"));
                assert_eq!(after, before, "mode {bits} round {round}: rebuilt equal");
                end.channel.shrink_idle();
                assert!(!end.channel.is_busy());
            }
        }
        assert!(a.delivered.len() + b.delivered.len() > 10, "mode {bits}");
        assert!(shed >= 1, "mode {bits}: shed {shed} times of 6");
    }
}

#[test]
fn a_channel_with_work_left_keeps_its_state() {
    let config = Arc::new(ReliabilityConfig::default());
    let caps = capabilities(7);
    let now = Instant::now();
    let mut a = end(caps, &config, now);
    a.channel.send(now, b"queued", &mut a.pool).expect("queued");
    a.channel.shrink_idle();
    assert!(a.channel.is_busy(), "a queued message keeps the state");
    assert_eq!(a.channel.queued_bytes(), 6);
    // A fresh channel with nothing to say starts idle. An unchanged credit cap leaves an
    // idle channel idle; a new one wakes it.
    let quiet = Arc::new(ReliabilityConfig {
        receive_window: ReliabilityConfig::default().initial_window,
        ..ReliabilityConfig::default()
    });
    let mut b = end(caps, &quiet, now);
    assert!(!b.channel.is_busy());
    b.channel.set_credit_cap(None);
    assert!(!b.channel.is_busy());
    b.channel.set_credit_cap(Some(3));
    assert!(b.channel.is_busy());
}

#[test]
fn a_channel_that_owes_an_ack_or_a_window_keeps_its_state_and_a_timer() {
    // Credit of 4 messages: consuming one is a quarter of the window, so a WINDOW is owed.
    let config = Arc::new(ReliabilityConfig {
        initial_window: (4, 64 << 10),
        receive_window: (4, 64 << 10),
        ..ReliabilityConfig::default()
    });
    let now = Instant::now();
    for bits in [0, 1, 7] {
        let caps = capabilities(bits);
        let (mut a, mut b) = (end(caps, &config, now), end(caps, &config, now));
        a.channel.send(now, b"one", &mut a.pool).expect("queued");
        let packets = transmit(&mut a, now);
        assert_eq!(packets.len(), 1, "mode {bits}");
        for (pn, payload) in &packets {
            receive(&mut b, now, *pn as u32, payload);
        }
        // b delivered the message (its application took it): an ACK and a WINDOW are owed.
        assert_eq!(b.delivered.len(), 1, "mode {bits}");
        let owed = b.channel.pending();
        assert!(owed.ack && owed.window, "mode {bits}: {owed:?}");
        b.channel.shrink_idle();
        assert!(b.channel.is_busy(), "mode {bits}: shed owing {owed:?}");
        assert!(b.channel.poll_timeout().is_some() || b.channel.wants_to_send(now, &b.path));
        // Sent, the WINDOW is outstanding until acknowledged: still no shedding, and a timer.
        let answer = transmit(&mut b, now);
        assert_eq!(answer.len(), 1, "mode {bits}");
        let owed = b.channel.pending();
        assert!(
            owed.unacked && !owed.window && !owed.ack,
            "mode {bits}: {owed:?}"
        );
        b.channel.shrink_idle();
        assert!(b.channel.is_busy(), "mode {bits}: shed owing {owed:?}");
        assert!(b.channel.poll_timeout().is_some(), "mode {bits}: no timer");
        // Acknowledged, nothing is owed any more and the state goes.
        let later = now + Duration::from_millis(5);
        for (pn, payload) in &answer {
            receive(&mut a, later, *pn as u32, payload);
        }
        let later = later + Duration::from_millis(30);
        a.channel.handle_timeout(later, &mut a.path);
        for (pn, payload) in transmit(&mut a, later) {
            receive(&mut b, later, pn as u32, &payload);
        }
        assert!(
            !b.channel.pending().any(),
            "mode {bits}: {:?}",
            b.channel.pending()
        );
        b.channel.shrink_idle();
        assert!(
            !b.channel.is_busy(),
            "mode {bits}: kept its state with nothing owed"
        );
        assert!(
            !b.channel.pending().any(),
            "mode {bits}: the shed state owes something"
        );
    }
}
