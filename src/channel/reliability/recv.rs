//! The receive side of one channel (PROTOCOL.md §7, §7.4, §7.5): duplicate suppression on
//! message numbers, delivery per mode (arrival order, or in order with a hold timeout for gaps),
//! reassembly of DATA_FRAGMENTs under a shared memory budget, and WINDOW credit.

use super::fragments::{FragmentRanges, RANGE_COST};
use super::rare::Rare;
use super::{Delivery, ReassemblyBudget, ReliabilityConfig};
use crate::channel::Payload;
use crate::channel::pool::BufferPool;
use crate::session::window::{CompactWindow, Seen};
use crate::wire::CloseReason;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Message numbers remembered for duplicate suppression: 1024 behind the newest.
type MessageWindow = CompactWindow<16>;

/// PROTOCOL.md §4: the credit both sides assume before any WINDOW. A peer may use it whatever
/// this side configured as its own initial window.
const PROTOCOL_INITIAL_CREDIT: (u64, u64) = (64, 256 << 10);

/// Most new message numbers one packet can carry: a DATA message takes at least 3 bytes (type,
/// length, number) and a UDP datagram at most 65,535.
const MAX_NEW_MESSAGES_PER_PACKET: u64 = 65_535 / 3;

/// Heap bytes an incomplete message costs besides its buffer and ranges: its entry in the map
/// of partial messages (the `Partial` and its share of a B-tree node), rounded up.
const PARTIAL_OVERHEAD: usize = 256;

/// Ranges charged to the budget at a time (an incomplete message starts with this many paid).
const RANGES_PER_CHARGE: usize = 16;

/// Bytes one charge of ranges costs.
const RANGE_CHARGE: usize = RANGE_COST * RANGES_PER_CHARGE;

/// A message being reassembled from fragments.
#[derive(Debug, PartialEq)]
struct Partial {
    /// The bytes so far, from a pooled buffer with room for the whole message reserved: in
    /// order they are appended (see [`write_at`]), so the buffer is never zero-filled.
    buf: Vec<u8>,
    /// The whole message's length (PROTOCOL.md §7.5: every fragment repeats it).
    total: u64,
    got: FragmentRanges,
    /// Ranges paid for in the budget.
    ranges_paid: usize,
    /// Bytes reserved in the budget for this message: buffer, ranges and overhead.
    charged: usize,
    started: Instant,
    last_progress: Instant,
}

/// Counters of the receive side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecvStats {
    pub(crate) duplicates: u64,
    pub(crate) credit_drops: u64,
    pub(crate) budget_drops: u64,
    pub(crate) malformed: u64,
    pub(crate) skipped: u64,
    pub(crate) reassembly_timeouts: u64,
    pub(crate) past_credit: u64,
    pub(crate) range_drops: u64,
    pub(crate) evictions: u64,
    pub(crate) protocol_errors: u64,
}

/// Adds one to a counter.
fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// The receive side of one channel.
#[derive(Debug, PartialEq)]
pub(crate) struct RecvSide {
    ordered: bool,
    resend: bool,
    close_on_loss: bool,
    max_message_size: u64,
    reassembly_timeout: Duration,
    reassembly_max_age: Duration,
    max_ranges: usize,
    seen: MessageWindow,
    /// Ordered modes: the next number to deliver. Unordered modes: the lowest number not seen
    /// (tracked only for gap detection in mode X).
    next: u64,
    /// Ordered modes: complete messages waiting behind a gap, with their arrival time.
    held: BTreeMap<u64, (Payload, Instant)>,
    /// Unordered mode X: since when the lowest gap has been open.
    gap_since: Option<Instant>,
    partial: BTreeMap<u64, Partial>,
    budget: Option<ReassemblyBudget>,
    pub(crate) events: VecDeque<Delivery>,
    accepted_messages: u64,
    accepted_bytes: u64,
    consumed_messages: u64,
    consumed_bytes: u64,
    advertised: (u64, u64),
    window: (u64, u64),
    /// A reliable channel's share of the workers' room (PROTOCOL.md §12): new credit in
    /// messages stays within it; `u16::MAX` for none. A u16 (windows never exceed the
    /// duplicate window's 1024 messages), so it fits the struct's padding: an idle channel's
    /// memory is budgeted.
    pub(crate) credit_cap: u16,
    /// The lowest and the latest packet number received on the channel (the credit check of
    /// the lossy modes, [`number_allowed`](Self::number_allowed)).
    lowest_pn: Option<u64>,
    current_pn: u64,
    pub(crate) hold: Duration,
    pub(crate) failure: Option<CloseReason>,
    /// Boxed on the first count: a healthy channel's stay zero (issue 12).
    pub(crate) stats: Rare<RecvStats>,
}

/// What an idle receive side (nothing buffered, held or half reassembled) keeps of its state:
/// the duplicate window, numbers, credit and counters. The rest equals a fresh side's, which
/// `ChannelReliability` checks before it gives the side's memory back (issue 12).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RecvIdle {
    seen: MessageWindow,
    next: u64,
    gap_since: Option<Instant>,
    /// Messages and bytes accepted, all consumed (nothing is buffered).
    accepted: (u64, u64),
    pub(crate) advertised: (u64, u64),
    lowest_pn: Option<u64>,
    current_pn: u64,
    hold: Duration,
    pub(crate) credit_cap: u16,
    pub(crate) stats: Rare<RecvStats>,
    budget: Option<ReassemblyBudget>,
}

impl RecvSide {
    /// Moves out what this side keeps once idle (see [`RecvIdle`]), leaving a fresh side's
    /// values in the parts that own memory, so the rest can be compared with a fresh side.
    pub(crate) fn take_idle(&mut self) -> RecvIdle {
        RecvIdle {
            seen: std::mem::take(&mut self.seen),
            next: self.next,
            gap_since: self.gap_since,
            accepted: (self.accepted_messages, self.accepted_bytes),
            advertised: self.advertised,
            lowest_pn: self.lowest_pn,
            current_pn: self.current_pn,
            hold: self.hold,
            credit_cap: self.credit_cap,
            stats: std::mem::take(&mut self.stats),
            budget: self.budget.take(),
        }
    }

    /// Sets the values an idle side kept, but not the parts that own memory.
    pub(crate) fn restore_values(&mut self, idle: &RecvIdle) {
        self.next = idle.next;
        self.gap_since = idle.gap_since;
        (self.accepted_messages, self.accepted_bytes) = idle.accepted;
        (self.consumed_messages, self.consumed_bytes) = idle.accepted;
        self.advertised = idle.advertised;
        self.lowest_pn = idle.lowest_pn;
        self.current_pn = idle.current_pn;
        self.hold = idle.hold;
        self.credit_cap = idle.credit_cap;
    }

    /// Puts back everything an idle side kept (on a fresh side, the whole state again).
    pub(crate) fn restore(&mut self, idle: RecvIdle) {
        self.restore_values(&idle);
        self.seen = idle.seen;
        self.stats = idle.stats;
        self.budget = idle.budget;
    }

    /// Frees the room of the delivery queue when it is empty (an idle channel).
    pub(crate) fn shrink_idle(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    pub(crate) fn new(
        ordered: bool,
        resend: bool,
        close_on_loss: bool,
        config: &ReliabilityConfig,
    ) -> Self {
        // Numbers older than the duplicate window are refused, so credit never reaches past it.
        let window = (
            config.receive_window.0.min(MessageWindow::SPAN),
            config.receive_window.1,
        );
        let initial = (
            config.initial_window.0.min(window.0),
            config.initial_window.1,
        );
        RecvSide {
            ordered,
            resend,
            close_on_loss,
            max_message_size: u64::try_from(config.max_message_size).unwrap_or(u64::MAX),
            reassembly_timeout: config.reassembly_timeout,
            reassembly_max_age: config.reassembly_max_age,
            max_ranges: config.max_reassembly_ranges.max(1),
            seen: MessageWindow::new(),
            next: 0,
            held: BTreeMap::new(),
            gap_since: None,
            partial: BTreeMap::new(),
            budget: None,
            events: VecDeque::new(),
            accepted_messages: 0,
            accepted_bytes: 0,
            consumed_messages: 0,
            consumed_bytes: 0,
            advertised: initial,
            window,
            credit_cap: u16::MAX,
            lowest_pn: None,
            current_pn: 0,
            hold: Duration::ZERO,
            failure: None,
            stats: Rare::default(),
        }
    }

    /// Messages and bytes received and not yet taken by the application.
    pub(crate) fn buffered(&self) -> (u64, u64) {
        (
            self.accepted_messages
                .saturating_sub(self.consumed_messages),
            self.accepted_bytes.saturating_sub(self.consumed_bytes),
        )
    }

    /// The credit advertised so far.
    pub(crate) fn advertised(&self) -> (u64, u64) {
        self.advertised
    }

    /// The window in force: the configured one, its message count lowered to the channel's
    /// share of the workers' room (PROTOCOL.md §12).
    fn window_now(&self) -> (u64, u64) {
        let messages = match self.credit_cap {
            u16::MAX => self.window.0,
            cap => self.window.0.min(u64::from(cap)),
        };
        (messages, self.window.1)
    }

    /// PROTOCOL.md §7.4: the credit the receiver can offer now, from what the application took.
    /// Never below what was advertised: credit once granted is not taken back.
    pub(crate) fn credit(&self) -> (u64, u64) {
        let window = self.window_now();
        (
            self.consumed_messages
                .saturating_add(window.0)
                .max(self.advertised.0),
            self.consumed_bytes
                .saturating_add(window.1)
                .max(self.advertised.1),
        )
    }

    /// Whether enough credit was freed to be worth a WINDOW (a quarter of the window in force,
    /// so a small share still reopens a sender that waits at its limit).
    pub(crate) fn window_due(&self) -> bool {
        let (messages, bytes) = self.credit();
        let window = self.window_now();
        messages >= self.advertised.0.saturating_add((window.0 / 4).max(1))
            || bytes >= self.advertised.1.saturating_add((window.1 / 4).max(1))
    }

    /// A WINDOW with [`credit`](Self::credit) was written.
    pub(crate) fn on_window_sent(&mut self, credit: (u64, u64)) {
        self.advertised = (
            self.advertised.0.max(credit.0),
            self.advertised.1.max(credit.1),
        );
    }

    /// A packet numbered `pn` arrived on the channel; its messages follow.
    pub(crate) fn on_packet(&mut self, pn: u64) {
        self.lowest_pn = Some(self.lowest_pn.map_or(pn, |lowest| lowest.min(pn)));
        self.current_pn = pn;
    }

    /// Takes the next event, counting a delivered message as consumed.
    pub(crate) fn poll_event(&mut self) -> Option<Delivery> {
        let event = self.events.pop_front()?;
        if let Delivery::Message { data, .. } = &event {
            self.consume(len_u64(data.len()));
        }
        Some(event)
    }

    fn consume(&mut self, len: u64) {
        self.consumed_messages = self.consumed_messages.saturating_add(1);
        self.consumed_bytes = self.consumed_bytes.saturating_add(len);
    }

    /// Whether the channel's mode can lose a message for good, so that a sender may run past
    /// credit by what it knows lost (see the top of `reliability/mod.rs`). SCTP and TCP cannot.
    fn reliable(&self) -> bool {
        self.resend && self.close_on_loss
    }

    /// The peer broke the protocol: SCTP and TCP close the channel.
    fn protocol_error(&mut self) {
        bump(&mut self.stats.get().protocol_errors);
        self.failure.get_or_insert(CloseReason::Protocol);
    }

    /// Whether some credit this side advertised could allow message `number`.
    ///
    /// In SCTP and TCP mode nothing is lost, so §4's rule is exact: `number < max_message` of
    /// some WINDOW (or the initial credit), and anything else is a protocol error. In the lossy
    /// modes the sender may run past that by the messages it knows lost, and it can know a loss
    /// only from an ACK: packets numbered below the lowest this side ever received were all sent
    /// before any ACK, within the credit; every later packet carries at most
    /// [`MAX_NEW_MESSAGES_PER_PACKET`] new numbers (first transmissions go in number order). A
    /// number past that bound is refused and counted.
    fn number_allowed(&mut self, number: u64) -> bool {
        let credit = self.advertised.0.max(PROTOCOL_INITIAL_CREDIT.0);
        if number < credit {
            return true;
        }
        if self.reliable() {
            self.protocol_error();
            return false;
        }
        let packets = self.lowest_pn.map_or(0, |lowest| {
            self.current_pn.saturating_sub(lowest).saturating_add(1)
        });
        let bound = credit.saturating_add(packets.saturating_mul(MAX_NEW_MESSAGES_PER_PACKET));
        if number >= bound {
            bump(&mut self.stats.get().past_credit);
            return false;
        }
        true
    }

    /// PROTOCOL.md §7.4: a receiver never buffers more than it advertised.
    fn admit(&mut self, len: u64) -> bool {
        if !self.fits_credit(len) {
            return false;
        }
        self.accepted_messages = self.accepted_messages.saturating_add(1);
        self.accepted_bytes = self.accepted_bytes.saturating_add(len);
        true
    }

    /// Whether one more message of `len` bytes fits the advertised credit; counts it if not.
    /// In SCTP and TCP mode a sender that keeps to §4 always fits (nothing it sent is ever
    /// forgiven), so a message past the most credit ever allowed is a protocol error.
    fn fits_credit(&mut self, len: u64) -> bool {
        let messages = self.accepted_messages.saturating_add(1);
        let bytes = self.accepted_bytes.saturating_add(len);
        if messages <= self.advertised.0 && bytes <= self.advertised.1 {
            return true;
        }
        let ever = (
            self.advertised.0.max(PROTOCOL_INITIAL_CREDIT.0),
            self.advertised.1.max(PROTOCOL_INITIAL_CREDIT.1),
        );
        if self.reliable() && (messages > ever.0 || bytes > ever.1) {
            self.protocol_error();
        } else {
            bump(&mut self.stats.get().credit_drops);
        }
        false
    }

    /// Whether `number` can still be used. A late copy of a message already skipped is counted as
    /// received and consumed at once, so the receiver's credit keeps pace with the sender's
    /// count of it.
    fn wanted(&mut self, number: u64, total_len: u64) -> bool {
        match self.seen.check(number) {
            Seen::Duplicate | Seen::TooOld => {
                bump(&mut self.stats.get().duplicates);
                false
            }
            Seen::Fresh if self.ordered && number < self.next => {
                self.seen.insert(number);
                self.accepted_messages = self.accepted_messages.saturating_add(1);
                self.accepted_bytes = self.accepted_bytes.saturating_add(total_len);
                self.consume(total_len);
                bump(&mut self.stats.get().duplicates);
                false
            }
            Seen::Fresh => true,
        }
    }

    /// A DATA message.
    pub(crate) fn on_data(
        &mut self,
        now: Instant,
        number: u64,
        payload: &[u8],
        pool: &mut BufferPool,
    ) {
        if self.failure.is_some() || self.partial.contains_key(&number) {
            return;
        }
        let len = len_u64(payload.len());
        if len > self.max_message_size {
            bump(&mut self.stats.get().malformed);
            return;
        }
        if !self.number_allowed(number) || !self.wanted(number, len) || !self.admit(len) {
            return;
        }
        let data = pool.message(payload, self.due(number));
        self.complete(now, number, data);
    }

    /// A DATA_FRAGMENT.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_fragment(
        &mut self,
        now: Instant,
        number: u64,
        total_len: u64,
        offset: u64,
        bytes: &[u8],
        budget: &mut ReassemblyBudget,
        pool: &mut BufferPool,
    ) {
        if self.failure.is_some() {
            return;
        }
        let end = offset.checked_add(len_u64(bytes.len()));
        let (Some(end), Ok(total)) = (end, usize::try_from(total_len)) else {
            bump(&mut self.stats.get().malformed);
            return;
        };
        if total_len > self.max_message_size || end > total_len {
            bump(&mut self.stats.get().malformed);
            return;
        }
        // `offset <= end <= total_len`, which fits a usize (checked above).
        let span = usize::try_from(offset).unwrap_or(total)..usize::try_from(end).unwrap_or(total);
        if self.partial.contains_key(&number) {
            self.on_more_fragment(now, number, total_len, offset..end, span, bytes, budget);
            return;
        }
        if !self.number_allowed(number) || !self.wanted(number, total_len) {
            return;
        }
        if len_u64(bytes.len()) == total_len {
            if self.admit(total_len) {
                let data = pool.message(bytes, self.due(number));
                self.complete(now, number, data);
            }
            return;
        }
        // PROTOCOL.md §7.5: allocate only once the channel's credit and the peer's and node's
        // reassembly budgets all have room for the announced length and its bookkeeping.
        if !self.fits_credit(total_len) {
            return;
        }
        let charged = total.saturating_add(PARTIAL_OVERHEAD + RANGE_CHARGE);
        if !budget.try_reserve(charged) {
            bump(&mut self.stats.get().budget_drops);
            return;
        }
        self.budget.get_or_insert_with(|| budget.clone());
        self.admit(total_len);
        let mut buf = pool.take(total);
        let mut got = FragmentRanges::new();
        if got.insert(offset..end, self.max_ranges).is_ok() {
            write_at(&mut buf, span.start, bytes);
        }
        self.partial.insert(
            number,
            Partial {
                buf,
                total: total_len,
                got,
                ranges_paid: RANGES_PER_CHARGE,
                charged,
                started: now,
                last_progress: now,
            },
        );
        self.progress(number, len_u64(bytes.len()), total_len);
        self.check_gap(now);
    }

    /// A fragment of a message already under reassembly. What it costs does not depend on how
    /// many fragments the message holds: O(log n) to record its range, and the ranges are
    /// bounded and paid for.
    #[allow(clippy::too_many_arguments)]
    fn on_more_fragment(
        &mut self,
        now: Instant,
        number: u64,
        total_len: u64,
        range: std::ops::Range<u64>,
        span: std::ops::Range<usize>,
        bytes: &[u8],
        budget: &mut ReassemblyBudget,
    ) {
        let max_ranges = self.max_ranges;
        let Some(partial) = self.partial.get_mut(&number) else {
            return;
        };
        if partial.total != total_len {
            bump(&mut self.stats.get().malformed);
            return;
        }
        if partial.got.adds_range(&range) && partial.got.len() >= partial.ranges_paid {
            if partial.ranges_paid >= max_ranges {
                bump(&mut self.stats.get().range_drops);
                return;
            }
            if !budget.try_reserve(RANGE_CHARGE) {
                bump(&mut self.stats.get().budget_drops);
                return;
            }
            partial.ranges_paid = partial.ranges_paid.saturating_add(RANGES_PER_CHARGE);
            partial.charged = partial.charged.saturating_add(RANGE_CHARGE);
        }
        match partial.got.insert(range, max_ranges) {
            Err(_) => {
                bump(&mut self.stats.get().range_drops);
                return;
            }
            Ok(0) => {
                bump(&mut self.stats.get().duplicates);
                return;
            }
            Ok(_) => {}
        }
        write_at(&mut partial.buf, span.start, bytes);
        partial.last_progress = now;
        let received = partial.got.covered();
        if received == total_len {
            if let Some(partial) = self.partial.remove(&number) {
                self.release(partial.charged);
                self.complete(now, number, Payload::Pooled(partial.buf));
            }
        } else {
            self.progress(number, received, total_len);
        }
    }

    fn release(&mut self, bytes: usize) {
        if let Some(budget) = &self.budget {
            budget.release(bytes);
        }
    }

    /// PROTOCOL.md §7.5: progress events, one pending per message at most.
    fn progress(&mut self, number: u64, received: u64, total: u64) {
        if let Some(Delivery::Progress {
            number: last,
            received: r,
            ..
        }) = self.events.back_mut()
            && *last == number
        {
            *r = received;
            return;
        }
        self.events.push_back(Delivery::Progress {
            number,
            received,
            total,
        });
    }

    /// Whether a complete message numbered `number` is handed on at once (not held behind a
    /// gap of an ordered channel): only then may it be lent the receive memory (`pool.rs`).
    fn due(&self, number: u64) -> bool {
        !self.ordered || number == self.next
    }

    fn complete(&mut self, now: Instant, number: u64, data: Payload) {
        self.seen.insert(number);
        if !self.ordered {
            self.events.push_back(Delivery::Message { number, data });
            self.check_gap(now);
            return;
        }
        if number == self.next {
            self.events.push_back(Delivery::Message { number, data });
            self.next = self.next.saturating_add(1);
            self.drain_held();
        } else {
            self.held.insert(number, (data, now));
        }
        self.check_gap(now);
    }

    /// Delivers the held messages that now follow in order; each is delivered once, so the
    /// loop is bounded by what `held` holds (itself bounded by the credit).
    fn drain_held(&mut self) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let (data, _) = entry.remove();
            self.events.push_back(Delivery::Message {
                number: self.next,
                data,
            });
            self.next = self.next.saturating_add(1);
        }
    }

    /// The deadline of the gap at the head, if one is open.
    pub(crate) fn hold_deadline(&self) -> Option<Instant> {
        if self.failure.is_some() {
            return None;
        }
        if self.ordered {
            // TCP never skips: it waits for the resend.
            if self.resend && self.close_on_loss {
                return None;
            }
            let (_, (_, arrived)) = self.held.first_key_value()?;
            arrived.checked_add(self.hold)
        } else if self.close_on_loss && !self.resend {
            self.gap_since?.checked_add(self.hold)
        } else {
            None
        }
    }

    /// Tracks the lowest open gap, for mode X (PROTOCOL.md §7: a loss is a gap still open when
    /// the hold timeout expires), and applies a zero hold timeout at once.
    fn check_gap(&mut self, now: Instant) {
        if !self.ordered {
            let lowest = self.next;
            // Past the window's span every number reads as fresh: the walk is bounded by it.
            for _ in 0..MessageWindow::SPAN {
                if self.next == u64::MAX || self.seen.check(self.next) != Seen::Duplicate {
                    break;
                }
                self.next = self.next.saturating_add(1);
            }
            if self.seen.top() > self.next {
                if self.next == lowest {
                    self.gap_since.get_or_insert(now);
                } else {
                    // The gap that was timed filled: the clock restarts for the next one, or
                    // under steady reordering a chain of short gaps would add up to one that
                    // outlived the hold timeout. A later gap may have opened earlier; it is
                    // then detected up to one hold timeout late, never falsely.
                    self.gap_since = Some(now);
                }
            } else {
                self.gap_since = None;
            }
        }
        self.on_timeout(now);
    }

    /// Expires gaps and incomplete messages.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        while self.hold_deadline().is_some_and(|at| at <= now) {
            if !self.ordered || self.close_on_loss {
                // PROTOCOL.md §7: X and Y close when a gap outlives the hold timeout.
                self.failure = Some(CloseReason::Loss);
                return;
            }
            // Streaming 1 and 2: the window shifts past the gap.
            let Some((&first_held, _)) = self.held.first_key_value() else {
                break;
            };
            let first = self.next;
            // Held messages are above `next` (a lower number is a late copy, never held).
            let Some(last) = first_held.checked_sub(1).filter(|&last| last >= first) else {
                break;
            };
            self.events.push_back(Delivery::Skipped { first, last });
            let stats = self.stats.get();
            stats.skipped = stats
                .skipped
                .saturating_add(last.abs_diff(first).saturating_add(1));
            self.next = first_held;
            while let Some((&number, _)) = self.partial.range(..first_held).next() {
                self.drop_partial(number);
            }
            self.drain_held();
        }
        let expired: Vec<u64> = self
            .partial
            .iter()
            .filter(|(_, p)| self.deadline_of(p).is_some_and(|at| at <= now))
            .map(|(&n, _)| n)
            .collect();
        for number in expired {
            bump(&mut self.stats.get().reassembly_timeouts);
            if self.reliable() {
                // The sender believes the acknowledged fragments delivered; a reliable channel
                // cannot recover from throwing them away, so it closes instead.
                self.failure = Some(CloseReason::Timeout);
            }
            self.drop_partial(number);
        }
    }

    /// When an incomplete message expires: no progress for the reassembly timeout, or older
    /// than the most any message may take (PROTOCOL.md §7.5).
    fn deadline_of(&self, partial: &Partial) -> Option<Instant> {
        let idle = partial.last_progress.checked_add(self.reassembly_timeout);
        let age = partial.started.checked_add(self.reassembly_max_age);
        idle.into_iter().chain(age).min()
    }

    /// Frees an incomplete message; its credit counts as consumed, and later fragments of it
    /// are duplicates.
    fn drop_partial(&mut self, number: u64) {
        if let Some(partial) = self.partial.remove(&number) {
            self.release(partial.charged);
            self.consume(partial.total);
            self.seen.insert(number);
        }
    }

    /// Frees incomplete messages, largest first, until `want` bytes are freed; returns the
    /// bytes freed. Bounded by the messages held (at most the channel's credit).
    pub(crate) fn evict(&mut self, want: usize) -> usize {
        let mut freed: usize = 0;
        while freed < want {
            let Some(number) = self
                .partial
                .iter()
                .max_by_key(|(_, p)| p.charged)
                .map(|(&n, _)| n)
            else {
                break;
            };
            let charged = self.partial.get(&number).map_or(0, |p| p.charged);
            bump(&mut self.stats.get().evictions);
            if self.reliable() {
                self.failure.get_or_insert(CloseReason::Refused);
            }
            self.drop_partial(number);
            freed = freed.saturating_add(charged);
        }
        freed
    }

    /// The earliest reassembly deadline.
    pub(crate) fn reassembly_deadline(&self) -> Option<Instant> {
        self.partial
            .values()
            .filter_map(|p| self.deadline_of(p))
            .min()
    }
}

/// Writes a fragment's `bytes` at `at` in a message under reassembly, whose length never
/// passes the announced total (checked before). Fragments that come in order append to the
/// pooled buffer, so it is never zero-filled; one that comes ahead of a gap zero-fills only the
/// gap, which the fragments it waits for then overwrite.
fn write_at(buf: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if buf.len() < at {
        buf.resize(at, 0);
    }
    let inside = buf.len().saturating_sub(at).min(bytes.len());
    let (over, past) = bytes.split_at(inside);
    if let Some(slot) = buf.get_mut(at..at.saturating_add(inside)) {
        slot.copy_from_slice(over);
    }
    buf.extend_from_slice(past);
}

/// A length as the protocol's u64.
fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

impl Drop for RecvSide {
    fn drop(&mut self) {
        let total = self
            .partial
            .values()
            .fold(0usize, |sum, p| sum.saturating_add(p.charged));
        self.release(total);
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
#[path = "recv_tests.rs"]
mod tests;
