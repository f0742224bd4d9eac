//! A connection building its own data packets and arming its own channel deadlines
//! (PROTOCOL.md §3, §5, §7.3, §7.7), given a narrow [`Context`] of what it needs from its
//! endpoint: never the router. The endpoint only finds the connection, the channel and the
//! session, and acts on what the connection reports back (a rekey due, a deadline moved).

use super::Connection;
use crate::channel::outgoing::MAX_DATAGRAM;
use crate::channel::seal::{COOKIE_HEAD, seal_into, secure_header};
use crate::channel::state::{Channel, PeerSession, Phase};
use crate::handle::Handle;
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

    /// Fills `visit` (a kept buffer: flushing allocates nothing once it has grown) with the
    /// channels that get a turn at this flush: those touched since the last one, or all of
    /// them when the path's window opened since or the last flush stopped at a full queue (a
    /// channel held back then may send now). A packet that touches one channel thus costs one
    /// channel's work, however many the peer holds. `untouch` clears a listed channel's mark
    /// and says whether it is still to visit: one listed twice, closed, or whose slot another
    /// peer's channel took since, is visited once or not at all.
    pub(crate) fn channels_to_visit(
        &mut self,
        visit: &mut Vec<Handle>,
        untouch: impl FnMut(&Handle) -> bool,
    ) {
        visit.clear();
        std::mem::swap(&mut self.touched, visit);
        let rescan = std::mem::take(&mut self.rescan) || self.free_room() > self.room;
        visit.retain(untouch);
        if rescan {
            visit.clear();
            visit.extend_from_slice(&self.order);
        }
    }

    /// Lists `handle` (`channel`, one of this connection's) for the next flush's visit: a
    /// packet, a send or a timer changed it. Only a channel with data state takes turns, and
    /// a listed one is not listed again.
    pub(crate) fn touch(&mut self, handle: Handle, channel: &mut Channel) {
        if !channel.touched && channel.data.is_some() {
            channel.touched = true;
            self.touched.push(handle);
        }
    }

    /// Lists `handle` (`channel`, one of this connection's) again when it still wants to send
    /// (held back by the pacer): it keeps its place in the next flush's turns, whichever
    /// channel's timer wakes the connection.
    pub(crate) fn keep_waiting(&mut self, now: Instant, handle: Handle, channel: &mut Channel) {
        let (Some(path), Some(data)) = (self.path.as_ref(), channel.data.as_ref()) else {
            return;
        };
        if !channel.touched && data.reliability.wants_to_send(now, path) {
            channel.touched = true;
            self.touched.push(handle);
        }
    }

    /// Which of `count` visited channels takes the next turn (PROTOCOL.md §7.3: the peer's
    /// channels share one window and pacer, and take turns at it); None without a path.
    pub(crate) fn next_turn(&mut self, count: usize) -> Option<usize> {
        self.path.as_mut().map(|path| path.next_turn(count))
    }

    /// Notes the window's free room once a flush is done, so the next one sees it open.
    pub(crate) fn flushed(&mut self) {
        self.room = self.free_room();
    }

    fn free_room(&self) -> u64 {
        self.path.as_ref().map_or(0, |path| {
            path.congestion_window()
                .saturating_sub(path.bytes_in_flight())
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

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(super) mod tests {
    use super::*;
    use crate::channel::connection::Timer;
    use crate::channel::pool::BufferPool;
    use crate::channel::reliability::{
        ChannelReliability, PathState, ReassemblyBudget, ReliabilityConfig,
    };
    use crate::channel::state::{ChannelData, Traffic};
    use crate::handle::Handle;
    use crate::session::{ChannelCrypto, Established, HandshakeKind, Role, SessionSlot};
    use crate::wire::{Capabilities, ChannelId, Packet, parse_payload};
    use std::collections::VecDeque;

    pub(crate) const LOCAL: PeerId = PeerId([7; 16]);
    pub(crate) const REMOTE: PeerId = PeerId([9; 16]);
    pub(crate) const CHANNEL: ChannelId = ChannelId(0x0102_0304);

    pub(crate) fn ctx() -> Context {
        Context {
            local_id: LOCAL,
            keep_alive_interval: Duration::from_secs(15),
        }
    }

    /// A connection with its path made, as its first data channel makes it.
    pub(crate) fn connection(now: Instant) -> Connection {
        let address = "10.0.0.2:4000".parse().expect("address");
        let mut c = Connection::new(REMOTE, address, now);
        c.path = Some(PathState::new(&ReliabilityConfig::default(), now));
        c.budget = Some(ReassemblyBudget::new(1 << 20, 1 << 20));
        c
    }

    /// A reliable channel of the connection, first in its turn order, with its data state.
    pub(crate) fn channel(now: Instant, phase: Phase, initiator: bool) -> Channel {
        let capabilities = Capabilities::RESEND | Capabilities::ORDERED;
        Channel {
            peer: Handle(0),
            id: CHANNEL,
            capabilities,
            initiator,
            phase,
            tries: 0,
            retry_at: None,
            give_up_at: now,
            next_sequence: 0,
            next_message: 0,
            data: Some(Box::new(ChannelData {
                reliability: ChannelReliability::new(
                    capabilities,
                    &ReliabilityConfig::default(),
                    now,
                ),
                next_pn: 41,
                armed: None,
                last_sent: now,
                paused: false,
                waiting: false,
                keep_alive: true,
                reported: Default::default(),
                last_rtt: Duration::ZERO,
                order_at: 0,
            })),
            early: VecDeque::new(),
            early_bytes: 0,
            touched: false,
        }
    }

    pub(crate) fn open() -> Phase {
        Phase::Open { cookie2: None }
    }

    pub(crate) fn queue(
        channel: &mut Channel,
        now: Instant,
        pool: &mut BufferPool,
        message: &[u8],
    ) {
        let data = channel.data.as_mut().expect("data state");
        data.reliability.send(now, message, pool).expect("queued");
    }

    pub(crate) fn established(role: Role) -> Established {
        Established {
            kind: HandshakeKind::KnownResponder,
            role,
            peer_id: REMOTE,
            peer_ed25519: [1; 32],
            peer_x25519: [2; 32],
            initiator_to_responder: [3; 32],
            responder_to_initiator: [4; 32],
        }
    }

    pub(crate) fn payloads<'a>(messages: impl Iterator<Item = Message<'a>>) -> Vec<Vec<u8>> {
        messages
            .filter_map(|m| match m {
                Message::Data { payload, .. } => Some(payload.to_vec()),
                _ => None,
            })
            .collect()
    }

    /// Writes the channel's packets until it has none to send now (a few at most), each into
    /// a buffer that held other bytes before; returns them.
    pub(crate) fn write_all(
        c: &mut Connection,
        ch: &mut Channel,
        now: Instant,
        mut session: Option<&mut PeerSession>,
    ) -> Vec<(Written, Vec<u8>)> {
        let mut packets = Vec::new();
        let mut buf = [0xAAu8; 2048];
        while packets.len() < 8 {
            let Some(written) = c.write_packet(now, &ctx(), ch, session.as_deref_mut(), &mut buf)
            else {
                return packets;
            };
            packets.push((written, buf[..written.len].to_vec()));
        }
        panic!("a channel with one message queued kept writing");
    }

    #[test]
    fn plaintext_packets_are_written_in_place_under_the_channels_next_numbers() {
        let t0 = Instant::now();
        let mut pool = BufferPool::new();
        let (mut c, mut ch) = (connection(t0), channel(t0, open(), false));
        queue(&mut ch, t0, &mut pool, b"hello");
        let packets = write_all(&mut c, &mut ch, t0, None);
        let mut sent = Vec::new();
        for (n, (written, bytes)) in packets.iter().enumerate() {
            assert_eq!(written.to, c.address);
            assert_eq!(written.sealed, None);
            let packet = Packet::parse(bytes).expect("a valid packet");
            assert_eq!(packet.header.sender, LOCAL);
            assert_eq!(packet.header.recipient, REMOTE);
            assert_eq!(packet.header.channel, CHANNEL);
            assert_eq!(packet.header.sequence, Some(41 + n as u32));
            sent.extend(payloads(packet.messages()));
        }
        assert_eq!(sent, [b"hello".to_vec()]);
        let used = packets.len() as u64;
        assert_eq!(ch.data.as_ref().map(|d| d.next_pn), Some(41 + used));
        // Nothing left to send: nothing written, no number used.
        assert!(write_all(&mut c, &mut ch, t0, None).is_empty());
        assert_eq!(ch.data.as_ref().map(|d| d.next_pn), Some(41 + used));
    }

    #[test]
    fn an_unconfirmed_initiator_heads_its_packets_with_the_cookie() {
        let t0 = Instant::now();
        let cookie2 = [5u8; 16];
        let phase = Phase::Open {
            cookie2: Some(cookie2),
        };
        let (mut pool, mut c, mut ch) =
            (BufferPool::new(), connection(t0), channel(t0, phase, true));
        queue(&mut ch, t0, &mut pool, b"early");
        let mut buf = [0u8; 2048];
        let written = c
            .write_packet(t0, &ctx(), &mut ch, None, &mut buf)
            .expect("a packet");
        let packet = Packet::parse(&buf[..written.len]).expect("a valid packet");
        let first = packet.messages().next();
        assert!(
            matches!(first, Some(Message::ChannelCookie { cookie2: c2, .. }) if *c2 == cookie2),
            "{first:?}"
        );
        assert_eq!(payloads(packet.messages()), [b"early".to_vec()]);
    }

    #[test]
    fn an_opening_channel_or_a_connection_without_a_path_writes_nothing() {
        let t0 = Instant::now();
        let mut pool = BufferPool::new();
        let mut buf = [0u8; 2048];
        let opening = Phase::Opening { cookie1: [1; 16] };
        let (mut c, mut ch) = (connection(t0), channel(t0, opening, true));
        queue(&mut ch, t0, &mut pool, b"x");
        assert_eq!(c.write_packet(t0, &ctx(), &mut ch, None, &mut buf), None);
        let (mut c, mut ch) = (connection(t0), channel(t0, open(), false));
        c.path = None;
        queue(&mut ch, t0, &mut pool, b"x");
        assert_eq!(c.write_packet(t0, &ctx(), &mut ch, None, &mut buf), None);
        assert_eq!(ch.data.as_ref().map(|d| d.next_pn), Some(41));
    }

    #[test]
    fn under_a_session_the_packet_is_sealed_with_the_channel_key_and_the_key_count_reported() {
        let t0 = Instant::now();
        let (mut pool, mut c, mut ch) = (
            BufferPool::new(),
            connection(t0),
            channel(t0, open(), false),
        );
        let mut session = PeerSession {
            peer: REMOTE,
            address: c.address,
            slot: SessionSlot::new(),
            last_reset_handshake: None,
            bare: None,
            last_used: t0,
            established: t0,
            traffic: Traffic::default(),
        };
        session
            .slot
            .install(&established(Role::Initiator), t0)
            .expect("installed");
        // Numbers under a key start at the key's next one (0 for a new key), whatever the
        // channel's count said.
        if let Some(data) = ch.data.as_mut() {
            data.next_pn = 0;
        }
        queue(&mut ch, t0, &mut pool, b"secret");
        let packets = write_all(&mut c, &mut ch, t0, Some(&mut session));
        assert!(!packets.is_empty());
        // The responder's key for the channel opens every packet.
        let responder = established(Role::Responder);
        let mut keys = ChannelCrypto::new(
            responder.send_secret(),
            &responder.initiator_to_responder,
            CHANNEL,
        );
        let mut sent = Vec::new();
        for (n, (written, bytes)) in packets.into_iter().enumerate() {
            let n = n as u64;
            assert_eq!(
                written.sealed,
                Some(Sealed {
                    count: n + 1,
                    created: t0
                })
            );
            let mut bytes = bytes;
            let (header, header_len) = {
                let packet = Packet::parse(&bytes).expect("a valid packet");
                (packet.header, packet.header_bytes().len())
            };
            assert!(header.is_encrypted());
            assert_eq!(header.sequence, Some(n as u32));
            let (head, rest) = bytes.split_at_mut(header_len);
            let len = keys.open(n, head, rest).expect("authentic");
            let messages = parse_payload(&header, &rest[..len]).expect("valid messages");
            sent.extend(payloads(messages));
        }
        assert_eq!(sent, [b"secret".to_vec()]);
    }

    #[test]
    fn rearming_keeps_the_channels_earliest_deadline_and_moves_the_data_timer() {
        let t0 = Instant::now();
        let (mut pool, mut c, mut ch) = (
            BufferPool::new(),
            connection(t0),
            channel(t0, open(), false),
        );
        c.order = vec![Handle(0)];
        // Idle, with keep-alive on: the deadline is the keep-alive PING's.
        assert!(c.rearm_channel(t0, &ctx(), &mut ch));
        let keep_alive = t0 + Duration::from_secs(15);
        assert_eq!(c.timers.get(Timer::Data), Some(keep_alive));
        assert_eq!(c.poll_timeout(), Some(keep_alive));
        // Armed already for that time or earlier: nothing moves.
        assert!(!c.rearm_channel(t0, &ctx(), &mut ch));
        // A packet in flight brings its loss timer, earlier than the keep-alive.
        queue(&mut ch, t0, &mut pool, b"hello");
        assert!(!write_all(&mut c, &mut ch, t0, None).is_empty());
        assert!(c.rearm_channel(t0, &ctx(), &mut ch));
        let armed = c.timers.get(Timer::Data).expect("armed");
        assert!(armed > t0 && armed < keep_alive, "{armed:?}");
        assert_eq!(ch.data.as_ref().and_then(|d| d.armed), Some(armed));
        // The timer found due hands the channel back by its place in the turn order.
        assert_eq!(c.take_due_channel(armed), Some(0));
    }

    #[test]
    fn a_flush_visits_the_touched_channels_unless_the_window_opened() {
        let t0 = Instant::now();
        let mut c = connection(t0);
        c.order = vec![Handle(1), Handle(2), Handle(3)];
        c.flushed();
        let mut visit = vec![Handle(99)];
        // Touched since the last flush: 3, then 1 twice (visited once), and 7, no longer this
        // connection's.
        c.touched = vec![Handle(3), Handle(1), Handle(1), Handle(7)];
        let mut marked = vec![Handle(1), Handle(3)];
        let untouch = |marked: &mut Vec<Handle>, channel: &Handle| {
            let at = marked.iter().position(|m| m == channel);
            at.map(|at| marked.swap_remove(at)).is_some()
        };
        c.channels_to_visit(&mut visit, |h| untouch(&mut marked, h));
        assert_eq!(visit, [Handle(3), Handle(1)]);
        assert!(c.touched.is_empty() && marked.is_empty());
        // A flush that stopped at a full queue: every channel gets a turn next time.
        c.rescan = true;
        c.touched = vec![Handle(2)];
        c.channels_to_visit(&mut visit, |_| true);
        assert_eq!(visit, c.order);
        // Nothing touched and the window as it was: nothing to visit.
        c.channels_to_visit(&mut visit, |_| true);
        assert!(visit.is_empty());
        // The window's room grew since the last flush (an ACK freed it): all of them again.
        c.room = 0;
        c.channels_to_visit(&mut visit, |_| true);
        assert_eq!(visit, c.order);
        // Turns go round the visited channels.
        let turns: Vec<_> = (0..4).filter_map(|_| c.next_turn(3)).collect();
        assert_eq!(turns, [0, 1, 2, 0]);
        c.path = None;
        assert_eq!(c.next_turn(3), None);
    }

    #[test]
    fn a_touched_channel_is_listed_once_and_one_held_back_keeps_its_turn() {
        let t0 = Instant::now();
        let mut pool = BufferPool::new();
        let (mut c, mut ch) = (connection(t0), channel(t0, open(), false));
        c.touch(Handle(4), &mut ch);
        c.touch(Handle(4), &mut ch);
        assert_eq!(c.touched, [Handle(4)]);
        // Visited: no longer listed; with nothing to send it is not kept waiting.
        ch.touched = false;
        c.touched.clear();
        write_all(&mut c, &mut ch, t0, None);
        c.keep_waiting(t0, Handle(4), &mut ch);
        assert!(c.touched.is_empty());
        // With a message queued it wants to send, and keeps its place.
        queue(&mut ch, t0, &mut pool, b"more");
        c.keep_waiting(t0, Handle(4), &mut ch);
        c.keep_waiting(t0, Handle(4), &mut ch);
        assert_eq!(c.touched, [Handle(4)]);
        // A channel without data state takes no turns.
        let mut bare = channel(t0, open(), false);
        bare.data = None;
        c.touch(Handle(5), &mut bare);
        assert_eq!(c.touched, [Handle(4)]);
    }
}
