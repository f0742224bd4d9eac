//! A connection running its own timer table (STYLE.md 7): the silence check (PROTOCOL.md §7.7,
//! §12), its channels' open retries (§6) and data deadlines (§7), its session's rekey and expiry
//! (§5), and the keep-alive PING a channel asked for (§7.7). What the connection can settle with
//! what it holds it settles and arms again itself (a silence that only sheds keys, a session
//! timer that is not due yet); what needs the router comes back as a [`Due`]: a reset closes
//! channels and tells the application, a retry or a PING leaves through the control queue, a
//! rekey starts a handshake, an expired session leaves the session table.

use super::{Connection, Context, Lane, Silence, Timer, later};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What a connection's due timer needs of the router.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Silent for the connection reset timeout: its channels close.
    Reset,
    /// Some channel's open retry or give-up is due.
    Open,
    /// Some channel's data deadline is due ([`Connection::data_timeout`] runs it, lent the
    /// router's buffer pool and statistics).
    Data,
    /// The peer's channels are busy and its session reached its rekey deadline: a handshake
    /// to `to` replaces it without interrupting them (the timer is armed again).
    Rekey { to: SocketAddr },
    /// The peer is idle and its session outlived its lifetime: it is forgotten.
    SessionExpired,
}

impl Connection {
    /// Runs the connection's earliest timer due at `now`, disarmed first. None when nothing
    /// was due or the connection settled it itself (the router asks again while the table's
    /// next deadline is due).
    pub(crate) fn handle_timeout(&mut self, now: Instant, ctx: &Context) -> Option<Due> {
        match self.expired(now)? {
            Timer::Idle => self.silence_check(now, ctx),
            Timer::Open => Some(Due::Open),
            Timer::Data => Some(Due::Data),
            Timer::Session => self.session_check(now, ctx),
        }
    }

    /// The silence check: a peer heard lately sheds the keys and reliability state of its
    /// quiet channels (those that carried few packets since the last check), one silent
    /// for a keep-alive interval all its expanded keys and its idle queues' room (PROTOCOL.md
    /// §12, memory per idle peer; re-expanded by its next packet), both arm the check again.
    /// Frees the room of the per-flush lists that are empty at a silence check: the touched
    /// channels (a flush swaps the router's visit buffer in, so this may be a large one) and
    /// the channels' deadline heap when no channel has a deadline. Idle peers are most of a
    /// node's peers; a quiet spell's first packet makes them again (issue 12, heap per peer).
    fn release_idle_room(&mut self) {
        if self.touched.is_empty() {
            self.touched = Vec::new();
        }
        self.channel_deadlines.release_if_empty();
    }

    fn silence_check(&mut self, now: Instant, ctx: &Context) -> Option<Due> {
        let until = match self.silence(now, ctx.keep_alive_interval, ctx.connection_reset_timeout) {
            Silence::Wait { until } => {
                if let Some(entry) = self.session.as_mut() {
                    entry.slot.shed_idle_keys();
                }
                for channel in self.lanes.iter_mut() {
                    if let Some(data) = channel.data.as_mut() {
                        data.reliability.shed_if_idle();
                    }
                }
                self.release_idle_room();
                until
            }
            Silence::ShedKeys { until } => {
                if let Some(entry) = self.session.as_mut() {
                    entry.slot.shed_keys();
                }
                for channel in self.lanes.iter_mut() {
                    if let Some(data) = channel.data.as_mut() {
                        data.reliability.shrink_idle();
                    }
                }
                self.release_idle_room();
                until
            }
            Silence::Reset => return Some(Due::Reset),
        };
        self.timers.arm_earliest(Timer::Idle, until);
        None
    }

    /// The session timer: a busy peer's session is replaced at its rekey deadline, an idle
    /// peer's forgotten once its lifetime is over (PROTOCOL.md §5: cached for its lifetime
    /// only); otherwise the timer waits for whichever of the two applies.
    fn session_check(&mut self, now: Instant, ctx: &Context) -> Option<Due> {
        let busy = !self.is_idle();
        let entry = self.session.as_ref()?;
        let to = entry.address;
        let session = entry.slot.current_ref()?;
        let rekey_at = session.rekey_deadline(&ctx.rekey);
        let expires = later(session.created_at(), ctx.session_lifetime);
        if now >= rekey_at && busy {
            self.timers
                .arm_earliest(Timer::Session, later(now, ctx.rekey.after));
            return Some(Due::Rekey { to });
        }
        if now >= expires && !busy {
            return Some(Due::SessionExpired);
        }
        let next = if busy { rekey_at } else { expires };
        let next = next.max(later(now, Duration::from_millis(1)));
        self.timers.arm_earliest(Timer::Session, next);
        None
    }

    /// PROTOCOL.md §7.7: whether the channel in `lane`, which asked for keep-alives, has gone
    /// a keep-alive interval without sending, so a PING keeps NAT bindings and the peer's reset
    /// timer alive. An initiator waits until the responder confirmed the channel.
    pub(crate) fn keep_alive_due(&self, now: Instant, ctx: &Context, lane: Lane) -> bool {
        self.lanes
            .get(lane)
            .filter(|c| c.confirmed() || !c.initiator)
            .and_then(|c| c.data.as_ref())
            .is_some_and(|d| d.keep_alive && now >= later(d.last_sent, ctx.keep_alive_interval))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::channel::connection::sealed::tests::with_session;
    use crate::channel::connection::transmit::tests::{
        CHANNEL, channel, connection, ctx, data_mut, open, with,
    };
    use crate::channel::state::Phase;
    use crate::session::Role;

    #[test]
    fn a_keep_alive_is_due_after_an_interval_without_sending_on_a_confirmed_channel() {
        let t0 = Instant::now();
        let mut c = connection(t0);
        let ch = with(&mut c, channel(t0, open(), false));
        let interval = ctx().keep_alive_interval;
        assert!(!c.keep_alive_due(t0 + interval / 2, &ctx(), ch));
        assert!(c.keep_alive_due(t0 + interval, &ctx(), ch));
        // A packet sent moves it on; a channel that did not ask for it never has one.
        if let Some(data) = data_mut(&mut c, ch) {
            data.last_sent = t0 + interval;
        }
        assert!(!c.keep_alive_due(t0 + interval, &ctx(), ch));
        if let Some(data) = data_mut(&mut c, ch) {
            data.keep_alive = false;
        }
        assert!(!c.keep_alive_due(t0 + 10 * interval, &ctx(), ch));
        // An initiator whose channel the responder has not confirmed waits.
        let unconfirmed = Phase::Open {
            cookie2: Some([5; 16]),
        };
        let waiting = with(&mut c, channel(t0, unconfirmed, true));
        assert!(!c.keep_alive_due(t0 + 10 * interval, &ctx(), waiting));
    }

    #[test]
    fn a_busy_peers_session_is_rekeyed_at_its_deadline_and_an_idle_ones_expires() {
        let t0 = Instant::now();
        let policy = ctx().rekey;
        // Busy: a channel is open.
        let mut c = connection(t0);
        with_session(&mut c, Role::Initiator, t0);
        let lane = with(&mut c, channel(t0, open(), false));
        c.channels.insert(CHANNEL.0, lane);
        c.timers.set(Timer::Session, Some(t0 + policy.after));
        assert_eq!(c.handle_timeout(t0 + policy.after / 2, &ctx()), None);
        let due = c.handle_timeout(t0 + policy.after, &ctx());
        assert_eq!(due, Some(Due::Rekey { to: c.address }));
        // Armed again for the next rekey, should this one's handshake fail.
        assert_eq!(
            c.timers.get(Timer::Session),
            Some(t0 + policy.after + policy.after)
        );
        // Idle: no channel. Before its lifetime the timer waits for the expiry.
        let mut c = connection(t0);
        with_session(&mut c, Role::Responder, t0);
        let lifetime = ctx().session_lifetime;
        c.timers.set(Timer::Session, Some(t0 + lifetime / 2));
        assert_eq!(c.handle_timeout(t0 + lifetime / 2, &ctx()), None);
        assert_eq!(c.timers.get(Timer::Session), Some(t0 + lifetime));
        assert_eq!(
            c.handle_timeout(t0 + lifetime, &ctx()),
            Some(Due::SessionExpired)
        );
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn the_silence_check_sheds_keys_itself_and_hands_only_the_reset_over() {
        let t0 = Instant::now();
        let (keep_alive, reset) = (ctx().keep_alive_interval, ctx().connection_reset_timeout);
        let mut c = connection(t0);
        with_session(&mut c, Role::Initiator, t0);
        c.timers.set(Timer::Idle, Some(t0 + keep_alive));
        // Silent for a keep-alive interval: settled here, checked again at the reset timeout.
        assert_eq!(c.handle_timeout(t0 + keep_alive, &ctx()), None);
        assert_eq!(c.timers.get(Timer::Idle), Some(t0 + reset));
        assert_eq!(c.handle_timeout(t0 + reset, &ctx()), Some(Due::Reset));
        // The other slots only name themselves.
        c.timers.set(Timer::Open, Some(t0));
        c.timers.set(Timer::Data, Some(t0 + reset));
        assert_eq!(c.handle_timeout(t0 + reset, &ctx()), Some(Due::Open));
        assert_eq!(c.handle_timeout(t0 + reset, &ctx()), Some(Due::Data));
        assert_eq!(c.handle_timeout(t0 + reset, &ctx()), None);
    }
}
