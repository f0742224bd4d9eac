//! Live-heap accounting: a counting global allocator over the system allocator, so `weft bench`
//! can read the node's heap apart from the load harness's in one process, and a node can export
//! its live heap as `weft_heap_live_bytes`.
//!
//! Every allocation is charged to the *account* of the thread that makes it (a thread-local
//! tag: [`Account::Other`] unless the thread called [`set_thread_account`]), and the account is
//! written in a small header in front of the block, so a block freed or grown on another thread
//! is still settled against the account that allocated it. Counting costs one relaxed atomic
//! add per call: no lock, no allocation, no thread-local destructor (the tag is a `const`
//! `Cell<u8>`), so nothing in here can re-enter the allocator or deadlock in it.
//!
//! The counter is the bytes callers asked for (`Layout::size`); the header and the system
//! allocator's own overhead are not in it.
//!
//! It is a leaf at the crate root, below every layer, because the engine tags its threads with
//! accounts and the node exports the live total; beside the engine's I/O backends it is the one
//! place that must speak to the system in `unsafe` terms. A binary opts in with
//! `#[global_allocator] static ALLOC: weft::heap::CountingAlloc = CountingAlloc::new();`.
//! Without that the figures stay 0 and [`is_counting`] says so.

// A `GlobalAlloc` is an unsafe trait: implementing it is this module's whole purpose.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

/// Whom an allocation is charged to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Account {
    /// Threads nobody tagged (the default): in a node process, the main thread, the metrics
    /// thread and, until they are tagged, the shards.
    Other,
    /// The node's own threads: shards and workers.
    Node,
    /// A load harness running in the same process as the node it loads (`weft bench`).
    Harness,
}

impl Account {
    /// Every account, in the order of their counters.
    pub const ALL: [Account; 3] = [Account::Other, Account::Node, Account::Harness];

    fn index(self) -> usize {
        match self {
            Account::Other => 0,
            Account::Node => 1,
            Account::Harness => 2,
        }
    }

    fn from_index(index: u8) -> Account {
        match index {
            1 => Account::Node,
            2 => Account::Harness,
            _ => Account::Other,
        }
    }
}

/// One counter per cache line, so threads of different accounts do not contend.
#[repr(align(128))]
struct Counter(AtomicI64);

static LIVE: [Counter; 3] = [
    Counter(AtomicI64::new(0)),
    Counter(AtomicI64::new(0)),
    Counter(AtomicI64::new(0)),
];

thread_local! {
    // `const` initialisation and a type without `Drop`: no lazy set-up that could allocate, no
    // destructor to register, so reading it inside the allocator is safe on any thread, at any
    // point of its life.
    static ACCOUNT: Cell<u8> = const { Cell::new(0) };
}

/// Charges this thread's later allocations to `account`. The engine calls it first thing on
/// every shard and worker thread (`set_thread_account(Account::Node)`).
pub fn set_thread_account(account: Account) {
    ACCOUNT.with(|a| a.set(account.index() as u8));
}

/// The account this thread's allocations are charged to.
pub fn thread_account() -> Account {
    Account::from_index(ACCOUNT.with(Cell::get))
}

/// Runs `f` with this thread's allocations charged to `account`, then restores the previous
/// account (also when `f` panics).
pub fn with_account<R>(account: Account, f: impl FnOnce() -> R) -> R {
    struct Restore(Account);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_thread_account(self.0);
        }
    }
    let _restore = Restore(thread_account());
    set_thread_account(account);
    f()
}

/// Live heap bytes charged to `account` (0 without the counting allocator).
pub fn live_bytes(account: Account) -> i64 {
    LIVE[account.index()].0.load(Ordering::Relaxed)
}

/// Live heap bytes of the whole process (0 without the counting allocator).
pub fn live_total() -> i64 {
    Account::ALL.iter().map(|&a| live_bytes(a)).sum()
}

/// Live heap bytes of everything but `account`: in `weft bench` the node's heap is everything
/// but the harness's, which holds whether or not the engine tags its threads.
pub fn live_except(account: Account) -> i64 {
    live_total() - live_bytes(account)
}

/// Bytes `drop_it` gave back, read on `live` (a live-heap counter nothing else moves
/// meanwhile): the memory report takes structures apart with it, part by part.
pub fn freed(live: &dyn Fn() -> i64, drop_it: impl FnOnce()) -> i64 {
    let before = live();
    drop_it();
    before.saturating_sub(live())
}

/// Whether this process runs the counting allocator (anything that runs has allocated).
pub fn is_counting() -> bool {
    Account::ALL.iter().any(|&a| live_bytes(a) != 0)
}

/// The counting allocator: the system allocator plus per-account live-byte counters.
#[derive(Debug, Default)]
pub struct CountingAlloc;

impl CountingAlloc {
    /// The allocator, for a `#[global_allocator]` static.
    pub const fn new() -> CountingAlloc {
        CountingAlloc
    }
}

/// Room in front of each block for the account byte, keeping the block's alignment.
fn header_len(layout: Layout) -> usize {
    layout.align().max(16)
}

/// The layout asked of the system allocator for a caller's `layout`: header plus block.
fn outer(layout: Layout) -> Option<(Layout, usize)> {
    let header = header_len(layout);
    let size = layout.size().checked_add(header)?;
    Layout::from_size_align(size, header)
        .ok()
        .map(|l| (l, header))
}

fn charge(account: u8, bytes: usize) {
    if let Some(counter) = LIVE.get(usize::from(account)) {
        counter.0.fetch_add(bytes as i64, Ordering::Relaxed);
    }
}

fn settle(account: u8, bytes: usize) {
    if let Some(counter) = LIVE.get(usize::from(account)) {
        counter.0.fetch_sub(bytes as i64, Ordering::Relaxed);
    }
}

/// Marks a fresh block from the system allocator and returns the caller's pointer.
///
/// # Safety
/// `base` is null or the start of a block of at least `header` bytes, `header` a multiple of the
/// caller's alignment.
unsafe fn finish(base: *mut u8, header: usize, layout: Layout) -> *mut u8 {
    if base.is_null() {
        return base;
    }
    let account = ACCOUNT.with(Cell::get);
    // SAFETY: the block has `header` ≥ 16 bytes in front of the caller's part (the caller's
    // contract), so `base` is writable and `base + header` stays inside the block.
    unsafe {
        base.write(account);
    }
    charge(account, layout.size());
    // SAFETY: as above, `header` is within the block.
    unsafe { base.add(header) }
}

// SAFETY: every block is obtained from `System` with the `outer` layout and returned to it with
// the same layout (recomputed from the caller's layout, which GlobalAlloc's contract makes the
// one used to allocate); the caller's pointer is `header` bytes in, aligned because `header` is
// a multiple of the caller's alignment and the outer block is aligned to `header`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((outer, header)) = outer(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size (header ≥ 16).
        unsafe { finish(System.alloc(outer), header, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Some((outer, header)) = outer(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size (header ≥ 16).
        unsafe { finish(System.alloc_zeroed(outer), header, layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some((outer, header)) = outer(layout) else {
            return;
        };
        // SAFETY: `ptr` came from `alloc` with this `layout` (GlobalAlloc's contract), so the
        // block starts `header` bytes before it and its first byte is the account.
        unsafe {
            let base = ptr.sub(header);
            settle(base.read(), layout.size());
            System.dealloc(base, outer);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some((outer, header)) = outer(layout) else {
            return std::ptr::null_mut();
        };
        let Some(new_outer) = new_size.checked_add(header) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `ptr` came from `alloc` with `layout`, so the block starts `header` bytes
        // before it with the account byte; `System.realloc` keeps the block's first bytes, the
        // header with them, and the alignment (`header`) is unchanged.
        unsafe {
            let base = ptr.sub(header);
            let account = base.read();
            let grown = System.realloc(base, outer, new_outer);
            if grown.is_null() {
                return grown;
            }
            settle(account, layout.size());
            charge(account, new_size);
            grown.add(header)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_round_trip_and_scopes_restore() {
        for account in Account::ALL {
            assert_eq!(Account::from_index(account.index() as u8), account);
        }
        assert_eq!(thread_account(), Account::Other);
        let inner = with_account(Account::Harness, || {
            with_account(Account::Node, thread_account)
        });
        assert_eq!(inner, Account::Node);
        assert_eq!(thread_account(), Account::Other);
    }

    #[test]
    fn outer_layout_keeps_alignment_and_room_for_the_header() {
        for (size, align) in [(1, 1), (24, 8), (100, 16), (3, 64), (0, 4096)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let (outer, header) = outer(layout).unwrap();
            assert!(header >= 16 && header % align == 0);
            assert_eq!(outer.align(), header);
            assert_eq!(outer.size(), size + header);
        }
        let huge = Layout::from_size_align(isize::MAX as usize - 8, 1).unwrap();
        assert!(outer(huge).is_none());
    }

    #[test]
    fn the_allocator_charges_the_allocating_account_and_settles_it_anywhere() {
        // The library's tests run on the system allocator, so drive this one directly.
        let alloc = CountingAlloc::new();
        let layout = Layout::from_size_align(1000, 32).unwrap();
        let before = live_bytes(Account::Harness);
        let ptr = with_account(Account::Harness, || {
            // SAFETY: a non-zero-size layout.
            unsafe { alloc.alloc(layout) }
        });
        assert!(!ptr.is_null());
        assert_eq!(ptr as usize % 32, 0);
        assert_eq!(live_bytes(Account::Harness) - before, 1000);
        // SAFETY: `ptr` is a live block of `layout`; growing keeps the account.
        let ptr = unsafe { alloc.realloc(ptr, layout, 3000) };
        assert!(!ptr.is_null());
        assert_eq!(live_bytes(Account::Harness) - before, 3000);
        let grown = Layout::from_size_align(3000, 32).unwrap();
        // Freed on another thread of another account: still settled against the harness.
        let address = ptr as usize;
        std::thread::spawn(move || {
            set_thread_account(Account::Node);
            // SAFETY: the block is live and of layout `grown`; nothing else uses it.
            unsafe { alloc.dealloc(address as *mut u8, grown) }
        })
        .join()
        .unwrap();
        assert_eq!(live_bytes(Account::Harness), before);
    }
}
