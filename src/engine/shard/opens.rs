//! The shard's side of worker opens: by peer id or address here, and by bare address with
//! several shards, learning the peer first and handing the open to its owner (`../bare.rs`).

use super::Shard;
use crate::engine::bare::Start;
use crate::service::{Input, OpenFailure, Request};
use crate::session::PeerRecord;
use crate::wire::{Capabilities, CloseReason, PeerId};
use crossbeam_channel::TrySendError;
use std::net::SocketAddr;
use std::time::Instant;

/// Most peer records a shard keeps that its worker handed over with opens (about 200 bytes
/// each; the records of the configuration are not counted).
pub(crate) const MAX_TAUGHT_RECORDS: usize = 4096;

impl Shard {
    /// Opens a channel for the worker's `token` here, with `early` as its first message.
    pub(super) fn open(
        &mut self,
        now: Instant,
        token: u64,
        to: SocketAddr,
        peer: Option<PeerId>,
        capabilities: Capabilities,
        early: Option<Vec<u8>>,
    ) {
        let endpoint = &mut self.parts.endpoint;
        match endpoint.open_channel(now, to, peer, None, capabilities) {
            Ok(channel) => {
                self.opening.insert(channel, token);
                if let Some(data) = early {
                    // Queued on the opening channel, it leaves as early data with the
                    // CHANNEL_COOKIE (PROTOCOL.md §6 step 4); bounded like any early data.
                    let fits = data.len() <= endpoint.config().max_early_bytes;
                    if !fits || endpoint.send(now, channel, &data).is_err() {
                        self.stats.add("weft_shard_reply_errors_total", None, 1);
                    }
                    endpoint.recycle(data);
                }
            }
            Err(error) => {
                if let Some(data) = early {
                    endpoint.recycle(data);
                }
                self.notify(Input::OpenFailed {
                    token,
                    shard: self.parts.index,
                    reason: OpenFailure::Refused(error),
                });
            }
        }
    }

    /// Hands the endpoint a peer record the worker holds (a DHT contact's), so the open that
    /// follows is IK. A record the endpoint holds already stays (a configured one, or the same
    /// one taught before); one that does not verify is refused and counted. At most
    /// [`MAX_TAUGHT_RECORDS`] are kept, the oldest taught forgotten first: a peer can name
    /// ever new contacts, and a forgotten one only costs its next open XX's round trip.
    pub(super) fn teach(&mut self, record: PeerRecord) {
        let peer = record.peer_id();
        let endpoint = &mut self.parts.endpoint;
        match endpoint.peer_record(&peer) {
            Some(held) if *held == record => return,
            // Configured by the operator: not replaced by what the overlay learned.
            Some(_) if !self.taught.contains(&peer) => return,
            Some(_) => self.taught.retain(|p| *p != peer),
            None => {}
        }
        if endpoint.add_peer_record(record).is_err() {
            self.stats.add("weft_shard_reply_errors_total", None, 1);
            return;
        }
        self.taught.push_back(peer);
        if self.taught.len() > MAX_TAUGHT_RECORDS
            && let Some(oldest) = self.taught.pop_front()
        {
            endpoint.remove_peer_record(&oldest);
        }
    }

    /// An open by bare address with several shards: learns the peer first (`bare.rs`).
    pub(super) fn open_bare(
        &mut self,
        now: Instant,
        token: u64,
        to: SocketAddr,
        capabilities: Capabilities,
    ) {
        match self
            .bare
            .start(now, &self.parts.bare_routes, token, to, capabilities)
        {
            // A full transmit queue loses this probe only: it goes again every `open_retry`.
            Start::Probe(probe, len) => {
                let _ = self.parts.endpoint.queue_datagram(to, &probe[..len]);
            }
            Start::Full => self.bare_failed(token, "refused", limit("bare-address opens")),
        }
    }

    /// Opens what the probes answered in this turn's batch on the peers' owners.
    pub(super) fn open_answered(&mut self, now: Instant) {
        let mut answered = std::mem::take(&mut self.answered);
        for open in answered.drain(..) {
            self.open_owned(now, open.token, open.to, open.peer, open.capabilities);
        }
        self.answered = answered;
    }

    /// Opens to `peer` on the shard that owns it: here, or handed to it.
    pub(super) fn open_owned(
        &mut self,
        now: Instant,
        token: u64,
        to: SocketAddr,
        peer: PeerId,
        capabilities: Capabilities,
    ) {
        let owner = crate::service::owner_of_peer(peer, self.parts.shards);
        if owner == self.parts.index {
            self.count_bare("local");
            return self.open(now, token, to, Some(peer), capabilities, None);
        }
        let request = Request::Open {
            token,
            to,
            peer: Some(peer),
            capabilities,
            early: None,
            record: None,
        };
        match self.parts.opens_tx[owner].try_send(request) {
            Ok(()) => {
                self.count_bare("moved");
                let _ = self.parts.wakers[owner].wake();
            }
            // A shard never waits on another: a full queue refuses the open, and it is counted.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.bare_failed(token, "dropped", limit("open hand-over queue"));
            }
        }
    }

    /// Carries out the opens other shards resolved to peers this shard owns.
    pub(super) fn take_moved_opens(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Ok(request) = self.parts.opens_rx.try_recv() {
            any = true;
            self.request(now, request);
        }
        any
    }

    /// Repeats due probes of bare-address opens and fails those out of time.
    pub(super) fn poll_bare(&mut self, now: Instant) {
        let endpoint = &mut self.parts.endpoint;
        let expired = self.bare.poll(now, &self.parts.bare_routes, |to, probe| {
            // A full queue loses this repeat only; the next one or the deadline follows.
            let _ = endpoint.queue_datagram(to, probe);
        });
        for open in expired {
            self.bare_failed(
                open.token,
                "failed",
                OpenFailure::Failed(CloseReason::Timeout),
            );
        }
    }

    /// Tells the worker its open `token` failed, counted under `outcome`.
    pub(super) fn bare_failed(&mut self, token: u64, outcome: &'static str, reason: OpenFailure) {
        self.count_bare(outcome);
        self.notify(Input::OpenFailed {
            token,
            shard: self.parts.index,
            reason,
        });
    }

    pub(super) fn count_bare(&mut self, outcome: &'static str) {
        self.stats
            .add("weft_shard_bare_opens_total", Some(("outcome", outcome)), 1);
    }
}

/// A refusal for want of room in `what`.
fn limit(what: &'static str) -> OpenFailure {
    OpenFailure::Refused(crate::channel::OpenError::LimitReached(what))
}
