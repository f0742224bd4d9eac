//! Attacks on the services a node runs on its worker (docs/SECURITY.md, "Attacks on the overlay
//! and the consensus service"): frames and requests that are cheap to send and cost the worker
//! far more than their bytes. Each runs against a real `weft node` over a session and an
//! unreliable channel of the attacker's, as in the rest of the suite, and asserts what the node
//! does with them (read from its counters and its answers), never how long it took; the
//! worker thread's CPU time is printed for docs/SECURITY.md.

use super::{HEAP_BUDGET, Node, STEP, loopback, scrape, send_paced, under_attack};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use weft::bench::load::attacker::{AttackError, Attacker};
use weft::consensus::ids::NodeIdRequest;
use weft::consensus::schema;
use weft::overlay::rpc::compression::{self, Method};
use weft::overlay::rpc::envelope::Envelope;
use weft::overlay::rpc::{Body, ConnectionOpt, Frame, FrameLimits, Opcode, Request, Value};
use weft::session::{Identity, PeerRecord};
use weft::wire::{Ack, AckRanges, Capabilities, ChannelId, Message};

/// The first byte of a message for the overlay and for the consensus service (`ServiceTag`).
pub(super) const OVERLAY: u8 = 1;
const CONSENSUS: u8 = 2;

pub(super) const DROPPED: &str = "weft_overlay_dropped_total";

/// The overlay attacker's Ed25519 and X25519 secrets: it signs records of its own.
const ATTACKER_KEYS: ([u8; 32], [u8; 32]) = ([0x41; 32], [0x42; 32]);

/// A 50-byte bz2 stream of one 900 KB block (`tests/overlay/bomb.bz2`).
const BZ2_BLOCK_BOMB: &[u8] = include_bytes!("../overlay/bomb.bz2");

/// How long a barrier (a request whose answer shows the worker got through what came before)
/// may take on a loaded machine.
const BARRIER: Duration = Duration::from_secs(20);

/// The attacker's channel, the next message number on it and the credit the node gave.
pub(super) struct Sender {
    pub(super) attacker: Attacker,
    pub(super) channel: ChannelId,
    pub(super) next: u64,
    /// Message numbers below this may be sent (the node's last WINDOW; 64 at the open).
    credit: u64,
    /// DATA payloads that arrived while waiting for credit.
    arrived: VecDeque<Vec<u8>>,
    /// Overlay PINGs sent (their request ids).
    pings: u32,
}

impl Sender {
    pub(super) fn open(node: &Node, seed: u64) -> Result<Sender, AttackError> {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        Sender::open_as(node, Identity::generate(&mut rng), seed)
    }

    pub(super) fn open_as(
        node: &Node,
        identity: Identity,
        seed: u64,
    ) -> Result<Sender, AttackError> {
        let mut attacker = Attacker::with_identity(loopback(0, 1, 1), node.udp, identity, seed)?;
        attacker.handshake_xx(STEP)?;
        let channel = attacker.open_channel(3, Capabilities::NONE, STEP)?;
        // Credit for all the node's answers (a sender that got none sends 64 messages).
        attacker.send_sealed(
            channel,
            &[Message::Window {
                max_message: 1 << 40,
                max_bytes: 1 << 50,
            }],
        )?;
        Ok(Sender {
            attacker,
            channel,
            next: 0,
            credit: 64,
            arrived: VecDeque::new(),
            pings: 0,
        })
    }

    /// Reads one packet (until `deadline`): its WINDOW raises the credit, its DATA waits in
    /// `arrived`; false when none came.
    fn receive(&mut self, deadline: Instant) -> Result<bool, AttackError> {
        let Some(received) = self.attacker.recv(deadline)? else {
            return Ok(false);
        };
        for message in received.messages() {
            match message {
                Message::Window { max_message, .. } => self.credit = self.credit.max(max_message),
                Message::Data { payload, .. } => self.arrived.push_back(payload.to_vec()),
                _ => {}
            }
        }
        // Every packet acknowledged, and all before it: the node's congestion window stays
        // open for its answers and its WINDOWs, as for an honest peer.
        if let Some(sequence) = received.header.sequence {
            let ack = Ack {
                largest: u64::from(sequence),
                ack_delay_us: 0,
                first_range: u64::from(sequence),
                ranges: AckRanges::EMPTY,
            };
            self.attacker
                .send_sealed(received.header.channel, &[Message::Ack(ack)])?;
        }
        Ok(true)
    }

    /// Sends `payloads`, one DATA message each, as many to a datagram as fit, within the
    /// credit the node gives (waiting for its WINDOWs: a message past it would be dropped).
    pub(super) fn send(&mut self, payloads: &[Vec<u8>]) -> Result<(), AttackError> {
        for group in fit(payloads, 1100) {
            let deadline = Instant::now() + BARRIER;
            while self.next + group.len() as u64 > self.credit {
                if !self.receive(deadline)? {
                    return Err(AttackError::Timeout("WINDOW"));
                }
            }
            let messages: Vec<Message<'_>> = group
                .iter()
                .map(|payload| {
                    let message_number = self.next;
                    self.next += 1;
                    Message::Data {
                        message_number,
                        payload,
                    }
                })
                .collect();
            let datagram = self.attacker.seal(self.channel, &messages)?;
            send_paced(&self.attacker, [datagram]);
        }
        Ok(())
    }

    /// Counts the DATA payloads for `tag` that arrive until `deadline` or until `done` says
    /// so.
    pub(super) fn collect(
        &mut self,
        tag: u8,
        deadline: Instant,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Result<usize, AttackError> {
        let mut seen = 0;
        loop {
            while let Some(payload) = self.arrived.pop_front() {
                if payload.first() == Some(&tag) {
                    seen += 1;
                    if done(&payload[1..]) {
                        return Ok(seen);
                    }
                }
            }
            if !self.receive(deadline)? {
                return Ok(seen);
            }
        }
    }
}

/// `payloads` in groups of at most `budget` bytes (one message each, a few bytes of header).
fn fit(payloads: &[Vec<u8>], budget: usize) -> Vec<&[Vec<u8>]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, payload) in payloads.iter().enumerate() {
        let cost = payload.len() + 16;
        if i > start && bytes + cost > budget {
            groups.push(&payloads[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += cost;
    }
    if start < payloads.len() {
        groups.push(&payloads[start..]);
    }
    groups
}

pub(super) fn tagged(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(bytes);
    out
}

/// The sum of `name{...label...}` over the node's metrics.
pub(super) fn counter(node: &Node, name: &str, label: &str) -> u64 {
    let text = scrape(node.metrics, Duration::from_secs(10)).expect("scrape");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// [`counter`] once it is at least `min`, or what it is after 10 s. The node publishes its
/// counters about once a second, and the overlay hands its own over when it is next busy, so
/// each look is preceded by an overlay PING.
pub(super) fn counted(node: &Node, sender: &mut Sender, name: &str, label: &str, min: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = overlay_barrier(sender);
        let value = counter(node, name, label);
        if value >= min || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The CPU time the node's worker thread has used, in clock ticks (printed, never asserted).
fn worker_ticks(node: &Node) -> u64 {
    let pid = node.child.id();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "weft-worker")
        })
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Sends an overlay PING and waits for its ACK: the worker has handled what came before.
pub(super) fn overlay_barrier(sender: &mut Sender) -> Result<(), AttackError> {
    sender.pings += 1;
    let id = sender.pings;
    let ping = Request {
        op: Opcode::Ping,
        id,
        body: Body::Ping,
    };
    sender.send(&[tagged(OVERLAY, &ping.encode())])?;
    let mut answered = false;
    sender.collect(OVERLAY, Instant::now() + BARRIER, |frame| {
        answered = matches!(
            Frame::parse(frame, &FrameLimits::default()),
            Ok(Frame::Reply(reply)) if reply.id == id && reply.ack
        );
        answered
    })?;
    answered
        .then_some(())
        .ok_or(AttackError::Timeout("overlay PING answer"))
}

/// Overlay frames that cost the worker far more than their bytes: 200 bz2 streams of one
/// 900 KB block (50 bytes each; 2 ms of decoding each before the fix), 200 zstd frames of a
/// few dozen bytes that inflate to 60 KiB, and 200 SHOUTs with forged envelopes (a signature
/// check each, for an op the node does not serve). The node must refuse the first two before
/// decoding past 64 times their bytes, and NACK the SHOUTs without checking a signature.
#[test]
fn overlay_frames_that_cost_more_than_their_bytes_are_refused_before_the_work() {
    let mut node = Node::start("overlay-work", &[]);
    under_attack("overlay-work", &mut node, HEAP_BUDGET, |node| {
        let identity = Identity::from_secret_bytes(ATTACKER_KEYS.0, ATTACKER_KEYS.1);
        let mut sender = Sender::open_as(node, identity, 0x0be1)?;
        overlay_barrier(&mut sender)?;

        let mut bz2 = vec![0, Method::Bz2.code()];
        bz2.extend_from_slice(&(BZ2_BLOCK_BOMB.len() as u32).to_be_bytes());
        bz2.extend_from_slice(BZ2_BLOCK_BOMB);
        let ticks = worker_ticks(node);
        sender.send(&vec![tagged(OVERLAY, &bz2); 200])?;
        overlay_barrier(&mut sender)?;
        let unsupported = counted(
            node,
            &mut sender,
            DROPPED,
            "reason=\"compression_unsupported\"",
            200,
        );
        let bombs = counter(node, DROPPED, "reason=\"decompression_bomb\"");
        println!(
            "overlay-work: 200 bz2 block bombs: {unsupported} refused by method, {bombs} decoded \
             to the bound; worker CPU {} ticks",
            worker_ticks(node) - ticks
        );
        assert!(unsupported > 0, "no bz2 frame was refused by its method");
        assert_eq!(bombs, 0, "a default node decoded bz2 blocks");

        let mut ping = Request {
            op: Opcode::Ping,
            id: 3,
            body: Body::Ping,
        }
        .encode();
        ping.extend(std::iter::repeat_n(0xc0, 60 * 1024));
        let zstd = compression::wrap(Method::Zstd, &ping);
        let (ticks, before) = (worker_ticks(node), bombs);
        sender.send(&vec![tagged(OVERLAY, &zstd); 200])?;
        overlay_barrier(&mut sender)?;
        let bombs = counted(
            node,
            &mut sender,
            DROPPED,
            "reason=\"decompression_bomb\"",
            before + 200,
        ) - before;
        println!(
            "overlay-work: 200 zstd frames of {} B inflating to {} B: {bombs} refused as bombs; \
             worker CPU {} ticks",
            zstd.len(),
            ping.len(),
            worker_ticks(node) - ticks
        );
        assert!(bombs > 0, "no zstd frame was refused past the ratio");

        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let mut forged = Envelope::sign(&key, 5, Opcode::Shout, Value::Str("a".into()));
        forged.body = Value::Str("b".into());
        let shouts: Vec<Vec<u8>> = (0..200u32)
            .map(|id| {
                let shout = Request {
                    op: Opcode::Shout,
                    id: 10_000 + id,
                    body: Body::Envelope(forged.clone()),
                };
                tagged(OVERLAY, &shout.encode())
            })
            .collect();
        let ticks = worker_ticks(node);
        sender.send(&shouts)?;
        // Counted by the node (its NACKs may be slow to arrive on a loaded machine).
        let nacked = counted(
            node,
            &mut sender,
            "weft_overlay_requests_nacked_total",
            "op=\"shout\"",
            200,
        );
        let forged = counter(node, DROPPED, "reason=\"envelope_forged\"");
        println!(
            "overlay-work: 200 forged SHOUTs: {nacked} NACKed, {forged} signatures checked; \
             worker CPU {} ticks",
            worker_ticks(node) - ticks
        );
        assert_eq!(
            forged, 0,
            "signatures checked for an op the node does not serve"
        );
        assert!(nacked > 0, "no SHOUT was answered");

        // A new record of the attacker's own in every frame (another port each): each differs
        // from the one held, so each cost a signature check and a journal entry (a disk write)
        // before the bound.
        let identity = Identity::from_secret_bytes(ATTACKER_KEYS.0, ATTACKER_KEYS.1);
        let records: Vec<Vec<u8>> = (0..200u16)
            .map(|i| PeerRecord::sign(&identity, &[([127, 0, 1, 1], 7000 + i).into()]).to_bytes())
            .collect();
        let options: Vec<Vec<u8>> = (0..200u32)
            .map(|i| {
                let option = Request {
                    op: Opcode::SetConnectionOpt,
                    id: 20_000 + i,
                    body: Body::SetConnectionOpt(ConnectionOpt::PeerRecord(
                        records[i as usize].clone(),
                    )),
                };
                tagged(OVERLAY, &option.encode())
            })
            .collect();
        let ticks = worker_ticks(node);
        sender.send(&options)?;
        let (mut acked, mut answered) = (0, 0);
        sender.collect(OVERLAY, Instant::now() + Duration::from_secs(3), |frame| {
            if let Ok(Frame::Reply(reply)) = Frame::parse(frame, &FrameLimits::default())
                && reply.op == Opcode::SetConnectionOpt
                && reply.id >= 20_000
            {
                answered += 1;
                acked += usize::from(reply.ack);
            }
            answered == 200
        })?;
        let limited = counted(node, &mut sender, DROPPED, "reason=\"checks_limit\"", 1);
        println!(
            "overlay-work: 200 new records of its own: {acked} taken (a signature check each), \
             {limited} refused past the peer's checks; worker CPU {} ticks",
            worker_ticks(node) - ticks
        );
        assert!(acked <= 8, "{acked} records checked for one peer");
        assert!(limited > 0, "no record was refused past the peer's checks");
        Ok(())
    });
}

/// Node-id requests are not signed and a datagram holds a dozen, but a member signs what it
/// answers: a repeat of a logged request gets a signed reply, one over a quota a signed NACK.
/// 2,000 repeats from one address must not buy 2,000 signatures: past its source's rate a
/// request is dropped and counted (`weft_consensus_refusals_total{reason="rate"}`).
#[test]
fn repeated_node_id_requests_do_not_buy_a_signature_each() {
    // Enough that a loaded machine, pacing the attacker through its credit, still sends them
    // faster than the bucket refills (2,000 in under 27 s).
    const REPEATS: usize = 2000;
    let mut node = Node::start("request-flood", &[]);
    under_attack("request-flood", &mut node, HEAP_BUDGET, |node| {
        let mut sender = Sender::open(node, 0xc0_5e)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let request = schema::encode(&schema::Message::Request(NodeIdRequest {
            key: key.verifying_key().to_bytes(),
            addresses: vec![sender.attacker.local_addr()?],
            salt: 1,
        }));
        let request = tagged(CONSENSUS, &request);
        let is_reply =
            |bytes: &[u8]| matches!(schema::decode(bytes), Ok(schema::Message::Reply(_)));
        // Asked once a second, as a client does, until the id is final and answered.
        let deadline = Instant::now() + BARRIER;
        let mut answered = false;
        while !answered && Instant::now() < deadline {
            sender.send(std::slice::from_ref(&request))?;
            sender.collect(
                CONSENSUS,
                Instant::now() + Duration::from_secs(1),
                |bytes| {
                    answered = is_reply(bytes);
                    answered
                },
            )?;
        }
        if !answered {
            return Err(AttackError::Timeout("the first reply"));
        }
        let ticks = worker_ticks(node);
        sender.send(&vec![request.clone(); REPEATS])?;
        let mut replies = 0;
        sender.collect(
            CONSENSUS,
            Instant::now() + Duration::from_secs(3),
            |bytes| {
                replies += usize::from(is_reply(bytes));
                false
            },
        )?;
        let refused = counted(
            node,
            &mut sender,
            "weft_consensus_refusals_total",
            "reason=\"rate\"",
            1,
        );
        println!(
            "request-flood: {REPEATS} repeats of a logged request: {replies} signed replies, \
             {refused} refused by rate; worker CPU {} ticks",
            worker_ticks(node) - ticks
        );
        assert!(refused > 0, "no request was refused past its source's rate");
        assert!(replies < REPEATS, "every repeat bought a signed reply");
        Ok(())
    });
}
