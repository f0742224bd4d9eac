//! Opening a contact by IK (issue 15 point 4): a contact whose signed peer record the DHT
//! holds (`kademlia::keys`) is opened with it (`Context::open_known`), so the handshake needs
//! no cookie round trip and the first request rides the channel's early data; any other is
//! opened by peer id and address (XX, unless the endpoint has a session or a record already).
//! Counted by `weft_overlay_opens_total{handshake}`: what the open asked for (a session the
//! endpoint holds is reused either way).

use super::{OverlayService, wall};
use crate::service::host::{Context, HostError};
use crate::wire::{Capabilities, PeerId};
use std::net::SocketAddr;

impl OverlayService {
    /// Opens a channel to `peer` at `addr`, `early` riding the open.
    pub(super) fn open_contact(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        early: Option<&[u8]>,
        cx: &mut Context<'_>,
    ) -> Result<u64, HostError> {
        let sctp = Capabilities::RESEND;
        if let Some(record) = self.dht.record_for_open(&peer, wall()) {
            cx.stats()
                .add("weft_overlay_opens_total", Some(("handshake", "ik")), 1);
            return cx.open_known(addr, record, sctp, early);
        }
        cx.stats()
            .add("weft_overlay_opens_total", Some(("handshake", "xx")), 1);
        match early {
            Some(body) => cx.open_with(addr, Some(peer), sctp, body),
            None => cx.open(addr, Some(peer), sctp),
        }
    }
}
