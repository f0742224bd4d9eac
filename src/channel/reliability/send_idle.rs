//! What an idle send side keeps (issue 12), beside `send.rs` for its length: a child module,
//! so it reads the side's fields.

use super::{SendSide, SendStats};
use std::time::Instant;

/// What an idle send side (nothing queued, nothing in flight) keeps of its state: numbers,
/// credit and counters. The rest equals a fresh side's, which `ChannelReliability` checks
/// before it gives the side's memory back (issue 12).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct SendIdle {
    base: u64,
    cum_bytes: u64,
    send_hint: u64,
    credit: (u64, u64),
    forgiven: (u64, u64),
    chunk_base: u64,
    largest_sent: Option<u64>,
    largest_acked: Option<u64>,
    loss_passes: u64,
    last_eliciting: Option<Instant>,
    pto_count: u32,
    pub(crate) stats: SendStats,
}

impl SendSide {
    /// What this side keeps once idle (see [`SendIdle`]).
    pub(crate) fn idle(&self) -> SendIdle {
        SendIdle {
            base: self.base,
            cum_bytes: self.cum_bytes,
            send_hint: self.send_hint,
            credit: (self.credit_messages, self.credit_bytes),
            forgiven: (self.forgiven_messages, self.forgiven_bytes),
            chunk_base: self.chunk_base,
            largest_sent: self.largest_sent,
            largest_acked: self.largest_acked,
            loss_passes: self.loss_passes,
            last_eliciting: self.last_eliciting,
            pto_count: self.pto_count,
            stats: self.stats,
        }
    }

    /// Puts back what an idle side kept (on a fresh side, that is the whole state again).
    pub(crate) fn restore(&mut self, idle: &SendIdle) {
        self.base = idle.base;
        self.cum_bytes = idle.cum_bytes;
        self.send_hint = idle.send_hint;
        (self.credit_messages, self.credit_bytes) = idle.credit;
        (self.forgiven_messages, self.forgiven_bytes) = idle.forgiven;
        self.chunk_base = idle.chunk_base;
        self.largest_sent = idle.largest_sent;
        self.largest_acked = idle.largest_acked;
        self.loss_passes = idle.loss_passes;
        self.last_eliciting = idle.last_eliciting;
        self.pto_count = idle.pto_count;
        self.stats = idle.stats;
    }
}
