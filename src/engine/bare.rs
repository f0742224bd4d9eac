//! Opens by bare address with several shards (PROTOCOL.md §12).
//!
//! A peer's datagrams go to the shard that owns its peer id, but an open to an address without
//! a peer id cannot know that shard: the worker's request goes to shard 0. So the shard first
//! learns the peer: it PINGs the address (an XX handshake under encryption, PROTOCOL.md §5)
//! while every shard hands it what comes from that address ([`BareRoutes`]), whichever peer id
//! it names. Once the PONG names the peer, the route goes and the open itself is made by the
//! peer's owner, by peer id: at once when that is this shard, else through a bounded queue to
//! the owner, which answers the worker as for any open. The address is remembered for as long
//! as this shard's session there lives ([`BareOpens::resolved`]): that session is the peer's
//! old one once the owner's handshake replaced it, so a second open to the address skips the
//! PING and goes straight to the owner.
//!
//! Bounds: at most [`MAX_PENDING`] opens resolve at once per shard (more are refused at once,
//! counted), and [`MAX_RESOLVED`] addresses are remembered (the oldest goes first). Only the
//! node's own opens add routes, never a peer's packet.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::channel::later;
use crate::wire::{Capabilities, PeerId};

/// Bare-address opens one shard resolves at once.
pub(super) const MAX_PENDING: usize = 64;

/// Bare addresses a shard remembers the peer of.
pub(super) const MAX_RESOLVED: usize = 256;

/// The addresses shards are resolving, shared by every shard. Changes are rare (an open by
/// bare address starts or ends), so each shard reads a copy ([`RouteView`]) that it refreshes
/// only when the generation moved: one atomic load per receive batch, no lock per datagram.
#[derive(Debug, Default)]
pub(super) struct BareRoutes {
    generation: AtomicU64,
    /// `(address, shard, opens waiting)`, at most `MAX_PENDING` per shard.
    table: Mutex<Vec<(SocketAddr, usize, u32)>>,
}

impl BareRoutes {
    /// Sends what comes from `address` to `shard` until [`BareRoutes::remove`].
    fn add(&self, address: SocketAddr, shard: usize) {
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        match table.iter_mut().find(|r| r.0 == address && r.1 == shard) {
            Some(route) => route.2 = route.2.saturating_add(1),
            None => table.push((address, shard, 1)),
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Ends one open's route from `address` to `shard`.
    fn remove(&self, address: SocketAddr, shard: usize) {
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        if let Some(at) = table.iter().position(|r| r.0 == address && r.1 == shard) {
            table[at].2 = table[at].2.saturating_sub(1);
            if table[at].2 == 0 {
                table.swap_remove(at);
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A shard's copy of [`BareRoutes`].
#[derive(Debug, Default)]
pub(super) struct RouteView {
    generation: u64,
    routes: Vec<(SocketAddr, usize)>,
}

impl RouteView {
    /// Copies the shared table if it changed since the last copy.
    pub(super) fn refresh(&mut self, shared: &BareRoutes) {
        let generation = shared.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        if let Ok(table) = shared.table.lock() {
            self.routes.clear();
            self.routes.extend(table.iter().map(|r| (r.0, r.1)));
            self.generation = generation;
        }
    }

    /// The shard resolving `from`, when one is.
    pub(super) fn route(&self, from: SocketAddr) -> Option<usize> {
        if self.routes.is_empty() {
            return None;
        }
        self.routes.iter().find(|r| r.0 == from).map(|r| r.1)
    }
}

/// An open by bare address waiting for its PONG.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    /// The worker's token.
    pub(super) token: u64,
    /// The bare address.
    pub(super) to: SocketAddr,
    /// The mode asked for.
    pub(super) capabilities: Capabilities,
    /// The PING's token.
    ping: [u8; 8],
    /// When the next PING goes (a PING or PONG may be lost; the handshake retries itself).
    retry_at: Instant,
    /// When the open fails.
    deadline: Instant,
}

/// What [`BareOpens::start`] says to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// The peer at the address is known: open by its id.
    Known(PeerId),
    /// Send this PING to the address.
    Ping([u8; 8]),
    /// Too many opens resolve already.
    Full,
}

/// One shard's bare-address opens: those waiting for their PONG, and the peers learned.
#[derive(Debug)]
pub(super) struct BareOpens {
    shard: usize,
    pending: Vec<Pending>,
    /// `(address, peer, until)`.
    resolved: Vec<(SocketAddr, PeerId, Instant)>,
    pings: u64,
    /// How often a PING is repeated, and how long an open may take to resolve.
    retry: Duration,
    timeout: Duration,
    /// How long a learned peer is trusted: this shard's session there lives that long.
    remember: Duration,
}

impl BareOpens {
    pub(super) fn new(
        shard: usize,
        retry: Duration,
        timeout: Duration,
        remember: Duration,
    ) -> BareOpens {
        BareOpens {
            shard,
            pending: Vec::new(),
            resolved: Vec::new(),
            pings: 0,
            retry,
            timeout,
            remember,
        }
    }

    /// Starts resolving `to` for the worker's open `token`, routing what comes from `to` here.
    pub(super) fn start(
        &mut self,
        now: Instant,
        routes: &BareRoutes,
        token: u64,
        to: SocketAddr,
        capabilities: Capabilities,
    ) -> Start {
        self.resolved.retain(|r| r.2 > now);
        if let Some(&(_, peer, _)) = self.resolved.iter().find(|r| r.0 == to) {
            return Start::Known(peer);
        }
        if self.pending.len() >= MAX_PENDING {
            return Start::Full;
        }
        self.pings = self.pings.wrapping_add(1);
        let ping = self.pings.to_be_bytes();
        self.pending.push(Pending {
            token,
            to,
            capabilities,
            ping,
            retry_at: later(now, self.retry),
            deadline: later(now, self.timeout),
        });
        routes.add(to, self.shard);
        Start::Ping(ping)
    }

    /// The open a PONG from `from` with `token` answers, now resolved to `peer`; it is removed,
    /// with its route, and the address remembered.
    pub(super) fn answered(
        &mut self,
        now: Instant,
        routes: &BareRoutes,
        from: SocketAddr,
        token: [u8; 8],
        peer: PeerId,
    ) -> Option<Pending> {
        let at = self
            .pending
            .iter()
            .position(|p| p.ping == token && p.to == from)?;
        let open = self.pending.swap_remove(at);
        routes.remove(open.to, self.shard);
        self.resolved.retain(|r| r.0 != open.to);
        if self.resolved.len() >= MAX_RESOLVED
            && let Some(oldest) = (0..self.resolved.len()).min_by_key(|&i| self.resolved[i].2)
        {
            self.resolved.swap_remove(oldest);
        }
        self.resolved
            .push((open.to, peer, later(now, self.remember)));
        Some(open)
    }

    /// Removes and returns the opens to `address` (its handshake failed).
    pub(super) fn failed(&mut self, routes: &BareRoutes, address: SocketAddr) -> Vec<Pending> {
        self.take(routes, |p| p.to == address)
    }

    /// Removes and returns the opens whose deadline passed; `ping` is called for those due for
    /// another PING.
    pub(super) fn poll(
        &mut self,
        now: Instant,
        routes: &BareRoutes,
        mut ping: impl FnMut(SocketAddr, [u8; 8]),
    ) -> Vec<Pending> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let expired = self.take(routes, |p| p.deadline <= now);
        for open in &mut self.pending {
            if open.retry_at <= now {
                open.retry_at = later(now, self.retry);
                ping(open.to, open.ping);
            }
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

    fn take(&mut self, routes: &BareRoutes, which: impl Fn(&Pending) -> bool) -> Vec<Pending> {
        let mut taken = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if which(&self.pending[i]) {
                let open = self.pending.swap_remove(i);
                routes.remove(open.to, self.shard);
                taken.push(open);
            } else {
                i = i.saturating_add(1);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_pending_open_routes_its_address_until_the_pong_and_is_remembered_after() {
        let now = Instant::now();
        let routes = BareRoutes::default();
        let mut view = RouteView::default();
        let second = Duration::from_secs(1);
        let mut opens = BareOpens::new(0, second, 3 * second, 60 * second);
        let Start::Ping(token) = opens.start(now, &routes, 7, addr(1), Capabilities::NONE) else {
            panic!("an unknown address is PINGed");
        };
        view.refresh(&routes);
        assert_eq!(view.route(addr(1)), Some(0));
        assert_eq!(view.route(addr(2)), None);
        // A PONG from elsewhere, or with another token, answers nothing.
        let peer = PeerId([5; 16]);
        assert!(opens.answered(now, &routes, addr(2), token, peer).is_none());
        assert!(
            opens
                .answered(now, &routes, addr(1), [0; 8], peer)
                .is_none()
        );
        let open = opens.answered(now, &routes, addr(1), token, peer).unwrap();
        assert_eq!(open.token, 7);
        view.refresh(&routes);
        assert_eq!(view.route(addr(1)), None, "the route ends with the answer");
        assert_eq!(
            opens.start(now, &routes, 8, addr(1), Capabilities::NONE),
            Start::Known(peer)
        );
        // Forgotten once this shard's session there has expired.
        let later = now + 61 * second;
        assert!(matches!(
            opens.start(later, &routes, 9, addr(1), Capabilities::NONE),
            Start::Ping(_)
        ));
    }

    #[test]
    fn unanswered_opens_are_retried_then_fail_and_their_number_is_bounded() {
        let now = Instant::now();
        let routes = BareRoutes::default();
        let second = Duration::from_secs(1);
        let mut opens = BareOpens::new(1, second, 3 * second, 60 * second);
        for token in 0..MAX_PENDING as u64 {
            let to = addr(1 + (token % 2) as u16);
            assert!(matches!(
                opens.start(now, &routes, token, to, Capabilities::NONE),
                Start::Ping(_)
            ));
        }
        assert_eq!(
            opens.start(now, &routes, 99, addr(3), Capabilities::NONE),
            Start::Full
        );
        let mut pinged = 0;
        assert!(
            opens
                .poll(now + second, &routes, |_, _| pinged += 1)
                .is_empty()
        );
        assert_eq!(pinged, MAX_PENDING, "every open PINGs again");
        assert_eq!(opens.failed(&routes, addr(2)).len(), MAX_PENDING / 2);
        let expired = opens.poll(now + 3 * second, &routes, |_, _| {});
        assert_eq!(expired.len(), MAX_PENDING / 2);
        assert_eq!(opens.next_deadline(), None);
        let mut view = RouteView::default();
        view.refresh(&routes);
        assert_eq!(view.route(addr(1)), None, "no route outlives its opens");
    }
}
