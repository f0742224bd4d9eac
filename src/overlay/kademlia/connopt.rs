//! Connection options for compression (seed 003 §3.3.1–2): which methods each peer reads, which
//! it prefers, and the compression of what the node sends and the bounded inflation of what it
//! receives (`rpc::compression`). A peer's options are state it causes, so they are kept for
//! at most `max_peer_options` peers; past that a new peer's offers are NACKed and counted.
//!
//! Negotiation: a node offers each method it reads with SET_CONNECTION_OPT option 0 and may
//! name the one it prefers with option 1; a receiver ACKs a method it reads too and NACKs one
//! it does not. Either ACK (to an offer sent, or of an offer received) means both sides read
//! the method. A node then sends a peer frames in the method that peer prefers, else in its
//! own preferred method when the peer reads it, else plain; and only frames of at least
//! `compress_above` bytes that shrink.

use super::node::{Dht, Tag, Transmit};
use crate::overlay::id::Contact;
use crate::overlay::rpc::compression::{self, Method, Negotiated};
use crate::overlay::rpc::{Body, ConnectionOpt, Opcode};
use crate::wire::PeerId;
use std::borrow::Cow;
use std::time::Instant;

impl Dht {
    /// The methods this node reads, as [`Method::bit`]s ("none" always).
    pub(super) fn methods(&self) -> u8 {
        self.config
            .compression
            .iter()
            .fold(Method::None.bit(), |bits, m| bits | m.bit())
    }

    /// Offers `to` every compression method this node reads, and its preferred one; the
    /// ACKs settle what it sends `to` from then on. `false` when the budget of requests in
    /// flight ran out before every offer went.
    pub fn offer_compression(&mut self, now: Instant, to: &Contact) -> bool {
        let mut offers: Vec<(Method, bool)> = self
            .config
            .compression
            .iter()
            .filter(|m| **m != Method::None)
            .map(|m| (*m, false))
            .collect();
        offers.extend(self.config.preferred_compression.map(|m| (m, true)));
        offers.into_iter().all(|(method, preferred)| {
            let code = u64::from(method.code());
            let opt = if preferred {
                ConnectionOpt::PreferredCompression(code)
            } else {
                ConnectionOpt::Compression(code)
            };
            let tag = Tag::Opt { method };
            self.send_request(
                now,
                to,
                Opcode::SetConnectionOpt,
                Body::SetConnectionOpt(opt),
                tag,
            )
        })
    }

    /// The method this node compresses frames for `peer` with.
    pub fn compression_for(&self, peer: &PeerId) -> Method {
        let Some(options) = self.peer_options.get(peer) else {
            return Method::None;
        };
        let mine = self.methods();
        match (options.preferred, self.config.preferred_compression) {
            (Some(m), _) if mine & m.bit() != 0 => m,
            (_, Some(m)) if options.reads & m.bit() != 0 => m,
            _ => Method::None,
        }
    }

    /// Forgets what `peer` negotiated and the signature checks it cost (its connection is
    /// gone), freeing its place.
    pub fn forget_peer(&mut self, peer: &PeerId) {
        self.peer_options.remove(peer);
        self.checks.remove(peer);
    }

    /// The entry of `peer`, made if the budget allows.
    fn options_mut(&mut self, peer: PeerId) -> Option<&mut Negotiated> {
        if !self.peer_options.contains_key(&peer)
            && self.peer_options.len() >= self.config.max_peer_options
        {
            self.stats.add(
                "weft_overlay_dropped_total",
                Some(("reason", "peer_options_full")),
                1,
            );
            return None;
        }
        Some(self.peer_options.entry(peer).or_default())
    }

    /// Serves a compression offer (`preferred`: option 1) of `method` from `peer`: `true` to
    /// ACK it.
    pub(super) fn accept_compression(
        &mut self,
        peer: PeerId,
        method: u64,
        preferred: bool,
    ) -> bool {
        let Some(method) = Method::from_code(method) else {
            return false;
        };
        if self.methods() & method.bit() == 0 {
            return false;
        }
        let Some(options) = self.options_mut(peer) else {
            return false;
        };
        options.reads |= method.bit();
        if preferred {
            options.preferred = Some(method);
        }
        true
    }

    /// The answer to an offer this node sent.
    pub(super) fn on_option_reply(&mut self, peer: PeerId, method: Method, ack: bool) {
        if ack && let Some(options) = self.options_mut(peer) {
            options.reads |= method.bit();
        }
    }

    /// Queues `frame` for `peer`, compressed when that was negotiated and pays.
    pub(super) fn queue(&mut self, peer: PeerId, addr: std::net::SocketAddr, frame: Vec<u8>) {
        let bytes = self.framed(&peer, frame);
        self.outbox.push_back(Transmit { peer, addr, bytes });
    }

    /// `frame` as it goes to `peer`: compressed when that was negotiated and pays.
    pub(super) fn framed(&self, peer: &PeerId, frame: Vec<u8>) -> Vec<u8> {
        let method = self.compression_for(peer);
        if method != Method::None && frame.len() >= self.config.compress_above {
            let wrapped = compression::wrap(method, &frame);
            // What would inflate past the ratio a receiver allows goes plain.
            let payload = wrapped.len().saturating_sub(compression::HEADER);
            if wrapped.len() < frame.len() && compression::within_ratio(payload, frame.len()) {
                return wrapped;
            }
        }
        frame
    }

    /// The frame in `bytes`: as it is, or inflated within the frame bound; `None` (counted)
    /// when a compressed one is refused.
    pub(super) fn inflate<'a>(&mut self, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        let limit = self.config.frame.value.max_bytes;
        // Past the bound on the wire, it is refused as too large by the frame parser.
        if !compression::is_wrapped(bytes) || bytes.len() > limit {
            return Some(Cow::Borrowed(bytes));
        }
        match compression::unwrap(bytes, self.methods(), limit) {
            Ok(frame) => Some(Cow::Owned(frame)),
            Err(error) => {
                self.stats.add(
                    "weft_overlay_dropped_total",
                    Some(("reason", error.reason())),
                    1,
                );
                None
            }
        }
    }
}
