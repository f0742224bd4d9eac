//! What the DHT reports to its driver ([`super::Dht::poll_event`]): finished lookups, puts and
//! requests, and the peers to drop or connect to.

use super::lookup::Found;
use crate::overlay::id::Contact;
use crate::overlay::rpc::Reply;
use crate::wire::PeerId;
use std::time::Duration;

/// What a lookup found.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupResult {
    /// The value, for a FIND_VALUE that found it.
    pub found: Option<Found>,
    /// The closest contacts that answered.
    pub closest: Vec<Contact>,
    /// The longest chain of dependent requests.
    pub depth: u32,
    /// Requests sent.
    pub requests: u32,
    /// From start to finish.
    pub elapsed: Duration,
}

/// Something the application asked for has finished, or a peer must be dropped.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A [`Dht::get`] or [`Dht::find_node`] finished.
    Lookup {
        /// The caller's token.
        token: u64,
        /// What it found.
        result: LookupResult,
    },
    /// A [`Dht::put`] finished.
    Put {
        /// The caller's token.
        token: u64,
        /// How many of the k closest acknowledged the STORE.
        stored: usize,
        /// The depth of its FIND_NODE.
        depth: u32,
        /// From start to the last answer.
        elapsed: Duration,
    },
    /// A [`Dht::request`] was answered.
    Reply {
        /// The caller's token.
        token: u64,
        /// The reply.
        reply: Reply,
    },
    /// A [`Dht::request`] timed out.
    TimedOut {
        /// The caller's token.
        token: u64,
    },
    /// A peer's subnet descriptor differs: disconnect it (seed 003 §3.3.3).
    Disconnect {
        /// The peer.
        peer: PeerId,
    },
    /// Open a self-initiated connection to this contact: the node holds fewer than ℓ
    /// ([`Dht::links`]); report its end with [`Dht::link_closed`].
    Connect {
        /// Whom to connect to.
        contact: Contact,
    },
}
