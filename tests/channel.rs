//! Channel establishment (PROTOCOL.md §6) and the unreliable mode, in the deterministic
//! simulator across seeds (`WEFT_SEEDS=N` for more), plus the sans-IO rules that need exact
//! packets.

#[path = "channel/ack_frequency.rs"]
mod ack_frequency;
#[path = "channel/crossing.rs"]
mod crossing;
#[path = "channel/delivery_credit.rs"]
mod delivery_credit;
#[path = "channel/fair_admission.rs"]
mod fair_admission;
#[path = "channel/flood.rs"]
mod flood;
#[path = "channel/hostile.rs"]
mod hostile;
#[path = "channel/hostile_data.rs"]
mod hostile_data;
#[path = "channel/hot_path.rs"]
mod hot_path;
#[path = "channel/key_limits.rs"]
mod key_limits;
#[path = "channel/liveness.rs"]
mod liveness;
#[path = "channel/lost_close.rs"]
mod lost_close;
#[path = "channel/memory.rs"]
mod memory;
#[path = "channel/metrics.rs"]
mod metrics;
#[path = "channel/peer_info.rs"]
mod peer_info;
#[path = "channel/peer_snapshots.rs"]
mod peer_snapshots;
#[path = "channel/plaintext_peers.rs"]
mod plaintext_peers;
#[path = "channel/rekey_phases.rs"]
mod rekey_phases;
#[path = "channel/replay_table.rs"]
mod replay_table;
#[path = "channel/session_table.rs"]
mod session_table;
mod sim;
#[path = "channel/sockets.rs"]
mod sockets;

use sim::{LinkConfig, Network, NodeId, addr, for_each_seed};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig, Event, OpenError};
use weft::session::Identity;
use weft::wire::{
    Capabilities, ChannelId, CloseReason, Flags, Header, Message, Packet, PacketWriter, PeerId,
};

fn udp_mode() -> Capabilities {
    Capabilities::from_bits(0).unwrap()
}

/// Kind 0: these scenarios test channel establishment without sessions (PROTOCOL.md §5 allows
/// plaintext only when configured).
fn plaintext() -> EndpointConfig {
    EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    }
}

fn echo_config() -> EndpointConfig {
    EndpointConfig {
        echo: true,
        allow_plaintext: true,
        ..EndpointConfig::default()
    }
}

fn events(net: &mut Network<Endpoint>, node: NodeId) -> Vec<Event> {
    std::iter::from_fn(|| net.node_mut(node).poll_event()).collect()
}

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss,
        duplicate: 0.05,
        reorder: 0.1,
        ..LinkConfig::default()
    }
}

/// Opens `count` channels from `a` to `b` and drives until both sides saw every one open.
fn open_many(
    net: &mut Network<Endpoint>,
    a: NodeId,
    b: NodeId,
    count: usize,
) -> Vec<ChannelHandle> {
    let to = net.addr(b);
    let peer = net.node(b).local_peer_id();
    let now = net.now();
    (0..count)
        .map(|_| {
            net.node_mut(a)
                .open_channel(now, to, Some(peer), None, udp_mode())
                .expect("open")
        })
        .collect()
}

#[test]
fn channels_open_on_both_sides_under_loss_reordering_and_duplication() {
    let (mut opened_total, mut tried_total) = (0, 0);
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), plaintext());
        net.set_default_link(lossy(0.1));
        let handles = open_many(&mut net, a, b, 8);
        net.drive_for(Duration::from_secs(4));

        let (pa, pb) = (net.node(a).local_peer_id(), net.node(b).local_peer_id());
        let mut opened_a = std::collections::HashMap::new();
        let mut failed = 0;
        for event in events(&mut net, a) {
            match event {
                Event::ChannelOpened {
                    channel,
                    peer,
                    id,
                    initiator,
                    ..
                } => {
                    assert!(initiator);
                    assert_eq!(peer, pb);
                    assert!(handles.contains(&channel));
                    // PROTOCOL.md §6: bit 15 of c2 says which peer id is greater.
                    assert_eq!(id.c2() & 0x8000 != 0, pb > pa, "seed {seed}: c2 bit 15");
                    assert_ne!(id.c1(), 0);
                    assert!(opened_a.insert(channel, id).is_none(), "opened twice");
                }
                Event::OpenFailed { .. } => failed += 1,
                // FINALIZE and the responder's confirmation were lost three times.
                Event::ChannelClosed {
                    channel,
                    reason: CloseReason::Timeout,
                    ..
                } => {
                    assert!(opened_a.remove(&channel).is_some());
                    failed += 1;
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
        let opened_a: BTreeSet<ChannelId> = opened_a.into_values().collect();
        // Parallel opens share their packets, so they succeed or fail together; 3 tries at 10 %
        // loss each way fail together with probability ~0.7 %.
        assert_eq!(opened_a.len() + failed, 8);
        opened_total += opened_a.len();
        tried_total += 8;
        let opened_b: BTreeSet<ChannelId> = events(&mut net, b)
            .into_iter()
            .filter_map(|e| match e {
                Event::ChannelOpened {
                    id,
                    initiator: false,
                    peer,
                    ..
                } => {
                    assert_eq!(peer, pa);
                    Some(id)
                }
                _ => None,
            })
            .collect();
        // Every channel the initiator considers open is open at the responder too: the
        // initiator retries FINALIZE until the responder's first packet confirms it.
        assert!(
            opened_a.is_subset(&opened_b),
            "seed {seed}: {opened_a:?} vs {opened_b:?}"
        );
        assert_eq!(net.node(a).channel_count(), opened_a.len());
    });
    assert!(
        opened_total * 10 >= tried_total * 9,
        "{opened_total} of {tried_total} opens succeeded"
    );
}

#[test]
fn parallel_opens_leave_in_one_packet() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), plaintext());
        net.record_trace();
        open_many(&mut net, a, b, 5);
        net.drive_for(Duration::from_secs(1));
        // The establishment is over by 45 ms (10 ms links); what follows is the channels' own
        // ACK and WINDOW traffic (PROTOCOL.md §7.1, §7.4).
        let handshake = |t: &&sim::TraceEvent| t.at < Duration::from_millis(45);
        let from_a: Vec<_> = net
            .trace()
            .iter()
            .filter(|t| t.from == addr(1))
            .filter(handshake)
            .collect();
        let from_b: Vec<_> = net
            .trace()
            .iter()
            .filter(|t| t.from == addr(2))
            .filter(handshake)
            .collect();
        // One packet of five CHANNEL_NEWs, one of five ACKNOWLEDGEs, one of five FINALIZEs, then
        // five confirmations, one per channel.
        assert_eq!(from_a.len(), 2, "{from_a:?}");
        // B: ACKNOWLEDGEs, then per channel one packet: the confirmation the channel owes
        // rides in the packet that carries its own credit (WINDOW), `owed.rs`.
        assert_eq!(from_b.len(), 1 + 5, "{from_b:?}");
        assert_eq!(net.node(b).channel_count(), 5);
    });
}

#[test]
fn echo_sends_data_back_under_its_own_message_numbers() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let client = net.add_endpoint(addr(1), plaintext());
        let server = net.add_endpoint(addr(2), echo_config());
        net.set_default_link(lossy(0.0));
        let channel = open_many(&mut net, client, server, 1)[0];
        let now = net.now();
        // Sent before the channel is open: early data behind CHANNEL_COOKIE.
        for i in 0..3u8 {
            net.node_mut(client).send(now, channel, &[i; 10]).unwrap();
        }
        net.drive_for(Duration::from_secs(1));
        let now = net.now();
        for i in 3..50u8 {
            net.node_mut(client).send(now, channel, &[i; 100]).unwrap();
        }
        net.drive_for(Duration::from_secs(1));
        let mut got = Vec::new();
        for event in events(&mut net, client) {
            if let Event::Message {
                channel: c,
                message_number,
                data,
                ..
            } = event
            {
                assert_eq!(c, channel);
                got.push((message_number, data[0]));
            }
        }
        // Duplicated packets never deliver a message twice; without loss all 50 come back.
        let numbers: BTreeSet<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            numbers.len(),
            got.len(),
            "seed {seed}: a duplicate was delivered"
        );
        assert_eq!(numbers, (0..50).collect(), "seed {seed}");
        let payloads: BTreeSet<u8> = got.iter().map(|g| g.1).collect();
        assert_eq!(payloads, (0..50).collect());
    });
}

#[test]
fn the_unreliable_mode_delivers_each_message_at_most_once_under_loss() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), plaintext());
        let channel = open_many(&mut net, a, b, 1)[0];
        net.drive_for(Duration::from_secs(1));
        let _ = events(&mut net, b);
        net.set_default_link(LinkConfig {
            duplicate: 0.3,
            ..lossy(0.3)
        });
        for i in 0..200u32 {
            let now = net.now();
            net.node_mut(a)
                .send(now, channel, &i.to_be_bytes())
                .unwrap();
            net.drive_for(Duration::from_millis(2));
        }
        net.drive_for(Duration::from_secs(10));
        let mut seen = BTreeSet::new();
        for event in events(&mut net, b) {
            if let Event::Message {
                message_number,
                data,
                ..
            } = event
            {
                assert_eq!(
                    u64::from(u32::from_be_bytes(data[..4].try_into().unwrap())),
                    message_number
                );
                assert!(
                    seen.insert(message_number),
                    "seed {seed}: {message_number} twice"
                );
            }
        }
        let sent = net.link_stats(a, b);
        // Congestion control bundles queued messages into few packets, so one lost packet
        // takes several messages with it: only "some but not all" is certain.
        let given_up = net
            .node(a)
            .channel_stats(channel)
            .unwrap()
            .messages_given_up;
        assert!(
            seen.len() < 200 && seen.len() > 20 && seen.len() as u64 + given_up >= 200,
            "seed {seed}: {} of 200 arrived, {given_up} given up",
            seen.len()
        );
        assert!(sent.duplicated > 0);
    });
}

#[test]
fn crossing_opens_get_distinct_ids() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), plaintext());
        let now = net.now();
        let (pa, pb) = (net.node(a).local_peer_id(), net.node(b).local_peer_id());
        // Both pick the same c1 at the same moment.
        net.node_mut(a)
            .open_channel(now, addr(2), Some(pb), Some(0x0777), udp_mode())
            .unwrap();
        net.node_mut(b)
            .open_channel(now, addr(1), Some(pa), Some(0x0777), udp_mode())
            .unwrap();
        net.drive_for(Duration::from_secs(2));
        let ids = |events: Vec<Event>| -> BTreeSet<(bool, ChannelId)> {
            events
                .into_iter()
                .filter_map(|e| match e {
                    Event::ChannelOpened { id, initiator, .. } => Some((initiator, id)),
                    _ => None,
                })
                .collect()
        };
        let at_a = ids(events(&mut net, a));
        let at_b = ids(events(&mut net, b));
        assert_eq!(at_a.len(), 2, "seed {seed}");
        let a_opened: Vec<_> = at_a.iter().filter(|x| x.0).map(|x| x.1).collect();
        let b_opened: Vec<_> = at_b.iter().filter(|x| x.0).map(|x| x.1).collect();
        assert_ne!(a_opened, b_opened, "the two channels share an id");
        assert_eq!(net.node(a).channel_count(), 2);
        assert_eq!(net.node(b).channel_count(), 2);
    });
}

#[test]
fn a_half_open_handshake_gives_up_after_three_tries() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), plaintext());
        net.set_link(a, b, LinkConfig::black_hole());
        net.record_trace();
        let channel = open_many(&mut net, a, b, 1)[0];
        net.drive_for(Duration::from_secs(10));
        let tries = net.trace().iter().filter(|t| t.from == addr(1)).count();
        assert_eq!(tries, 3, "CHANNEL_NEW is sent 3 times");
        let failed: Vec<_> = events(&mut net, a)
            .into_iter()
            .filter(|e| matches!(e, Event::OpenFailed { channel: c, reason: CloseReason::Timeout } if *c == channel))
            .collect();
        assert_eq!(failed.len(), 1);
        let sent_at: Vec<Duration> = net
            .trace()
            .iter()
            .filter(|t| t.from == addr(1))
            .map(|t| t.at)
            .collect();
        // Backoff: the gaps between tries grow.
        assert!(
            sent_at[2] - sent_at[1] > sent_at[1] - sent_at[0],
            "{sent_at:?}"
        );
        assert_eq!(net.node(a).channel_count(), 0);
        assert_eq!(
            net.node(a).peer_count(),
            0,
            "a peer that never answered is forgotten"
        );
    });
}

#[test]
fn both_api_styles_and_a_conflicting_c1() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), plaintext());
        let now = net.now();
        let pb = net.node(b).local_peer_id();
        net.node_mut(a)
            .open_channel(now, addr(2), Some(pb), Some(42), udp_mode())
            .unwrap();
        let conflict = net
            .node_mut(a)
            .open_channel(now, addr(2), Some(pb), Some(42), udp_mode());
        assert_eq!(conflict, Err(OpenError::ChannelIdInUse(42)));
        assert!(conflict.unwrap_err().to_string().contains("already in use"));
        assert_eq!(
            net.node_mut(a)
                .open_channel(now, addr(2), Some(pb), Some(0), udp_mode()),
            Err(OpenError::ZeroChannelId)
        );
        // The engine picks free ids itself, as many as asked.
        for _ in 0..20 {
            net.node_mut(a)
                .open_channel(now, addr(2), Some(pb), None, udp_mode())
                .unwrap();
        }
        net.drive_for(Duration::from_secs(2));
        assert_eq!(net.node(b).channel_count(), 21);
        // All eight modes of PROTOCOL.md §7 are accepted.
        for bits in 0..8 {
            let mode = Capabilities::from_bits(bits).unwrap();
            assert!(
                net.node_mut(a)
                    .open_channel(now, addr(2), Some(pb), None, mode)
                    .is_ok()
            );
        }
    });
}

#[test]
fn close_tells_the_peer_and_a_replayed_finalize_cannot_reopen() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), plaintext());
        // Keep every datagram a sends, to replay one later.
        let captured: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let sink = captured.clone();
        net.on_deliver(move |from, _, bytes| {
            if *from == addr(1) {
                sink.borrow_mut().push(bytes.clone());
            }
            true
        });
        let channel = open_many(&mut net, a, b, 1)[0];
        net.drive_for(Duration::from_secs(1));
        assert_eq!(net.node(b).channel_count(), 1);
        let now = net.now();
        net.node_mut(a)
            .close_channel(now, channel, CloseReason::Normal);
        net.drive_for(Duration::from_secs(1));
        let closed: Vec<_> = events(&mut net, b)
            .into_iter()
            .filter_map(|e| match e {
                Event::ChannelClosed {
                    reason, by_peer, ..
                } => Some((reason, by_peer)),
                _ => None,
            })
            .collect();
        assert_eq!(closed, vec![(CloseReason::Normal, true)]);
        assert_eq!(net.node(b).channel_count(), 0);

        let finalize = captured
            .borrow()
            .iter()
            .find(|bytes| {
                Packet::parse(bytes)
                    .map(|p| {
                        p.messages()
                            .any(|m| matches!(m, Message::ChannelFinalize { .. }))
                    })
                    .unwrap_or(false)
            })
            .cloned()
            .expect("a FINALIZE was sent");
        net.inject(addr(1), b, &finalize);
        assert_eq!(
            net.node(b).channel_count(),
            0,
            "the replay reopened a closed channel"
        );
        assert_eq!(
            net.node(b).stats().get(
                "weft_packets_dropped_total",
                Some(("reason", "reused_channel_id"))
            ),
            1
        );
    });
}

#[test]
fn a_silent_peer_loses_its_channels_after_the_reset_timeout() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), plaintext());
        open_many(&mut net, a, b, 2);
        net.drive_for(Duration::from_secs(1));
        assert_eq!(net.node(b).channel_count(), 2);
        net.drive_for(Duration::from_secs(58));
        assert_eq!(net.node(b).channel_count(), 2, "still within 60 s");
        net.drive_for(Duration::from_secs(2));
        assert_eq!(net.node(b).channel_count(), 0);
        let idle = events(&mut net, b)
            .into_iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::ChannelClosed {
                        reason: CloseReason::Idle,
                        by_peer: false,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(idle, 2);
        // Kind 0 forgets the peer once no cookie2 for it can still be valid.
        net.drive_for(Duration::from_secs(300));
        assert_eq!(net.node(b).peer_count(), 0);
    });
}

#[test]
fn a_kind_zero_peer_cannot_move_to_a_new_address() {
    for_each_seed(|seed| {
        let mut net = Network::new(seed);
        let a = net.add_endpoint(addr(1), plaintext());
        let b = net.add_endpoint(addr(2), echo_config());
        let channel = open_many(&mut net, a, b, 1)[0];
        net.drive_for(Duration::from_secs(1));
        // NAT rebinding: without an authenticated session the node cannot validate the new path.
        net.rewrite_source(a, addr(9));
        let now = net.now();
        net.node_mut(a).send(now, channel, b"hello").unwrap();
        net.drive_for(Duration::from_secs(1));
        assert!(
            net.node(b).stats().get(
                "weft_packets_dropped_total",
                Some(("reason", "address_mismatch"))
            ) >= 1,
            "the message from the new address was not refused"
        );
    });
}

// ------------------------------------------------------------------ exact packets, no simulator

fn lone_node(config: EndpointConfig) -> (Endpoint, Instant) {
    let now = Instant::now();
    let identity = Identity::from_secret_bytes([1; 32], [2; 32]);
    (Endpoint::new(config, identity, [3; 32], now), now)
}

fn write(header: Header, messages: &[Message<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let mut writer = PacketWriter::new(&mut buf, &header).unwrap();
    for message in messages {
        writer.push(message).unwrap();
    }
    let len = writer.finish();
    buf.truncate(len);
    buf
}

fn plain(sender: PeerId, recipient: PeerId) -> Header {
    Header {
        flags: Flags::default(),
        sender,
        recipient,
        channel: ChannelId::DEFAULT,
        sequence: None,
    }
}

fn answers(node: &mut Endpoint) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1500];
    while let Some(t) = node.poll_transmit(&mut buf) {
        out.push(buf[..t.len].to_vec());
    }
    out
}

#[test]
fn a_tcp_mode_finalize_opens_the_channel_and_the_responder_confirms_it_on_the_channel() {
    let (mut node, now) = lone_node(plaintext());
    let me = PeerId([0x10; 16]);
    let from: SocketAddr = "10.9.9.9:1000".parse().unwrap();
    let local = node.local_peer_id();
    node.handle(
        now,
        from,
        &mut write(
            plain(me, local),
            &[Message::ChannelNew {
                c1: 5,
                cookie1: &[1; 16],
            }],
        ),
    );
    let ack = answers(&mut node).pop().expect("ACKNOWLEDGE");
    let ack = Packet::parse(&ack).unwrap();
    let Some(Message::ChannelAcknowledge {
        channel, cookie2, ..
    }) = ack.messages().next()
    else {
        panic!("not an ACKNOWLEDGE");
    };
    let tcp = Capabilities::from_bits(7).unwrap();
    let finalize = write(
        plain(me, local),
        &[Message::ChannelFinalize {
            channel,
            cookie2,
            capabilities: tcp,
        }],
    );
    node.handle(now, from, &mut finalize.to_vec());
    let reply = answers(&mut node).pop().expect("confirmation");
    let reply = Packet::parse(&reply).unwrap();
    assert_eq!(reply.header.channel, channel);
    assert!(matches!(
        reply.messages().next(),
        Some(Message::Window { .. })
    ));
    assert_eq!(node.channel_count(), 1);
    assert_eq!(node.peer_count(), 1);
}

#[test]
fn every_answer_to_an_unvalidated_address_is_at_most_three_times_its_request() {
    let (mut node, now) = lone_node(plaintext());
    let local = node.local_peer_id();
    let from: SocketAddr = "10.9.9.9:1000".parse().unwrap();
    // The densest request: as many CHANNEL_NEWs as fit in one packet.
    let cookie = [7u8; 16];
    let news: Vec<Message<'_>> = (1..=60u16)
        .map(|c1| Message::ChannelNew {
            c1,
            cookie1: &cookie,
        })
        .collect();
    let request = write(plain(PeerId([0x11; 16]), local), &news);
    node.handle(now, from, &mut request.to_vec());
    let total: usize = answers(&mut node).iter().map(Vec::len).sum();
    assert!(total > 0);
    assert!(
        total <= 3 * request.len(),
        "{total} bytes for a {}-byte request",
        request.len()
    );
    // PING answered by a PONG of the same size.
    let ping = write(
        plain(PeerId([0x12; 16]), PeerId::ZERO),
        &[Message::Ping { token: &[1; 8] }],
    );
    node.handle(now, from, &mut ping.to_vec());
    let pong = answers(&mut node);
    assert_eq!(pong.len(), 1);
    assert!(pong[0].len() <= ping.len());
}

#[test]
fn every_rejection_rule_is_counted_under_its_own_reason() {
    let (mut node, now) = lone_node(plaintext());
    let local = node.local_peer_id();
    let other = PeerId([0x22; 16]);
    let from: SocketAddr = "10.9.9.9:1000".parse().unwrap();
    let ping = |sender: PeerId, recipient: PeerId| {
        write(
            plain(sender, recipient),
            &[Message::Ping { token: &[1; 8] }],
        )
    };
    let good = ping(other, local);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut bad = good.clone();
    bad[0] = 0x20; // version 2
    cases.push(("unknown_version", bad));
    let mut bad = good.clone();
    bad[0] |= 0x8;
    cases.push(("reserved_flag", bad));
    let mut bad = good.clone();
    bad[0] |= 0x1; // ENCRYPTED without SEQUENCED
    cases.push(("encrypted_not_sequenced", bad));
    cases.push(("truncated", good[..20].to_vec()));
    cases.push(("no_message", good[..37].to_vec()));
    let mut bad = good.clone();
    bad.push(0);
    bad.push(1);
    cases.push(("nonzero_padding", bad));
    let mut bad = good.clone();
    bad[37] = 0x3f;
    cases.push(("unknown_message_type", bad));
    cases.push(("wrong_recipient", ping(other, PeerId([0x33; 16]))));
    cases.push(("own_peer_id", ping(local, local)));
    let mut zero_sender = ping(other, local);
    zero_sender[1..17].fill(0);
    cases.push(("zero_sender", zero_sender));
    let on_channel = Header {
        flags: Flags::SEQUENCED,
        channel: ChannelId::new(1, 0x8001),
        sequence: Some(1),
        ..plain(other, local)
    };
    cases.push((
        "unknown_channel",
        write(
            on_channel,
            &[Message::Data {
                message_number: 0,
                payload: b"x",
            }],
        ),
    ));
    let mut unsequenced = write(
        on_channel,
        &[Message::Data {
            message_number: 0,
            payload: b"x",
        }],
    );
    unsequenced[0] &= !0x2;
    unsequenced.drain(37..41);
    cases.push(("unsequenced_channel", unsequenced));
    let mut data_on_default = good.clone();
    data_on_default.truncate(37);
    data_on_default.extend_from_slice(&[0x10, 2, 0, b'x']);
    cases.push(("wrong_channel", data_on_default));

    let mut reasons = BTreeSet::new();
    for (reason, packet) in &cases {
        let before = node
            .stats()
            .get("weft_packets_dropped_total", Some(("reason", reason)));
        node.handle(now, from, &mut packet.to_vec());
        let after = node
            .stats()
            .get("weft_packets_dropped_total", Some(("reason", reason)));
        assert_eq!(
            after,
            before + 1,
            "{reason}: not counted under its own reason"
        );
        assert!(
            answers(&mut node).is_empty(),
            "{reason}: a dropped packet was answered"
        );
        reasons.insert(*reason);
    }
    assert_eq!(reasons.len(), cases.len(), "two cases share a reason");
    // The good packet is answered and counts as no drop.
    node.handle(now, from, &mut good.to_vec());
    assert_eq!(answers(&mut node).len(), 1);

    // A node that refuses plaintext drops kind-0 packets silently.
    let (mut strict, now) = lone_node(EndpointConfig {
        allow_plaintext: false,
        ..EndpointConfig::default()
    });
    let local = strict.local_peer_id();
    strict.handle(now, from, &mut ping(other, local));
    assert!(answers(&mut strict).is_empty());
    assert_eq!(
        strict.stats().get(
            "weft_packets_dropped_total",
            Some(("reason", "plaintext_refused"))
        ),
        1
    );
}
