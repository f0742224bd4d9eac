//! The credit rule of PROTOCOL.md §12: what arrives on reliable channels never meets a full
//! worker queue, because those channels' credit follows the queue's capacity.
//!
//! The engine tells the endpoint how many more messages the workers will take from it now
//! ([`DeliveryCapacity::set`]); every reliable channel holds a [`DeliveryShare`] of that room and
//! grants its peer new WINDOW credit only up to its fair share (the free room divided among the
//! reliable channels). The channels' own windows still apply: the share only ever lowers them.
//! Until the engine says otherwise the capacity is unbounded and credit is the window alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// `free` when no capacity was set: the window alone decides.
const UNBOUNDED: u64 = u64::MAX;

#[derive(Debug)]
struct Shared {
    /// Messages the workers take now, or [`UNBOUNDED`].
    free: AtomicU64,
    /// Reliable channels holding a share.
    members: AtomicU64,
}

/// The room the workers have for one endpoint's reliable messages. Cloning shares it; the
/// endpoint and its channels are driven by one thread, the atomics only make it `Send`.
#[derive(Clone, Debug)]
pub struct DeliveryCapacity {
    shared: Arc<Shared>,
}

impl Default for DeliveryCapacity {
    fn default() -> Self {
        DeliveryCapacity::new()
    }
}

impl DeliveryCapacity {
    /// An unbounded capacity: credit is each channel's window.
    pub fn new() -> DeliveryCapacity {
        DeliveryCapacity {
            shared: Arc::new(Shared {
                free: AtomicU64::new(UNBOUNDED),
                members: AtomicU64::new(0),
            }),
        }
    }

    /// Sets the messages the workers take now; `None` lifts the bound.
    pub fn set(&self, free: Option<u64>) {
        let free = free.map_or(UNBOUNDED, |n| n.min(UNBOUNDED.saturating_sub(1)));
        self.shared.free.store(free, Ordering::Relaxed);
    }

    /// The messages the workers take now, `None` when unbounded.
    pub fn free(&self) -> Option<u64> {
        let free = self.shared.free.load(Ordering::Relaxed);
        (free != UNBOUNDED).then_some(free)
    }

    /// Reliable channels sharing the room.
    pub fn members(&self) -> u64 {
        self.shared.members.load(Ordering::Relaxed)
    }

    /// A share for one more reliable channel; dropping it leaves the room to the others.
    pub fn join(&self) -> DeliveryShare {
        self.shared.members.fetch_add(1, Ordering::Relaxed);
        DeliveryShare {
            capacity: self.clone(),
        }
    }
}

/// One reliable channel's claim on the workers' room.
#[derive(Debug)]
pub struct DeliveryShare {
    capacity: DeliveryCapacity,
}

impl DeliveryShare {
    /// The most messages of new credit this channel may hold out beyond what its application
    /// took: the free room divided among the reliable channels, at least one while any room is
    /// left (so no channel waits for ever behind a crowd), none when the workers are full.
    /// `None` when unbounded.
    pub fn messages(&self) -> Option<u64> {
        let free = self.capacity.free()?;
        if free == 0 {
            return Some(0);
        }
        let members = self.capacity.members().max(1);
        Some(free.checked_div(members).unwrap_or(0).max(1))
    }
}

impl Drop for DeliveryShare {
    fn drop(&mut self) {
        // Saturating: a share is counted once when made, so this never goes below zero.
        let _ =
            self.capacity
                .shared
                .members
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_divide_the_free_room_and_follow_it() {
        let capacity = DeliveryCapacity::new();
        let a = capacity.join();
        assert_eq!(a.messages(), None, "unbounded until the engine says");
        capacity.set(Some(100));
        let b = capacity.join();
        assert_eq!((a.messages(), b.messages()), (Some(50), Some(50)));
        capacity.set(Some(1));
        assert_eq!(a.messages(), Some(1), "a crowd still gets one each");
        capacity.set(Some(0));
        assert_eq!(a.messages(), Some(0), "full: no new credit");
        drop(b);
        capacity.set(Some(100));
        assert_eq!(a.messages(), Some(100));
        assert_eq!(capacity.members(), 1);
    }
}
