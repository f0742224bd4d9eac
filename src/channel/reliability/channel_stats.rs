//! The counters one channel keeps for the metrics layer.

/// Counters of one channel, for the metrics layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Ack-eliciting packets written.
    pub packets_sent: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Bytes of message data sent again.
    pub retransmitted_bytes: u64,
    /// Messages given up after loss or the retry budget.
    pub messages_given_up: u64,
    /// Probe timeouts that fired.
    pub probe_timeouts: u64,
    /// Duplicate or stale messages and fragments received.
    pub duplicates: u64,
    /// Messages dropped for exceeding the advertised credit.
    pub credit_drops: u64,
    /// Big messages refused for lack of reassembly memory.
    pub budget_drops: u64,
    /// Fragments or messages that broke a length rule.
    pub malformed: u64,
    /// Message numbers skipped by an ordered channel.
    pub skipped: u64,
    /// Incomplete messages dropped by the reassembly timeout.
    pub reassembly_timeouts: u64,
    /// Messages whose number no credit this side ever advertised could allow (lossy modes;
    /// in SCTP and TCP mode the channel closes with a protocol error instead).
    pub past_credit: u64,
    /// Fragments dropped because their message already held the most byte ranges allowed.
    pub range_drops: u64,
    /// Incomplete messages evicted to give a lighter peer its share of reassembly memory.
    pub reassembly_evictions: u64,
    /// Protocol errors that closed the channel (SCTP and TCP mode: data past credit).
    pub protocol_errors: u64,
}
