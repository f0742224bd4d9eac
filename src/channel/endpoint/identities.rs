//! The endpoint's local identities (issue 12): besides the identity it was made with, an
//! endpoint may hold a few more that the application adds, bounded by
//! [`EndpointConfig::max_identities`] (1 for a node: nothing from the network adds one). A
//! connection uses one of them: a load harness then simulates many peers with ONE endpoint
//! holding many connections to the same node, each under its own peer id, as a real client
//! with many peers would.
//!
//! Inside the endpoint a connection is named by its *key*. For the first identity the key is
//! the peer's id, so nothing changes for a node. For another identity `k` the key is the peer's
//! id XOR (`k`'s peer id XOR the first identity's), so every map keyed by peer id (the index,
//! the pending handshakes, the session table) keys by the pair (identity, peer) without a second
//! key type. The wire always carries the real ids: they are put back where headers are written
//! ([`Endpoint::wire_ids`]) and where the two ids are compared (the channel-id rule). Peer ids
//! are BLAKE3 outputs, so no peer can pick its id to equal another connection's key (a 2^128
//! preimage search), and a key of another identity exists only for a peer the application
//! opened to: datagrams to such an identity from anyone else are dropped as `wrong_recipient`.
//!
//! Another identity initiates handshakes (IK, XX, IKpsk2) but does not answer them: its INITs
//! are dropped, counted as `wrong_recipient`. The cookie gate and replay table of a responder
//! are the first identity's alone, so one more identity costs only itself.

use super::*;

/// Which of an endpoint's local identities a connection uses: [`LocalIdentity::FIRST`] is the
/// one it was made with; [`Endpoint::add_identity`] hands out the others.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LocalIdentity(u32);

impl LocalIdentity {
    /// The identity the endpoint was made with.
    pub const FIRST: LocalIdentity = LocalIdentity(0);
}

/// One identity beyond the first: what a handshake and a header need of it, nothing per peer.
struct Other {
    peer_id: PeerId,
    /// `peer_id` XOR the first identity's: a peer's id XOR this is the connection's key.
    mask: PeerId,
    handshake: HandshakeIdentity,
}

/// The identities beyond the first, and which connection keys are theirs.
#[derive(Default)]
pub(super) struct Identities {
    others: Vec<Other>,
    // Seeded (std RandomState): the ids are the application's, the keys derive from peers'.
    by_id: HashMap<PeerId, u32>,
    /// Connection key → its identity, for keys of identities other than the first (a key
    /// absent here is the first identity's). One entry per connection or pending handshake
    /// the application opened under another identity, removed with it.
    pub(super) keys: HashMap<PeerId, u32>,
}

fn xor(a: PeerId, b: PeerId) -> PeerId {
    PeerId(std::array::from_fn(|i| a.0[i] ^ b.0[i]))
}

impl Endpoint {
    /// Adds a local identity that connections may use ([`Endpoint::open_channel_as`]); one the
    /// endpoint holds already is handed back again. Refused beyond
    /// [`EndpointConfig::max_identities`].
    pub fn add_identity(&mut self, identity: &Identity) -> Result<LocalIdentity, OpenError> {
        let id = identity.peer_id();
        if id == self.local_id {
            return Ok(LocalIdentity::FIRST);
        }
        if let Some(&k) = self.identities.by_id.get(&id) {
            return Ok(LocalIdentity(k));
        }
        let held = self.identities.others.len().saturating_add(1);
        if held >= self.config.max_identities {
            return Err(OpenError::LimitReached("local identities (max_identities)"));
        }
        let k = u32::try_from(held).map_err(|_| OpenError::LimitReached("local identities"))?;
        self.identities.others.push(Other {
            peer_id: id,
            mask: xor(id, self.local_id),
            handshake: HandshakeIdentity::new(identity),
        });
        self.identities.by_id.insert(id, k);
        Ok(LocalIdentity(k))
    }

    /// Local identities held, the first included.
    pub fn identity_count(&self) -> usize {
        self.identities.others.len().saturating_add(1)
    }

    /// The peer id of a local identity, if the endpoint holds it.
    pub fn identity_peer_id(&self, local: LocalIdentity) -> Option<PeerId> {
        match local.0.checked_sub(1) {
            None => Some(self.local_id),
            Some(i) => self.other(i).map(|o| o.peer_id),
        }
    }

    fn other(&self, i: u32) -> Option<&Other> {
        self.identities.others.get(usize::try_from(i).ok()?)
    }

    /// The local identity a datagram's recipient names (the all-zero recipient is the
    /// first's), or `None` when the endpoint holds no such identity.
    pub(super) fn recipient_identity(&self, recipient: PeerId) -> Option<LocalIdentity> {
        if recipient == self.local_id || recipient.is_zero() {
            return Some(LocalIdentity::FIRST);
        }
        if self.identities.others.is_empty() {
            return None;
        }
        self.identities
            .by_id
            .get(&recipient)
            .map(|&k| LocalIdentity(k))
    }

    /// The key of the connection between `local` and the peer `remote`, or `None` when the
    /// endpoint holds no such identity.
    pub(super) fn connection_key(&self, remote: PeerId, local: LocalIdentity) -> Option<PeerId> {
        match local.0.checked_sub(1) {
            None => Some(remote),
            Some(i) => self.other(i).map(|o| xor(remote, o.mask)),
        }
    }

    /// True when `key` belongs to an identity other than the first: a connection or handshake
    /// the application opened under it.
    pub(super) fn is_other_key(&self, key: &PeerId) -> bool {
        !self.identities.keys.is_empty() && self.identities.keys.contains_key(key)
    }

    /// Records that `key` is `local`'s (nothing for the first identity).
    pub(super) fn claim_key(&mut self, key: PeerId, local: LocalIdentity) {
        if local != LocalIdentity::FIRST {
            self.identities.keys.insert(key, local.0);
        }
    }

    /// Forgets `key`'s identity once nothing of it is left: no connection, no handshake.
    pub(super) fn release_key(&mut self, key: &PeerId) {
        if self.identities.keys.is_empty()
            || self.ids.peer(key).is_some()
            || self.pending_by_peer.contains_key(key)
        {
            return;
        }
        self.identities.keys.remove(key);
    }

    /// The identity whose connection `key` names.
    pub(super) fn identity_of(&self, key: &PeerId) -> LocalIdentity {
        if self.identities.keys.is_empty() {
            return LocalIdentity::FIRST;
        }
        self.identities
            .keys
            .get(key)
            .map_or(LocalIdentity::FIRST, |&k| LocalIdentity(k))
    }

    /// The header's (sender, recipient) for the connection named `key`: the local identity's
    /// peer id and the peer's real id.
    pub(super) fn wire_ids(&self, key: PeerId) -> (PeerId, PeerId) {
        match self
            .identity_of(&key)
            .0
            .checked_sub(1)
            .and_then(|i| self.other(i))
        {
            None => (self.local_id, key),
            Some(o) => (o.peer_id, xor(key, o.mask)),
        }
    }

    /// The XOR that turns the connection `key`'s key into its peer's id: zero for the first
    /// identity's connections.
    pub(super) fn wire_mask(&self, key: &PeerId) -> (PeerId, PeerId) {
        match self
            .identity_of(key)
            .0
            .checked_sub(1)
            .and_then(|i| self.other(i))
        {
            None => (self.local_id, PeerId::ZERO),
            Some(o) => (o.peer_id, o.mask),
        }
    }

    /// The handshake keys of `local`.
    pub(super) fn handshake_identity(&self, local: LocalIdentity) -> &HandshakeIdentity {
        match local.0.checked_sub(1).and_then(|i| self.other(i)) {
            None => &self.hs_identity,
            Some(o) => &o.handshake,
        }
    }

    /// Opens a channel like [`Endpoint::open_channel`], from the local identity `local`: the
    /// peer sees that identity's peer id. Another identity than the first needs the peer's id
    /// (a connection is keyed by the pair; a bare address would be one for all identities).
    pub fn open_channel_as(
        &mut self,
        now: Instant,
        local: LocalIdentity,
        to: SocketAddr,
        peer: PeerId,
        c1: Option<u16>,
        capabilities: Capabilities,
    ) -> Result<ChannelHandle, OpenError> {
        if local == LocalIdentity::FIRST {
            return self.open_channel(now, to, Some(peer), c1, capabilities);
        }
        if peer.is_zero() {
            return Err(OpenError::PeerIdNeeded);
        }
        let key = self
            .connection_key(peer, local)
            .ok_or(OpenError::UnknownIdentity)?;
        self.claim_key(key, local);
        let result = self.open_channel(now, to, Some(key), c1, capabilities);
        self.release_key(&key);
        result
    }
}
