//! The reliability layer (PROTOCOL.md §7): per-channel send and receive state for the eight
//! capability modes, shared per-path congestion control, RTT estimation and path MTU discovery.
//! Sans-IO: time is an argument, messages are written into the caller's buffer through
//! [`crate::wire`]'s emitters (the only codec) and read by the caller with `wire`'s parser.
//!
//! Its scenarios (every mode at every loss rate, congestion and flow control, a 2 MiB message)
//! run two bare channels on the deterministic network of `tests/sim/` that also drives whole
//! endpoints: see `tests/reliability/channel_level.rs`.
//!
//! # Driving it
//! The endpoint keeps one [`PathState`] per peer and one [`ChannelReliability`] per channel.
//! For each packet received on a channel it calls [`ChannelReliability::on_packet_received`],
//! then the handler of each of its frames (`on_data`, `on_fragment`, `on_ack`, `on_window`);
//! when [`ChannelReliability::poll_timeout`] has passed it calls `handle_timeout`; while
//! `wants_to_send` it calls `write_frames` with the packet's number and sends what was written
//! (a return of 0 means nothing now); and it drains `poll_event`.
//!
//! # Flow control where messages can vanish
//! PROTOCOL.md §4 counts credit in message numbers and cumulative bytes. In modes that can lose
//! a message for good (no RESEND; Z and Streaming 2 after the retry budget) the receiver never
//! learns a lost message's length, so it could never count it as consumed and the credit would
//! shrink for ever. Both sides therefore keep it in step: the receiver counts only messages it
//! received (a skipped message that turns up late is counted then), and the sender leaves the
//! messages it knows are lost out of its comparison (`m − lost < max_message`,
//! `total(0..=m) − lost bytes ≤ max_bytes`). In TCP and SCTP nothing is ever lost and this is
//! exactly §4's rule. A spurious loss verdict can let a sender overshoot; the receiver then
//! drops what exceeds its advertised credit (only in modes that tolerate loss).
//!
//! # Arithmetic
//! Message numbers, offsets, lengths, credit, acknowledged ranges and packet numbers come from
//! the peer: arithmetic in this module is checked, saturating or (where wrapping is meant, and
//! commented) wrapping; clippy's `arithmetic_side_effects` is denied here.
#![deny(clippy::arithmetic_side_effects)]

pub mod ack;
mod budget;
mod channel_stats;
pub mod congestion;
mod credit;
mod fragments;
mod idle;
mod memory;
mod path;
pub mod pmtu;
mod ranges;
mod rare;
mod recv;
pub mod rtt;
mod send;
pub mod tally;

pub use channel_stats::ChannelStats;

pub use crate::wire::{Capabilities, CloseReason};
pub use ack::{AckTracker, decode_packet_number};
pub use budget::ReassemblyBudget;
pub use congestion::{CongestionController, NewReno, Pacer};
pub use credit::fair_share;
pub use idle::ChannelReliability;
pub use path::PathState;
pub use pmtu::PmtuProber;
pub use rtt::RttEstimator;

use crate::channel::Payload;
use crate::channel::pool::BufferPool;
use crate::wire::{self, Message};
use recv::RecvSide;
use send::SendSide;
use std::time::{Duration, Instant};

/// Settings of the reliability layer; the defaults are PROTOCOL.md's.
#[derive(Clone, Debug)]
pub struct ReliabilityConfig {
    /// How long an ordered channel holds a gap; `None` = 1.5 × smoothed RTT (§7), zero =
    /// "sequenced" (deliver only what is newer than the last delivered).
    pub hold_timeout: Option<Duration>,
    /// Largest message the application may send or the peer may announce (§7.5: 2 MiB).
    pub max_message_size: usize,
    /// Bytes the send queue holds before `send` answers [`SendError::QueueFull`].
    pub send_queue_bytes: usize,
    /// Retransmission rounds a message gets before it counts as lost.
    pub retry_budget_tries: u32,
    /// Time a message gets from its first transmission before it counts as lost; also how long
    /// a close-on-loss channel waits for any acknowledgement before declaring the path dead.
    pub retry_budget_time: Duration,
    /// The credit both sides assume before any WINDOW (§4: 64 messages, 256 KiB).
    pub initial_window: (u64, u64),
    /// The credit this side grants beyond what the application consumed (sent in WINDOW).
    pub receive_window: (u64, u64),
    /// An incomplete message with no progress for this long is dropped and its memory freed.
    pub reassembly_timeout: Duration,
    /// An incomplete message this old is dropped, progress or not (PROTOCOL.md §7.5: a message
    /// that does not complete in time), so a peer trickling a byte now and then cannot hold
    /// reassembly memory for ever. 60 s: a 2 MiB message needs 17 s at 1 Mbit/s, and the rest
    /// leaves room for retransmissions on a lossy path.
    pub reassembly_max_age: Duration,
    /// Most disjoint byte ranges one incomplete message may hold; a fragment that would open
    /// one more is dropped and counted. 1024: a 2 MiB message is ~1,850 fragments of a
    /// 1200-byte path, so even losing every other one leaves fewer holes; a hostile peer's
    /// bookkeeping stays at 1024 × 64 bytes per message, charged to the reassembly budget.
    pub max_reassembly_ranges: usize,
    /// Largest UDP payload path MTU discovery probes for (§7.6).
    pub max_mtu: u16,
    /// Most ranges one ACK reports.
    pub max_ack_ranges: usize,
    /// An ACK is due after this many ack-eliciting packets (§7.1: 2, as in QUIC; see `ack.rs`).
    pub ack_eliciting_threshold: u32,
    /// An ACK is due this long after the first unacknowledged ack-eliciting packet (§7.1: 25 ms,
    /// the most peers allow for when they time probes, so a longer one is clamped to it).
    pub max_ack_delay: Duration,
    /// The RTT assumed before the first sample.
    pub initial_rtt: Duration,
}

impl Default for ReliabilityConfig {
    fn default() -> Self {
        ReliabilityConfig {
            hold_timeout: None,
            max_message_size: 2 << 20,
            send_queue_bytes: 4 << 20,
            retry_budget_tries: 15,
            retry_budget_time: Duration::from_secs(10),
            initial_window: (64, 256 << 10),
            receive_window: (64, 4 << 20),
            reassembly_timeout: Duration::from_secs(10),
            reassembly_max_age: Duration::from_secs(60),
            max_reassembly_ranges: 1024,
            max_mtu: pmtu::DEFAULT_MAX_MTU,
            max_ack_ranges: 32,
            ack_eliciting_threshold: ack::ACK_ELICITING_THRESHOLD,
            max_ack_delay: rtt::MAX_ACK_DELAY,
            initial_rtt: rtt::INITIAL_RTT,
        }
    }
}

/// Why [`ChannelReliability::send`] refused a message. Never a silent drop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The message is larger than `max_message_size`.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The send queue is full; try again once the peer has acknowledged data.
    #[error("send queue full")]
    QueueFull,
    /// The channel has failed or closed.
    #[error("channel closed")]
    Closed,
}

/// What the channel tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A complete message.
    Message {
        /// Its message number.
        number: u64,
        /// Its bytes: a pooled buffer, or the receive memory itself (`channel/payload.rs`).
        data: Payload,
    },
    /// An ordered channel moved past messages that did not arrive in time (inclusive range).
    Skipped {
        /// First message number skipped.
        first: u64,
        /// Last message number skipped.
        last: u64,
    },
    /// Part of a big message arrived (PROTOCOL.md §7.5).
    Progress {
        /// Its message number.
        number: u64,
        /// Bytes received so far.
        received: u64,
        /// Its total length.
        total: u64,
    },
    /// The channel failed and must be closed with this reason.
    Failed(CloseReason),
}

/// What a channel still has to do or waits for (PROTOCOL.md §7), for liveness checks: while
/// `sendable`, `unacked`, `window` or `ack` holds, the channel has a timer armed
/// ([`ChannelReliability::poll_timeout`]) or a packet to write
/// ([`ChannelReliability::wants_to_send`]); `blocked` data waits for the peer's WINDOW. A failed
/// channel owes nothing (it closes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Data the peer's credit lets out that is not sent yet (or is to be resent), or a probe.
    pub sendable: bool,
    /// Data queued beyond the peer's credit.
    pub blocked: bool,
    /// Ack-eliciting packets neither acknowledged nor declared lost.
    pub unacked: bool,
    /// A WINDOW is owed: credit worth announcing, or a lost WINDOW to repeat.
    pub window: bool,
    /// Received ack-eliciting packets wait for their ACK.
    pub ack: bool,
}

impl Pending {
    /// Whether the channel has anything to do or wait for.
    pub fn any(&self) -> bool {
        self.sendable || self.blocked || self.unacked || self.window || self.ack
    }
}

/// Most ranges of one received ACK that are read: four times what this node writes
/// (`ReliabilityConfig::max_ack_ranges`, 32), so an honest peer's ACK is read whole.
const MAX_ACK_RANGES_READ: usize = 128;

/// Timers of one channel (STYLE.md 7): the next timeout is the earliest.
#[derive(Copy, Clone, Debug)]
enum Timer {
    LossDetection = 0,
    BlackHole = 1,
    Pacing = 2,
}

const TIMER_COUNT: usize = 3;

/// The reliability state of a channel that has something to do, in one of the eight modes of
/// PROTOCOL.md §7: what [`ChannelReliability`] makes on first use and gives back when idle.
#[derive(Debug, PartialEq)]
struct Busy {
    hold_timeout: Option<Duration>,
    send: SendSide,
    recv: RecvSide,
    ack: AckTracker,
    timers: [Option<Instant>; TIMER_COUNT],
    window_resend: bool,
    failed: Option<CloseReason>,
}

impl Busy {
    /// A channel with the given capabilities.
    pub(super) fn new(capabilities: Capabilities, config: &ReliabilityConfig) -> Self {
        let resend = capabilities.contains(Capabilities::RESEND);
        let ordered = capabilities.contains(Capabilities::ORDERED);
        let close = capabilities.contains(Capabilities::CLOSE_ON_LOSS);
        let mut recv = RecvSide::new(ordered, resend, close, config);
        recv.hold = config
            .hold_timeout
            .unwrap_or(rtt::scale(config.initial_rtt, 3, 2));
        Busy {
            hold_timeout: config.hold_timeout,
            send: SendSide::new(resend, close, config),
            recv,
            ack: AckTracker::configured(config),
            timers: [None; TIMER_COUNT],
            window_resend: false,
            failed: None,
        }
    }

    /// Whether the channel has failed (a [`Delivery::Failed`] was queued).
    pub(super) fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Queues a message, copied into a buffer from `pool`; returns its message number.
    pub(super) fn send(
        &mut self,
        _now: Instant,
        data: &[u8],
        pool: &mut BufferPool,
    ) -> Result<u64, SendError> {
        if self.failed.is_some() {
            return Err(SendError::Closed);
        }
        self.send.push(data, pool)
    }

    /// Queues a message of `len` bytes that `fill` appends straight to its empty buffer from
    /// `pool`, which has room for `len` bytes reserved (called only when the message is
    /// accepted); returns its message number. A fill that appends more or fewer bytes is cut
    /// or zero-padded to `len`.
    pub(super) fn send_with(
        &mut self,
        _now: Instant,
        len: usize,
        pool: &mut BufferPool,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64, SendError> {
        if self.failed.is_some() {
            return Err(SendError::Closed);
        }
        self.send.push_with(len, pool, fill)
    }

    /// Hands the buffers of acknowledged or dropped messages back to `pool`.
    pub(super) fn reclaim(&mut self, pool: &mut BufferPool) {
        self.send.reclaim(pool);
    }

    /// Bytes in the send queue.
    pub(super) fn queued_bytes(&self) -> usize {
        self.send.queued_bytes()
    }

    /// Messages and bytes received and not yet taken with [`poll_event`](Self::poll_event).
    pub(super) fn buffered(&self) -> (u64, u64) {
        self.recv.buffered()
    }

    /// The credit advertised to the peer so far (max message, max bytes).
    pub(super) fn advertised_window(&self) -> (u64, u64) {
        self.recv.advertised()
    }

    /// Caps the channel's new credit at `cap` messages beyond what its application took: its
    /// share of the workers' room ([`fair_share`], PROTOCOL.md §12); `None` lifts the cap.
    pub(super) fn set_credit_cap(&mut self, cap: Option<u64>) {
        self.recv.credit_cap = credit_cap(cap);
    }

    fn refresh(&mut self, now: Instant, path: &mut PathState) {
        if self.refresh_state(now, path) {
            self.arm_loss_timers(path);
        }
    }

    /// [`refresh`](Self::refresh) less the loss timers (armed once a packet is written).
    fn refresh_state(&mut self, now: Instant, path: &mut PathState) -> bool {
        if self.hold_timeout.is_none() {
            // PROTOCOL.md §7: the hold timeout defaults to 1.5 × smoothed RTT.
            self.recv.hold = rtt::scale(path.rtt.smoothed(), 3, 2);
        }
        if self.failed.is_none()
            && let Some(reason) = self.send.failure.or(self.recv.failure)
        {
            self.fail(reason);
        }
        if self.failed.is_some() {
            self.send.abandon(path);
            self.timers = [None; TIMER_COUNT];
            return false;
        }
        if self.send.window_lost {
            self.send.window_lost = false;
            self.window_resend = true;
        }
        if self.timers[Timer::Pacing as usize].is_some_and(|at| at <= now) {
            self.timers[Timer::Pacing as usize] = None;
        }
        true
    }

    fn arm_loss_timers(&mut self, path: &PathState) {
        self.timers[Timer::LossDetection as usize] = self.send.loss_detection_deadline(path);
        self.timers[Timer::BlackHole as usize] = self.send.black_hole_deadline();
    }

    fn fail(&mut self, reason: CloseReason) {
        self.failed = Some(reason);
        self.recv.events.push_back(Delivery::Failed(reason));
    }

    fn window_due(&self) -> bool {
        self.window_resend || self.recv.window_due()
    }

    fn has_eliciting_work(&self) -> bool {
        self.window_due() || self.send.has_sendable() || self.send.probes_pending > 0
    }

    /// What the channel still has to do or waits for (see [`Pending`]).
    pub(super) fn pending(&self) -> Pending {
        if self.failed.is_some() {
            return Pending::default();
        }
        let sendable = self.send.has_sendable() || self.send.probes_pending > 0;
        Pending {
            sendable,
            blocked: !sendable && self.send.has_unsent_any(),
            unacked: self.send.has_outstanding(),
            window: self.window_due(),
            ack: self.ack.deadline().is_some(),
        }
    }

    /// Whether [`write_frames`](Self::write_frames) has something to write: an ACK is due, or
    /// there is work the congestion window allows. Pacing is left to `write_frames`, which then
    /// writes 0 and arms a timer that [`poll_timeout`](Self::poll_timeout) reports.
    pub(super) fn wants_to_send(&self, now: Instant, path: &PathState) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.ack.ack_due(now) {
            return true;
        }
        self.has_eliciting_work()
            && (self.send.probes_pending > 0
                || !matches!(
                    path.send_allowed(now, u64::from(path.current_mtu())),
                    Err(None)
                ))
    }

    /// Fills `buf` (a packet payload region of `buf.len()` bytes) with frames for the packet the
    /// endpoint is about to send with packet number `pn`: ACK if due, WINDOW if due,
    /// retransmissions, new data — within the congestion window and pacing of `path` and the
    /// peer's credit. Returns bytes written (0 = nothing to send now). Packet numbers passed
    /// must increase; one that got 0 may be passed again.
    pub(super) fn write_frames(
        &mut self,
        now: Instant,
        pn: u64,
        path: &mut PathState,
        buf: &mut [u8],
    ) -> usize {
        if !self.refresh_state(now, path) {
            return 0;
        }
        let written = self.write_frames_inner(now, pn, path, buf);
        self.arm_loss_timers(path);
        written
    }

    fn write_frames_inner(
        &mut self,
        now: Instant,
        pn: u64,
        path: &mut PathState,
        buf: &mut [u8],
    ) -> usize {
        let probing = self.send.probes_pending > 0;
        let mut empty_room = path.max_payload();
        if probing {
            // A PTO probe stays at the base size (PROTOCOL.md §3): when the path has shrunk
            // under a sender whose every packet is full-size, it is what still gets through,
            // and its acknowledgement is the small-packet evidence that lets the full-size
            // losses it exposes count towards the black-hole halving of §7.6.
            empty_room = empty_room.min(usize::from(pmtu::BASE_MTU).saturating_sub(path.overhead));
        }
        let room = buf.len().min(empty_room);
        let full_packet = room.saturating_add(path.overhead) as u64;
        let allowed = if probing {
            Ok(())
        } else {
            path.send_allowed(now, full_packet)
        };
        if let Err(Some(at)) = allowed {
            self.timers[Timer::Pacing as usize] = Some(at);
        }
        let eliciting = allowed.is_ok() && self.has_eliciting_work();
        let ack_due = self.ack.ack_due(now);
        if !eliciting && !ack_due {
            return 0;
        }
        let mut at = 0;
        if ack_due || self.ack.has_news() {
            let delay_us = self
                .ack
                .ack_delay(now)
                .as_micros()
                .min(u128::from(u64::MAX)) as u64;
            if let Ok(n) = wire::emit_ack_fitting(self.ack.ranges(), delay_us, &mut buf[at..room]) {
                at = at.saturating_add(n);
                self.ack.on_ack_sent();
                tally::ack_sent(eliciting);
            }
        }
        if !eliciting {
            return at;
        }
        let eliciting_start = at;
        let chunk_start = self.send.chunk_end();
        let mut window = false;
        if self.window_due() {
            let credit = self.recv.credit();
            let message = Message::Window {
                max_message: credit.0,
                max_bytes: credit.1,
            };
            if let Ok(n) = message.emit(&mut buf[at..room]) {
                at = at.saturating_add(n);
                window = true;
                self.window_resend = false;
                self.recv.on_window_sent(credit);
            }
        }
        let mut probe = None;
        if let Some(size) = path.pmtu.probe_size(now) {
            let probe_room = usize::from(size).saturating_sub(path.overhead);
            // RFC 8899 §4.1, PROTOCOL.md §7.6: probing is part of normal transmission. The
            // probe takes the place of the ordinary packet that the window and the pacer let
            // out now (`allowed` held for it): a saturated sender's window and pacer never
            // have room for a packet larger than the current size, and the overshoot, a few
            // hundred bytes once per round trip at most, is below one packet.
            if !probing && self.send.has_sendable() && probe_room > room && probe_room <= buf.len()
            {
                // PROTOCOL.md §7.6: a probe is a packet padded to the probed size with
                // PMTU_PROBE; it carries no data, so its loss costs nothing but the probe.
                if let Ok(n) = wire::emit_pmtu_probe_filling(&mut buf[at..probe_room]) {
                    at = at.saturating_add(n);
                    probe = Some(size);
                }
            }
        }
        if probe.is_none() {
            at = at.saturating_add(self.send.write_data(now, &mut buf[at..room], empty_room));
            if at == eliciting_start && probing {
                // RFC 9002 §6.2.4: a probe with nothing to resend still elicits an ACK.
                if let Ok(n) = (Message::Ping { token: &[0; 8] }).emit(&mut buf[at..room]) {
                    at = at.saturating_add(n);
                }
            }
        }
        if at > eliciting_start {
            let size = at.saturating_add(path.overhead) as u64;
            let chunks = chunk_start..self.send.chunk_end();
            self.send
                .on_packet_sent(now, pn, size, chunks, window, probe);
            path.on_packet_sent(now, size, probe);
        }
        at
    }

    /// Called for each received packet on the channel, before its frames.
    pub(super) fn on_packet_received(&mut self, now: Instant, pn: u64, ack_eliciting: bool) {
        self.ack.on_packet(now, pn, ack_eliciting);
        self.recv.on_packet(pn);
    }

    /// The largest packet number received, for [`decode_packet_number`].
    pub(super) fn largest_received(&self) -> Option<u64> {
        self.ack.largest()
    }

    /// A DATA message; a delivered copy takes its buffer from `pool`.
    pub(super) fn on_data(
        &mut self,
        now: Instant,
        message_number: u64,
        payload: &[u8],
        pool: &mut BufferPool,
    ) {
        if self.failed.is_none() {
            self.recv.on_data(now, message_number, payload, pool);
            if let Some(reason) = self.recv.failure {
                self.fail(reason);
            }
        }
    }

    /// A DATA_FRAGMENT; `budget` is the peer's (and through it the node's) reassembly memory,
    /// and a message whole in one fragment takes its buffer from `pool`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_fragment(
        &mut self,
        now: Instant,
        message_number: u64,
        total_len: u64,
        offset: u64,
        bytes: &[u8],
        budget: &mut ReassemblyBudget,
        pool: &mut BufferPool,
    ) {
        if self.failed.is_none() {
            self.recv
                .on_fragment(now, message_number, total_len, offset, bytes, budget, pool);
            if let Some(reason) = self.recv.failure {
                self.fail(reason);
            }
        }
    }

    /// Frees incomplete messages, largest first, until `want` bytes of reassembly memory are
    /// back in the budget (the node's fair share rule chose this channel's peer); returns the
    /// bytes freed. A channel whose fragments were acknowledged cannot recover them: in SCTP
    /// and TCP mode it fails with `Refused`.
    pub(super) fn evict_reassembly(&mut self, want: usize) -> usize {
        if self.failed.is_some() {
            return 0;
        }
        let freed = self.recv.evict(want);
        if let Some(reason) = self.recv.failure {
            self.fail(reason);
        }
        freed
    }

    /// An ACK: inclusive `(low, high)` packet-number ranges, highest first.
    pub(super) fn on_ack(
        &mut self,
        now: Instant,
        ranges: impl Iterator<Item = (u64, u64)>,
        ack_delay: Duration,
        path: &mut PathState,
    ) {
        if self.failed.is_none() {
            // The peer chooses how many ranges an ACK lists (as many as its datagram holds);
            // the node reads the newest few. Packets only the rest would acknowledge are
            // declared lost and resent, which costs a retransmission, never correctness.
            let ranges = ranges.take(MAX_ACK_RANGES_READ);
            self.send.on_ack(now, ranges, ack_delay, path);
        }
        self.refresh(now, path);
    }

    /// The peer's WINDOW.
    pub(super) fn on_window(&mut self, max_message: u64, max_bytes: u64) {
        self.send.on_window(max_message, max_bytes);
    }

    /// Whether [`poll_event`](Self::poll_event) has something.
    pub(super) fn has_event(&self) -> bool {
        !self.recv.events.is_empty()
    }

    /// The next thing for the application.
    pub(super) fn poll_event(&mut self) -> Option<Delivery> {
        self.recv.poll_event()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() {
            return None;
        }
        let nested = [
            self.ack.deadline(),
            self.recv.hold_deadline(),
            self.recv.reassembly_deadline(),
        ];
        self.timers
            .iter()
            .chain(nested.iter())
            .flatten()
            .min()
            .copied()
    }

    /// Runs the timers that expired by `now`.
    pub(super) fn handle_timeout(&mut self, now: Instant, path: &mut PathState) {
        self.refresh(now, path);
        if self.failed.is_some() {
            return;
        }
        if self.timers[..2].iter().flatten().any(|&at| at <= now) {
            self.send.on_timeout(now, path);
        }
        self.recv.on_timeout(now);
        self.refresh(now, path);
    }

    /// Returns this channel's bytes in flight to the path; call before dropping a channel.
    pub(super) fn abandon(&mut self, path: &mut PathState) {
        self.send.abandon(path);
    }

    /// Counters for the metrics layer.
    pub(super) fn stats(&self) -> ChannelStats {
        counters(&self.send.stats, &self.recv.stats.read())
    }
}

/// A credit cap as the receive side keeps it: `u16::MAX` for none (see `RecvSide::credit_cap`).
fn credit_cap(cap: Option<u64>) -> u16 {
    cap.map_or(u16::MAX, |cap| {
        u16::try_from(cap).unwrap_or(u16::MAX.saturating_sub(1))
    })
}

/// The channel's counters, from its sides' (the same whether the channel is busy or idle).
fn counters(s: &send::SendStats, r: &recv::RecvStats) -> ChannelStats {
    ChannelStats {
        packets_sent: s.packets_sent,
        packets_lost: s.packets_lost,
        retransmitted_bytes: s.retransmitted_bytes,
        messages_given_up: s.messages_given_up,
        probe_timeouts: s.pto_fired,
        duplicates: r.duplicates,
        credit_drops: r.credit_drops,
        budget_drops: r.budget_drops,
        malformed: r.malformed,
        skipped: r.skipped,
        reassembly_timeouts: r.reassembly_timeouts,
        past_credit: r.past_credit,
        range_drops: r.range_drops,
        reassembly_evictions: r.evictions,
        protocol_errors: r.protocol_errors,
    }
}
