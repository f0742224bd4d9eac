//! A connection building its own packets (PROTOCOL.md §3, §5, §7.3), with the control its
//! channels owe (`owed.rs`) inside, given a narrow [`Context`] of what it needs from its
//! endpoint: never the router. The endpoint only finds the connection, the channel and the
//! session, and acts on what the connection reports back (a rekey due, a deadline moved).
//! Which channels take turns, and their deadlines, are `turns.rs`'s.

use super::{Connection, Lane, TallySlots};
use crate::channel::outgoing::MAX_DATAGRAM;
use crate::channel::owed::Owed;
use crate::channel::seal::{COOKIE_HEAD, seal_into, secure_header};
use crate::channel::state::Phase;
use crate::session::RekeyPolicy;
use crate::stats::Stats;
use crate::wire::{Capabilities, Flags, Header, Message, PeerId};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What a connection is lent of its endpoint to build packets and arm timers: the node's id
/// and the settings it needs. Copied, so holding it borrows nothing of the endpoint.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Context {
    /// This node's peer id: every header's sender.
    pub(crate) local_id: PeerId,
    /// What turns the connection's key into its peer's id on the wire: zero unless the
    /// connection uses another local identity than the endpoint's first (`identities.rs`).
    pub(crate) peer_mask: PeerId,
    /// How long a channel that asked for keep-alives may go without sending (§7.7).
    pub(crate) keep_alive_interval: Duration,
    /// When sessions are replaced, and how many packets a key may seal or open (§5).
    pub(crate) rekey: RekeyPolicy,
    /// How long a session that stopped being the one we send under still opens packets.
    pub(crate) retired_session_grace: Duration,
    /// How long an idle peer's session is kept (§5).
    pub(crate) session_lifetime: Duration,
    /// How long a silent peer keeps its channels (§7.7).
    pub(crate) connection_reset_timeout: Duration,
    /// Whether new channels send keep-alive PINGs (§7.7).
    pub(crate) keep_alive: bool,
    /// Whether every message is sent back on its channel (the echo service, §6).
    pub(crate) echo: bool,
    /// Whether kind-0 (plaintext) packets may leave where no session exists (§3).
    pub(crate) allow_plaintext: bool,
    /// One peer's share of the node's reassembly memory (§7.5).
    pub(crate) reassembly_peer_bytes: usize,
}

impl Context {
    /// The peer's id on the wire for the connection keyed `key`.
    pub(crate) fn recipient(&self, key: PeerId) -> PeerId {
        PeerId(std::array::from_fn(|i| key.0[i] ^ self.peer_mask.0[i]))
    }
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

/// The room the data path's frames get after `head` bytes of cookie and `control` bytes of
/// owed control. A packet headed by neither gets the whole datagram, so that `write_frames`
/// can pad a PMTU probe above the current size (PROTOCOL.md §7.6); one headed by either
/// carries them on top of an ordinary packet: it must still fit the path MTU, and is no probe.
fn frames_room(max_payload: usize, head: usize, control: usize) -> usize {
    match head.saturating_add(control) {
        0 => usize::MAX,
        taken => max_payload.saturating_sub(taken),
    }
}

impl Connection {
    /// Writes one packet of the channel in `lane` into `buf` if it has something to send
    /// now: sealed in place under the current key of the connection's session when the peer
    /// has one, else a plaintext sequenced packet. Headed by CHANNEL_COOKIE while the initiator
    /// is unconfirmed (§6 step 4), then by the control the channel owes (`owed.rs`: PONGs, its
    /// confirmation, a keep-alive PING), then the data path's frames when the window and pacer
    /// let it send; owed control alone makes a packet of its own (outside the window, as an
    /// answer). `buf` is not cleared first.
    pub(crate) fn write_packet(
        &mut self,
        now: Instant,
        ctx: &Context,
        lane: Lane,
        buf: &mut [u8],
    ) -> Option<Written> {
        let channel = self.lanes.get_mut(lane)?;
        let head = match channel.phase {
            Phase::Open {
                cookie2: Some(cookie2),
            } if channel.initiator => Some((cookie2, channel.capabilities)),
            Phase::Open { .. } => None,
            Phase::Opening { .. } => return None,
        };
        let data = channel.data.as_mut()?;
        let path = self.path.as_mut()?;
        let frames = data.reliability.wants_to_send(now, path);
        let owes = data.owes();
        if !frames && !owes {
            return None;
        }
        // The confirmation carries the credit granted when it is written (§7.4).
        let window = if owes {
            data.reliability.advertised_window()
        } else {
            (0, 0)
        };
        let head_len = head.map_or(0, |_| COOKIE_HEAD);
        let limit = MAX_DATAGRAM.min(buf.len());
        // Under a session the packet is sealed with the channel's key (PROTOCOL.md §5).
        if let Some(entry) = self.session.as_mut() {
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
            let header = secure_header(
                phase,
                ctx.local_id,
                ctx.recipient(self.id),
                channel.id,
                wire_sequence,
            );
            let pn = data.next_pn;
            let reliability = &mut data.reliability;
            let mut owed = Owed::new(&mut data.owed_pongs, &mut data.owed_flags);
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
                let control = owed.write(region.get_mut(at..)?, window);
                at = at.saturating_add(control);
                let written = if frames {
                    let room = frames_room(path.max_payload(), head_len, control);
                    let end = at.saturating_add(room).min(region.len());
                    reliability.write_frames(now, pn, path, region.get_mut(at..end)?)
                } else {
                    0
                };
                // A cookie alone is no packet: something owed or sent must ride under it.
                (control.saturating_add(written) > 0).then_some(at.saturating_add(written))
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
            recipient: ctx.recipient(self.id),
            channel: channel.id,
            // The wire carries the packet number's low 32 bits (§3).
            sequence: Some(data.next_pn as u32),
        };
        let buf = buf.get_mut(..limit)?;
        let mut at = header.emit(buf).ok()?;
        if let Some((cookie2, capabilities)) = head {
            let cookie = Message::ChannelCookie {
                cookie2: &cookie2,
                capabilities,
            };
            at = at.saturating_add(cookie.emit(buf.get_mut(at..)?).ok()?);
        }
        let control = data.owed().write(buf.get_mut(at..)?, window);
        at = at.saturating_add(control);
        let written = if frames {
            let room = frames_room(path.max_payload(), head_len, control);
            let end = at.saturating_add(room).min(limit);
            data.reliability
                .write_frames(now, data.next_pn, path, buf.get_mut(at..end)?)
        } else {
            0
        };
        if control.saturating_add(written) == 0 {
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

    /// Lets the channels in `visit` (from [`channels_to_visit`](Self::channels_to_visit)) take
    /// turns at the path and writes at most one packet into `buf`, sealed under its session when
    /// the peer has one (PROTOCOL.md §7.3: the peer's channels share one window and pacer; each
    /// turn writes at most one packet, so a bulk channel cannot hold back another). Each turn's
    /// tallies are counted by its channel's mode in `tallies`. None when no channel may send.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        ctx: &Context,
        visit: &[Lane],
        buf: &mut [u8],
        (stats, tallies): (&mut Stats, &TallySlots),
    ) -> Option<Written> {
        let count = visit.len();
        for _ in 0..count {
            let turn = self.next_turn(count)?;
            let &lane = visit.get(turn)?;
            let written = self.write_packet(now, ctx, lane, buf);
            let mode = self
                .lanes
                .get(lane)
                .map_or(Capabilities::NONE, |c| c.capabilities);
            tallies.take(stats, mode);
            if written.is_some() {
                return written;
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use super::*;
    use crate::channel::connection::Timer;
    use crate::channel::pool::BufferPool;
    use crate::channel::reliability::{
        ChannelReliability, PathState, ReassemblyBudget, ReliabilityConfig,
    };
    use crate::channel::state::{Channel, ChannelData, Traffic};
    use crate::handle::Handle;
    use crate::session::{ChannelCrypto, Established, HandshakeKind, Role, SessionSlot};
    use crate::wire::{Capabilities, ChannelId, Packet, parse_payload};

    pub(crate) const LOCAL: PeerId = PeerId([7; 16]);
    pub(crate) const REMOTE: PeerId = PeerId([9; 16]);
    pub(crate) const CHANNEL: ChannelId = ChannelId(0x0102_0304);

    pub(crate) fn ctx() -> Context {
        Context {
            local_id: LOCAL,
            peer_mask: PeerId::ZERO,
            keep_alive_interval: Duration::from_secs(15),
            rekey: RekeyPolicy::default(),
            retired_session_grace: Duration::from_secs(3),
            session_lifetime: Duration::from_secs(180),
            connection_reset_timeout: Duration::from_secs(60),
            keep_alive: true,
            echo: false,
            allow_plaintext: true,
            reassembly_peer_bytes: 1 << 20,
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
            handle: Handle(0),
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
                owed_pongs: Default::default(),
                owed_flags: Default::default(),
            })),
            touched: false,
        }
    }

    pub(crate) fn open() -> Phase {
        Phase::Open { cookie2: None }
    }

    /// Stores `channel` in the connection's lanes.
    pub(crate) fn with(c: &mut Connection, channel: Channel) -> Lane {
        c.lanes.insert(channel).expect("a free lane")
    }

    pub(crate) fn data_of(c: &Connection, lane: Lane) -> Option<&ChannelData> {
        c.lanes.get(lane)?.data.as_deref()
    }

    pub(crate) fn data_mut(c: &mut Connection, lane: Lane) -> Option<&mut ChannelData> {
        c.lanes.get_mut(lane)?.data.as_deref_mut()
    }

    pub(crate) fn queue(
        c: &mut Connection,
        lane: Lane,
        now: Instant,
        pool: &mut BufferPool,
        message: &[u8],
    ) {
        let data = data_mut(c, lane).expect("data state");
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
    pub(crate) fn write_all(c: &mut Connection, ch: Lane, now: Instant) -> Vec<(Written, Vec<u8>)> {
        let mut packets = Vec::new();
        let mut buf = [0xAAu8; 2048];
        while packets.len() < 8 {
            let Some(written) = c.write_packet(now, &ctx(), ch, &mut buf) else {
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
        let mut c = connection(t0);
        let ch = with(&mut c, channel(t0, open(), false));
        queue(&mut c, ch, t0, &mut pool, b"hello");
        let packets = write_all(&mut c, ch, t0);
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
        assert_eq!(data_of(&c, ch).map(|d| d.next_pn), Some(41 + used));
        // Nothing left to send: nothing written, no number used.
        assert!(write_all(&mut c, ch, t0).is_empty());
        assert_eq!(data_of(&c, ch).map(|d| d.next_pn), Some(41 + used));
    }

    #[test]
    fn an_unconfirmed_initiator_heads_its_packets_with_the_cookie() {
        let t0 = Instant::now();
        let cookie2 = [5u8; 16];
        let phase = Phase::Open {
            cookie2: Some(cookie2),
        };
        let (mut pool, mut c) = (BufferPool::new(), connection(t0));
        let ch = with(&mut c, channel(t0, phase, true));
        queue(&mut c, ch, t0, &mut pool, b"early");
        let mut buf = [0u8; 2048];
        let written = c.write_packet(t0, &ctx(), ch, &mut buf).expect("a packet");
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
        let mut c = connection(t0);
        let ch = with(&mut c, channel(t0, opening, true));
        queue(&mut c, ch, t0, &mut pool, b"x");
        assert_eq!(c.write_packet(t0, &ctx(), ch, &mut buf), None);
        let mut c = connection(t0);
        let ch = with(&mut c, channel(t0, open(), false));
        c.path = None;
        queue(&mut c, ch, t0, &mut pool, b"x");
        assert_eq!(c.write_packet(t0, &ctx(), ch, &mut buf), None);
        assert_eq!(data_of(&c, ch).map(|d| d.next_pn), Some(41));
    }

    #[test]
    fn under_a_session_the_packet_is_sealed_with_the_channel_key_and_the_key_count_reported() {
        let t0 = Instant::now();
        let (mut pool, mut c) = (BufferPool::new(), connection(t0));
        let ch = with(&mut c, channel(t0, open(), false));
        let mut session = crate::channel::state::PeerSession {
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
        if let Some(data) = data_mut(&mut c, ch) {
            data.next_pn = 0;
        }
        queue(&mut c, ch, t0, &mut pool, b"secret");
        c.session = Some(session);
        let packets = write_all(&mut c, ch, t0);
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
    fn a_flush_writes_one_packet_per_call_with_the_channels_taking_turns() {
        let t0 = Instant::now();
        let (mut pool, mut stats) = (BufferPool::new(), Stats::new());
        let tallies = crate::channel::connection::tally::tests::slots(&mut stats);
        let mut c = connection(t0);
        let lanes = [1, 2].map(|n| {
            let mut ch = channel(t0, open(), false);
            ch.id = ChannelId(n);
            with(&mut c, ch)
        });
        for (at, &lane) in lanes.iter().enumerate() {
            c.order.push(lane);
            data_mut(&mut c, lane).expect("data state").order_at = at;
            queue(&mut c, lane, t0, &mut pool, b"turn");
            c.touch(lane);
        }
        let mut visit = Vec::new();
        c.channels_to_visit(&mut visit);
        assert_eq!(visit, lanes);
        let mut buf = [0u8; 2048];
        // One packet per call, until neither channel may send (a few each at most).
        let mut sent = Vec::new();
        for _ in 0..16 {
            let lent = (&mut stats, &tallies);
            let Some(written) = c.poll_transmit(t0, &ctx(), &visit, &mut buf, lent) else {
                break;
            };
            let packet = Packet::parse(&buf[..written.len]).expect("a valid packet");
            for payload in payloads(packet.messages()) {
                sent.push((packet.header.channel, payload));
            }
        }
        sent.sort();
        let turn = b"turn".to_vec();
        assert_eq!(sent, [(ChannelId(1), turn.clone()), (ChannelId(2), turn)]);
        // The flush ends with both channels' deadlines armed (their loss timers).
        assert!(c.flush_done(t0, &ctx(), &visit, &mut pool, &mut stats));
        assert!(
            lanes
                .iter()
                .all(|&lane| data_of(&c, lane).is_some_and(|d| d.armed.is_some()))
        );
        assert!(c.timers.get(Timer::Data).is_some());
    }
}
