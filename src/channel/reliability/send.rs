//! The send side of one channel (PROTOCOL.md §7.2, §7.4, §7.5): the message queue with its byte
//! budget, fragmentation into DATA_FRAGMENT, flow-control credit, sent-packet records, loss
//! detection and probe timeouts after RFC 9002 §6, and retransmission for RESEND channels.

use super::ranges::RangeSet;
use super::{PathState, ReliabilityConfig, SendError, tally};
use crate::channel::pool::BufferPool;
use crate::wire::{self, CloseReason, Message};
use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

#[path = "send_idle.rs"]
mod idle;
pub(crate) use idle::SendIdle;
/// RFC 9002 §6.1.1: a packet is lost once this many later packets were acknowledged.
const PACKET_THRESHOLD: u64 = 3;
/// Fragments smaller than this are not worth their header; the packet ends instead.
const MIN_FRAGMENT: usize = 32;
/// RFC 9002 §6.2.4: packets sent when a probe timeout fires.
const PTO_PROBES: u8 = 2;

/// The backed-off probe timeout never exceeds this fraction of the retry time (the
/// black-hole timer), so that many probe rounds fit in it before a silent path counts as dead.
const PTO_ROUNDS_PER_RETRY_TIME: u32 = 8;

/// Range sets kept for reuse per channel: more than a usual window's worth of messages.
const SPARE_RANGES: usize = 256;

/// One queued message.
#[derive(Debug, PartialEq)]
struct OutMessage {
    len: u64,
    data: Vec<u8>,
    /// Total length of messages 0..=this one (PROTOCOL.md §4 WINDOW).
    end_offset: u64,
    /// Byte ranges waiting for their (next) transmission.
    unsent: RangeSet,
    acked: RangeSet,
    /// A zero-length message is one "range" of its own.
    empty_pending: bool,
    /// Chunks of it in packets neither acknowledged nor lost.
    chunks_in_flight: u32,
    first_sent: Option<Instant>,
    /// Bytes below this were sent before: sending them again is a retransmission.
    sent_up_to: u64,
    /// When part of it was last acknowledged: the retry budget's clock restarts then, so a big
    /// message that keeps moving is never given up.
    last_progress: Option<Instant>,
    /// Loss verdicts since the message last made progress (one per loss-detection pass).
    tries: u32,
    /// The loss-detection pass that last counted against it.
    loss_pass: u64,
    /// Part of it was lost for good (non-RESEND) or its retry budget ran out.
    lost: bool,
}

impl OutMessage {
    fn complete(&self) -> bool {
        if self.len == 0 {
            !self.empty_pending && self.chunks_in_flight == 0 && !self.lost
        } else {
            self.acked.count() == self.len
        }
    }
}

/// What one packet carried of one message.
#[derive(Clone, Debug, PartialEq)]
struct Chunk {
    number: u64,
    range: Range<u64>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum PacketState {
    Outstanding,
    Acked,
    Lost,
}

/// A sent packet, kept until acknowledged or lost (RFC 9002 §A.1.1).
#[derive(Clone, Debug, PartialEq)]
struct SentPacket {
    pn: u64,
    time: Instant,
    size: u64,
    state: PacketState,
    /// Absolute indexes into `SendSide::chunks`.
    chunks: Range<u64>,
    window: bool,
    probe: Option<u16>,
}

/// Counters of the send side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SendStats {
    pub(crate) packets_sent: u64,
    pub(crate) packets_lost: u64,
    pub(crate) retransmitted_bytes: u64,
    pub(crate) messages_given_up: u64,
    pub(crate) pto_fired: u64,
}

/// A chunk to write, chosen before the borrow of the message ends.
struct Pick {
    number: u64,
    range: Range<u64>,
    whole: bool,
}

/// The send side of one channel.
#[derive(Debug, PartialEq)]
pub(crate) struct SendSide {
    resend: bool,
    close_on_loss: bool,
    max_message_size: usize,
    queue_budget: usize,
    queued_bytes: usize,
    retry_tries: u32,
    retry_time: Duration,
    /// Slot i holds message `base + i`; `None` once resolved.
    messages: VecDeque<Option<OutMessage>>,
    base: u64,
    cum_bytes: u64,
    /// Lowest message number that may have unsent data.
    send_hint: u64,
    credit_messages: u64,
    credit_bytes: u64,
    /// Messages the receiver will never count against its credit (see `ChannelReliability`).
    forgiven_messages: u64,
    forgiven_bytes: u64,
    sent: VecDeque<SentPacket>,
    chunks: VecDeque<Chunk>,
    chunk_base: u64,
    largest_sent: Option<u64>,
    largest_acked: Option<u64>,
    loss_passes: u64,
    loss_time: Option<Instant>,
    pto_count: u32,
    last_eliciting: Option<Instant>,
    pub(crate) probes_pending: u8,
    /// Since when ack-eliciting packets wait without any acknowledgement progress.
    awaiting_since: Option<Instant>,
    pub(crate) window_lost: bool,
    pub(crate) failure: Option<CloseReason>,
    pub(crate) stats: SendStats,
    /// Buffers of resolved messages, handed back to the endpoint's pool by `reclaim`.
    freed: Vec<Vec<u8>>,
    /// Range sets of resolved messages, reused by the next ones (PROTOCOL.md §12: no
    /// allocation per message in steady state).
    spare_ranges: Vec<(RangeSet, RangeSet)>,
}

impl SendSide {
    pub(crate) fn new(resend: bool, close_on_loss: bool, config: &ReliabilityConfig) -> Self {
        SendSide {
            resend,
            close_on_loss,
            max_message_size: config.max_message_size,
            queue_budget: config.send_queue_bytes,
            queued_bytes: 0,
            retry_tries: config.retry_budget_tries,
            retry_time: config.retry_budget_time,
            messages: VecDeque::new(),
            base: 0,
            cum_bytes: 0,
            send_hint: 0,
            credit_messages: config.initial_window.0,
            credit_bytes: config.initial_window.1,
            forgiven_messages: 0,
            forgiven_bytes: 0,
            sent: VecDeque::new(),
            chunks: VecDeque::new(),
            chunk_base: 0,
            largest_sent: None,
            largest_acked: None,
            loss_passes: 0,
            loss_time: None,
            pto_count: 0,
            last_eliciting: None,
            probes_pending: 0,
            awaiting_since: None,
            window_lost: false,
            failure: None,
            stats: SendStats::default(),
            freed: Vec::new(),
            spare_ranges: Vec::new(),
        }
    }

    /// Queues a message, copied into a buffer from `pool`; returns its number.
    pub(crate) fn push(&mut self, data: &[u8], pool: &mut BufferPool) -> Result<u64, SendError> {
        self.push_with(data.len(), pool, |buf| buf.extend_from_slice(data))
    }

    /// Queues a message of `size` bytes that `fill` appends to its empty queued buffer (called
    /// only once the message is accepted), so a producer need not build it elsewhere first and
    /// the buffer is never zero-filled before it is written.
    pub(crate) fn push_with(
        &mut self,
        size: usize,
        pool: &mut BufferPool,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64, SendError> {
        if size > self.max_message_size {
            return Err(SendError::TooLarge {
                len: size,
                max: self.max_message_size,
            });
        }
        if self.queued_bytes.saturating_add(size) > self.queue_budget {
            return Err(SendError::QueueFull);
        }
        let mut data = pool.take(size);
        fill(&mut data);
        // The message is the `size` bytes it was accounted as. The pool hands out empty
        // buffers, so a fill that appended too little is padded with zeros, never with an
        // earlier message's bytes; one that appended exactly `size` costs nothing here.
        data.resize(size, 0);
        let number = self.end();
        let len = size as u64;
        self.cum_bytes = self.cum_bytes.saturating_add(len);
        self.queued_bytes = self.queued_bytes.saturating_add(size);
        let (mut unsent, acked) = self.spare_ranges.pop().unwrap_or_default();
        unsent.insert(0..len);
        self.messages.push_back(Some(OutMessage {
            len,
            data,
            end_offset: self.cum_bytes,
            unsent,
            acked,
            empty_pending: len == 0,
            chunks_in_flight: 0,
            first_sent: None,
            sent_up_to: 0,
            last_progress: None,
            tries: 0,
            loss_pass: 0,
            lost: false,
        }));
        Ok(number)
    }

    /// Bytes queued and not yet resolved.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The peer's WINDOW; credit only grows (a reordered old WINDOW changes nothing).
    pub(crate) fn on_window(&mut self, max_message: u64, max_bytes: u64) {
        self.credit_messages = self.credit_messages.max(max_message);
        self.credit_bytes = self.credit_bytes.max(max_bytes);
    }

    fn slot(&self, number: u64) -> Option<&OutMessage> {
        let index = usize::try_from(number.checked_sub(self.base)?).ok()?;
        self.messages.get(index)?.as_ref()
    }

    fn slot_mut(&mut self, number: u64) -> Option<&mut OutMessage> {
        let index = usize::try_from(number.checked_sub(self.base)?).ok()?;
        self.messages.get_mut(index)?.as_mut()
    }

    /// PROTOCOL.md §4: message m may be sent iff m < max message and the total length of
    /// messages 0..=m ≤ max bytes — less what the receiver will never see (module docs).
    fn credit_allows(&self, number: u64, message: &OutMessage) -> bool {
        number.saturating_sub(self.forgiven_messages) < self.credit_messages
            && message.end_offset.saturating_sub(self.forgiven_bytes) <= self.credit_bytes
    }

    /// One past the number of the newest message queued.
    fn end(&self) -> u64 {
        self.base.saturating_add(self.messages.len() as u64)
    }

    fn has_unsent(&self, message: &OutMessage) -> bool {
        // A non-RESEND message judged lost still sends its remaining fragments: the verdict may
        // be spurious (reordering), and sending them costs no more than it would have.
        (!message.lost || !self.resend) && (!message.unsent.is_empty() || message.empty_pending)
    }

    /// Whether a message has data that credit lets out now.
    pub(crate) fn has_sendable(&self) -> bool {
        let start = self.send_hint.max(self.base);
        for number in start..self.end() {
            if let Some(message) = self.slot(number) {
                if !self.credit_allows(number, message) {
                    return false;
                }
                if self.has_unsent(message) {
                    return true;
                }
            }
        }
        false
    }

    /// Whether any queued message has data not sent yet, within the peer's credit or not.
    pub(crate) fn has_unsent_any(&self) -> bool {
        self.messages.iter().flatten().any(|m| self.has_unsent(m))
    }

    /// Whether sent data still waits for acknowledgement.
    pub(crate) fn has_outstanding(&self) -> bool {
        self.sent
            .iter()
            .any(|p| p.state == PacketState::Outstanding)
    }

    fn next_pick(&mut self, room: usize, empty_packet_room: usize) -> Option<Pick> {
        let start = self.send_hint.max(self.base);
        let end = self.end();
        let mut number = start;
        while number < end {
            let Some(message) = self.slot(number) else {
                number = number.saturating_add(1);
                continue;
            };
            if !self.credit_allows(number, message) {
                return None;
            }
            if !self.has_unsent(message) {
                if number == self.send_hint {
                    self.send_hint = self.send_hint.saturating_add(1);
                }
                number = number.saturating_add(1);
                continue;
            }
            let whole_fits_empty =
                wire::data_encoded_len(number, message.len as usize) <= empty_packet_room;
            let untouched = message.len == 0
                || (message.acked.is_empty() && message.unsent.first() == Some(0..message.len));
            if untouched && whole_fits_empty {
                // A message that fits a packet goes whole as DATA, never split across packets.
                if wire::data_encoded_len(number, message.len as usize) <= room {
                    return Some(Pick {
                        number,
                        range: 0..message.len,
                        whole: true,
                    });
                }
                return None;
            }
            let range = message.unsent.first()?;
            let header = wire::fragment_encoded_len(number, message.len, range.start, 0);
            let avail = room.saturating_sub(header.saturating_add(2));
            let left = range.end.saturating_sub(range.start);
            if avail < MIN_FRAGMENT.min(usize::try_from(left).unwrap_or(usize::MAX)) || avail == 0 {
                return None;
            }
            let take = (avail as u64).min(left);
            return Some(Pick {
                number,
                range: range.start..range.start.saturating_add(take),
                whole: false,
            });
        }
        None
    }

    /// Writes DATA / DATA_FRAGMENT frames into `buf`, recording their chunks for the packet
    /// about to be sent. `empty_packet_room` is the payload room of a packet with nothing else in
    /// it. Returns bytes written.
    pub(crate) fn write_data(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        empty_packet_room: usize,
    ) -> usize {
        let mut at = 0;
        let resend = self.resend;
        let mut resent_any = false;
        while let Some(pick) = self.next_pick(buf.len().saturating_sub(at), empty_packet_room) {
            let Ok(index) = usize::try_from(pick.number.saturating_sub(self.base)) else {
                break;
            };
            let Some(message) = self.messages[index].as_mut() else {
                break;
            };
            let bytes = &message.data[pick.range.start as usize..pick.range.end as usize];
            // The payload is copied once, from the queued message straight into the packet.
            let frame = if pick.whole {
                Message::Data {
                    message_number: pick.number,
                    payload: bytes,
                }
            } else {
                Message::DataFragment {
                    message_number: pick.number,
                    total_length: message.len,
                    offset: pick.range.start,
                    bytes,
                }
            };
            let Ok(written) = frame.emit(&mut buf[at..]) else {
                break;
            };
            at = at.saturating_add(written);
            let resent = pick.range.start < message.sent_up_to
                || (message.len == 0 && message.first_sent.is_some());
            message.sent_up_to = message.sent_up_to.max(pick.range.end);
            message.unsent.remove(pick.range.clone());
            message.empty_pending = false;
            message.chunks_in_flight = message.chunks_in_flight.saturating_add(1);
            message.first_sent.get_or_insert(now);
            let mut freed = 0;
            if message.unsent.is_empty() && !resend {
                // Without RESEND the bytes are never needed again: free them and the budget now.
                let data = std::mem::take(&mut message.data);
                freed = data.len();
                self.freed.push(data);
            }
            self.queued_bytes = self.queued_bytes.saturating_sub(freed);
            resent_any |= resent;
            if resent {
                self.stats.retransmitted_bytes = self
                    .stats
                    .retransmitted_bytes
                    .saturating_add(pick.range.end.saturating_sub(pick.range.start));
            }
            self.chunks.push_back(Chunk {
                number: pick.number,
                range: pick.range,
            });
        }
        if resent_any {
            tally::retransmitted_packet();
        }
        at
    }

    /// Absolute index one past the last recorded chunk.
    pub(crate) fn chunk_end(&self) -> u64 {
        self.chunk_base.saturating_add(self.chunks.len() as u64)
    }

    /// Records an ack-eliciting packet that was just written.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_packet_sent(
        &mut self,
        now: Instant,
        pn: u64,
        size: u64,
        chunks: Range<u64>,
        window: bool,
        probe: Option<u16>,
    ) {
        if self.sent.capacity() == 0 {
            // Room for one to start: a channel that only sets up and idles keeps one packet's
            // record, not four (issue 12); a busy one grows by doubling from there.
            self.sent.reserve_exact(1);
        }
        self.sent.push_back(SentPacket {
            pn,
            time: now,
            size,
            state: PacketState::Outstanding,
            chunks,
            window,
            probe,
        });
        self.largest_sent = Some(pn);
        self.last_eliciting = Some(now);
        self.awaiting_since.get_or_insert(now);
        self.stats.packets_sent = self.stats.packets_sent.saturating_add(1);
        self.probes_pending = self.probes_pending.saturating_sub(1);
    }

    fn packet_index(&self, pn: u64) -> usize {
        self.sent.partition_point(|p| p.pn < pn)
    }

    /// Processes an ACK's inclusive ranges (highest first).
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        ranges: impl Iterator<Item = (u64, u64)>,
        ack_delay: Duration,
        path: &mut PathState,
    ) {
        let mut largest_newly_acked: Option<(u64, Instant)> = None;
        let mut any_new = false;
        let mut ranges = ranges.peekable();
        let Some(&(_, largest)) = ranges.peek() else {
            return;
        };
        if self.largest_sent.is_none_or(|sent| largest > sent) {
            // Acknowledges packets this side never wrote (the endpoint's own, or a forgery):
            // only the ranges that name recorded packets count, so there is nothing to do here.
        }
        for (low, high) in ranges {
            if low > high {
                continue;
            }
            let mut index = self.packet_index(low);
            while index < self.sent.len() && self.sent[index].pn <= high {
                if self.sent[index].state == PacketState::Outstanding {
                    self.sent[index].state = PacketState::Acked;
                    let packet = self.sent[index].clone();
                    if largest_newly_acked.is_none_or(|(pn, _)| packet.pn > pn) {
                        largest_newly_acked = Some((packet.pn, packet.time));
                    }
                    any_new = true;
                    self.on_packet_acked(now, &packet, path);
                }
                index = index.saturating_add(1);
            }
        }
        if !any_new {
            return;
        }
        let (largest_pn, sent_at) = largest_newly_acked.unwrap_or((0, now));
        self.largest_acked = Some(self.largest_acked.map_or(largest_pn, |l| l.max(largest_pn)));
        if self.largest_acked == Some(largest_pn) {
            // RFC 9002 §5.1: a sample only when the largest acknowledged is newly acknowledged.
            path.rtt
                .update(ack_delay, now.saturating_duration_since(sent_at));
        }
        self.pto_count = 0;
        self.awaiting_since = Some(now);
        self.detect_lost(now, path);
        self.pop_resolved();
    }

    fn on_packet_acked(&mut self, now: Instant, packet: &SentPacket, path: &mut PathState) {
        path.on_packet_acked(now, packet.time, packet.size, packet.probe);
        for index in packet.chunks.clone() {
            let Some(chunk) = self.chunk(index).cloned() else {
                continue;
            };
            let Some(message) = self.slot_mut(chunk.number) else {
                continue;
            };
            message.chunks_in_flight = message.chunks_in_flight.saturating_sub(1);
            let was_complete = message.complete();
            message.acked.insert(chunk.range.clone());
            let delivered = (!was_complete && message.len > 0 && message.complete())
                .then(|| now.saturating_duration_since(message.first_sent.unwrap_or(now)));
            message.last_progress = Some(now);
            message.tries = 0;
            message.unsent.remove(chunk.range.clone());
            if message.len == 0 {
                message.empty_pending = false;
            }
            if let Some(took) = delivered {
                tally::delivered(took);
            }
            self.resolve_if_done(chunk.number);
        }
    }

    fn chunk(&self, index: u64) -> Option<&Chunk> {
        let offset = usize::try_from(index.checked_sub(self.chunk_base)?).ok()?;
        self.chunks.get(offset)
    }

    /// Frees a message that is complete or lost for good.
    fn resolve_if_done(&mut self, number: u64) {
        let Some(message) = self.slot(number) else {
            return;
        };
        let finished = message.complete()
            || (self.resend && message.lost && message.chunks_in_flight == 0)
            || (!self.resend
                && message.unsent.is_empty()
                && !message.empty_pending
                && message.chunks_in_flight == 0);
        if !finished {
            return;
        }
        let Ok(index) = usize::try_from(number.saturating_sub(self.base)) else {
            return;
        };
        if let Some(mut message) = self.messages.get_mut(index).and_then(Option::take) {
            self.queued_bytes = self.queued_bytes.saturating_sub(message.data.len());
            self.freed.push(message.data);
            message.unsent.clear();
            message.acked.clear();
            if self.spare_ranges.len() < SPARE_RANGES {
                self.spare_ranges.push((message.unsent, message.acked));
            }
        }
        while let Some(None) = self.messages.front() {
            self.messages.pop_front();
            self.base = self.base.saturating_add(1);
        }
    }

    /// Marks a message lost for good: the receiver will never count it against its credit.
    fn give_up(&mut self, number: u64) {
        let resend = self.resend;
        let Some(message) = self.slot_mut(number) else {
            return;
        };
        if message.lost {
            return;
        }
        message.lost = true;
        if resend {
            message.unsent.clear();
            message.empty_pending = false;
        }
        let len = message.len;
        self.forgiven_messages = self.forgiven_messages.saturating_add(1);
        self.forgiven_bytes = self.forgiven_bytes.saturating_add(len);
        self.stats.messages_given_up = self.stats.messages_given_up.saturating_add(1);
        if self.resend && self.close_on_loss {
            // PROTOCOL.md §7: SCTP and TCP close when a message cannot be delivered. X and Y
            // judge loss at the receiver (a gap outliving the hold timeout): a sender's verdict
            // can be spurious under reordering.
            self.failure.get_or_insert(CloseReason::Loss);
        }
    }

    fn on_chunk_lost(&mut self, now: Instant, chunk: &Chunk) {
        let (resend, retry_tries, retry_time) = (self.resend, self.retry_tries, self.retry_time);
        let pass = self.loss_passes;
        let Some(message) = self.slot_mut(chunk.number) else {
            return;
        };
        message.chunks_in_flight = message.chunks_in_flight.saturating_sub(1);
        if message.lost || (message.len > 0 && message.acked.contains_range(&chunk.range)) {
            self.resolve_if_done(chunk.number);
            return;
        }
        if !resend {
            self.give_up(chunk.number);
            self.resolve_if_done(chunk.number);
            return;
        }
        // The retry budget counts tries without progress: an ack of any part resets it, and
        // a burst of losses found in one pass counts once.
        if message.loss_pass != pass {
            message.loss_pass = pass;
            message.tries = message.tries.saturating_add(1);
        }
        let expired = message.tries >= retry_tries
            || message
                .last_progress
                .or(message.first_sent)
                .is_some_and(|since| now.saturating_duration_since(since) >= retry_time);
        if expired {
            self.give_up(chunk.number);
            self.resolve_if_done(chunk.number);
            return;
        }
        // PROTOCOL.md §7.2: only RESEND channels retransmit, always in a new packet.
        if message.len == 0 {
            message.empty_pending = true;
        } else {
            message.unsent.insert(chunk.range.clone());
            for acked in message.acked.clone().iter() {
                message.unsent.remove(acked);
            }
        }
        self.send_hint = self.send_hint.min(chunk.number);
    }

    /// RFC 9002 §6.1: packet- and time-threshold loss detection.
    pub(crate) fn detect_lost(&mut self, now: Instant, path: &mut PathState) {
        let Some(largest_acked) = self.largest_acked else {
            return;
        };
        self.loss_time = None;
        self.loss_passes = self.loss_passes.saturating_add(1);
        let loss_delay = path.rtt.loss_delay();
        let lost_before = now.checked_sub(loss_delay);
        let mut lost_bytes: u64 = 0;
        let mut newest_lost: Option<Instant> = None;
        let mut lost_span: Option<(usize, usize)> = None;
        let mut index = 0;
        while index < self.sent.len() && self.sent[index].pn <= largest_acked {
            let packet = &self.sent[index];
            if packet.state == PacketState::Outstanding {
                let by_time = lost_before.is_some_and(|t| packet.time <= t);
                let by_count = largest_acked >= packet.pn.saturating_add(PACKET_THRESHOLD);
                if by_time || by_count {
                    self.sent[index].state = PacketState::Lost;
                    let packet = self.sent[index].clone();
                    self.stats.packets_lost = self.stats.packets_lost.saturating_add(1);
                    path.on_packet_lost(now, packet.size, packet.probe);
                    if packet.probe.is_none() {
                        lost_bytes = lost_bytes.saturating_add(packet.size);
                        newest_lost = Some(newest_lost.map_or(packet.time, |t| t.max(packet.time)));
                        lost_span = Some(lost_span.map_or((index, index), |(a, _)| (a, index)));
                    }
                    if packet.window {
                        self.window_lost = true;
                    }
                    for chunk_index in packet.chunks.clone() {
                        if let Some(chunk) = self.chunk(chunk_index).cloned() {
                            self.on_chunk_lost(now, &chunk);
                        }
                    }
                } else {
                    if let Some(at) = packet.time.checked_add(loss_delay) {
                        self.loss_time = Some(self.loss_time.map_or(at, |t| t.min(at)));
                    }
                }
            }
            index = index.saturating_add(1);
        }
        if let Some(newest) = newest_lost {
            let persistent = lost_span.is_some_and(|(first, last)| {
                let span = self.sent[last]
                    .time
                    .saturating_duration_since(self.sent[first].time);
                // RFC 9002 §7.6: a long run of losses with nothing acknowledged in between.
                path.rtt.has_sample()
                    && span > path.rtt.persistent_congestion_threshold()
                    && self
                        .sent
                        .range(first..=last)
                        .all(|p| p.state != PacketState::Acked)
            });
            path.on_congestion_event(now, newest, persistent, lost_bytes);
            tally::congestion_event();
        }
        self.pop_resolved();
    }

    fn pop_resolved(&mut self) {
        while self
            .sent
            .front()
            .is_some_and(|p| p.state != PacketState::Outstanding)
        {
            self.sent.pop_front();
        }
        let keep_from = self
            .sent
            .front()
            .map_or(self.chunk_end(), |p| p.chunks.start);
        while self.chunk_base < keep_from && !self.chunks.is_empty() {
            self.chunks.pop_front();
            self.chunk_base = self.chunk_base.saturating_add(1);
        }
        if !self.has_outstanding() {
            self.awaiting_since = None;
        }
    }

    /// RFC 9002 §6.2.1: when the probe timeout fires.
    fn pto_deadline(&self, path: &PathState) -> Option<Instant> {
        if !self.has_outstanding() {
            return None;
        }
        let backoff = 1u32 << self.pto_count.min(16);
        let base = path.rtt.pto_base();
        // The black-hole timer (`retry_time`) closes a channel that heard no acknowledgement
        // for that long. Doubled without bound, the probe timeout fits only ~6 probe rounds
        // into it, and at 30 % loss each way a round (probe out, its single ACK back) fails
        // about a quarter of the time: an idle receiver whose WINDOW went unacknowledged
        // then closed a live channel with Loss. Capped, about ten rounds fit.
        let cap = self
            .retry_time
            .checked_div(PTO_ROUNDS_PER_RETRY_TIME)
            .map_or(base, |share| share.max(base));
        self.last_eliciting?
            .checked_add(base.saturating_mul(backoff).min(cap))
    }

    /// The loss-detection timer: the loss time if set, else the probe timeout.
    pub(crate) fn loss_detection_deadline(&self, path: &PathState) -> Option<Instant> {
        self.loss_time.or_else(|| self.pto_deadline(path))
    }

    /// When waiting without acknowledgement counts as a dead path.
    pub(crate) fn black_hole_deadline(&self) -> Option<Instant> {
        if !self.close_on_loss {
            return None;
        }
        self.awaiting_since?.checked_add(self.retry_time)
    }

    pub(crate) fn on_timeout(&mut self, now: Instant, path: &mut PathState) {
        if self.black_hole_deadline().is_some_and(|at| at <= now) {
            // PROTOCOL.md §7: a channel that closes on loss reports a path that swallows all.
            self.failure.get_or_insert(CloseReason::Loss);
            return;
        }
        if self.loss_time.is_some_and(|at| at <= now) {
            self.detect_lost(now, path);
            return;
        }
        if self.pto_deadline(path).is_some_and(|at| at <= now) {
            self.pto_count = self.pto_count.saturating_add(1);
            self.stats.pto_fired = self.stats.pto_fired.saturating_add(1);
            self.probes_pending = PTO_PROBES;
            if self.resend {
                // RFC 9002 §6.2.4: probe with data in flight, without declaring it lost.
                let oldest = self
                    .sent
                    .iter()
                    .find(|p| p.state == PacketState::Outstanding)
                    .map(|p| p.chunks.clone());
                for index in oldest.into_iter().flatten() {
                    if let Some(chunk) = self.chunk(index).cloned()
                        && let Some(message) = self.slot_mut(chunk.number)
                    {
                        if message.lost || message.len == 0 {
                            continue;
                        }
                        message.unsent.insert(chunk.range.clone());
                        for acked in message.acked.clone().iter() {
                            message.unsent.remove(acked);
                        }
                        self.send_hint = self.send_hint.min(chunk.number);
                    }
                }
            }
        }
    }

    /// Forgets every packet in flight (the channel is going away), returning their bytes to
    /// the path.
    pub(crate) fn abandon(&mut self, path: &mut PathState) {
        for packet in self.sent.drain(..) {
            if packet.state == PacketState::Outstanding {
                path.forget_in_flight(packet.size, packet.probe);
            }
        }
        self.chunks.clear();
    }

    /// Frees the room of the queues that are empty (see [`ChannelReliability::shrink_idle`]).
    pub(crate) fn shrink_idle(&mut self) {
        if self.messages.is_empty() && self.sent.is_empty() && self.chunks.is_empty() {
            self.messages = VecDeque::new();
            self.sent = VecDeque::new();
            self.chunks = VecDeque::new();
            self.spare_ranges = Vec::new();
        }
    }

    /// Hands the buffers of resolved messages to `pool`.
    pub(crate) fn reclaim(&mut self, pool: &mut BufferPool) {
        for buf in self.freed.drain(..) {
            pool.give(buf);
        }
    }
}

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
