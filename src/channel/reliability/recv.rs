//! The receive side of one channel (PROTOCOL.md §7, §7.4, §7.5): duplicate suppression on
//! message numbers, delivery per mode (arrival order, or in order with a hold timeout for gaps),
//! reassembly of DATA_FRAGMENTs under a shared memory budget, and WINDOW credit.

use super::compat::CloseReason;
use super::ranges::RangeSet;
use super::{Delivery, ReassemblyBudget, ReliabilityConfig};
use crate::channel::pool::BufferPool;
use crate::session::window::{Seen, SlidingWindow};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Message numbers remembered for duplicate suppression: 1024 behind the newest.
type MessageWindow = SlidingWindow<16>;

/// A message being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    buf: Vec<u8>,
    got: RangeSet,
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
}

/// The receive side of one channel.
#[derive(Debug)]
pub(crate) struct RecvSide {
    ordered: bool,
    resend: bool,
    close_on_loss: bool,
    max_message_size: u64,
    reassembly_timeout: Duration,
    seen: MessageWindow,
    /// Ordered modes: the next number to deliver. Unordered modes: the lowest number not seen
    /// (tracked only for gap detection in mode X).
    next: u64,
    /// Ordered modes: complete messages waiting behind a gap, with their arrival time.
    held: BTreeMap<u64, (Vec<u8>, Instant)>,
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
    pub(crate) hold: Duration,
    pub(crate) failure: Option<CloseReason>,
    pub(crate) stats: RecvStats,
}

impl RecvSide {
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
            max_message_size: config.max_message_size as u64,
            reassembly_timeout: config.reassembly_timeout,
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
            hold: Duration::ZERO,
            failure: None,
            stats: RecvStats::default(),
        }
    }

    /// Messages and bytes received and not yet taken by the application.
    pub(crate) fn buffered(&self) -> (u64, u64) {
        (
            self.accepted_messages - self.consumed_messages,
            self.accepted_bytes - self.consumed_bytes,
        )
    }

    /// The credit advertised so far.
    pub(crate) fn advertised(&self) -> (u64, u64) {
        self.advertised
    }

    /// PROTOCOL.md §7.4: the credit the receiver can offer now, from what the application took.
    pub(crate) fn credit(&self) -> (u64, u64) {
        (
            self.consumed_messages + self.window.0,
            self.consumed_bytes + self.window.1,
        )
    }

    /// Whether enough credit was freed to be worth a WINDOW (a quarter of the window).
    pub(crate) fn window_due(&self) -> bool {
        let (messages, bytes) = self.credit();
        messages >= self.advertised.0 + (self.window.0 / 4).max(1)
            || bytes >= self.advertised.1 + (self.window.1 / 4).max(1)
    }

    /// A WINDOW with [`credit`](Self::credit) was written.
    pub(crate) fn on_window_sent(&mut self, credit: (u64, u64)) {
        self.advertised = (
            self.advertised.0.max(credit.0),
            self.advertised.1.max(credit.1),
        );
    }

    /// Takes the next event, counting a delivered message as consumed.
    pub(crate) fn poll_event(&mut self) -> Option<Delivery> {
        let event = self.events.pop_front()?;
        if let Delivery::Message { data, .. } = &event {
            self.consume(data.len() as u64);
        }
        Some(event)
    }

    fn consume(&mut self, len: u64) {
        self.consumed_messages += 1;
        self.consumed_bytes += len;
    }

    /// PROTOCOL.md §7.4: a receiver never buffers more than it advertised.
    fn admit(&mut self, len: u64) -> bool {
        if self.accepted_messages + 1 > self.advertised.0
            || self.accepted_bytes + len > self.advertised.1
        {
            self.stats.credit_drops += 1;
            return false;
        }
        self.accepted_messages += 1;
        self.accepted_bytes += len;
        true
    }

    /// Whether `number` can still be used. A late copy of a message already skipped is counted as
    /// received and consumed at once, so the receiver's credit keeps pace with the sender's
    /// count of it.
    fn wanted(&mut self, number: u64, total_len: u64) -> bool {
        match self.seen.check(number) {
            Seen::Duplicate | Seen::TooOld => {
                self.stats.duplicates += 1;
                false
            }
            Seen::Fresh if self.ordered && number < self.next => {
                self.seen.insert(number);
                self.accepted_messages += 1;
                self.accepted_bytes += total_len;
                self.consume(total_len);
                self.stats.duplicates += 1;
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
        if payload.len() as u64 > self.max_message_size {
            self.stats.malformed += 1;
            return;
        }
        if !self.wanted(number, payload.len() as u64) || !self.admit(payload.len() as u64) {
            return;
        }
        let data = pool.copy(payload);
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
        let end = offset.checked_add(bytes.len() as u64);
        if total_len > self.max_message_size || end.is_none_or(|end| end > total_len) {
            self.stats.malformed += 1;
            return;
        }
        let end = end.unwrap_or(total_len);
        if let Some(partial) = self.partial.get_mut(&number) {
            if partial.buf.len() as u64 != total_len {
                self.stats.malformed += 1;
                return;
            }
            if partial.got.insert(offset..end) == 0 {
                self.stats.duplicates += 1;
                return;
            }
            partial.buf[offset as usize..end as usize].copy_from_slice(bytes);
            partial.last_progress = now;
            let received = partial.got.count();
            if received == total_len {
                let partial = self
                    .partial
                    .remove(&number)
                    .map(|p| p.buf)
                    .unwrap_or_default();
                self.release(total_len);
                self.complete(now, number, partial);
            } else {
                self.progress(number, received, total_len);
            }
            return;
        }
        if !self.wanted(number, total_len) {
            return;
        }
        if bytes.len() as u64 == total_len {
            if self.admit(total_len) {
                let data = pool.copy(bytes);
                self.complete(now, number, data);
            }
            return;
        }
        // PROTOCOL.md §7.5: allocate only once the channel's credit and the peer's and node's
        // reassembly budgets all have room for the announced length.
        let fits_credit = self.accepted_messages < self.advertised.0
            && self.accepted_bytes + total_len <= self.advertised.1;
        if !fits_credit {
            self.stats.credit_drops += 1;
            return;
        }
        if !budget.try_reserve(total_len as usize) {
            self.stats.budget_drops += 1;
            return;
        }
        self.budget.get_or_insert_with(|| budget.clone());
        self.admit(total_len);
        let mut buf = vec![0; total_len as usize];
        buf[offset as usize..end as usize].copy_from_slice(bytes);
        self.partial.insert(
            number,
            Partial {
                buf,
                got: RangeSet::from_range(offset..end),
                last_progress: now,
            },
        );
        self.progress(number, bytes.len() as u64, total_len);
        self.check_gap(now);
    }

    fn release(&mut self, len: u64) {
        if let Some(budget) = &self.budget {
            budget.release(len as usize);
        }
    }

    /// PROTOCOL.md §7.5: progress events, one pending per message at most.
    fn progress(&mut self, number: u64, received: u64, total: u64) {
        if let Some(Delivery::Progress {
            number: last,
            received: r,
            ..
        }) = self.events.back_mut()
        {
            if *last == number {
                *r = received;
                return;
            }
        }
        self.events.push_back(Delivery::Progress {
            number,
            received,
            total,
        });
    }

    fn complete(&mut self, now: Instant, number: u64, data: Vec<u8>) {
        self.seen.insert(number);
        if !self.ordered {
            self.events.push_back(Delivery::Message { number, data });
            self.check_gap(now);
            return;
        }
        if number == self.next {
            self.events.push_back(Delivery::Message { number, data });
            self.next += 1;
            self.drain_held();
        } else {
            self.held.insert(number, (data, now));
        }
        self.check_gap(now);
    }

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
            self.next += 1;
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
            Some(*arrived + self.hold)
        } else if self.close_on_loss && !self.resend {
            Some(self.gap_since? + self.hold)
        } else {
            None
        }
    }

    /// Tracks the lowest open gap, for mode X (PROTOCOL.md §7: a loss is a gap still open when
    /// the hold timeout expires), and applies a zero hold timeout at once.
    fn check_gap(&mut self, now: Instant) {
        if !self.ordered {
            let lowest = self.next;
            while self.seen.check(self.next) == Seen::Duplicate {
                self.next += 1;
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
            let last = first_held - 1;
            self.events.push_back(Delivery::Skipped { first, last });
            self.stats.skipped += last - first + 1;
            self.next = first_held;
            let stale: Vec<u64> = self.partial.range(..first_held).map(|(&n, _)| n).collect();
            for number in stale {
                self.drop_partial(number);
            }
            self.drain_held();
        }
        let expired: Vec<u64> = self
            .partial
            .iter()
            .filter(|(_, p)| p.last_progress + self.reassembly_timeout <= now)
            .map(|(&n, _)| n)
            .collect();
        for number in expired {
            self.stats.reassembly_timeouts += 1;
            if self.resend && self.close_on_loss {
                // The sender believes the acknowledged fragments delivered; a reliable channel
                // cannot recover from throwing them away, so it closes instead.
                self.failure = Some(CloseReason::Timeout);
            }
            self.drop_partial(number);
        }
    }

    /// Frees an incomplete message; its credit counts as consumed, and later fragments of it
    /// are duplicates.
    fn drop_partial(&mut self, number: u64) {
        if let Some(partial) = self.partial.remove(&number) {
            let len = partial.buf.len() as u64;
            self.release(len);
            self.consume(len);
            self.seen.insert(number);
        }
    }

    /// The earliest reassembly deadline.
    pub(crate) fn reassembly_deadline(&self) -> Option<Instant> {
        self.partial
            .values()
            .map(|p| p.last_progress + self.reassembly_timeout)
            .min()
    }
}

impl Drop for RecvSide {
    fn drop(&mut self) {
        let total: u64 = self.partial.values().map(|p| p.buf.len() as u64).sum();
        self.release(total);
    }
}
