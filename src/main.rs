//! The `weft` command line: `weft node` runs a node; `weft status`, `weft ping`, `weft id`,
//! `weft doctor`, `weft demo` and `weft bench` check, inspect and load one.

mod cli;

use weft::heap::CountingAlloc;

// Live-heap counters for `weft_heap_live_bytes` and `weft bench`'s node bytes per peer.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

fn main() -> std::process::ExitCode {
    cli::main()
}
