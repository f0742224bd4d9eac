//! Benchmarks of the session layer (PROTOCOL.md §5): handshakes per second, packet protection,
//! the cheap-before-expensive MACs, and raw X25519 / AES-GCM for comparison.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use std::time::{Duration, Instant};
use weft::session::handshake::MAX_HANDSHAKE_LEN;
use weft::session::keys::TAG_LEN;
use weft::session::{
    ChannelCrypto, HandshakeIdentity, HandshakeKind, Identity, Initiator, Mac1Key, PacketKey,
    PeerRecord, Response, RotatingSecret, Tai64N, TimestampTable, respond,
};
use weft::wire::{ChannelId, PeerId};

struct Node {
    identity: Identity,
    local: HandshakeIdentity,
    record: PeerRecord,
}

fn node(seed: u8) -> Node {
    let identity = Identity::from_secret_bytes([seed; 32], [seed ^ 0x55; 32]);
    let local = HandshakeIdentity::new(&identity);
    let record = PeerRecord::sign(&identity, &["127.0.0.1:1".parse().unwrap()]);
    Node {
        identity,
        local,
        record,
    }
}

fn handshakes(c: &mut Criterion) {
    let (a, b) = (node(1), node(2));
    let mut rng = StdRng::seed_from_u64(1);
    let mut second = 0u64;
    let mut tick = move || {
        second += 1;
        Tai64N::from_unix(Duration::from_secs(second))
    };
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));

    group.bench_function("ik_initiator_init", |bench| {
        bench.iter(|| {
            Initiator::known_responder(&a.local, &b.record, tick(), &mut rng).unwrap();
        })
    });
    group.bench_function("ik_responder", |bench| {
        let mut table = TimestampTable::new();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let mut setup_rng = StdRng::seed_from_u64(2);
        bench.iter_batched(
            || Initiator::known_responder(&a.local, &b.record, tick(), &mut setup_rng).unwrap(),
            |initiator| {
                answer(
                    &b,
                    a.identity.peer_id(),
                    &initiator,
                    &mut table,
                    &mut rng,
                    &mut out,
                )
            },
            BatchSize::SmallInput,
        )
    });
    // The responder's first handshake with an initiator: nothing remembered (`known.rs`), so
    // all 4 DH and the Ed25519 verification are paid. A fresh initiator identity per iteration.
    group.bench_function("ik_responder_first_contact", |bench| {
        let mut table = TimestampTable::new();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let mut setup_rng = StdRng::seed_from_u64(3);
        let mut n = 0u64;
        bench.iter_batched(
            || {
                n += 1;
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&n.to_le_bytes());
                let identity = Identity::from_secret_bytes(secret, secret);
                let local = HandshakeIdentity::new(&identity);
                let initiator =
                    Initiator::known_responder(&local, &b.record, tick(), &mut setup_rng).unwrap();
                (identity.peer_id(), initiator)
            },
            |(peer, initiator)| answer(&b, peer, &initiator, &mut table, &mut rng, &mut out),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("ik_full", |bench| {
        let mut table = TimestampTable::new();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let mut fin = [0u8; MAX_HANDSHAKE_LEN];
        bench.iter(|| {
            let mut initiator =
                Initiator::known_responder(&a.local, &b.record, tick(), &mut rng).unwrap();
            let Response::Complete { len, .. } = respond(
                &b.local,
                HandshakeKind::KnownResponder,
                a.identity.peer_id(),
                initiator.init(),
                &mut table,
                |_| None,
                &mut rng,
                &mut out,
            )
            .unwrap() else {
                unreachable!()
            };
            initiator
                .read_response(b.identity.peer_id(), &out[..len], &mut fin)
                .unwrap()
        })
    });
    group.bench_function("xx_full", |bench| {
        let mut table = TimestampTable::new();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let mut fin = [0u8; MAX_HANDSHAKE_LEN];
        bench.iter(|| {
            let mut initiator = Initiator::unknown_responder(&a.local, &mut rng).unwrap();
            let Response::Pending { len, mut pending } = respond(
                &b.local,
                HandshakeKind::UnknownResponder,
                a.identity.peer_id(),
                initiator.init(),
                &mut table,
                |_| None,
                &mut rng,
                &mut out,
            )
            .unwrap() else {
                unreachable!()
            };
            let done = initiator
                .read_response(b.identity.peer_id(), &out[..len], &mut fin)
                .unwrap();
            pending
                .read_final(a.identity.peer_id(), &fin[..done.final_len])
                .unwrap()
        })
    });
    group.finish();
}

/// `b` answers `initiator`'s IK INIT, sent by `peer`.
fn answer(
    b: &Node,
    peer: PeerId,
    initiator: &Initiator,
    table: &mut TimestampTable,
    rng: &mut StdRng,
    out: &mut [u8],
) -> Response {
    respond(
        &b.local,
        HandshakeKind::KnownResponder,
        peer,
        initiator.init(),
        table,
        |_| None,
        rng,
        out,
    )
    .unwrap()
}

fn packets(c: &mut Criterion) {
    let header = [0x13u8; 41];
    let mut group = c.benchmark_group("packet_1200");
    group.throughput(Throughput::Bytes(1200));
    let mut sender = ChannelCrypto::new(&[1; 32], &[2; 32], ChannelId::new(1, 1));
    let mut payload = [0u8; 1200];
    let mut tag = [0u8; TAG_LEN];
    group.bench_function("seal", |bench| {
        bench.iter(|| sender.seal(black_box(&header), &mut payload, &mut tag))
    });
    // Open with the raw key: the replay window would refuse a repeated sequence number.
    let key = PacketKey::for_channel(&[1; 32], ChannelId::new(1, 1));
    let mut sealed = [0u8; 1200 + TAG_LEN];
    let mut tag = [0u8; TAG_LEN];
    key.seal_in_place(7, &header, &mut sealed[..1200], &mut tag);
    sealed[1200..].copy_from_slice(&tag);
    group.bench_function("open", |bench| {
        bench.iter_batched_ref(
            || sealed,
            |packet| key.open_in_place(7, &header, packet).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("raw_ring_aes_256_gcm_seal", |bench| {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[3; 32]).unwrap());
        let mut payload = [0u8; 1200];
        bench.iter(|| {
            raw.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&header),
                &mut payload,
            )
            .unwrap()
        })
    });
    group.finish();
}

fn macs(c: &mut Criterion) {
    let mut group = c.benchmark_group("mac");
    group.throughput(Throughput::Elements(1));
    let mac1 = Mac1Key::new(&[4; 32]);
    let covered = [0x22u8; 140];
    let good = mac1.compute(&covered);
    group.bench_function("mac1_verify", |bench| {
        bench.iter(|| mac1.verify(black_box(&covered), &good))
    });
    let secret = RotatingSecret::new([5; 32], Instant::now(), Duration::from_secs(120));
    let address = "203.0.113.9:4000".parse().unwrap();
    let peer = PeerId([6; 16]);
    let cookie = secret.cookie(address, peer);
    group.bench_function("cookie_make", |bench| {
        bench.iter(|| secret.cookie(black_box(address), peer))
    });
    group.bench_function("cookie_check", |bench| {
        bench.iter(|| secret.check(black_box(address), peer, &cookie))
    });
    group.bench_function("raw_x25519_dh", |bench| {
        let secret = x25519_dalek::StaticSecret::from([7; 32]);
        let public =
            *x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([8; 32])).as_bytes();
        bench.iter(|| weft::session::dh::x25519(&secret, black_box(&public)).unwrap())
    });
    group.finish();
}

/// Moves every queued datagram between two endpoints until both are quiet.
fn pump(nodes: &mut [weft::channel::Endpoint; 2], addrs: [std::net::SocketAddr; 2], now: Instant) {
    let mut buf = vec![0u8; 2048];
    loop {
        let mut moved = false;
        for from in 0..2 {
            while let Some(transmit) = nodes[from].poll_transmit(&mut buf) {
                let to = if transmit.destination == addrs[0] {
                    0
                } else {
                    1
                };
                nodes[to].handle(now, addrs[from], &mut buf[..transmit.len]);
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

/// [`pump`], with every datagram written into a receive slab as a backend's would be, and node
/// 1 taking it lent (`handle_lent`, issue 11 point 2) or copied out of (`handle`).
fn pump_slab(
    nodes: &mut [weft::channel::Endpoint; 2],
    addrs: [std::net::SocketAddr; 2],
    now: Instant,
    (slabs, lend): (&mut Vec<bytes::BytesMut>, bool),
) {
    loop {
        let mut moved = false;
        for from in 0..2 {
            loop {
                // A whole slab, taken back in place once the last message lent from it is gone,
                // or another while one is pinned, as the backends' `slabs.rs` does; the same
                // zero-fill either way.
                let free = slabs.iter_mut().position(|slab| {
                    slab.clear();
                    slab.try_reclaim(64 << 10)
                });
                let at = free.unwrap_or_else(|| {
                    slabs.push(bytes::BytesMut::with_capacity(64 << 10));
                    slabs.len() - 1
                });
                let slab = &mut slabs[at];
                slab.resize(2048, 0);
                let Some(transmit) = nodes[from].poll_transmit(slab) else {
                    break;
                };
                let to = usize::from(transmit.destination != addrs[0]);
                if to == 1 && lend {
                    let piece = slab.split_to(transmit.len);
                    let mut datagram = weft::channel::Lendable::new(piece);
                    nodes[to].handle_lent(now, addrs[from], &mut datagram);
                } else {
                    nodes[to].handle(now, addrs[from], &mut slab[..transmit.len]);
                }
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

/// The endpoint's whole sealed path: send → seal → poll_transmit → handle → open → event.
fn endpoint(c: &mut Criterion) {
    use weft::channel::{Endpoint, EndpointConfig, Event};
    use weft::wire::Capabilities;
    let now = Instant::now();
    let addrs = [
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    ];
    let (a, b) = (node(1), node(2));
    let mut nodes = [
        Endpoint::new(EndpointConfig::default(), a.identity, [1; 32], now),
        Endpoint::new(EndpointConfig::default(), b.identity, [2; 32], now),
    ];
    nodes[0].add_peer_record(b.record.clone()).unwrap();
    let peer = b.record.peer_id();
    let channel = nodes[0]
        .open_channel(now, addrs[1], Some(peer), None, Capabilities::NONE)
        .unwrap();
    pump(&mut nodes, addrs, now);
    while nodes[0].poll_event().is_some() {}
    while nodes[1].poll_event().is_some() {}
    let message = [0x5au8; 1000];
    let mut group = c.benchmark_group("endpoint_sealed");
    group.throughput(Throughput::Bytes(message.len() as u64));
    // The endpoints' clock, which never goes back from one benchmark to the next.
    let clock = std::cell::Cell::new(now);
    group.bench_function("send_seal_open_deliver_1000", |bench| {
        let mut now = clock.get();
        bench.iter(|| {
            // Time moves on so pacing and delayed ACKs behave as on a live link; the ACKs flow
            // back, so the congestion window stays open.
            now += std::time::Duration::from_micros(20);
            nodes[0].send(now, channel, &message).unwrap();
            loop {
                pump(&mut nodes, addrs, now);
                match nodes[1].poll_event() {
                    Some(Event::Message { data, .. }) => {
                        clock.set(now);
                        break black_box(data);
                    }
                    Some(_) => continue,
                    None => {
                        now += std::time::Duration::from_micros(100);
                        nodes[0].handle_timeout(now);
                        nodes[1].handle_timeout(now);
                    }
                }
            }
        })
    });
    // Received into a slab, as the backends do: the message copied into a pooled buffer, or
    // lent as a piece of the slab (issue 11 point 2).
    let mut slabs = vec![bytes::BytesMut::with_capacity(64 << 10)];
    for (name, lend) in [("slab_copied_1000", false), ("slab_lent_1000", true)] {
        group.bench_function(name, |bench| {
            // The endpoints' clock goes on from where the last benchmark left it.
            let mut now = clock.get();
            bench.iter(|| {
                now += std::time::Duration::from_micros(20);
                nodes[0].send(now, channel, &message).unwrap();
                loop {
                    pump_slab(&mut nodes, addrs, now, (&mut slabs, lend));
                    match nodes[1].poll_event() {
                        Some(Event::Message { data, .. }) => {
                            assert_eq!(data.is_lent(), lend);
                            nodes[1].recycle(black_box(data));
                            clock.set(now);
                            break;
                        }
                        Some(_) => continue,
                        None => {
                            now += std::time::Duration::from_micros(100);
                            nodes[0].handle_timeout(now);
                            nodes[1].handle_timeout(now);
                        }
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, handshakes, packets, macs, endpoint);
criterion_main!(benches);
