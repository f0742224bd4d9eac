//! The credit rule of PROTOCOL.md §12: what arrives on reliable channels never meets a full
//! worker queue, because those channels' credit follows the queue's capacity.
//!
//! The engine tells the endpoint how many more messages its workers take now; every reliable
//! channel then grants its peer new WINDOW credit only up to its fair share of that room
//! ([`fair_share`]; the endpoint hands each channel its cap with
//! [`ChannelReliability::set_credit_cap`](super::ChannelReliability::set_credit_cap)). The
//! channel's own window still applies: the share only ever lowers it. Until the engine says
//! otherwise the room is unbounded and credit is the window alone.

/// The most messages of new credit one of `channels` reliable channels may hold out beyond
/// what its application took, when the workers take `free` more messages (`None`: no bound):
/// the room divided among them, at least one while any is left (so no channel waits for ever
/// behind a crowd; what overshoots waits in the channel, within its credit), none when full.
pub fn fair_share(free: Option<u64>, channels: u64) -> Option<u64> {
    let free = free?;
    if free == 0 {
        return Some(0);
    }
    Some(free.checked_div(channels.max(1)).unwrap_or(0).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_divide_the_free_room_and_follow_it() {
        assert_eq!(fair_share(None, 3), None, "unbounded until the engine says");
        assert_eq!(fair_share(Some(100), 2), Some(50));
        assert_eq!(fair_share(Some(100), 0), Some(100));
        assert_eq!(
            fair_share(Some(1), 40),
            Some(1),
            "a crowd still gets one each"
        );
        assert_eq!(fair_share(Some(0), 1), Some(0), "full: no new credit");
    }
}
