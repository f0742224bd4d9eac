//! A channel's reliability state, made on first use and given back when the channel idles
//! (issue 12: an idle peer's memory). A busy channel holds its whole state ([`Busy`], boxed);
//! an idle one (nothing queued, in flight, unacknowledged, buffered or due) keeps only what
//! differs from a fresh channel's: its numbers, credit, duplicate window, received packet
//! numbers and counters ([`Idle`]), a few hundred bytes inline instead of the box.
//!
//! Giving the state back never changes what the channel does: the state is dropped only after
//! a fresh one with the kept values put back compares equal to it, field by field, so the
//! state rebuilt on the next use is the one that was dropped. What an idle channel answers
//! without waking (no events, no timer, nothing to send) is what that state would answer.
#![deny(clippy::arithmetic_side_effects)]

use super::ack::AckIdle;
use super::recv::RecvIdle;
use super::send::SendIdle;
use super::{
    Busy, ChannelStats, Delivery, PathState, Pending, ReassemblyBudget, ReliabilityConfig,
    SendError, counters, credit_cap,
};
use crate::channel::pool::BufferPool;
use crate::wire::Capabilities;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an idle channel keeps: the values in which its state differs from a fresh channel's.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Idle {
    pub(super) send: SendIdle,
    pub(super) recv: RecvIdle,
    pub(super) ack: AckIdle,
}

impl Busy {
    /// Moves out what an idle channel keeps, leaving a fresh channel's values in the parts
    /// that own memory (so what is left can be compared with a fresh channel).
    fn take_idle(&mut self) -> Idle {
        Idle {
            send: self.send.idle(),
            recv: self.recv.take_idle(),
            ack: self.ack.take_idle(),
        }
    }

    /// Sets the kept values, but not the parts that own memory.
    fn restore_values(&mut self, idle: &Idle) {
        self.send.restore(&idle.send);
        self.recv.restore_values(&idle.recv);
        self.ack.restore_values(&idle.ack);
    }

    /// Puts back all an idle channel kept.
    fn restore(&mut self, idle: Idle) {
        self.restore_values(&idle);
        self.recv.restore(idle.recv);
        self.ack.restore(idle.ack);
    }

    /// Whether the channel has nothing to do and nothing to tell: then the answers of an idle
    /// [`ChannelReliability`] (no events, no timer, nothing to send, nothing queued) are its.
    fn quiet(&self) -> bool {
        self.failed.is_none()
            && !self.window_resend
            && self.timers.iter().all(Option::is_none)
            && self.poll_timeout().is_none()
            && !self.has_event()
            && !self.has_eliciting_work()
            && self.queued_bytes() == 0
            && self.buffered() == (0, 0)
    }
}

/// The reliability state of one channel, in one of the eight modes of PROTOCOL.md §7: made on
/// first use and given back by [`shrink_idle`](Self::shrink_idle) once the channel idles.
#[derive(Debug)]
pub struct ChannelReliability {
    capabilities: Capabilities,
    /// Shared by the endpoint's channels: a fresh state is built from it.
    config: Arc<ReliabilityConfig>,
    busy: Option<Box<Busy>>,
    /// Packets sent or received since the last idle check, up to [`EAGER_PACKETS`]: a channel
    /// that carried fewer gives its state back as soon as it is quiet (a new channel once its
    /// first WINDOW is acknowledged), a busier one only at the idle check, so a channel in use
    /// never makes and drops its state per packet.
    packets: u8,
    /// What the channel kept while idle; empty while busy.
    idle: Idle,
}

/// Packets after which a channel keeps its state until the idle check (see `packets`).
const EAGER_PACKETS: u8 = 8;

impl ChannelReliability {
    /// A channel with the given capabilities (its own copy of `config`).
    pub fn new(capabilities: Capabilities, config: &ReliabilityConfig, now: Instant) -> Self {
        Self::shared(capabilities, Arc::new(config.clone()), now)
    }

    /// A channel with the given capabilities and settings shared with other channels: an
    /// endpoint's channels hold one copy of its settings, not one each.
    pub fn shared(
        capabilities: Capabilities,
        config: Arc<ReliabilityConfig>,
        _now: Instant,
    ) -> Self {
        let fresh = Busy::new(capabilities, &config);
        let mut channel = ChannelReliability {
            capabilities,
            config,
            // A fresh channel may have work at once (a WINDOW when the receive window exceeds
            // the initial credit): it starts busy then, and idles once that is done.
            busy: Some(Box::new(fresh)),
            packets: 0,
            idle: Idle::default(),
        };
        channel.shed();
        channel
    }

    /// The channel's state to act on, rebuilt from what it kept if it was idle.
    fn wake(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(|| {
            let mut busy = Box::new(Busy::new(self.capabilities, &self.config));
            busy.restore(std::mem::take(&mut self.idle));
            busy
        })
    }

    /// Gives the state's memory back if the channel is idle and the kept values rebuild it
    /// exactly; true if it did (or the channel was idle already).
    fn shed(&mut self) -> bool {
        let Some(busy) = self.busy.as_mut() else {
            return true;
        };
        if !busy.quiet() {
            return false;
        }
        let idle = busy.take_idle();
        let mut fresh = Busy::new(self.capabilities, &self.config);
        fresh.restore_values(&idle);
        if fresh != **busy {
            busy.restore(idle);
            return false;
        }
        self.busy = None;
        self.idle = idle;
        true
    }

    /// The state, busy or kept, for the memory report.
    pub(super) fn into_parts(self) -> (Option<Box<Busy>>, Idle) {
        (self.busy, self.idle)
    }

    /// Counts a packet; a channel that carried few since the last idle check gives its state
    /// back at once if that left it quiet.
    fn after_packet(&mut self) {
        if self.packets < EAGER_PACKETS {
            self.packets = self.packets.saturating_add(1);
            self.shed();
        }
    }

    /// Whether the channel holds its whole state now (it is not idle).
    pub fn is_busy(&self) -> bool {
        self.busy.is_some()
    }

    /// The channel's capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Whether the channel has failed (a [`Delivery::Failed`] was queued).
    pub fn is_failed(&self) -> bool {
        self.busy.as_ref().is_some_and(|b| b.is_failed())
    }

    /// Queues a message, copied into a buffer from `pool`; returns its message number.
    pub fn send(
        &mut self,
        now: Instant,
        data: &[u8],
        pool: &mut BufferPool,
    ) -> Result<u64, SendError> {
        self.wake().send(now, data, pool)
    }

    /// Queues a message of `len` bytes that `fill` appends straight to its empty buffer from
    /// `pool`, which has room for `len` bytes reserved (called only when the message is
    /// accepted); returns its message number. A fill that appends more or fewer bytes is cut
    /// or zero-padded to `len`.
    pub fn send_with(
        &mut self,
        now: Instant,
        len: usize,
        pool: &mut BufferPool,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64, SendError> {
        self.wake().send_with(now, len, pool, fill)
    }

    /// Hands the buffers of acknowledged or dropped messages back to `pool`.
    pub fn reclaim(&mut self, pool: &mut BufferPool) {
        if let Some(busy) = self.busy.as_mut() {
            busy.reclaim(pool);
        }
    }

    /// Bytes in the send queue.
    pub fn queued_bytes(&self) -> usize {
        self.busy.as_ref().map_or(0, |b| b.queued_bytes())
    }

    /// Messages and bytes received and not yet taken with [`poll_event`](Self::poll_event).
    pub fn buffered(&self) -> (u64, u64) {
        self.busy.as_ref().map_or((0, 0), |b| b.buffered())
    }

    /// The credit advertised to the peer so far (max message, max bytes).
    pub fn advertised_window(&self) -> (u64, u64) {
        match &self.busy {
            Some(busy) => busy.advertised_window(),
            None => self.idle.recv.advertised,
        }
    }

    /// Caps the channel's new credit at `cap` messages beyond what its application took: its
    /// share of the workers' room ([`fair_share`](super::fair_share), PROTOCOL.md §12); `None`
    /// lifts the cap.
    pub fn set_credit_cap(&mut self, cap: Option<u64>) {
        // An unchanged cap leaves an idle channel idle; a new one may make a WINDOW due.
        if self.busy.is_none() && credit_cap(cap) == self.idle.recv.credit_cap {
            return;
        }
        self.wake().set_credit_cap(cap);
    }

    /// Whether [`write_frames`](Self::write_frames) has something to write: an ACK is due, or
    /// there is work the congestion window allows. Pacing is left to `write_frames`, which then
    /// writes 0 and arms a timer that [`poll_timeout`](Self::poll_timeout) reports.
    pub fn wants_to_send(&self, now: Instant, path: &PathState) -> bool {
        self.busy
            .as_ref()
            .is_some_and(|b| b.wants_to_send(now, path))
    }

    /// Fills `buf` (a packet payload region of `buf.len()` bytes) with frames for the packet the
    /// endpoint is about to send with packet number `pn`: ACK if due, WINDOW if due,
    /// retransmissions, new data — within the congestion window and pacing of `path` and the
    /// peer's credit. Returns bytes written (0 = nothing to send now). Packet numbers passed
    /// must increase; one that got 0 may be passed again.
    pub fn write_frames(
        &mut self,
        now: Instant,
        pn: u64,
        path: &mut PathState,
        buf: &mut [u8],
    ) -> usize {
        let written = self.wake().write_frames(now, pn, path, buf);
        if written > 0 {
            self.after_packet();
        }
        written
    }

    /// Called for each received packet on the channel, before its frames.
    pub fn on_packet_received(&mut self, now: Instant, pn: u64, ack_eliciting: bool) {
        self.wake().on_packet_received(now, pn, ack_eliciting);
    }

    /// The largest packet number received, for [`decode_packet_number`](super::decode_packet_number).
    pub fn largest_received(&self) -> Option<u64> {
        match &self.busy {
            Some(busy) => busy.largest_received(),
            None => self.idle.ack.largest,
        }
    }

    /// A DATA message; a delivered copy takes its buffer from `pool`.
    pub fn on_data(
        &mut self,
        now: Instant,
        message_number: u64,
        payload: &[u8],
        pool: &mut BufferPool,
    ) {
        self.wake().on_data(now, message_number, payload, pool);
    }

    /// A DATA_FRAGMENT; `budget` is the peer's (and through it the node's) reassembly memory,
    /// and a message whole in one fragment takes its buffer from `pool`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_fragment(
        &mut self,
        now: Instant,
        message_number: u64,
        total_len: u64,
        offset: u64,
        bytes: &[u8],
        budget: &mut ReassemblyBudget,
        pool: &mut BufferPool,
    ) {
        self.wake()
            .on_fragment(now, message_number, total_len, offset, bytes, budget, pool);
    }

    /// Frees incomplete messages, largest first, until `want` bytes of reassembly memory are
    /// back in the budget (the node's fair share rule chose this channel's peer); returns the
    /// bytes freed. A channel whose fragments were acknowledged cannot recover them: in SCTP
    /// and TCP mode it fails with `Refused`. An idle channel holds none.
    pub fn evict_reassembly(&mut self, want: usize) -> usize {
        self.busy.as_mut().map_or(0, |b| b.evict_reassembly(want))
    }

    /// An ACK: inclusive `(low, high)` packet-number ranges, highest first.
    pub fn on_ack(
        &mut self,
        now: Instant,
        ranges: impl Iterator<Item = (u64, u64)>,
        ack_delay: Duration,
        path: &mut PathState,
    ) {
        self.wake().on_ack(now, ranges, ack_delay, path);
        self.after_packet();
    }

    /// The peer's WINDOW.
    pub fn on_window(&mut self, max_message: u64, max_bytes: u64) {
        self.wake().on_window(max_message, max_bytes);
    }

    /// What the channel still has to do or waits for (see [`Pending`]); an idle channel's is
    /// read from the state it would rebuild, so a check of it also checks what was shed.
    pub fn pending(&self) -> Pending {
        match &self.busy {
            Some(busy) => busy.pending(),
            None => {
                let mut rebuilt = Busy::new(self.capabilities, &self.config);
                rebuilt.restore_values(&self.idle);
                rebuilt.pending()
            }
        }
    }

    /// Whether [`poll_event`](Self::poll_event) has something.
    pub fn has_event(&self) -> bool {
        self.busy.as_ref().is_some_and(|b| b.has_event())
    }

    /// The next thing for the application.
    pub fn poll_event(&mut self) -> Option<Delivery> {
        self.busy.as_mut()?.poll_event()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.busy.as_ref()?.poll_timeout()
    }

    /// Runs the timers that expired by `now`.
    pub fn handle_timeout(&mut self, now: Instant, path: &mut PathState) {
        self.wake().handle_timeout(now, path);
    }

    /// Returns this channel's bytes in flight to the path; call before dropping a channel. An
    /// idle channel has none.
    pub fn abandon(&mut self, path: &mut PathState) {
        if let Some(busy) = self.busy.as_mut() {
            busy.abandon(path);
        }
    }

    /// Counters for the metrics layer.
    pub fn stats(&self) -> ChannelStats {
        match &self.busy {
            Some(busy) => busy.stats(),
            None => counters(&self.idle.send.stats, &self.idle.recv.stats.read()),
        }
    }

    /// The idle check of a peer heard lately (one that keeps alive is never silent for a
    /// keep-alive interval, so [`shrink_idle`](Self::shrink_idle) never runs for it): a channel
    /// that carried fewer than [`EAGER_PACKETS`] packets since the last check gives its state
    /// back if it is quiet, exactly as `shrink_idle` would, and the count starts again. A busier
    /// one keeps its state and its queues' room until a check finds it quiet (issue 12).
    pub fn shed_if_idle(&mut self) {
        if self.packets < EAGER_PACKETS {
            self.shed();
        }
        self.packets = 0;
    }

    /// Gives the state's memory back when the channel idles (nothing queued, in flight,
    /// unacknowledged, buffered or due; checked once per keep-alive interval of silence), or
    /// else the room of the queues that are empty now. Nothing the channel knows changes: a
    /// channel used again rebuilds exactly the state it gave back.
    pub fn shrink_idle(&mut self) {
        if let Some(busy) = self.busy.as_mut() {
            busy.shrink_idle();
        }
        self.packets = 0;
        self.shed();
    }
}

#[cfg(test)]
#[path = "idle_tests.rs"]
mod tests;
