//! Sessions and the per-peer slot that holds two of them (PROTOCOL.md §5: KEY_PHASE, rekey,
//! crossing INITs, who may replace a session).

use super::handshake::{Established, HandshakeKind, Role};
use super::keys::ChannelKeys;
use crate::wire::PeerId;
use std::time::{Duration, Instant};

/// When a session is replaced by a new handshake (PROTOCOL.md §5, session lifetime).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RekeyPolicy {
    /// Replace before any channel has sent this many packets under the session (default 2^31).
    pub after_packets: u64,
    /// Replace after this long (default 15 minutes).
    pub after: Duration,
}

impl Default for RekeyPolicy {
    fn default() -> Self {
        RekeyPolicy {
            after_packets: 1 << 31,
            after: Duration::from_secs(15 * 60),
        }
    }
}

/// Which of a peer's two sessions keyed a packet: the header's KEY_PHASE flag (§3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum KeyPhase {
    /// KEY_PHASE clear.
    #[default]
    Zero,
    /// KEY_PHASE set.
    One,
}

impl KeyPhase {
    /// The phase a header flag names.
    pub fn from_flag(set: bool) -> KeyPhase {
        if set { KeyPhase::One } else { KeyPhase::Zero }
    }

    /// True if the header's KEY_PHASE flag is to be set.
    pub fn flag(self) -> bool {
        self == KeyPhase::One
    }

    /// The other phase: each replacing session flips it.
    pub fn flipped(self) -> KeyPhase {
        match self {
            KeyPhase::Zero => KeyPhase::One,
            KeyPhase::One => KeyPhase::Zero,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One established session with a peer.
#[derive(Debug)]
pub struct Session {
    kind: HandshakeKind,
    role: Role,
    peer_id: PeerId,
    peer_ed25519: [u8; 32],
    created_at: Instant,
    phase: KeyPhase,
    /// Per-channel keys, sequence numbers and replay windows of this session.
    pub keys: ChannelKeys,
}

impl Session {
    /// A session from a completed handshake, created at `now`, under `phase`.
    pub fn new(established: &Established, now: Instant, phase: KeyPhase) -> Session {
        Session {
            kind: established.kind,
            role: established.role,
            peer_id: established.peer_id,
            peer_ed25519: established.peer_ed25519,
            created_at: now,
            phase,
            keys: ChannelKeys::new(*established.send_secret(), *established.receive_secret()),
        }
    }

    /// The handshake kind that made it.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// Our side of its handshake.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The peer's proven Ed25519 key.
    pub fn peer_ed25519(&self) -> &[u8; 32] {
        &self.peer_ed25519
    }

    /// When the handshake completed.
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// Its KEY_PHASE.
    pub fn phase(&self) -> KeyPhase {
        self.phase
    }

    /// The most packets any one channel has sent under it.
    pub fn packets_sent(&self) -> u64 {
        self.keys.max_packets_sent()
    }

    /// True once the session should be replaced (PROTOCOL.md §5: 15 min, or before any channel
    /// reaches 2^31 packets).
    pub fn needs_rekey(&self, now: Instant, policy: &RekeyPolicy) -> bool {
        now.saturating_duration_since(self.created_at) >= policy.after
            || self.packets_sent() >= policy.after_packets
    }

    /// When the session reaches its age limit (for the driver's timer).
    pub fn rekey_deadline(&self, policy: &RekeyPolicy) -> Instant {
        self.created_at
            .checked_add(policy.after)
            .unwrap_or(self.created_at)
    }
}

/// PROTOCOL.md §5: only a handshake proving the same Ed25519 key, of a kind no lower (by wire
/// code), may replace a peer's session.
pub fn may_replace(old: &Session, new: &Established) -> bool {
    old.peer_ed25519 == new.peer_ed25519 && new.kind >= old.kind
}

/// PROTOCOL.md §5: when two INITs cross, the one from the lower peer id wins. Returns the peer
/// whose INIT goes on; the other side drops its own pending handshake and answers.
pub fn crossing_winner(a: PeerId, b: PeerId) -> PeerId {
    a.min(b)
}

/// Why a slot refused a new session.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceError {
    /// Another Ed25519 key, or a lower kind, than the current session's.
    #[error("a session may be replaced only by the same key and a kind no lower")]
    Refused,
}

/// A peer's sessions: at most two, told apart by KEY_PHASE. The one we send under is
/// `sending`; a newer one takes over sending once a packet authenticated under it (responder)
/// or at once (initiator, who knows the responder holds it), and the older one is then dropped.
#[derive(Debug, Default)]
pub struct SessionSlot {
    sessions: [Option<Session>; 2],
    /// Install order of each phase's session, to tell the newer from the older.
    generations: [u64; 2],
    next_generation: u64,
    sending: KeyPhase,
}

impl SessionSlot {
    /// An empty slot.
    pub fn new() -> SessionSlot {
        SessionSlot::default()
    }

    /// The session we send under, if any.
    pub fn current(&mut self) -> Option<&mut Session> {
        self.sessions[self.sending.index()].as_mut()
    }

    /// The session packets with KEY_PHASE `phase` are opened with.
    pub fn by_phase(&mut self, phase: KeyPhase) -> Option<&mut Session> {
        self.sessions[phase.index()].as_mut()
    }

    /// True if no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.iter().all(Option::is_none)
    }

    /// Installs a completed handshake at `now`; returns its phase.
    pub fn install(
        &mut self,
        established: &Established,
        now: Instant,
    ) -> Result<KeyPhase, ReplaceError> {
        let sending = self.sending;
        let Some(current) = self.sessions[sending.index()].as_ref() else {
            self.sessions = [None, None];
            self.sending = KeyPhase::Zero;
            self.sessions[0] = Some(Session::new(established, now, KeyPhase::Zero));
            self.stamp(KeyPhase::Zero);
            return Ok(KeyPhase::Zero);
        };
        if !may_replace(current, established) {
            return Err(ReplaceError::Refused);
        }
        // PROTOCOL.md §5: the new session takes the other phase; a still-pending newer session
        // there is superseded by this one.
        let phase = sending.flipped();
        self.sessions[phase.index()] = Some(Session::new(established, now, phase));
        self.stamp(phase);
        if established.role == Role::Initiator {
            // The response proved the responder holds the new session: send under it now, keep
            // the old one to open packets still in flight.
            self.sending = phase;
        }
        Ok(phase)
    }

    fn stamp(&mut self, phase: KeyPhase) {
        self.next_generation += 1;
        self.generations[phase.index()] = self.next_generation;
    }

    /// Tells the slot a packet authenticated under `phase`. PROTOCOL.md §5: the responder keeps
    /// sending under the old session until a packet authenticates under the new one; then the
    /// old one is dropped (by either side).
    pub fn authenticated(&mut self, phase: KeyPhase) {
        let other = phase.flipped();
        let both = self.sessions[phase.index()].is_some() && self.sessions[other.index()].is_some();
        let newer = both && self.generations[phase.index()] > self.generations[other.index()];
        if newer {
            self.sending = phase;
            self.sessions[other.index()] = None;
        }
    }

    /// Drops both sessions.
    pub fn clear(&mut self) {
        self.sessions = [None, None];
        self.sending = KeyPhase::Zero;
    }
}
