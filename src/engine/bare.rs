//! Opens by bare address with several shards (PROTOCOL.md §12).
//!
//! A peer's datagrams go to the shard that owns its peer id, but an open to an address without
//! a peer id cannot know that shard: the worker's request goes to shard 0. And the peer holds
//! one session per peer id, so shard 0 must not make one there: its handshake would replace the
//! session the owner has or is making with that peer, or be refused by it (PROTOCOL.md §5: only
//! a kind no lower replaces; a consensus client opening the same peer by IK from its record is
//! the case that broke, issue 15). So shard 0 only asks the peer its id, without a handshake:
//! it sends a kind-2 HANDSHAKE_INIT (a **probe**), which a responder always answers first with
//! a HANDSHAKE_COOKIE, statelessly and with no Diffie-Hellman (§5), and that answer's header
//! names the peer. Then the peer's owner opens by peer id, as for any open: its session or
//! handshake with that peer, if it has one, is the one the open uses, and its own handshake
//! proves the id (IK against the record, or XX checking the id, `peer_id_mismatch`), so a wrong
//! id makes the open fail, never reach another peer.
//!
//! The answer counts only if it comes from the probed address, to this node, names the probe's
//! session index (32 random bits) and echoes its INIT (BLAKE3 of 32 random bytes among others):
//! proof that the sender saw the probe, which an off-path sender cannot forge. It arrives on
//! the shard that owns the peer (steering by the sender's peer id), which takes the probe out
//! of the table every shard shares ([`BareRoutes`]) and opens: at once when it owns the peer,
//! else through the bounded queue to the owner. Nothing is steered by address: every other
//! datagram from the address goes by its peer id, so the owner's own handshake replies are
//! never taken from it, and no peer can use a probe to move its traffic to another shard.
//!
//! Bounds: at most [`MAX_PENDING`] probes per shard (more opens are refused at once, counted),
//! each repeated every `open_retry` until `open_timeout`. Only the node's own opens add probes,
//! never a peer's packet; a datagram is parsed here only when it comes from an address being
//! probed, and the shared table is locked only for a HANDSHAKE_COOKIE naming a probe's index.
//! Clippy's `arithmetic_side_effects` is denied here: a peer's datagrams are parsed here.

#![deny(clippy::arithmetic_side_effects)]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::channel::later;
use crate::session::mac::{MAC_LEN, constant_time_eq, init_echo};
use crate::wire::{Capabilities, ChannelId, Flags, Header, Message, Packet, PacketWriter, PeerId};

/// Bare-address opens one shard resolves at once.
pub(super) const MAX_PENDING: usize = 64;

/// The Noise XX first message: the initiator's ephemeral X25519 key (PROTOCOL.md §5).
const EPHEMERAL_LEN: usize = 32;

/// The HANDSHAKE_INIT body of a probe: kind, session index, the handshake's length (one varint
/// byte) and bytes, mac1, and a zero cookie length; the COOKIE echoes its BLAKE3 (§4).
const INIT_BODY_LEN: usize = 1 + 4 + 1 + EPHEMERAL_LEN + MAC_LEN + 1;

/// Room for a probe: header, type, length and body.
const PROBE_LEN: usize = 64 + INIT_BODY_LEN;

/// Handshake kind 2, XX: the only kind an initiator that knows no key may send (§5).
const KIND_XX: u8 = 2;

/// A probe in flight, as every shard sees it.
#[derive(Clone, Copy, Debug)]
struct Probe {
    to: SocketAddr,
    index: u32,
    echo: [u8; MAC_LEN],
    token: u64,
    capabilities: Capabilities,
}

/// An answered probe: the open the peer's owner makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Answered {
    /// The worker's token.
    pub(super) token: u64,
    /// The bare address.
    pub(super) to: SocketAddr,
    /// The peer the answer names, to be proven by the owner's handshake.
    pub(super) peer: PeerId,
    /// The mode asked for.
    pub(super) capabilities: Capabilities,
}

/// The probes in flight, shared by every shard. Changes are rare (an open by bare address
/// starts or ends), so each shard reads a copy ([`RouteView`]) that it refreshes only when the
/// generation moved: one atomic load per receive batch, no lock per datagram.
#[derive(Debug, Default)]
pub(super) struct BareRoutes {
    generation: AtomicU64,
    /// At most `MAX_PENDING` per shard.
    table: Mutex<Vec<Probe>>,
}

impl BareRoutes {
    /// Adds a probe; false when its address and index are taken already (it is not added).
    fn add(&self, probe: Probe) -> bool {
        let Ok(mut table) = self.table.lock() else {
            return false;
        };
        if table
            .iter()
            .any(|p| p.to == probe.to && p.index == probe.index)
        {
            return false;
        }
        table.push(probe);
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Removes the probe to `to` with `index`; false when it was not there (answered).
    fn remove(&self, to: SocketAddr, index: u32) -> bool {
        let Ok(mut table) = self.table.lock() else {
            return false;
        };
        let Some(at) = table.iter().position(|p| p.to == to && p.index == index) else {
            return false;
        };
        table.swap_remove(at);
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Takes the probe a COOKIE from `from` answers, if it echoes that probe's INIT.
    fn take(&self, from: SocketAddr, cookie: &Cookie) -> Option<Answered> {
        let mut table = self.table.lock().ok()?;
        let at = table.iter().position(|p| {
            p.to == from && p.index == cookie.index && constant_time_eq(&p.echo, &cookie.echo)
        })?;
        let probe = table.swap_remove(at);
        self.generation.fetch_add(1, Ordering::Release);
        Some(Answered {
            token: probe.token,
            to: probe.to,
            peer: cookie.peer,
            capabilities: probe.capabilities,
        })
    }

    /// Keeps of `pending` the probes still in the table: the others were answered.
    fn retain_unanswered(&self, pending: &mut Vec<Pending>) {
        let Ok(table) = self.table.lock() else {
            return;
        };
        pending.retain(|o| table.iter().any(|p| p.to == o.to && p.index == o.index));
    }
}

/// A shard's copy of [`BareRoutes`]: the addresses and indexes being probed.
#[derive(Debug, Default)]
pub(super) struct RouteView {
    generation: u64,
    probes: Vec<(SocketAddr, u32)>,
}

impl RouteView {
    /// Copies the shared table if it changed since the last copy.
    pub(super) fn refresh(&mut self, shared: &BareRoutes) {
        let generation = shared.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        if let Ok(table) = shared.table.lock() {
            self.probes.clear();
            self.probes.extend(table.iter().map(|p| (p.to, p.index)));
            self.generation = generation;
        }
    }

    /// The probe `datagram` from `from` answers, taken from the shared table: only a
    /// HANDSHAKE_COOKIE from a probed address, to `local`, naming a probe's index and echoing
    /// its INIT. For anything else, None: the datagram goes its usual way (a forged or late
    /// COOKIE to the endpoint, which drops and counts it).
    pub(super) fn answer(
        &self,
        shared: &BareRoutes,
        local: PeerId,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<Answered> {
        if self.probes.is_empty() || !self.probes.iter().any(|p| p.0 == from) {
            return None;
        }
        let cookie = parse_cookie(datagram, local)?;
        if !self.probes.contains(&(from, cookie.index)) {
            return None;
        }
        shared.take(from, &cookie)
    }
}

/// What a HANDSHAKE_COOKIE says that a probe needs.
#[derive(Debug)]
struct Cookie {
    index: u32,
    echo: [u8; MAC_LEN],
    peer: PeerId,
}

/// The COOKIE a plaintext packet to `local` on the default channel begins with.
fn parse_cookie(datagram: &[u8], local: PeerId) -> Option<Cookie> {
    let packet = Packet::parse(datagram).ok()?;
    let header = packet.header;
    if header.is_encrypted()
        || !header.channel.is_default()
        || header.recipient != local
        || header.sender.is_zero()
    {
        return None;
    }
    match packet.messages().next()? {
        Message::HandshakeCookie {
            receiver_index,
            echo,
            ..
        } => Some(Cookie {
            index: receiver_index,
            echo: *echo,
            peer: header.sender,
        }),
        _ => None,
    }
}

/// Writes the probe from `local` with `index` and `ephemeral` into `buf`; returns its length
/// and the echo its COOKIE must carry.
fn write_probe(
    buf: &mut [u8],
    local: PeerId,
    index: u32,
    ephemeral: &[u8; EPHEMERAL_LEN],
) -> Option<(usize, [u8; MAC_LEN])> {
    let header = Header {
        flags: Flags::default(),
        sender: local,
        recipient: PeerId::ZERO,
        channel: ChannelId::DEFAULT,
        sequence: None,
    };
    let mut writer = PacketWriter::new(buf, &header).ok()?;
    writer
        .push(&Message::HandshakeInit {
            kind: KIND_XX,
            sender_index: index,
            handshake: ephemeral,
            // §5: mac1 is all zero for kind 2.
            mac1: &[0; MAC_LEN],
            cookie: None,
        })
        .ok()?;
    let len = writer.try_finish().ok()?;
    // The INIT is the packet's one message: its body is the packet's last bytes.
    let body = buf.get(len.checked_sub(INIT_BODY_LEN)?..len)?;
    Some((len, init_echo(body)))
}

/// An open by bare address waiting for its probe's answer, on the shard it started on.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    /// The worker's token.
    pub(super) token: u64,
    /// The bare address.
    pub(super) to: SocketAddr,
    index: u32,
    ephemeral: [u8; EPHEMERAL_LEN],
    /// When the probe goes again (it or its answer may be lost; the peer keeps no state).
    retry_at: Instant,
    /// When the open fails.
    deadline: Instant,
}

/// What [`BareOpens::start`] says to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// Send this probe to the address: its first `len` bytes.
    Probe([u8; PROBE_LEN], usize),
    /// Too many opens resolve already.
    Full,
}

/// One shard's bare-address opens waiting for their probe's answer.
#[derive(Debug)]
pub(super) struct BareOpens {
    local: PeerId,
    pending: Vec<Pending>,
    /// The shared table's generation when this shard last dropped its answered probes.
    seen: u64,
    /// How often a probe is repeated, and how long an open may take to resolve.
    retry: Duration,
    timeout: Duration,
}

impl BareOpens {
    /// The opens of a shard of the node `local`.
    pub(super) fn new(local: PeerId, retry: Duration, timeout: Duration) -> BareOpens {
        BareOpens {
            local,
            pending: Vec::new(),
            seen: 0,
            retry,
            timeout,
        }
    }

    /// Starts resolving `to` for the worker's open `token`: a probe, with its answer expected
    /// by every shard.
    pub(super) fn start(
        &mut self,
        now: Instant,
        routes: &BareRoutes,
        token: u64,
        to: SocketAddr,
        capabilities: Capabilities,
    ) -> Start {
        if self.pending.len() >= MAX_PENDING {
            return Start::Full;
        }
        // 32 random bits of index: a second try only when an open to the same address drew
        // the same index.
        for _ in 0..4 {
            let index: u32 = rand::random();
            let ephemeral: [u8; EPHEMERAL_LEN] = rand::random();
            let mut datagram = [0u8; PROBE_LEN];
            let Some((len, echo)) = write_probe(&mut datagram, self.local, index, &ephemeral)
            else {
                return Start::Full;
            };
            let probe = Probe {
                to,
                index,
                echo,
                token,
                capabilities,
            };
            if routes.add(probe) {
                self.pending.push(Pending {
                    token,
                    to,
                    index,
                    ephemeral,
                    retry_at: later(now, self.retry),
                    deadline: later(now, self.timeout),
                });
                return Start::Probe(datagram, len);
            }
        }
        Start::Full
    }

    /// Forgets the probes another shard answered, removes and returns the opens whose
    /// deadline passed, and calls `send` with each probe due again.
    pub(super) fn poll(
        &mut self,
        now: Instant,
        routes: &BareRoutes,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) -> Vec<Pending> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let generation = routes.generation.load(Ordering::Acquire);
        if generation != self.seen {
            self.seen = generation;
            routes.retain_unanswered(&mut self.pending);
        }
        let mut expired = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let open = self.pending[i];
            if open.deadline <= now {
                self.pending.swap_remove(i);
                // Answered meanwhile: the owner has the open, nothing failed.
                if routes.remove(open.to, open.index) {
                    expired.push(open);
                }
                continue;
            }
            if open.retry_at <= now {
                self.pending[i].retry_at = later(now, self.retry);
                let mut datagram = [0u8; PROBE_LEN];
                if let Some((len, _)) =
                    write_probe(&mut datagram, self.local, open.index, &open.ephemeral)
                {
                    send(open.to, &datagram[..len]);
                }
            }
            i = i.saturating_add(1);
        }
        expired
    }

    /// The earliest retry or deadline, when any open waits.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .iter()
            .map(|p| p.retry_at.min(p.deadline))
            .min()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::channel::{Endpoint, EndpointConfig};
    use crate::session::Identity;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn identity(secret: u8) -> Identity {
        Identity::from_secret_bytes([secret; 32], [secret.wrapping_add(1); 32])
    }

    /// What `responder` sends back when handed `datagram` from `from`.
    fn answer_of(
        responder: &mut Endpoint,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Vec<u8> {
        let mut bytes = datagram.to_vec();
        responder.handle(now, from, &mut bytes);
        let mut buf = vec![0u8; 2048];
        let sent = responder.poll_transmit(&mut buf).expect("an answer");
        assert_eq!(sent.destination, from);
        buf.truncate(sent.len);
        assert!(
            responder.poll_transmit(&mut [0; 2048]).is_none(),
            "one answer"
        );
        buf
    }

    /// A probe from us at `addr(1)` to a real responder at `addr(2)`, and the COOKIE it got.
    struct Probed {
        opens: BareOpens,
        routes: BareRoutes,
        view: RouteView,
        probe: Vec<u8>,
        cookie: Vec<u8>,
        local: PeerId,
        peer: PeerId,
        responder: Endpoint,
    }

    fn probed(now: Instant) -> Probed {
        let (us, them) = (identity(3), identity(9));
        let mut responder = Endpoint::new(EndpointConfig::default(), them.clone(), [9; 32], now);
        let routes = BareRoutes::default();
        let second = Duration::from_secs(1);
        let mut opens = BareOpens::new(us.peer_id(), second, 3 * second);
        let Start::Probe(probe, len) = opens.start(now, &routes, 7, addr(2), Capabilities::NONE)
        else {
            panic!("a probe goes out");
        };
        let cookie = answer_of(&mut responder, now, addr(1), &probe[..len]);
        let mut view = RouteView::default();
        view.refresh(&routes);
        Probed {
            opens,
            routes,
            view,
            probe: probe[..len].to_vec(),
            cookie,
            local: us.peer_id(),
            peer: them.peer_id(),
            responder,
        }
    }

    #[test]
    fn a_probe_learns_the_peer_from_its_cookie_and_leaves_the_peer_no_state() {
        let now = Instant::now();
        let Probed {
            mut opens,
            routes,
            view,
            cookie,
            local,
            peer,
            responder,
            ..
        } = probed(now);
        // §5: the responder answered without a handshake, a session or any state.
        assert_eq!(responder.pending_handshake_count(), 0);
        assert_eq!(responder.session_count(), 0);
        // Only from the probed address, and only to us.
        assert_eq!(view.answer(&routes, local, addr(3), &cookie), None);
        assert_eq!(view.answer(&routes, peer, addr(2), &cookie), None);
        let answered = view.answer(&routes, local, addr(2), &cookie).unwrap();
        let capabilities = Capabilities::NONE;
        let (token, to) = (7, addr(2));
        assert_eq!(
            answered,
            Answered {
                token,
                to,
                peer,
                capabilities
            }
        );
        // Taken once: a duplicate goes on to the endpoint, and the starting shard forgets the
        // probe without failing it.
        assert_eq!(view.answer(&routes, local, addr(2), &cookie), None);
        let mut sent = 0;
        let later = now + Duration::from_secs(5);
        assert!(opens.poll(later, &routes, |_, _| sent += 1).is_empty());
        assert_eq!((sent, opens.next_deadline()), (0, None));
    }

    #[test]
    fn a_cookie_that_does_not_echo_the_probe_or_names_another_index_answers_nothing() {
        let Probed {
            routes,
            view,
            probe,
            cookie,
            local,
            ..
        } = probed(Instant::now());
        // HANDSHAKE_COOKIE is the type, the index, the cookie, and the echo, last.
        let at = cookie.len() - MAC_LEN;
        let mut forged = cookie.clone();
        forged[at] ^= 1;
        assert_eq!(view.answer(&routes, local, addr(2), &forged), None, "echo");
        let mut forged = cookie.clone();
        forged[at - MAC_LEN - 1] ^= 1;
        assert_eq!(view.answer(&routes, local, addr(2), &forged), None, "index");
        let short = &cookie[..at];
        assert_eq!(view.answer(&routes, local, addr(2), short), None, "short");
        // The INIT itself (a peer's own, say) is no answer.
        assert_eq!(view.answer(&routes, local, addr(2), &probe), None);
        assert!(view.answer(&routes, local, addr(2), &cookie).is_some());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn no_cookie_answers_a_probe_with_another_recipient_index_or_echo(
            at in 0usize..74,
            flip in 1u8..=255,
        ) {
            let Probed { routes, view, mut cookie, local, .. } = probed(Instant::now());
            proptest::prop_assert_eq!(cookie.len(), 74, "header, type, index, cookie, echo");
            cookie[at] ^= flip;
            let answer = view.answer(&routes, local, addr(2), &cookie);
            // The recipient, channel, type and index (17..42), and the echo (58..): none may
            // change.
            if (17..42).contains(&at) || at >= 58 {
                proptest::prop_assert_eq!(answer, None);
            }
            if let Some(answer) = answer {
                proptest::prop_assert_eq!((answer.token, answer.to), (7, addr(2)));
            }
        }
    }

    #[test]
    fn unanswered_probes_are_repeated_alike_then_fail_and_their_number_is_bounded() {
        let now = Instant::now();
        let routes = BareRoutes::default();
        let second = Duration::from_secs(1);
        let mut opens = BareOpens::new(identity(3).peer_id(), second, 3 * second);
        let mut first = Vec::new();
        for token in 0..MAX_PENDING as u64 {
            let to = addr(1 + (token % 2) as u16);
            let Start::Probe(probe, len) = opens.start(now, &routes, token, to, Capabilities::NONE)
            else {
                panic!("room for {token}");
            };
            first.push(probe[..len].to_vec());
        }
        assert_eq!(
            opens.start(now, &routes, 99, addr(3), Capabilities::NONE),
            Start::Full
        );
        let mut again = Vec::new();
        assert!(
            opens
                .poll(now + second, &routes, |_, probe| again.push(probe.to_vec()))
                .is_empty()
        );
        // Each repeat is its first probe byte for byte: the peer's COOKIE echoes either.
        again.sort();
        first.sort();
        assert_eq!(again, first, "every open probes again");
        let expired = opens.poll(now + 3 * second, &routes, |_, _| {});
        assert_eq!(expired.len(), MAX_PENDING);
        assert_eq!(opens.next_deadline(), None);
        let mut view = RouteView::default();
        view.refresh(&routes);
        assert!(view.probes.is_empty(), "no probe outlives its open");
    }
}
