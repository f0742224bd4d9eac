//! Requests in flight: their ids are hashcodes of a slab (PROTOCOL.md §8) sent through an
//! [`IndexCipher`], so a reply names exactly one live request, a late reply to a finished one
//! fails as stale instead of reaching the slot's next tenant, and ids cannot be guessed. Each
//! request's timeout follows the peer's measured round-trip time.

use super::opcode::Opcode;
use crate::handle::{Hashcode, IndexCipher, Slab, SlabError};
use crate::wire::PeerId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How a request's timeout follows the peer's round-trip time (RFC 6298's estimator).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TimeoutConfig {
    /// The timeout to a peer with no sample yet.
    pub initial: Duration,
    /// The shortest timeout, whatever the samples say.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// Added to a STORE's timeout: its ACK leaves only once the peer's store has committed
    /// the record (one fsync, which a loaded disk takes tens to hundreds of milliseconds
    /// over), so the path's RTT alone would time a healthy STORE out.
    pub commit: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> TimeoutConfig {
        TimeoutConfig {
            initial: Duration::from_secs(1),
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
            commit: Duration::from_secs(1),
        }
    }
}

/// A peer's smoothed round-trip time and its variation.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RttEstimate {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimate {
    /// Folds in one sample (from an RPC round trip, or the channel's own measurement).
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt.checked_div(2).unwrap_or_default();
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = self
                    .rttvar
                    .saturating_mul(3)
                    .saturating_add(delta)
                    .checked_div(4)
                    .unwrap_or_default();
                self.srtt = srtt.saturating_mul(7).saturating_add(rtt).checked_div(8);
            }
        }
    }

    /// The smoothed round-trip time, when there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The timeout for a request to this peer: srtt + 4·rttvar within the bounds.
    pub fn timeout(&self, config: &TimeoutConfig) -> Duration {
        match self.srtt {
            None => config.initial,
            Some(srtt) => srtt
                .saturating_add(self.rttvar.saturating_mul(4))
                .clamp(config.min, config.max),
        }
    }
}

/// Why a reply matched no request; each is a metric reason label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyMismatch {
    /// No such request, or it already finished (timed out or answered).
    #[error("reply to no live request")]
    Unknown,
    /// The request went to another peer, or was for another opcode.
    #[error("reply from the wrong peer or for the wrong opcode")]
    Mismatch,
}

impl ReplyMismatch {
    /// The reason label it is counted under.
    pub fn reason(self) -> &'static str {
        match self {
            ReplyMismatch::Unknown => "reply_unknown",
            ReplyMismatch::Mismatch => "reply_mismatch",
        }
    }
}

struct Entry<T> {
    to: PeerId,
    op: Opcode,
    sent: Instant,
    deadline: Instant,
    tag: T,
}

/// A request that timed out.
#[derive(Debug)]
pub struct Expired<T> {
    /// The peer that did not answer.
    pub to: PeerId,
    /// What was asked.
    pub op: Opcode,
    /// The caller's tag.
    pub tag: T,
}

/// The table of requests in flight, each with the caller's tag `T`.
pub struct Pending<T> {
    slab: Slab<Entry<T>>,
    cipher: IndexCipher,
    // Lazily cleaned: an answered request's deadline stays until it comes up, and is then
    // skipped because its slot no longer holds that deadline.
    deadlines: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl<T> Pending<T> {
    /// A table of at most `limit` requests whose wire ids are enciphered under `secret`.
    pub fn new(limit: usize, secret: &[u8; 32]) -> Pending<T> {
        Pending {
            slab: Slab::new(limit.clamp(1, crate::handle::MAX_LIMIT))
                .unwrap_or_else(|_| unreachable!("limit clamped into range")),
            cipher: IndexCipher::new(secret),
            deadlines: BinaryHeap::new(),
        }
    }

    /// Records a request to `to` and returns its wire id; `Err` when the table is full (the
    /// node's budget of requests in flight).
    pub fn insert(
        &mut self,
        now: Instant,
        to: PeerId,
        op: Opcode,
        timeout: Duration,
        tag: T,
    ) -> Result<u32, SlabError> {
        let deadline = now.checked_add(timeout).unwrap_or(now);
        let (_, code) = self.slab.insert(Entry {
            to,
            op,
            sent: now,
            deadline,
            tag,
        })?;
        self.deadlines.push(Reverse((deadline, code.0)));
        Ok(code.to_wire(&self.cipher))
    }

    /// Takes the request a reply from `from` for `op` answers, with its round-trip time.
    /// A reply to someone else's request, or for another opcode, leaves it in place.
    pub fn answer(
        &mut self,
        now: Instant,
        from: PeerId,
        wire_id: u32,
        op: Opcode,
    ) -> Result<(T, Duration), ReplyMismatch> {
        let code = Hashcode::from_wire(wire_id, &self.cipher);
        let entry = self
            .slab
            .get_by_code(code)
            .map_err(|_| ReplyMismatch::Unknown)?;
        // A FIND_VALUE whose key the peer lacks is answered as a FIND_NODE (seed 003 §6.11.1).
        let same_op = entry.op == op || (entry.op == Opcode::FindValue && op == Opcode::FindNode);
        if entry.to != from || !same_op {
            return Err(ReplyMismatch::Mismatch);
        }
        let entry = self
            .slab
            .remove_by_code(code)
            .map_err(|_| ReplyMismatch::Unknown)?;
        Ok((entry.tag, now.saturating_duration_since(entry.sent)))
    }

    /// The earliest deadline, possibly of a request already answered (a harmless early wake).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// The next request whose deadline is at or before `now`, removed.
    pub fn expire(&mut self, now: Instant) -> Option<Expired<T>> {
        while let Some(&Reverse((at, code))) = self.deadlines.peek() {
            if at > now {
                return None;
            }
            self.deadlines.pop();
            let live = self
                .slab
                .get_by_code(Hashcode(code))
                .is_ok_and(|entry| entry.deadline == at);
            if live && let Ok(entry) = self.slab.remove_by_code(Hashcode(code)) {
                return Some(Expired {
                    to: entry.to,
                    op: entry.op,
                    tag: entry.tag,
                });
            }
        }
        None
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// True when none is in flight.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_takes_its_request_once() {
        let now = Instant::now();
        let peer = PeerId([1; 16]);
        let mut pending = Pending::new(8, &[3; 32]);
        let id = pending
            .insert(now, peer, Opcode::Ping, Duration::from_secs(1), "a")
            .unwrap();
        assert_eq!(
            pending.answer(now, PeerId([2; 16]), id, Opcode::Ping).err(),
            Some(ReplyMismatch::Mismatch)
        );
        assert_eq!(
            pending.answer(now, peer, id, Opcode::FindNode).err(),
            Some(ReplyMismatch::Mismatch)
        );
        let later = now + Duration::from_millis(30);
        assert_eq!(
            pending.answer(later, peer, id, Opcode::Ping),
            Ok(("a", Duration::from_millis(30)))
        );
        assert_eq!(
            pending.answer(later, peer, id, Opcode::Ping).err(),
            Some(ReplyMismatch::Unknown)
        );
        // The answered request's deadline passes without an expiry.
        assert!(pending.expire(now + Duration::from_secs(2)).is_none());
    }

    #[test]
    fn requests_expire_at_their_deadline() {
        let now = Instant::now();
        let mut pending = Pending::new(1, &[3; 32]);
        let mut insert = |tag| {
            let timeout = Duration::from_secs(1);
            pending.insert(now, PeerId([1; 16]), Opcode::Ping, timeout, tag)
        };
        assert!(insert(7).is_ok());
        assert!(insert(8).is_err(), "past the table's limit");
        assert!(pending.expire(now).is_none());
        let expired = pending.expire(now + Duration::from_secs(1)).unwrap();
        assert_eq!(expired.tag, 7);
        assert!(pending.is_empty());
    }

    #[test]
    fn timeouts_follow_the_rtt() {
        let config = TimeoutConfig::default();
        let mut rtt = RttEstimate::default();
        assert_eq!(rtt.timeout(&config), config.initial);
        for _ in 0..20 {
            rtt.sample(Duration::from_millis(80));
        }
        let timeout = rtt.timeout(&config);
        assert!(timeout >= Duration::from_millis(100) && timeout < Duration::from_millis(200));
        rtt.sample(Duration::from_secs(60));
        assert_eq!(rtt.timeout(&config), config.max);
    }
}
