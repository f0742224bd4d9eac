//! The consensus service's own channels to other nodes: one encrypted reliable ordered channel
//! (TCP mode, RESEND|ORDERED) to each member it talks to, opened by peer id and address through
//! the host, and opened again with backoff whenever it closes or fails to open.
//!
//! Only the node chooses whom it links to (the configured members, or the one address an
//! operator gave `--via`): never an address a request names (PROTOCOL.md §11, no reflection).

use crate::channel::ChannelHandle;
use crate::service::Input;
use crate::service::host::Context;
use crate::wire::{Capabilities, PeerId};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The mode of every consensus channel: reliable and ordered, so a vote is never lost to a
/// reconnect that the resend period would otherwise have to cover alone.
pub fn mode() -> Capabilities {
    Capabilities::RESEND | Capabilities::ORDERED
}

/// The first wait before opening a closed link again; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between two opens of one link.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where one link stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// Closed; opens again at the instant.
    Waiting(Instant),
    /// An open is under way (the host's token).
    Opening(u64),
    /// Open on a shard.
    Open(usize, ChannelHandle),
}

/// One link.
#[derive(Clone, Debug)]
struct Link {
    peer: Option<PeerId>,
    address: SocketAddr,
    state: State,
    backoff: Duration,
}

/// What an input meant for the links.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// Link `index` opened to `peer` (as its session proved).
    Opened {
        /// The link.
        index: usize,
        /// The peer at the other end.
        peer: PeerId,
    },
    /// Link `index` closed or failed to open; it opens again after its backoff.
    Down {
        /// The link.
        index: usize,
    },
}

/// The node's links, by index in the order they were added.
#[derive(Clone, Debug, Default)]
pub struct Links {
    links: Vec<Link>,
}

impl Links {
    /// Adds a link to `address` (to `peer` when its id is known), to open at the next poll.
    pub fn add(&mut self, now: Instant, peer: Option<PeerId>, address: SocketAddr) -> usize {
        self.links.push(Link {
            peer,
            address,
            state: State::Waiting(now),
            backoff: FIRST_BACKOFF,
        });
        self.links.len().saturating_sub(1)
    }

    /// How many links there are.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The link to `peer`, if one is known to lead there.
    pub fn find(&self, peer: PeerId) -> Option<usize> {
        self.links.iter().position(|link| link.peer == Some(peer))
    }

    /// The address link `index` opens to (unspecified when there is no such link).
    pub fn address(&self, index: usize) -> SocketAddr {
        self.links
            .get(index)
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |link| link.address)
    }

    /// The peer a link leads to, once known.
    pub fn peer(&self, index: usize) -> Option<PeerId> {
        self.links.get(index).and_then(|link| link.peer)
    }

    /// How many links are open.
    pub fn open_count(&self) -> usize {
        self.links
            .iter()
            .filter(|link| matches!(link.state, State::Open(..)))
            .count()
    }

    /// True when link `index` is open.
    pub fn is_open(&self, index: usize) -> bool {
        matches!(
            self.links.get(index).map(|l| l.state),
            Some(State::Open(..))
        )
    }

    /// Opens every link whose wait is over.
    pub fn poll(&mut self, now: Instant, cx: &mut Context<'_>) {
        for link in &mut self.links {
            if let State::Waiting(at) = link.state
                && at <= now
            {
                match cx.open(link.address, link.peer, mode()) {
                    Ok(token) => link.state = State::Opening(token),
                    // The shard's queue is full: try again after the backoff.
                    Err(_) => Self::back_off(now, link),
                }
            }
        }
    }

    fn back_off(now: Instant, link: &mut Link) {
        link.state = State::Waiting(now.checked_add(link.backoff).unwrap_or(now));
        link.backoff = link.backoff.saturating_mul(2).min(MAX_BACKOFF);
    }

    /// When [`Links::poll`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.links
            .iter()
            .filter_map(|link| match link.state {
                State::Waiting(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Takes an input from the host; `None` when it is not about these links.
    pub fn on_input(&mut self, now: Instant, input: &Input) -> Option<LinkEvent> {
        match *input {
            Input::Opened {
                token,
                shard,
                channel,
                peer,
                ..
            } => {
                let index = self.position(|state| state == State::Opening(token))?;
                let link = &mut self.links[index];
                if link.peer.is_some_and(|wanted| wanted != peer) {
                    // The session proved someone else is at that address now.
                    Self::back_off(now, link);
                    return Some(LinkEvent::Down { index });
                }
                link.peer = Some(peer);
                link.state = State::Open(shard, channel);
                link.backoff = FIRST_BACKOFF;
                Some(LinkEvent::Opened { index, peer })
            }
            Input::OpenFailed { token, .. } => {
                let index = self.position(|state| state == State::Opening(token))?;
                Self::back_off(now, &mut self.links[index]);
                Some(LinkEvent::Down { index })
            }
            Input::Closed { shard, channel, .. } => {
                let index = self.position(|state| state == State::Open(shard, channel))?;
                Self::back_off(now, &mut self.links[index]);
                Some(LinkEvent::Down { index })
            }
            Input::Message(_) | Input::PeerInfo { .. } => None,
        }
    }

    fn position(&self, matches: impl Fn(State) -> bool) -> Option<usize> {
        self.links.iter().position(|link| matches(link.state))
    }

    /// Sends `bytes` on link `index`; false when it is not open or the shard refused.
    pub fn send(&mut self, index: usize, bytes: &[u8], cx: &mut Context<'_>) -> bool {
        match self.links.get(index).map(|link| link.state) {
            Some(State::Open(shard, channel)) => cx.send(shard, channel, bytes).is_ok(),
            _ => false,
        }
    }

    /// The shard and channel of link `index` when open.
    pub fn channel(&self, index: usize) -> Option<(usize, ChannelHandle)> {
        match self.links.get(index)?.state {
            State::Open(shard, channel) => Some((shard, channel)),
            _ => None,
        }
    }
}
