//! The endpoint's timers. Each connection keeps a fixed table (its silence check, its
//! channels' earliest open retry and data deadline) and the router one entry per connection,
//! moved in place; the handshake machinery keeps its own in the router's heap.
//! Here: arming, the dispatch of every due timer, channel open retries and the silence check.

use super::*;

impl Endpoint {
    /// Arms a router timer (handshake machinery).
    pub(super) fn arm(&mut self, at: Instant, key: TimerKey) {
        self.timers.push(Reverse((at, key)));
    }

    /// Arms `timer` of the connection `peer` for `at` (or earlier, if it is already armed
    /// earlier), and moves the connection's entry in the router's deadlines with it.
    pub(super) fn arm_connection(&mut self, peer: Handle, timer: Timer, at: Instant) {
        let Some(connection) = self.peers.get_mut(peer) else {
            return;
        };
        if connection.timers.arm_earliest(timer, at) {
            self.deadlines.set(peer.0, connection.poll_timeout());
        }
    }

    /// Arms a new connection's first silence check: after a keep-alive interval (its expanded
    /// keys are shed then), and never after the connection reset timeout.
    pub(super) fn arm_first_idle_check(&mut self, peer: Handle, now: Instant) {
        let wait = self.config.keep_alive_interval;
        let check = later(now, wait.min(self.config.connection_reset_timeout));
        self.arm_connection(peer, Timer::Idle, check);
    }

    /// Arms a channel's establishment retry for `at`: the channel keeps the deadline, its
    /// connection's open timer the earliest of its channels'.
    pub(super) fn arm_channel(&mut self, channel: ChannelAt, at: Instant) {
        self.arm_connection(channel.peer, Timer::Open, at);
    }

    /// The earliest deadline at which [`Endpoint::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let router = self.timers.peek().map(|Reverse((at, _))| *at);
        let connections = self.deadlines.peek().map(|(at, _)| at);
        router.into_iter().chain(connections).min()
    }

    /// Runs timers whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.cookies.advance(now);
        self.last_now = self.last_now.max(now);
        loop {
            let router = self
                .timers
                .peek()
                .map(|&Reverse((at, key))| (at, key))
                .filter(|&(at, _)| at <= now);
            let connection = self.deadlines.peek().filter(|&(at, _)| at <= now);
            // The earliest of the two goes first; a router timer wins a tie.
            let router_first = match (router, connection) {
                (None, None) => break,
                (Some((at, _)), Some((earliest, _))) => at <= earliest,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            match (router, connection) {
                (Some((_, key)), _) if router_first => {
                    self.timers.pop();
                    match key {
                        TimerKey::Handshake(code) => self.handshake_timer(now, code),
                    }
                }
                (_, Some((_, slot))) => self.connection_timeout(now, Handle(slot)),
                _ => break,
            }
        }
        self.flush(now);
        self.outgoing.finish();
        self.publish_gauges();
    }

    /// Runs the connection's earliest due timer ([`Connection::handle_timeout`]: the timer is
    /// disarmed and what the connection can settle itself, it settles), moves the router's
    /// entry to the table's next deadline, then does what the connection handed over: what
    /// it arms again moves the entry once more, never adds one.
    fn connection_timeout(&mut self, now: Instant, peer: Handle) {
        let ctx = self.connection_context();
        let Some(connection) = self.peers.get_mut(peer) else {
            self.deadlines.set(peer.0, None);
            return;
        };
        let due = connection.handle_timeout(now, &ctx);
        let id = connection.id;
        self.deadlines.set(peer.0, connection.poll_timeout());
        match due {
            Some(Due::Reset) => self.peer_reset(now, peer),
            Some(Due::Open) => self.open_timers(now, peer),
            Some(Due::Data) => self.data_timers(now, peer),
            Some(Due::Rekey { to }) => {
                // PROTOCOL.md §5: replaced by a new handshake without interrupting channels.
                let _ = self.ensure_handshake(now, to, Some(id));
            }
            Some(Due::SessionExpired) => self.forget_session(peer),
            None => {}
        }
    }

    /// The connection's open timer fired: runs the retry of each of its channels that is due,
    /// then arms the timer for the earliest retry left.
    fn open_timers(&mut self, now: Instant, peer: Handle) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        if let Some(connection) = self.peers.get(peer) {
            due.extend(connection.lanes.iter().filter_map(|(lane, state)| {
                state.retry_at.is_some_and(|at| at <= now).then_some(lane)
            }));
        }
        for &lane in &due {
            self.channel_timer(now, ChannelAt { peer, lane });
        }
        self.due = due;
        let next = self.peers.get(peer).and_then(|connection| {
            connection
                .lanes
                .iter()
                .filter_map(|(_, state)| state.retry_at)
                .min()
        });
        if let Some(at) = next {
            self.arm_connection(peer, Timer::Open, at);
        }
    }

    /// The connection's data timer fired: the connection runs its due channels' reliability
    /// timers ([`Connection::data_timeout`]); what they released reaches the application now,
    /// not when the driver next asks for packets, and the channels are flushed.
    fn data_timers(&mut self, now: Instant, peer: Handle) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        if let Some(connection) = self.peers.get_mut(peer) {
            connection.data_timeout(
                now,
                &mut self.pool,
                &mut self.stats,
                &self.hot.receive.tally,
                &mut due,
            );
            self.deadlines.set(peer.0, connection.poll_timeout());
        }
        for &lane in &due {
            let channel = ChannelAt { peer, lane };
            self.deliver(now, channel);
            self.touch(channel);
        }
        self.due = due;
    }

    pub(super) fn channel_timer(&mut self, now: Instant, channel: ChannelAt) {
        let tries = self.config.open_tries;
        let retry = self.config.open_retry;
        let Some(state) = self.channel_mut(channel) else {
            return;
        };
        let Some(retry_at) = state.retry_at else {
            return;
        };
        if retry_at > now {
            return;
        }
        if state.tries >= tries {
            if now >= state.give_up_at {
                self.close(channel, CloseReason::Timeout, false, true);
            } else {
                let at = state.give_up_at;
                state.retry_at = Some(at);
                self.arm_channel(channel, at);
            }
            return;
        }
        // Backoff: each retry waits twice as long as the one before.
        let wait = retry.saturating_mul(1u32 << state.tries.min(16));
        state.tries = state.tries.saturating_add(1);
        state.retry_at = Some(later(now, wait));
        let opening = matches!(state.phase, Phase::Opening { .. });
        self.arm_channel(channel, later(now, wait));
        if opening {
            self.send_channel_new(channel);
        } else {
            self.send_finalize(channel);
        }
    }

    /// The connection's silence check found it silent for the connection reset timeout.
    pub(super) fn peer_reset(&mut self, now: Instant, peer: Handle) {
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        // PROTOCOL.md §7.7: a peer silent for the connection reset timeout loses its channels;
        // under kind 0 that forgets it entirely. The channels are listed in the kept buffer
        // (closing one changes the connection's maps).
        let mut closing = std::mem::take(&mut self.due);
        closing.clear();
        closing.extend(state.lanes.iter().map(|(lane, _)| lane));
        for &lane in &closing {
            self.close(ChannelAt { peer, lane }, CloseReason::Idle, false, false);
        }
        self.due = closing;
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        if state.session.is_some() {
            // Its session keeps it, idle, until the session expires (`Due::SessionExpired`); its
            // next channel arms the silence check again (`insert_channel`).
            return;
        }
        let keep_until = state.keep_used_ids_until(self.config.cookie_rotation);
        if keep_until > now {
            self.arm_connection(peer, Timer::Idle, keep_until);
        } else {
            self.forget_peer(peer);
        }
    }

    pub(super) fn handshake_timer(&mut self, now: Instant, code: Hashcode) {
        let Ok(handle) = self.pending.resolve(code) else {
            return;
        };
        let tries = self.config.open_tries;
        let retry = self.config.open_retry;
        match self.pending.get_mut(handle) {
            Some(Pending::Responder(state)) => {
                if now >= state.expires {
                    self.remove_pending(handle);
                    self.stats
                        .add(HANDSHAKE_FAILURES, Some(("reason", "final_timeout")), 1);
                } else {
                    let at = state.expires;
                    self.arm(at, TimerKey::Handshake(code));
                }
            }
            Some(Pending::Initiator(state)) => {
                if state.tries >= tries {
                    if now < state.give_up_at {
                        let at = state.give_up_at;
                        self.arm(at, TimerKey::Handshake(code));
                        return;
                    }
                    let (peer, to) = (state.peer, state.to);
                    self.remove_pending(handle);
                    self.stats
                        .add(HANDSHAKE_FAILURES, Some(("reason", "timeout")), 1);
                    self.events.push_back(Event::SessionFailed {
                        peer,
                        address: to,
                        reason: "timeout",
                    });
                    return;
                }
                // Backoff as for channel opens; a retry is a fresh INIT (new ephemeral key and
                // timestamp: the responder may have accepted the first one's timestamp).
                let wait = retry.saturating_mul(1u32 << state.tries.min(16));
                state.tries = state.tries.saturating_add(1);
                state.give_up_at = state.give_up_at.max(later(now, wait));
                let (peer, to, pings, cookie, tries_done) = (
                    state.peer,
                    state.to,
                    std::mem::take(&mut state.pings),
                    state.cookie,
                    state.tries,
                );
                self.remove_pending(handle);
                if self.ensure_handshake(now, to, peer).is_err() {
                    self.events.push_back(Event::SessionFailed {
                        peer,
                        address: to,
                        reason: "limit",
                    });
                    return;
                }
                let fresh = match peer {
                    Some(peer) => self.pending_by_peer.get(&peer),
                    None => self.pending_by_addr.get(&to),
                }
                .copied();
                if let Some(Pending::Initiator(state)) = fresh.and_then(|h| self.pending.get_mut(h))
                {
                    state.pings = pings;
                    state.tries = tries_done;
                    if cookie.is_some() && state.cookie.is_none() {
                        state.cookie = cookie;
                    }
                }
                if cookie.is_some() {
                    // The fresh INIT went out without the cookie; send it again with it.
                    if let Some(h) = fresh {
                        self.send_init(h);
                    }
                }
            }
            None => {}
        }
    }
}
