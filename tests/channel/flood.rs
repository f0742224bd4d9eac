//! Flood resistance of the channel handshake (PROTOCOL.md §3, §6): spoofed CHANNEL_NEW and
//! CHANNEL_COOKIE floods leave the node's live heap exactly where it was, every answer stays
//! within 3× its request, and a FINALIZE with a bad cookie allocates nothing.
//!
//! Session INITs (PROTOCOL.md §5) under load cost no Diffie-Hellman and no state either.
//!
//! It installs the test binary's global allocator, a counting one; the counters are per thread,
//! so the harness's other test threads cannot disturb a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::{Endpoint, EndpointConfig, Event};
use weft::session::{Identity, LoadPolicy, Mac1Key, dh};
use weft::wire::{Capabilities, ChannelId, Flags, Header, Message, PacketWriter, PeerId};

struct CountingAllocator;

thread_local! {
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note(delta: i64, count: u64) {
    // try_with: the thread-local may already be gone while a thread shuts down.
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get() + delta));
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + count));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64, 1);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64), 0);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as i64 - layout.size() as i64, 1);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

pub(crate) fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}

pub(crate) fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// splitmix64: deterministic spoofed ids and addresses without touching the heap.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn peer(&mut self) -> PeerId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_be_bytes());
        id[8..].copy_from_slice(&self.next().to_be_bytes());
        id[0] |= 1; // never all zero
        PeerId(id)
    }
    fn address(&mut self) -> SocketAddr {
        let n = self.next();
        SocketAddr::from((
            [10, (n >> 8) as u8, (n >> 16) as u8, n as u8],
            (n >> 24) as u16 | 1,
        ))
    }
    fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_be_bytes());
        out[8..].copy_from_slice(&self.next().to_be_bytes());
        out
    }
}

fn node(now: Instant) -> Endpoint {
    let identity = Identity::from_secret_bytes([3; 32], [4; 32]);
    let config = EndpointConfig {
        allow_plaintext: true,
        echo: true,
        ..EndpointConfig::default()
    };
    Endpoint::new(config, identity, [9; 32], now)
}

fn default_header(sender: PeerId, recipient: PeerId) -> Header {
    Header {
        flags: Flags::default(),
        sender,
        recipient,
        channel: ChannelId::DEFAULT,
        sequence: None,
    }
}

fn channel_new(
    buf: &mut [u8],
    sender: PeerId,
    recipient: PeerId,
    c1: u16,
    cookie1: &[u8; 16],
) -> usize {
    let mut writer = PacketWriter::new(buf, &default_header(sender, recipient)).unwrap();
    writer.push(&Message::ChannelNew { c1, cookie1 }).unwrap();
    writer.finish()
}

fn finalize(
    buf: &mut [u8],
    sender: PeerId,
    recipient: PeerId,
    channel: ChannelId,
    cookie2: &[u8; 16],
) -> usize {
    let mut writer = PacketWriter::new(buf, &default_header(sender, recipient)).unwrap();
    writer
        .push(&Message::ChannelFinalize {
            channel,
            cookie2,
            capabilities: Capabilities::from_bits(0).unwrap(),
        })
        .unwrap();
    writer.finish()
}

fn cookie_with_early_data(
    buf: &mut [u8],
    sender: PeerId,
    recipient: PeerId,
    channel: ChannelId,
    cookie2: &[u8; 16],
    sequence: u32,
) -> usize {
    let header = Header {
        flags: Flags::SEQUENCED,
        sender,
        recipient,
        channel,
        sequence: Some(sequence),
    };
    let mut writer = PacketWriter::new(buf, &header).unwrap();
    writer
        .push(&Message::ChannelCookie {
            cookie2,
            capabilities: Capabilities::from_bits(0).unwrap(),
        })
        .unwrap();
    writer
        .push(&Message::Data {
            message_number: 0,
            payload: b"early data that must not be buffered",
        })
        .unwrap();
    writer.finish()
}

/// Drains the node's answers, asserting the 3× rule against the request that caused them.
fn drain(node: &mut Endpoint, request_len: usize, out: &mut [u8]) -> usize {
    let mut answered = 0;
    while let Some(transmit) = node.poll_transmit(out) {
        answered += transmit.len;
    }
    assert!(
        answered <= 3 * request_len,
        "answered {answered} bytes to a {request_len}-byte request"
    );
    while node.poll_event().is_some() {}
    answered
}

/// Runs `count` spoofed packets of one shape through the node.
fn flood(
    node: &mut Endpoint,
    rng: &mut Rng,
    now: Instant,
    count: usize,
    cookie_shape: bool,
) -> usize {
    let local = node.local_peer_id();
    let mut packet = [0u8; 1500];
    let mut out = [0u8; 1500];
    let mut answered = 0;
    for i in 0..count {
        let sender = rng.peer();
        let from = rng.address();
        let c1 = (rng.next() as u16) | 1;
        let len = if cookie_shape {
            let channel = ChannelId::new(c1, (rng.next() as u16) | 0x8000);
            let cookie = rng.bytes16();
            cookie_with_early_data(&mut packet, sender, local, channel, &cookie, i as u32)
        } else {
            let cookie = rng.bytes16();
            // Half of them name the node, half use the all-zero recipient of a first packet.
            let recipient = if i % 2 == 0 { local } else { PeerId::ZERO };
            channel_new(&mut packet, sender, recipient, c1, &cookie)
        };
        node.handle(now, from, &mut packet[..len]);
        answered += drain(node, len, &mut out);
    }
    answered
}

#[test]
fn spoofed_floods_leave_the_live_heap_unchanged() {
    let now = Instant::now();
    let mut node = node(now);
    let mut rng = Rng(1);
    // Warm-up: the first packets create the statistics' entries and the buffer pool.
    flood(&mut node, &mut rng, now, 1_000, false);
    flood(&mut node, &mut rng, now, 1_000, true);

    let before = live_bytes();
    let answered_new = flood(&mut node, &mut rng, now, 100_000, false);
    let answered_cookie = flood(&mut node, &mut rng, now, 100_000, true);
    let after = live_bytes();

    assert_eq!(before, after, "live heap moved by {} bytes", after - before);
    assert!(
        answered_new > 0,
        "CHANNEL_NEW must be answered (statelessly)"
    );
    assert_eq!(answered_cookie, 0, "a forged CHANNEL_COOKIE gets no answer");
    assert_eq!(node.peer_count(), 0);
    assert_eq!(node.channel_count(), 0);
    let stats = node.stats();
    assert_eq!(
        stats.get(
            "weft_handshake_stateless_answers_total",
            Some(("message", "channel_acknowledge"))
        ),
        101_000
    );
    assert_eq!(
        stats.get("weft_cookie_failures_total", Some(("reason", "mismatch"))),
        101_000
    );
}

/// Gets a genuine cookie2 from the node for (`sender`, `from`).
fn genuine_cookie2(
    node: &mut Endpoint,
    now: Instant,
    sender: PeerId,
    from: SocketAddr,
) -> (ChannelId, [u8; 16]) {
    let mut packet = [0u8; 1500];
    let len = channel_new(&mut packet, sender, node.local_peer_id(), 0x0102, &[7; 16]);
    node.handle(now, from, &mut packet[..len]);
    let mut out = [0u8; 1500];
    let transmit = node.poll_transmit(&mut out).expect("an ACKNOWLEDGE");
    let answer = weft::wire::Packet::parse(&out[..transmit.len]).unwrap();
    for message in answer.messages() {
        if let Message::ChannelAcknowledge {
            channel, cookie2, ..
        } = message
        {
            return (channel, *cookie2);
        }
    }
    panic!("no CHANNEL_ACKNOWLEDGE in the answer");
}

#[test]
fn finalize_with_a_bad_cookie_allocates_nothing() {
    let start = Instant::now();
    let mut node = node(start);
    let sender = PeerId([0x42; 16]);
    let from: SocketAddr = "10.1.2.3:4000".parse().unwrap();
    let local = node.local_peer_id();
    let mut packet = [0u8; 1500];
    let mut out = [0u8; 1500];

    let (channel, cookie2) = genuine_cookie2(&mut node, start, sender, from);
    for (label, sender, from, cookie, at) in [
        ("forged", sender, from, [0x55; 16], start),
        (
            "wrong address",
            sender,
            "10.1.2.4:4000".parse().unwrap(),
            cookie2,
            start,
        ),
        ("wrong peer", PeerId([0x44; 16]), from, cookie2, start),
        (
            "expired",
            sender,
            from,
            cookie2,
            start + Duration::from_secs(241),
        ),
    ] {
        let len = finalize(&mut packet, sender, local, channel, &cookie);
        let before = allocations();
        node.handle(at, from, &mut packet[..len]);
        let after = allocations();
        let _ = drain(&mut node, len, &mut out);
        assert_eq!(after - before, 0, "{label}: FINALIZE allocated");
        assert_eq!(node.channel_count(), 0, "{label}: a channel was opened");
    }
    let stats = node.stats();
    assert_eq!(
        stats.get("weft_cookie_failures_total", Some(("reason", "expired"))),
        1
    );
    assert_eq!(
        stats.get("weft_cookie_failures_total", Some(("reason", "mismatch"))),
        3
    );

    // The genuine cookie from the right address, in time, does open the channel.
    let len = finalize(&mut packet, sender, local, channel, &cookie2);
    node.handle(start + Duration::from_secs(1), from, &mut packet[..len]);
    assert_eq!(node.channel_count(), 1);
    let opened = std::iter::from_fn(|| node.poll_event()).any(|e| {
        matches!(
            e,
            Event::ChannelOpened {
                initiator: false,
                ..
            }
        )
    });
    assert!(opened);
}

/// A HANDSHAKE_INIT of `kind` with junk handshake bytes; mac1 is computed with `mac1` (kinds 1
/// and 3) or all zero (kind 2); no cookie.
fn session_init(
    buf: &mut [u8],
    kind: u8,
    sender: PeerId,
    recipient: PeerId,
    handshake: &[u8],
    mac1: Option<&Mac1Key>,
) -> usize {
    let mut writer = PacketWriter::new(buf, &default_header(sender, recipient)).unwrap();
    writer
        .push(&Message::HandshakeInit {
            kind,
            sender_index: 7,
            handshake,
            mac1: &[0; 16],
            cookie: None,
        })
        .unwrap();
    let len = writer.finish();
    if let Some(key) = mac1 {
        let at = len - 1 - 16;
        let mac = key.compute(&buf[..at]);
        buf[at..at + 16].copy_from_slice(&mac);
    }
    len
}

#[test]
fn a_session_init_flood_under_load_leaves_the_heap_and_the_dh_count_unchanged() {
    let now = Instant::now();
    let identity = Identity::from_secret_bytes([5; 32], [6; 32]);
    let config = EndpointConfig {
        handshake_load: LoadPolicy::Always,
        ..EndpointConfig::default()
    };
    let mut node = Endpoint::new(config, identity, [9; 32], now);
    let local = node.local_peer_id();
    let mac1 = Mac1Key::new(node.identity().x25519_public().as_bytes());
    let mut rng = Rng(2);
    let mut packet = [0u8; 1500];
    let mut out = [0u8; 1500];
    let junk = [0x42u8; 204];
    let mut run = |node: &mut Endpoint, count: usize| {
        for i in 0..count {
            let (sender, from) = (rng.peer(), rng.address());
            let len = match i % 3 {
                0 => session_init(&mut packet, 1, sender, local, &junk, Some(&mac1)),
                1 => session_init(&mut packet, 3, sender, local, &junk, Some(&mac1)),
                _ => session_init(&mut packet, 2, sender, PeerId::ZERO, &junk[..32], None),
            };
            node.handle(now, from, &mut packet[..len]);
            assert!(drain(node, len, &mut out) > 0, "every INIT gets a cookie");
        }
    };
    run(&mut node, 1_000);
    let (before, dh_before) = (live_bytes(), dh::count_on_this_thread());
    run(&mut node, 30_000);
    assert_eq!(live_bytes(), before, "a cookie answer keeps no state");
    assert_eq!(dh::count_on_this_thread(), dh_before, "no Diffie-Hellman");
    assert_eq!(node.pending_handshake_count(), 0);
    assert_eq!(node.session_count(), 0);
    assert_eq!(
        node.stats().get("weft_handshake_cookies_sent_total", None),
        31_000
    );
}
