//! Reassembly memory (PROTOCOL.md §7.5): a budget per peer and one per node, shared by every
//! channel, with a ledger of who holds what so that a full node stays fair to newcomers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One peer's reassembly memory: its limit, and what it holds (kept in step with the node's
/// ledger, readable without its lock).
#[derive(Debug)]
struct PeerShare {
    /// Names the peer to the node's ledger (and the endpoint, when it must evict).
    key: u64,
    limit: usize,
    used: AtomicUsize,
}

/// What the node's ledger knows: bytes held in all, and by whom, ordered so that the heaviest
/// peer is found in O(log peers).
#[derive(Debug, Default)]
struct Ledger {
    used: usize,
    /// `(bytes held, peer key)` of every peer holding any.
    by_use: BTreeSet<(usize, u64)>,
    /// A peer that must free bytes it holds, because a lighter peer was let past the full node
    /// budget in its place.
    debt: Option<(u64, usize)>,
    /// The last key handed to a peer created without one.
    next_key: u64,
}

impl Ledger {
    fn held_by(&self, key: u64, used: usize) -> Option<(usize, u64)> {
        (used > 0).then_some((used, key))
    }

    /// Moves `key` from holding `before` to holding `after` bytes.
    fn update(&mut self, key: u64, before: usize, after: usize) {
        if let Some(entry) = self.held_by(key, before) {
            self.by_use.remove(&entry);
        }
        if let Some(entry) = self.held_by(key, after) {
            self.by_use.insert(entry);
        }
    }
}

/// The node's reassembly memory and its ledger of who holds it.
#[derive(Debug)]
struct NodeShare {
    limit: usize,
    // The endpoint that owns the budget is driven by one thread; the lock is never contended,
    // it only makes the budget `Send` with its owner.
    ledger: Mutex<Ledger>,
}

impl NodeShare {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves consistent numbers (every update is one step).
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reassembly memory shared by all channels of one peer and all peers of one node
/// (PROTOCOL.md §7.5). Cloning shares the counters; a channel keeps a clone to give back what
/// it frees.
///
/// Fair when full: identities cost an attacker nothing, so first come must not mean forever
/// served. When the node budget is full, a peer that holds less than its fair share (the node
/// budget divided among the peers holding any, itself included) is still let in, and the
/// heaviest peer, which holds more than that share, owes the overshoot: the endpoint evicts it
/// ([`take_eviction`](Self::take_eviction)) before it handles the next datagram. A peer at or
/// above its share is refused.
#[derive(Clone, Debug)]
pub struct ReassemblyBudget {
    peer: Arc<PeerShare>,
    node: Arc<NodeShare>,
}

/// Two handles are equal when they charge the same peer's share of the same node's budget.
impl PartialEq for ReassemblyBudget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.peer, &other.peer) && Arc::ptr_eq(&self.node, &other.node)
    }
}

impl ReassemblyBudget {
    /// A node-wide budget of `node_limit` bytes, with one peer's share of `peer_limit`.
    pub fn new(node_limit: usize, peer_limit: usize) -> Self {
        ReassemblyBudget {
            peer: Arc::new(PeerShare {
                key: u64::MAX,
                limit: peer_limit,
                used: AtomicUsize::new(0),
            }),
            node: Arc::new(NodeShare {
                limit: node_limit,
                ledger: Mutex::new(Ledger::default()),
            }),
        }
    }

    /// Another peer's budget of `peer_limit` bytes, drawing on the same node-wide budget.
    pub fn for_peer(&self, peer_limit: usize) -> Self {
        let key = {
            let mut ledger = self.node.ledger();
            ledger.next_key = ledger.next_key.wrapping_add(1);
            // Above any key an endpoint gives (peer hashcodes are 32-bit).
            ledger.next_key | 1 << 63
        };
        self.for_peer_keyed(peer_limit, key)
    }

    /// Another peer's budget, named `key` in [`take_eviction`](Self::take_eviction)'s answers.
    pub fn for_peer_keyed(&self, peer_limit: usize, key: u64) -> Self {
        ReassemblyBudget {
            peer: Arc::new(PeerShare {
                key,
                limit: peer_limit,
                used: AtomicUsize::new(0),
            }),
            node: Arc::clone(&self.node),
        }
    }

    /// Reserves `n` bytes from both the peer's and the node's budget, or neither.
    pub fn try_reserve(&self, n: usize) -> bool {
        let key = self.peer.key;
        let mut ledger = self.node.ledger();
        let before = self.peer.used.load(Ordering::Relaxed);
        let Some(after) = before.checked_add(n).filter(|&a| a <= self.peer.limit) else {
            return false;
        };
        let Some(node_after) = ledger.used.checked_add(n) else {
            return false;
        };
        if node_after > self.node.limit {
            // Full: a peer within its fair share displaces the heaviest one, if that one holds
            // more than the share. One debt at a time; it is settled before the next datagram.
            let holders = ledger.by_use.len().saturating_add(usize::from(before == 0));
            let share = self.node.limit.checked_div(holders).unwrap_or(0);
            let Some(&(heaviest, victim)) = ledger.by_use.last() else {
                return false;
            };
            let owed = node_after.saturating_sub(self.node.limit);
            let debt_ok = ledger
                .debt
                .is_none_or(|(k, d)| k == victim && d.saturating_add(owed) <= heaviest);
            if victim == key || after > share || heaviest <= share || owed > heaviest || !debt_ok {
                return false;
            }
            let total = ledger.debt.map_or(0, |(_, d)| d).saturating_add(owed);
            ledger.debt = Some((victim, total));
        }
        ledger.used = node_after;
        ledger.update(key, before, after);
        self.peer.used.store(after, Ordering::Relaxed);
        true
    }

    /// Gives back `n` bytes.
    pub fn release(&self, n: usize) {
        let key = self.peer.key;
        let mut ledger = self.node.ledger();
        let before = self.peer.used.load(Ordering::Relaxed);
        let n = n.min(before);
        let after = before.saturating_sub(n);
        ledger.used = ledger.used.saturating_sub(n);
        ledger.update(key, before, after);
        if let Some((victim, owed)) = ledger.debt
            && victim == key
        {
            let owed = owed.saturating_sub(n);
            ledger.debt = (owed > 0).then_some((victim, owed));
        }
        if ledger.used <= self.node.limit {
            ledger.debt = None;
        }
        self.peer.used.store(after, Ordering::Relaxed);
    }

    /// The peer (by the key given to [`for_peer_keyed`](Self::for_peer_keyed)) that must free
    /// reassembly memory now, and how many bytes; the debt stays until its releases pay it.
    pub fn take_eviction(&self) -> Option<(u64, usize)> {
        self.node.ledger().debt
    }

    /// Forgets a debt that cannot be collected (its peer holds nothing the endpoint can find).
    pub fn forgive_eviction(&self) {
        self.node.ledger().debt = None;
    }

    /// Bytes this peer holds.
    pub fn peer_used(&self) -> usize {
        self.peer.used.load(Ordering::Relaxed)
    }

    /// Bytes the node holds.
    pub fn node_used(&self) -> usize {
        self.node.ledger().used
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn a_full_node_lets_a_peer_within_its_share_in_and_bills_the_heaviest() {
        let node = ReassemblyBudget::new(1000, 1000);
        let hog = node.for_peer_keyed(1000, 1);
        let newcomer = node.for_peer_keyed(1000, 2);
        assert!(hog.try_reserve(900));
        assert!(
            !hog.try_reserve(200),
            "over the node budget, and over its share"
        );
        assert_eq!(node.take_eviction(), None);
        // Two holders: a share is 500. The newcomer is within it; the hog, above it, owes.
        assert!(newcomer.try_reserve(300));
        assert_eq!(node.take_eviction(), Some((1, 200)));
        assert!(!newcomer.try_reserve(300), "above its share now");
        hog.release(150);
        assert_eq!(node.take_eviction(), Some((1, 50)));
        hog.release(100);
        assert_eq!(node.take_eviction(), None);
        assert_eq!(node.node_used(), 950);
        assert_eq!((hog.peer_used(), newcomer.peer_used()), (650, 300));
    }

    #[test]
    fn the_peer_limit_holds_whatever_the_node_has() {
        let node = ReassemblyBudget::new(1000, 100);
        let peer = node.for_peer(100);
        assert!(peer.try_reserve(100));
        assert!(!peer.try_reserve(1));
        peer.release(100);
        assert_eq!(node.node_used(), 0);
    }
}
