//! A bounded flood of spoofed CHANNEL_NEW against an in-process node leaves its heap where it
//! was (PROTOCOL.md §3: no per-peer state before a cookie or a handshake). Alone in its test
//! binary, so no other test's allocations land in the node's share of the counting allocator.

use std::time::Duration;
use weft::bench::load::{FloodConfig, run_flood};
use weft::channel::EndpointConfig;
use weft::engine::{Engine, EngineConfig};
use weft::heap::{self, Account, CountingAlloc};
use weft::session::Identity;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// The node's heap (everything but this harness's), the least of a few samples: a snapshot the
/// engine is building at one instant is transient, growth is not.
fn node_heap() -> i64 {
    (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(60));
            heap::live_except(Account::Harness)
        })
        .min()
        .unwrap()
}

#[test]
fn a_spoofed_channel_new_flood_is_answered_without_node_heap_growth() {
    heap::set_thread_account(Account::Harness);
    assert!(heap::is_counting());
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let config = EngineConfig {
        shards: 2,
        ..EngineConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            EndpointConfig {
                allow_plaintext: true,
                ..EndpointConfig::default()
            },
        )
    };
    let engine = heap::with_account(Account::Node, || {
        Engine::start(&config, &identity, [7; 32]).unwrap()
    });
    let stop = engine.shutdown_handle().unwrap();
    let flood = FloodConfig {
        target: engine.local_addr(),
        target_peer: Some(identity.peer_id()),
        clients: 1,
        sources: 8,
        duration: Duration::from_secs(60),
        count: Some(20_000),
    };
    let node = std::thread::spawn(move || {
        heap::set_thread_account(Account::Node);
        engine.run(|_| {})
    });
    // A warm-up: what the node sets up once (counters, tables at their steady size) is not
    // growth per packet.
    run_flood(&flood).unwrap();
    let before = node_heap();
    let report = run_flood(&FloodConfig {
        count: Some(20_000),
        ..flood
    })
    .unwrap();
    let after = node_heap();
    stop.shutdown();
    node.join().unwrap().unwrap();
    assert_eq!(report.sent, 20_000);
    assert!(report.answers > 0, "{report:?}");
    assert!(report.amplification() <= 3.0, "{report:?}");
    // Any state per spoofed sender costs at least its 16-byte peer id: 320,000 B here. Under
    // CPU contention a drop counter's first label, a queue or a fixed-size table reaching a new
    // high-water mark may add a fixed few KB once (21,780 B seen once on a clean CI clone), so
    // the bound is a fifth of what per-sender state would cost, not zero; `weft bench --flood`
    // reports the exact growth.
    assert!(
        after - before < 64_000,
        "the node's heap grew by {} B over 20,000 spoofed CHANNEL_NEW",
        after - before
    );
}
