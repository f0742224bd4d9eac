//! Which of a connection's channels take turns at a flush, and when each is looked at again
//! (PROTOCOL.md §7.3, §7.7): the touched channels visited (or all of them when the window
//! opened), the turns at the shared path, the end of a flush (counters, the buffers its mode
//! resolved, a channel still wanting to send or owing control listed again) and each channel's
//! deadline rearmed, the data timer with it. The packet a turn writes is `transmit.rs`'s.

use super::transmit::Context;
use super::{Connection, Lane};
use crate::channel::pool::BufferPool;
use crate::stats::Stats;
use std::time::{Duration, Instant};

/// How long a channel due to send waits before it looks again while its key is at the hard
/// limit (nothing leaves until a rekey).
const EXHAUSTED_RETRY: Duration = Duration::from_millis(100);

impl Connection {
    /// Fills `visit` (a kept buffer: flushing allocates nothing once it has grown) with the
    /// lanes of the channels that get a turn at this flush: those touched since the last one,
    /// or all of them when the path's window opened since or the last flush stopped at a full
    /// queue (a channel held back then may send now). A packet that touches one channel thus
    /// costs one channel's work, however many the peer holds. A channel listed twice, or closed
    /// since, is visited once or not at all.
    pub(crate) fn channels_to_visit(&mut self, visit: &mut Vec<Lane>) {
        visit.clear();
        std::mem::swap(&mut self.touched, visit);
        let rescan = std::mem::take(&mut self.rescan) || self.free_room() > self.room;
        let lanes = &mut self.lanes;
        visit.retain(|&lane| match lanes.get_mut(lane) {
            Some(channel) if channel.touched => {
                channel.touched = false;
                true
            }
            _ => false,
        });
        if rescan {
            visit.clear();
            visit.extend_from_slice(&self.order);
        }
    }

    /// Lists the channel in `lane` for the next flush's visit: a packet, a send or a timer
    /// changed it. Only a channel with data state takes turns, and a listed one is not listed
    /// again.
    pub(crate) fn touch(&mut self, lane: Lane) {
        let Some(channel) = self.lanes.get_mut(lane) else {
            return;
        };
        if !channel.touched && channel.data.is_some() {
            channel.touched = true;
            self.touched.push(lane);
        }
    }

    /// Lists the channel in `lane` again when it still wants to send (held back by the
    /// pacer): it keeps its place in the next flush's turns, whichever channel's timer wakes
    /// the connection.
    pub(crate) fn keep_waiting(&mut self, now: Instant, lane: Lane) {
        let may_seal = self.may_seal();
        let Some(channel) = self.lanes.get_mut(lane) else {
            return;
        };
        let (Some(path), Some(data)) = (self.path.as_ref(), channel.data.as_ref()) else {
            return;
        };
        // Owed control waits for a key that can seal it: a session at its hard limit sends
        // nothing until a rekey, and listing the channel meanwhile would spin the flush.
        let owes = may_seal && data.owes();
        if !channel.touched && (owes || data.reliability.wants_to_send(now, path)) {
            channel.touched = true;
            self.touched.push(lane);
        }
    }

    /// Which of `count` visited channels takes the next turn (PROTOCOL.md §7.3: the peer's
    /// channels share one window and pacer, and take turns at it); None without a path.
    pub(crate) fn next_turn(&mut self, count: usize) -> Option<usize> {
        self.path.as_mut().map(|path| path.next_turn(count))
    }
    /// Ends a flush of the channels in `visit`: counts each one's new counters, arms its next
    /// deadline, gives back the buffers of what its mode resolved on sending, and lists it
    /// again if it still wants to send (the pacer held it back), so the connection keeps its
    /// turn; then notes the window's room. Returns true when the connection's timer table may
    /// have moved, so the router moves its entry.
    pub(crate) fn flush_done(
        &mut self,
        now: Instant,
        ctx: &Context,
        visit: &[Lane],
        pool: &mut BufferPool,
        stats: &mut Stats,
    ) -> bool {
        let mut moved = false;
        for &lane in visit {
            self.account(lane, stats);
            moved |= self.rearm_channel(now, ctx, lane);
            // Unreliable modes resolve a message once it is sent, not when acknowledged.
            if let Some(data) = self.lanes.get_mut(lane).and_then(|c| c.data.as_mut()) {
                data.reliability.reclaim(pool);
            }
            self.keep_waiting(now, lane);
        }
        self.flushed();
        moved
    }

    /// False while the peer's session is at its key's hard limit: nothing leaves until a
    /// rekey (PROTOCOL.md §5). A connection without a session sends in plaintext.
    pub(crate) fn may_seal(&self) -> bool {
        self.session.as_ref().is_none_or(|entry| {
            entry
                .slot
                .current_ref()
                .is_some_and(|session| !session.is_exhausted())
        })
    }

    /// Notes the window's free room once a flush is done, so the next one sees it open.
    pub(crate) fn flushed(&mut self) {
        self.room = self.free_room();
    }

    fn free_room(&self) -> u64 {
        self.path.as_ref().map_or(0, |path| {
            path.congestion_window()
                .saturating_sub(path.bytes_in_flight())
        })
    }

    /// Arms the next deadline of the channel in `lane` (its reliability timers, its
    /// keep-alive), and the data timer with it. Returns true when the connection's timer table
    /// may have moved, so the endpoint moves the connection's entry in the router's deadlines.
    pub(crate) fn rearm_channel(&mut self, now: Instant, ctx: &Context, lane: Lane) -> bool {
        let Some(data) = self.lanes.get_mut(lane).and_then(|c| c.data.as_mut()) else {
            return false;
        };
        let keep_alive = data
            .keep_alive
            .then(|| super::later(data.last_sent, ctx.keep_alive_interval));
        let Some(at) = [data.reliability.poll_timeout(), keep_alive]
            .into_iter()
            .flatten()
            .min()
        else {
            return false;
        };
        // A deadline in the past is due now. The channel keeps its earliest deadline, and so
        // does the heap of channel deadlines, whose minimum is the data timer (entries moved
        // in place: rearming per packet allocates nothing).
        let mut at = at.max(now);
        if at == now && !self.may_seal() {
            // Due now (an ACK owed, say) but nothing can leave before a rekey: looked at again
            // a little later rather than at every turn, which would spin the timer.
            at = super::later(now, EXHAUSTED_RETRY);
        }
        let Some(data) = self.lanes.get_mut(lane).and_then(|c| c.data.as_mut()) else {
            return false;
        };
        if data.armed.is_some_and(|armed| armed <= at) {
            return false;
        }
        data.armed = Some(at);
        let order_at = data.order_at;
        self.set_channel_deadline(order_at, Some(at));
        true
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::channel::connection::Timer;
    use crate::channel::connection::transmit::tests::{
        channel, connection, ctx, data_of, open, queue, with, write_all,
    };

    #[test]
    fn rearming_keeps_the_channels_earliest_deadline_and_moves_the_data_timer() {
        let t0 = Instant::now();
        let (mut pool, mut c) = (BufferPool::new(), connection(t0));
        let ch = with(&mut c, channel(t0, open(), false));
        c.order = vec![ch];
        // Idle, with keep-alive on: the deadline is the keep-alive PING's.
        assert!(c.rearm_channel(t0, &ctx(), ch));
        let keep_alive = t0 + Duration::from_secs(15);
        assert_eq!(c.timers.get(Timer::Data), Some(keep_alive));
        assert_eq!(c.poll_timeout(), Some(keep_alive));
        // Armed already for that time or earlier: nothing moves.
        assert!(!c.rearm_channel(t0, &ctx(), ch));
        // A packet in flight brings its loss timer, earlier than the keep-alive.
        queue(&mut c, ch, t0, &mut pool, b"hello");
        assert!(!write_all(&mut c, ch, t0).is_empty());
        assert!(c.rearm_channel(t0, &ctx(), ch));
        let armed = c.timers.get(Timer::Data).expect("armed");
        assert!(armed > t0 && armed < keep_alive, "{armed:?}");
        assert_eq!(data_of(&c, ch).and_then(|d| d.armed), Some(armed));
        // The timer found due hands the channel back by its place in the turn order.
        assert_eq!(c.take_due_channel(armed), Some(0));
    }

    #[test]
    fn a_flush_visits_the_touched_channels_unless_the_window_opened() {
        let t0 = Instant::now();
        let mut c = connection(t0);
        let lanes: Vec<Lane> = (0..4)
            .map(|_| with(&mut c, channel(t0, open(), false)))
            .collect();
        c.order = lanes[1..].to_vec();
        c.flushed();
        let mut visit = vec![99];
        // Touched since the last flush: 3, then 1 twice (visited once), and 7, no lane of
        // this connection's; 2 was listed and closed since.
        for &lane in &[1, 3] {
            c.lanes.get_mut(lane).expect("a channel").touched = true;
        }
        c.touched = vec![3, 1, 1, 7, 2];
        c.channels_to_visit(&mut visit);
        assert_eq!(visit, [3, 1]);
        assert!(c.touched.is_empty());
        assert!(c.lanes.get(1).is_some_and(|ch| !ch.touched));
        // A flush that stopped at a full queue: every channel gets a turn next time.
        c.rescan = true;
        c.touched = vec![2];
        c.channels_to_visit(&mut visit);
        assert_eq!(visit, c.order);
        // Nothing touched and the window as it was: nothing to visit.
        c.channels_to_visit(&mut visit);
        assert!(visit.is_empty());
        // The window's room grew since the last flush (an ACK freed it): all of them again.
        c.room = 0;
        c.channels_to_visit(&mut visit);
        assert_eq!(visit, c.order);
        // Turns go round the visited channels.
        let turns: Vec<_> = (0..4).filter_map(|_| c.next_turn(3)).collect();
        assert_eq!(turns, [0, 1, 2, 0]);
        c.path = None;
        assert_eq!(c.next_turn(3), None);
    }

    #[test]
    fn a_touched_channel_is_listed_once_and_one_held_back_keeps_its_turn() {
        let t0 = Instant::now();
        let mut pool = BufferPool::new();
        let mut c = connection(t0);
        let ch = with(&mut c, channel(t0, open(), false));
        c.touch(ch);
        c.touch(ch);
        assert_eq!(c.touched, [ch]);
        // Visited: no longer listed; with nothing to send it is not kept waiting.
        c.lanes.get_mut(ch).expect("a channel").touched = false;
        c.touched.clear();
        write_all(&mut c, ch, t0);
        c.keep_waiting(t0, ch);
        assert!(c.touched.is_empty());
        // With a message queued it wants to send, and keeps its place.
        queue(&mut c, ch, t0, &mut pool, b"more");
        c.keep_waiting(t0, ch);
        c.keep_waiting(t0, ch);
        assert_eq!(c.touched, [ch]);
        // A channel without data state takes no turns, nor one that is gone.
        let mut bare = channel(t0, open(), false);
        bare.data = None;
        let bare = with(&mut c, bare);
        c.touch(bare);
        c.touch(77);
        assert_eq!(c.touched, [ch]);
    }
}
