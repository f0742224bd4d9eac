//! A connection building its own data packets and arming its own channel deadlines
//! (PROTOCOL.md §3, §5, §7.3, §7.7), given a narrow [`Context`] of what it needs from its
//! endpoint: never the router. The endpoint only finds the connection, the channel and the
//! session, and acts on what the connection reports back (a rekey due, a deadline moved).

use super::Connection;
use crate::channel::outgoing::MAX_DATAGRAM;
use crate::channel::seal::{COOKIE_HEAD, seal_into, secure_header};
use crate::channel::state::{Channel, PeerSession, Phase};
use crate::wire::{Flags, Header, Message, PeerId};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What a connection is lent of its endpoint to build packets and arm timers: the node's id
/// and the settings it needs. Copied, so holding it borrows nothing of the endpoint.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Context {
    /// This node's peer id: every header's sender.
    pub(crate) local_id: PeerId,
    /// How long a channel that asked for keep-alives may go without sending (§7.7).
    pub(crate) keep_alive_interval: Duration,
}

/// One packet written into the caller's buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) to: SocketAddr,
    pub(crate) len: usize,
    /// Set when the packet was sealed: what the endpoint's rekey policy looks at (§5).
    pub(crate) sealed: Option<Sealed>,
}

/// The state of the key that sealed a packet, after sealing it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sealed {
    /// Packets the session's key has sealed so far.
    pub(crate) count: u64,
    /// When the session was made.
    pub(crate) created: Instant,
}

impl Connection {
    /// Writes one packet of `channel` (one of this connection's) into `buf` if it has
    /// something to send now: sealed in place under `session`'s current key when the peer has
    /// one, else a plaintext sequenced packet. Headed by CHANNEL_COOKIE while the initiator is
    /// unconfirmed (§6 step 4). `buf` is not cleared first.
    pub(crate) fn write_packet(
        &mut self,
        now: Instant,
        ctx: &Context,
        channel: &mut Channel,
        session: Option<&mut PeerSession>,
        buf: &mut [u8],
    ) -> Option<Written> {
        let head = match channel.phase {
            Phase::Open {
                cookie2: Some(cookie2),
            } if channel.initiator => Some((cookie2, channel.capabilities)),
            Phase::Open { .. } => None,
            Phase::Opening { .. } => return None,
        };
        let data = channel.data.as_mut()?;
        let path = self.path.as_mut()?;
        if !data.reliability.wants_to_send(now, path) {
            return None;
        }
        let limit = MAX_DATAGRAM.min(buf.len());
        // Under a session the packet is sealed with the channel's key (PROTOCOL.md §5).
        if let Some(entry) = session {
            let phase = entry.slot.sending_phase();
            let current = entry.slot.current()?;
            let created = current.created_at();
            let crypto = current.keys.channel(channel.id);
            // PROTOCOL.md §3: numbers under one key only go up, and the key refuses one it has
            // sealed past. A channel whose count fell behind its key's skips ahead to it (the
            // peer sees a gap, like loss) instead of having every packet refused for ever,
            // which would also leave its bytes in flight holding the peer's shared window shut.
            data.next_pn = data.next_pn.max(crypto.next_sequence());
            let wire_sequence = u32::try_from(data.next_pn).ok()?;
            let header = secure_header(phase, ctx.local_id, self.id, channel.id, wire_sequence);
            let pn = data.next_pn;
            // An unconfirmed packet carries the cookie on top of an ordinary one and is no
            // probe; any other gets the whole datagram, so that `write_frames` can pad a
            // PMTU probe above the current size (PROTOCOL.md §7.6).
            let room = match head {
                Some(_) => path.max_payload().saturating_sub(COOKIE_HEAD),
                None => usize::MAX,
            };
            let reliability = &mut data.reliability;
            let len = seal_into(buf, crypto, &header, limit, |region| {
                let mut at = 0;
                if let Some((cookie2, capabilities)) = head {
                    at = Message::ChannelCookie {
                        cookie2: &cookie2,
                        capabilities,
                    }
                    .emit(region)
                    .ok()?;
                }
                let end = at.saturating_add(room).min(region.len());
                let written = reliability.write_frames(now, pn, path, region.get_mut(at..end)?);
                (written > 0).then_some(at.saturating_add(written))
            })?;
            let count = crypto.packets_sent();
            data.next_pn = data.next_pn.saturating_add(1);
            data.last_sent = now;
            return Some(Written {
                to: self.address,
                len,
                sealed: Some(Sealed { count, created }),
            });
        }
        let header = Header {
            flags: Flags::SEQUENCED,
            sender: ctx.local_id,
            recipient: self.id,
            channel: channel.id,
            // The wire carries the packet number's low 32 bits (§3).
            sequence: Some(data.next_pn as u32),
        };
        let buf = buf.get_mut(..limit)?;
        let mut at = header.emit(buf).ok()?;
        let mut room = limit.saturating_sub(at);
        if let Some((cookie2, capabilities)) = head {
            let cookie = Message::ChannelCookie {
                cookie2: &cookie2,
                capabilities,
            };
            at = at.saturating_add(cookie.emit(buf.get_mut(at..)?).ok()?);
            // An unconfirmed packet carries the cookie on top of an ordinary one: it must still
            // fit the path MTU, and it is no probe.
            room = path.max_payload().saturating_sub(COOKIE_HEAD);
        }
        let end = at.saturating_add(room).min(limit);
        let written = data
            .reliability
            .write_frames(now, data.next_pn, path, buf.get_mut(at..end)?);
        if written == 0 {
            return None;
        }
        data.next_pn = data.next_pn.saturating_add(1);
        data.last_sent = now;
        Some(Written {
            to: self.address,
            len: at.saturating_add(written),
            sealed: None,
        })
    }

    /// Arms `channel`'s next deadline (its reliability timers, its keep-alive), and the data
    /// timer with it. Returns true when the connection's timer table may have moved, so the
    /// endpoint moves the connection's entry in the router's deadlines.
    pub(crate) fn rearm_channel(
        &mut self,
        now: Instant,
        ctx: &Context,
        channel: &mut Channel,
    ) -> bool {
        let Some(data) = channel.data.as_mut() else {
            return false;
        };
        let keep_alive = data
            .keep_alive
            .then(|| super::later(data.last_sent, ctx.keep_alive_interval));
        let Some(at) = [data.reliability.poll_timeout(), keep_alive]
            .into_iter()
            .flatten()
            .min()
        else {
            return false;
        };
        // A deadline in the past is due now. The channel keeps its earliest deadline, and so
        // does the heap of channel deadlines, whose minimum is the data timer (entries moved
        // in place: rearming per packet allocates nothing).
        let at = at.max(now);
        if data.armed.is_some_and(|armed| armed <= at) {
            return false;
        }
        data.armed = Some(at);
        self.set_channel_deadline(data.order_at, Some(at));
        true
    }
}
