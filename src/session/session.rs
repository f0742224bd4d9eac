//! Sessions and the per-peer slot that holds two of them (PROTOCOL.md §5: KEY_PHASE, rekey,
//! crossing INITs, who may replace a session).

use super::handshake::{Established, HandshakeKind, Role};
use super::keys::ChannelKeys;
use crate::wire::PeerId;
use std::time::{Duration, Instant};

/// When a session is replaced by a new handshake (PROTOCOL.md §5, session lifetime), and when
/// it must stop being used even if no replacement came (WireGuard's REKEY_AFTER_MESSAGES and
/// REJECT_AFTER_MESSAGES).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RekeyPolicy {
    /// Replace before any channel has sent this many packets under the session, or once this
    /// many packets were received under it (default 2^31).
    pub after_packets: u64,
    /// Replace after this long (default 15 minutes).
    pub after: Duration,
    /// The hard limit: once a channel has sealed this many packets under the session, nothing
    /// more is sealed under it, and once this many packets opened under it, nothing more is
    /// opened; only a new session carries traffic again. Default 2^32 − 2^16: the wire's
    /// sequence numbers are 32 bits, so a key that stops there never meets a number twice
    /// (and the nonce is the number), with 2^31 − 2^16 packets between the rekey threshold and
    /// the wall for a rekey to complete.
    pub reject_after_packets: u64,
}

impl RekeyPolicy {
    /// Packets opened under a session, all channels together, after which the receiving side
    /// starts the rekey itself: half as many again as the sender's per-channel threshold, so the
    /// sender (which knows first) normally leads and the two rarely cross, yet a peer that never
    /// rekeys is still replaced well before the hard limit.
    pub fn receive_rekey_threshold(&self) -> u64 {
        self.after_packets.saturating_add(self.after_packets / 2)
    }
}

impl Default for RekeyPolicy {
    fn default() -> Self {
        RekeyPolicy {
            after_packets: 1 << 31,
            after: Duration::from_secs(15 * 60),
            reject_after_packets: (1 << 32) - (1 << 16),
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
    peer_x25519: [u8; 32],
    created_at: Instant,
    phase: KeyPhase,
    /// Packets opened under it, all channels together (for the rekey threshold and the hard
    /// limit on receiving).
    opened: u64,
    /// Set once a channel reached the hard limit on sealing: nothing is sent under it again.
    exhausted: bool,
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
            peer_x25519: established.peer_x25519,
            created_at: now,
            phase,
            opened: 0,
            exhausted: false,
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

    /// The peer's X25519 static key, as the handshake authenticated it.
    pub fn peer_x25519(&self) -> &[u8; 32] {
        &self.peer_x25519
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
            || self.opened >= policy.receive_rekey_threshold()
            || self.exhausted
    }

    /// Packets opened under the session so far.
    pub fn packets_opened(&self) -> u64 {
        self.opened
    }

    /// Counts one packet opened under the session; returns the new count.
    pub fn note_opened(&mut self) -> u64 {
        self.opened = self.opened.saturating_add(1);
        self.opened
    }

    /// Stops all sending under the session (a channel reached the hard limit): the slot then
    /// offers no session to send under until a new one is installed.
    pub fn exhaust(&mut self) {
        self.exhausted = true;
    }

    /// True once [`exhaust`](Self::exhaust) was called.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
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
    /// Boxed: most peers hold one session most of the time, and an empty phase should cost a
    /// null pointer, not a session's worth of inline room.
    sessions: [Option<Box<Session>>; 2],
    /// What a rekey leaves for its grace period, made by the first retirement and dropped
    /// once nothing is retired: an idle peer's slot pays a null pointer for it (issue 12:
    /// 56 bytes inline before).
    retiring: Option<Box<Retiring>>,
    sending: KeyPhase,
    /// The phase whose session was installed last: of two sessions held, the newer (the
    /// install order is all a slot compares; issue 12: 24 bytes of counters before).
    newest: KeyPhase,
}

/// The sessions a slot keeps only for packets in flight across a rekey.
#[derive(Debug, Default)]
struct Retiring {
    /// When the session of each phase stopped being the one we send under (it still opens
    /// packets in flight for a grace period, see [`SessionSlot::switch_to`]).
    retired_at: [Option<Instant>; 2],
    /// A retired session that a new handshake displaced from its phase before its grace period
    /// ended (a crossing INIT that arrived late): it still opens packets in flight under that
    /// phase, tried only when the phase's newer session refuses one.
    displaced: Option<(Box<Session>, Instant)>,
}

impl Retiring {
    fn is_empty(&self) -> bool {
        self.retired_at.iter().all(Option::is_none) && self.displaced.is_none()
    }
}

impl SessionSlot {
    /// An empty slot.
    pub fn new() -> SessionSlot {
        SessionSlot::default()
    }

    /// When the session of `phase` was retired, if it was.
    fn retired_at(&self, phase: KeyPhase) -> Option<Instant> {
        self.retiring.as_ref()?.retired_at[phase.index()]
    }

    /// Marks (or with None unmarks) the session of `phase` as retired since `at`.
    fn set_retired_at(&mut self, phase: KeyPhase, at: Option<Instant>) {
        match (&mut self.retiring, at) {
            (Some(retiring), _) => retiring.retired_at[phase.index()] = at,
            (None, None) => return,
            (None, Some(_)) => {
                let retiring = self.retiring.insert(Box::default());
                retiring.retired_at[phase.index()] = at;
            }
        }
        self.settle_retiring();
    }

    /// Keeps `session`, displaced from its phase while retired since `since`.
    fn set_displaced(&mut self, session: Box<Session>, since: Instant) {
        self.retiring.get_or_insert_with(Box::default).displaced = Some((session, since));
    }

    /// Gives the retirement record back once it holds nothing.
    fn settle_retiring(&mut self) {
        if self.retiring.as_ref().is_some_and(|r| r.is_empty()) {
            self.retiring = None;
        }
    }

    /// Of the two sessions, whether `phase`'s is the newer one (both must be held).
    fn is_newer(&self, phase: KeyPhase) -> bool {
        self.sessions[phase.index()].is_some()
            && self.sessions[phase.flipped().index()].is_some()
            && self.newest == phase
    }

    /// The session we send under, if any and not exhausted (see [`Session::exhaust`]).
    pub fn current(&mut self) -> Option<&mut Session> {
        self.sessions[self.sending.index()]
            .as_deref_mut()
            .filter(|session| !session.exhausted)
    }

    /// The session packets with KEY_PHASE `phase` are opened with.
    pub fn by_phase(&mut self, phase: KeyPhase) -> Option<&mut Session> {
        self.sessions[phase.index()].as_deref_mut()
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
            self.sessions[0] = Some(Box::new(Session::new(established, now, KeyPhase::Zero)));
            self.stamp(KeyPhase::Zero);
            return Ok(KeyPhase::Zero);
        };
        if !may_replace(current, established) {
            return Err(ReplaceError::Refused);
        }
        // PROTOCOL.md §5: the new session takes the other phase; a still-pending newer session
        // there is superseded by this one.
        let phase = sending.flipped();
        let previous =
            self.sessions[phase.index()].replace(Box::new(Session::new(established, now, phase)));
        if let (Some(previous), Some(retired_at)) = (previous, self.retired_at(phase)) {
            self.set_displaced(previous, retired_at);
        }
        self.set_retired_at(phase, None);
        self.stamp(phase);
        if established.role == Role::Initiator {
            // The response proved the responder holds the new session: send under it now, keep
            // the old one to open packets still in flight.
            self.sending = phase;
            self.set_retired_at(sending, Some(now));
        }
        Ok(phase)
    }

    /// Installs a completed handshake under the phase the peer named for it: the side that
    /// installs second adopts the first side's choice (the KEY_PHASE of the packet completing
    /// the handshake), so both always file the new session under the same phase, however
    /// their older sessions drifted (a rekey whose confirmation was lost, a second rekey before
    /// the first was confirmed). The completing packet proves the peer holds the session, so
    /// we send under it at once; whatever it displaces from `phase` still opens packets in
    /// flight for the grace period.
    pub fn install_as(
        &mut self,
        established: &Established,
        now: Instant,
        phase: KeyPhase,
    ) -> Result<KeyPhase, ReplaceError> {
        let sending = self.sending;
        let Some(current) = self.sessions[sending.index()].as_ref() else {
            self.clear();
            self.sending = phase;
            self.sessions[phase.index()] = Some(Box::new(Session::new(established, now, phase)));
            self.stamp(phase);
            return Ok(phase);
        };
        if !may_replace(current, established) {
            return Err(ReplaceError::Refused);
        }
        let previous =
            self.sessions[phase.index()].replace(Box::new(Session::new(established, now, phase)));
        if let Some(previous) = previous {
            // Retired, or the one we sent under until now: it may still own packets in flight.
            let since = self.retired_at(phase).unwrap_or(now);
            self.set_displaced(previous, since);
        }
        self.set_retired_at(phase, None);
        self.stamp(phase);
        self.sending = phase;
        // The other phase (the session we sent under, or one the peer never confirmed) only
        // opens packets in flight from now on.
        let other = phase.flipped();
        if self.sessions[other.index()].is_some() && self.retired_at(other).is_none() {
            self.set_retired_at(other, Some(now));
        }
        Ok(phase)
    }

    fn stamp(&mut self, phase: KeyPhase) {
        self.newest = phase;
    }

    /// Tells the slot a packet authenticated under `phase`. PROTOCOL.md §5: the responder keeps
    /// sending under the old session until a packet authenticates under the new one; then the
    /// old one is dropped (by either side).
    pub fn authenticated(&mut self, phase: KeyPhase) {
        if self.is_newer(phase) {
            self.sending = phase;
            self.sessions[phase.flipped().index()] = None;
        }
    }

    /// Like [`authenticated`](Self::authenticated), but the older session is only retired: it
    /// keeps opening packets that were in flight when the switch happened (reordering across a
    /// rekey) until [`expire_retired`](Self::expire_retired) drops it or the next handshake takes
    /// its phase. Nothing is ever sent under a retired session.
    pub fn switch_to(&mut self, phase: KeyPhase, now: Instant) {
        if self.is_newer(phase) && self.sending != phase {
            self.sending = phase;
            self.set_retired_at(phase.flipped(), Some(now));
        }
    }

    /// The displaced retired session of `phase`, if any (see the field's doc).
    pub fn displaced(&mut self, phase: KeyPhase) -> Option<&mut Session> {
        self.retiring
            .as_mut()?
            .displaced
            .as_mut()
            .filter(|displaced| displaced.0.phase == phase)
            .map(|displaced| &mut *displaced.0)
    }

    /// Drops a session retired more than `grace` ago.
    pub fn expire_retired(&mut self, now: Instant, grace: Duration) {
        let Some(retiring) = self.retiring.as_mut() else {
            return;
        };
        if retiring
            .displaced
            .as_ref()
            .is_some_and(|displaced| now.saturating_duration_since(displaced.1) > grace)
        {
            retiring.displaced = None;
        }
        for index in 0..2 {
            let expired = retiring.retired_at[index]
                .is_some_and(|at| now.saturating_duration_since(at) > grace);
            if expired {
                self.sessions[index] = None;
                retiring.retired_at[index] = None;
            }
        }
        self.settle_retiring();
    }

    /// The session of `phase` if it may open packets (current, newer, or retired within the
    /// grace period the caller enforces with [`expire_retired`](Self::expire_retired)).
    pub fn phase_session(&mut self, phase: KeyPhase) -> Option<&mut Session> {
        self.sessions[phase.index()].as_deref_mut()
    }

    /// True if no newer session waits to take over sending (a responder's new session before
    /// the peer's first packet under it): only then may a rekey start.
    pub fn newest_is_current(&self) -> bool {
        !self.is_newer(self.sending.flipped())
    }

    /// The phase we send under.
    pub fn sending_phase(&self) -> KeyPhase {
        self.sending
    }

    /// The session of KEY_PHASE `phase`, read-only (an operator's view of the peer).
    pub fn phase_session_ref(&self, phase: KeyPhase) -> Option<&Session> {
        self.sessions[phase.index()].as_deref()
    }

    /// The session we send under, read-only.
    pub fn current_ref(&self) -> Option<&Session> {
        self.sessions[self.sending.index()].as_deref()
    }

    /// Drops the expanded channel keys of every session held: the peer is idle, and its next
    /// packet expands them again (see [`ChannelCrypto::shed`](crate::session::ChannelCrypto::shed)).
    pub fn shed_keys(&mut self) {
        for session in self.sessions.iter_mut().flatten() {
            session.keys.shed();
        }
        if let Some((displaced, _)) = self.retiring.as_mut().and_then(|r| r.displaced.as_mut()) {
            displaced.keys.shed();
        }
    }

    /// The idle check of every session's channels (see [`ChannelKeys::shed_if_idle`]).
    pub fn shed_idle_keys(&mut self) {
        for session in self.sessions.iter_mut().flatten() {
            session.keys.shed_if_idle();
        }
        if let Some((displaced, _)) = self.retiring.as_mut().and_then(|r| r.displaced.as_mut()) {
            displaced.keys.shed_if_idle();
        }
    }

    /// Drops both sessions.
    pub fn clear(&mut self) {
        self.sessions = [None, None];
        self.retiring = None;
        self.sending = KeyPhase::Zero;
    }

    /// Takes every session out, the slot left empty (the memory report weighs them apart).
    pub fn take_sessions(&mut self) -> Vec<Box<Session>> {
        let [a, b] = std::mem::take(&mut self.sessions);
        let displaced = self
            .retiring
            .take()
            .and_then(|r| r.displaced)
            .map(|(session, _)| session);
        self.clear();
        [a, b, displaced].into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn established(ed: u8, kind: HandshakeKind, role: Role, secret: u8) -> Established {
        Established {
            kind,
            role,
            peer_id: PeerId([ed; 16]),
            peer_ed25519: [ed; 32],
            peer_x25519: [ed; 32],
            initiator_to_responder: [secret; 32],
            responder_to_initiator: [secret.wrapping_add(1); 32],
        }
    }

    #[test]
    fn only_the_same_key_and_a_kind_no_lower_may_replace() {
        let now = Instant::now();
        let old = Session::new(
            &established(1, HandshakeKind::UnknownResponder, Role::Responder, 1),
            now,
            KeyPhase::Zero,
        );
        let same_kind = established(1, HandshakeKind::UnknownResponder, Role::Responder, 2);
        let higher = established(1, HandshakeKind::PreSharedKey, Role::Responder, 2);
        let lower = established(1, HandshakeKind::KnownResponder, Role::Responder, 2);
        let other_key = established(2, HandshakeKind::PreSharedKey, Role::Responder, 2);
        assert!(may_replace(&old, &same_kind));
        assert!(may_replace(&old, &higher));
        assert!(!may_replace(&old, &lower));
        assert!(!may_replace(&old, &other_key));
    }

    #[test]
    fn crossing_inits_the_lower_peer_id_wins_whichever_side_asks() {
        let (low, high) = (PeerId([1; 16]), PeerId([2; 16]));
        assert_eq!(crossing_winner(low, high), low);
        assert_eq!(crossing_winner(high, low), low);
    }

    #[test]
    fn a_responder_switches_phase_only_after_a_packet_authenticates_under_the_new_session() {
        let now = Instant::now();
        let mut slot = SessionSlot::new();
        let first = established(1, HandshakeKind::KnownResponder, Role::Responder, 1);
        assert_eq!(slot.install(&first, now), Ok(KeyPhase::Zero));
        let rekey = established(1, HandshakeKind::KnownResponder, Role::Responder, 5);
        assert_eq!(slot.install(&rekey, now), Ok(KeyPhase::One));
        assert_eq!(slot.current().unwrap().phase(), KeyPhase::Zero);
        // A packet under the old phase changes nothing.
        slot.authenticated(KeyPhase::Zero);
        assert_eq!(slot.current().unwrap().phase(), KeyPhase::Zero);
        assert!(slot.by_phase(KeyPhase::One).is_some());
        slot.authenticated(KeyPhase::One);
        assert_eq!(slot.current().unwrap().phase(), KeyPhase::One);
        assert!(slot.by_phase(KeyPhase::Zero).is_none());
    }

    #[test]
    fn an_initiator_sends_under_the_new_session_at_once() {
        let now = Instant::now();
        let mut slot = SessionSlot::new();
        slot.install(
            &established(1, HandshakeKind::KnownResponder, Role::Initiator, 1),
            now,
        )
        .unwrap();
        slot.install(
            &established(1, HandshakeKind::KnownResponder, Role::Initiator, 3),
            now,
        )
        .unwrap();
        assert_eq!(slot.current().unwrap().phase(), KeyPhase::One);
        // The old session still opens packets in flight until the new one is confirmed.
        assert!(slot.by_phase(KeyPhase::Zero).is_some());
        slot.authenticated(KeyPhase::One);
        assert!(slot.by_phase(KeyPhase::Zero).is_none());
    }

    #[test]
    fn the_side_that_installs_second_adopts_the_phase_the_first_chose() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut slot = SessionSlot::new();
        let first = established(1, HandshakeKind::UnknownResponder, Role::Responder, 1);
        assert_eq!(slot.install(&first, now), Ok(KeyPhase::Zero));
        // A rekey the peer filed under phase one, which we never switched to...
        let second = established(1, HandshakeKind::UnknownResponder, Role::Responder, 3);
        assert_eq!(slot.install(&second, now), Ok(KeyPhase::One));
        assert_eq!(slot.sending_phase(), KeyPhase::Zero);
        // ...then the next one, which the peer (having switched) files under phase zero: we
        // take its word, send under it at once, and the session it displaced still opens
        // packets in flight.
        let third = established(1, HandshakeKind::UnknownResponder, Role::Responder, 5);
        assert_eq!(
            slot.install_as(&third, later, KeyPhase::Zero),
            Ok(KeyPhase::Zero)
        );
        assert_eq!(slot.sending_phase(), KeyPhase::Zero);
        assert!(slot.newest_is_current());
        assert!(slot.displaced(KeyPhase::Zero).is_some());
        // The other phase is retired: gone after the grace period.
        slot.expire_retired(later + Duration::from_secs(10), Duration::from_secs(5));
        assert!(slot.by_phase(KeyPhase::One).is_none());
        assert!(slot.displaced(KeyPhase::Zero).is_none());
        assert!(slot.current().is_some());
        // Nothing retired is left: the record of the rekey is given back (issue 12).
        assert!(slot.retiring.is_none());
        // A first session takes the phase it is told.
        let mut fresh = SessionSlot::new();
        assert_eq!(
            fresh.install_as(&first, now, KeyPhase::One),
            Ok(KeyPhase::One)
        );
        assert_eq!(fresh.current().unwrap().phase(), KeyPhase::One);
    }

    #[test]
    fn an_exhausted_session_offers_nothing_to_send_under() {
        let now = Instant::now();
        let mut slot = SessionSlot::new();
        slot.install(
            &established(1, HandshakeKind::KnownResponder, Role::Initiator, 1),
            now,
        )
        .unwrap();
        slot.current().unwrap().exhaust();
        assert!(slot.current().is_none());
        assert!(slot.current_ref().is_some_and(Session::is_exhausted));
        assert!(
            slot.current_ref()
                .unwrap()
                .needs_rekey(now, &RekeyPolicy::default())
        );
    }

    #[test]
    fn a_slot_refuses_another_key() {
        let now = Instant::now();
        let mut slot = SessionSlot::new();
        slot.install(
            &established(1, HandshakeKind::PreSharedKey, Role::Responder, 1),
            now,
        )
        .unwrap();
        let intruder = established(2, HandshakeKind::PreSharedKey, Role::Responder, 1);
        assert_eq!(slot.install(&intruder, now), Err(ReplaceError::Refused));
        let downgrade = established(1, HandshakeKind::KnownResponder, Role::Responder, 1);
        assert_eq!(slot.install(&downgrade, now), Err(ReplaceError::Refused));
        assert_eq!(slot.current().unwrap().peer_ed25519(), &[1; 32]);
    }

    #[test]
    fn a_session_needs_rekey_by_age_or_packet_count() {
        let now = Instant::now();
        let policy = RekeyPolicy {
            after_packets: 3,
            after: Duration::from_secs(60),
            ..RekeyPolicy::default()
        };
        let mut session = Session::new(
            &established(1, HandshakeKind::KnownResponder, Role::Initiator, 1),
            now,
            KeyPhase::Zero,
        );
        assert!(!session.needs_rekey(now, &policy));
        assert!(session.needs_rekey(now + Duration::from_secs(60), &policy));
        let mut tag = [0u8; 16];
        let channel = session.keys.channel(crate::wire::ChannelId::new(1, 1));
        for _ in 0..3 {
            channel.seal(&[0; 41], &mut [0u8; 4], &mut tag);
        }
        assert!(session.needs_rekey(now, &policy));
        assert_eq!(
            session.rekey_deadline(&policy),
            now + Duration::from_secs(60)
        );
    }

    #[test]
    fn the_default_policy_is_fifteen_minutes_or_two_to_the_thirty_one_packets() {
        let policy = RekeyPolicy::default();
        assert_eq!(policy.after, Duration::from_secs(900));
        assert_eq!(policy.after_packets, 2_147_483_648);
    }

    /// Issue 12: what an idle peer's slot and session hold inline. The slot keeps its rekey
    /// bookkeeping boxed and only while something is retired; a regression fails here before
    /// the memory test.
    #[test]
    fn an_idle_slot_and_session_are_small() {
        assert!(std::mem::size_of::<SessionSlot>() <= 32);
        assert!(std::mem::size_of::<Session>() <= 344);
        let now = Instant::now();
        let mut slot = SessionSlot::new();
        let first = established(1, HandshakeKind::KnownResponder, Role::Initiator, 1);
        slot.install(&first, now).unwrap();
        assert!(slot.retiring.is_none());
        let rekey = established(1, HandshakeKind::KnownResponder, Role::Initiator, 3);
        slot.install(&rekey, now).unwrap();
        assert!(slot.retiring.is_some(), "the old session is retired");
        slot.authenticated(KeyPhase::One);
        slot.expire_retired(now + Duration::from_secs(10), Duration::from_secs(5));
        assert!(
            slot.retiring.is_none(),
            "nothing retired: the box is given back"
        );
        assert_eq!(slot.current().unwrap().phase(), KeyPhase::One);
    }
}
