//! A connection's timers as a fixed table indexed by kind (STYLE.md 7): arming one overwrites
//! its slot instead of adding an entry somewhere, so a connection's timers cost the same few
//! bytes however often they are armed, and its next deadline is the minimum of the table.

use std::time::{Duration, Instant};

/// `at + wait` for a deadline. Where the sum does not fit the clock (a configured wait of years),
/// the deadline is a century away instead, which never fires, where `Instant`'s `+` would panic.
pub(crate) fn later(at: Instant, wait: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(3_155_760_000);
    at.checked_add(wait)
        .or_else(|| at.checked_add(CENTURY))
        .unwrap_or(at)
}

/// The kinds of deadline a connection keeps, one slot each.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The peer's silence check: shedding expanded keys after a keep-alive interval, closing
    /// its channels after the connection reset timeout (PROTOCOL.md §7.7, §12).
    Idle,
    /// The earliest channel-establishment retry or give-up among the connection's channels
    /// (PROTOCOL.md §6): each channel keeps its own `retry_at`, this slot their minimum.
    Open,
    /// The earliest data-path deadline among the connection's channels (loss detection,
    /// pacing, delayed ACK, keep-alive; PROTOCOL.md §7): each channel keeps its own `armed`,
    /// this slot their minimum.
    Data,
    /// The peer's session: its rekey while channels are busy, its expiry once they are idle
    /// (PROTOCOL.md §5).
    Session,
}

impl Timer {
    /// Every kind, in slot order.
    pub(crate) const ALL: [Timer; 4] = [Timer::Idle, Timer::Open, Timer::Data, Timer::Session];
}

/// One optional deadline per [`Timer`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// The deadline of `timer`, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer as usize]
    }

    /// Arms `timer` for `at`, unless it is already armed earlier: a handler re-reads the state
    /// it guards when it fires and arms itself again for what is left, so the earliest request
    /// is the one that must not be lost. Returns true when the slot changed.
    pub(crate) fn arm_earliest(&mut self, timer: Timer, at: Instant) -> bool {
        let slot = &mut self.slots[timer as usize];
        if slot.is_some_and(|armed| armed <= at) {
            return false;
        }
        *slot = Some(at);
        true
    }

    /// Sets `timer` to exactly `at` (None disarms it).
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.slots[timer as usize] = at;
    }

    /// Disarms and returns the first timer due at `now`, if any (earliest first).
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<(Timer, Instant)> {
        let (timer, at) = Timer::ALL
            .into_iter()
            .filter_map(|timer| self.get(timer).map(|at| (timer, at)))
            .filter(|&(_, at)| at <= now)
            .min_by_key(|&(_, at)| at)?;
        self.set(timer, None);
        Some((timer, at))
    }

    /// The connection's next deadline: the earliest armed slot.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_request_wins_and_the_next_deadline_is_the_minimum() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        assert!(table.arm_earliest(Timer::Idle, t0 + Duration::from_secs(30)));
        assert!(table.arm_earliest(Timer::Data, t0 + Duration::from_millis(25)));
        // A later request does not push an armed timer back; an earlier one pulls it forward.
        assert!(!table.arm_earliest(Timer::Data, t0 + Duration::from_millis(40)));
        assert!(table.arm_earliest(Timer::Data, t0 + Duration::from_millis(10)));
        assert_eq!(table.get(Timer::Data), Some(t0 + Duration::from_millis(10)));
        assert_eq!(table.next(), Some(t0 + Duration::from_millis(10)));
        table.set(Timer::Data, None);
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn expired_timers_come_out_earliest_first_and_disarmed() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::Idle, Some(t0 + Duration::from_millis(5)));
        table.set(Timer::Open, Some(t0 + Duration::from_millis(2)));
        table.set(Timer::Data, Some(t0 + Duration::from_millis(9)));
        let now = t0 + Duration::from_millis(6);
        assert_eq!(
            table.take_expired(now),
            Some((Timer::Open, t0 + Duration::from_millis(2)))
        );
        assert_eq!(
            table.take_expired(now),
            Some((Timer::Idle, t0 + Duration::from_millis(5)))
        );
        assert_eq!(table.take_expired(now), None);
        assert_eq!(table.next(), Some(t0 + Duration::from_millis(9)));
    }

    #[test]
    fn the_table_is_a_few_words_whatever_is_armed() {
        // Arming in a loop changes a slot, never the size: nothing to grow, nothing stale.
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        for i in 0..1_000u64 {
            table.arm_earliest(Timer::Data, t0 + Duration::from_millis(1_000 - i));
        }
        assert_eq!(table.get(Timer::Data), Some(t0 + Duration::from_millis(1)));
        assert!(std::mem::size_of::<TimerTable>() <= 4 * 16);
    }
}
