//! The endpoint's timers: channel open retries, peer reset and key shedding, and the dispatch of
//! every due timer (handshakes, sessions and the data path have theirs in their own modules).

use super::*;

impl Endpoint {
    pub(super) fn arm(&mut self, at: Instant, key: TimerKey) {
        self.timers.push(Reverse((at, key)));
    }

    /// The earliest deadline at which [`Endpoint::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs timers whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.cookies.advance(now);
        self.last_now = self.last_now.max(now);
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match key {
                TimerKey::Channel(code) => self.channel_timer(now, code),
                TimerKey::Peer(code) => self.peer_timer(now, code),
                TimerKey::Handshake(code) => self.handshake_timer(now, code),
                TimerKey::Session(code) => self.session_timer(now, code),
                TimerKey::Data(code) => self.data_timer(now, at, code),
            }
        }
        self.flush(now);
        self.outgoing.finish();
        self.publish_gauges();
    }

    pub(super) fn channel_timer(&mut self, now: Instant, code: Hashcode) {
        // A timer for a channel that is gone is stale: the hashcode says so (PROTOCOL.md §8).
        let Ok(channel) = self.channels.resolve(code) else {
            return;
        };
        let tries = self.config.open_tries;
        let retry = self.config.open_retry;
        let Some(state) = self.channels.get_mut(channel) else {
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
                self.arm(at, TimerKey::Channel(code));
            }
            return;
        }
        // Backoff: each retry waits twice as long as the one before.
        let wait = retry.saturating_mul(1u32 << state.tries.min(16));
        state.tries = state.tries.saturating_add(1);
        state.retry_at = Some(later(now, wait));
        let opening = matches!(state.phase, Phase::Opening { .. });
        self.arm(later(now, wait), TimerKey::Channel(code));
        if opening {
            self.send_channel_new(channel);
        } else {
            self.send_finalize(channel);
        }
    }

    pub(super) fn shed_session_keys(&mut self, peer: PeerId) {
        if let Some(entry) = self
            .ids
            .session(&peer)
            .and_then(|&handle| self.sessions.get_mut(handle))
        {
            entry.slot.shed_keys();
        }
    }

    pub(super) fn peer_timer(&mut self, now: Instant, code: Hashcode) {
        let Ok(peer) = self.peers.resolve(code) else {
            return;
        };
        let timeout = self.config.connection_reset_timeout;
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        let deadline = later(state.last_heard, timeout);
        if deadline > now {
            // PROTOCOL.md §12 (memory per idle peer): a peer silent for a keep-alive interval
            // gives up its expanded channel keys, re-expanded by its next packet. This timer
            // already exists per peer, so nothing scans the peers per packet.
            let idle_at = later(state.last_heard, self.config.keep_alive_interval);
            if idle_at <= now {
                let id = state.id;
                self.shed_session_keys(id);
                self.arm(deadline, TimerKey::Peer(code));
            } else {
                self.arm(idle_at.min(deadline), TimerKey::Peer(code));
            }
            return;
        }
        // PROTOCOL.md §7.7: a peer silent for the connection reset timeout loses its channels;
        // under kind 0 that forgets it entirely.
        let channels: Vec<Handle> = state
            .channels
            .values()
            .chain(state.opening.values())
            .copied()
            .collect();
        for channel in channels {
            self.close(channel, CloseReason::Idle, false, false);
        }
        // The used ids must outlive every cookie2 that could still reopen one of them: a cookie2
        // stays valid for two rotations after it was made (PROTOCOL.md §6).
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        let keep_until = later(
            state.last_open,
            self.config.cookie_rotation.saturating_mul(2),
        );
        if keep_until > now {
            self.arm(keep_until, TimerKey::Peer(code));
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
