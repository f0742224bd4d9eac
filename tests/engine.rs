//! The sharded engine on loopback: steering, hand-over and per-shard counters (PROTOCOL.md §12).

#[path = "engine/seam.rs"]
mod seam;

use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use weft::channel::EndpointConfig;
use weft::engine::{Engine, EngineConfig, IoChoice, ShardStats, owner_of};
use weft::service::{Input, WorkerLink};
use weft::session::Identity;
use weft::wire::{ChannelId, Flags, Header, Message, Packet, PacketWriter, PeerId};

/// Only a guard against hangs on a shared machine.
const DEADLINE: Duration = Duration::from_secs(20);

const PEERS: usize = 1000;
const CLIENT_SOCKETS: usize = 4;

fn ping_packet(sender: PeerId, recipient: PeerId, token: [u8; 8], buf: &mut [u8]) -> usize {
    let header = Header {
        flags: Flags::default(),
        sender,
        recipient,
        channel: ChannelId::DEFAULT,
        sequence: None,
    };
    let mut writer = PacketWriter::new(buf, &header).unwrap();
    writer.push(&Message::Ping { token: &token }).unwrap();
    writer.finish()
}

/// The backend's name as [`Engine::io_backend`] reports it.
fn backend_name(io: IoChoice) -> &'static str {
    match io {
        IoChoice::Uring => "uring",
        _ => "epoll",
    }
}

/// Whether a start error means this machine refuses io_uring (seccomp, `io_uring_disabled`, an
/// old kernel): then a uring variant says so and skips. Any other error fails the test.
fn uring_refused_here(io: IoChoice, error: &std::io::Error) -> bool {
    let refused = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<weft::engine::UringRefused>());
    match refused {
        Some(r) if io == IoChoice::Uring && matches!(r.errno, libc::EPERM | libc::ENOSYS) => {
            eprintln!("SKIPPED: io_uring is not available on this machine: {r}");
            true
        }
        _ => false,
    }
}

/// Starts an engine on `config` (with a worker of `queue` when given), checking that it runs the
/// backend asked for; None when the uring variant must skip.
fn start(config: &EngineConfig, queue: Option<usize>) -> Option<(Engine, Option<WorkerLink>)> {
    let identity = Identity::from_secret_bytes([7; 32], [8; 32]);
    let started = match queue {
        Some(queue) => Engine::start_with_worker(config, &identity, [9; 32], queue)
            .map(|(engine, link)| (engine, Some(link))),
        None => Engine::start(config, &identity, [9; 32]).map(|engine| (engine, None)),
    };
    match started {
        Ok((engine, link)) => {
            assert_eq!(engine.io_backend(), backend_name(config.io));
            assert!(engine.io_fallback().is_none());
            Some((engine, link))
        }
        Err(e) if uring_refused_here(config.io, &e) => None,
        Err(e) => panic!("engine start ({:?}): {e}", config.io),
    }
}

/// Starts a 2-shard engine, has `PEERS` distinct peer ids PING it from a few sockets, waits for
/// every PONG, stops it and returns each peer's owner and every shard's final counters.
fn ping_from_many_peers(steer: bool, io: IoChoice) -> Option<(Vec<usize>, Vec<ShardStats>)> {
    let identity = Identity::from_secret_bytes([7; 32], [8; 32]);
    let node_id = identity.peer_id();
    let config = EngineConfig {
        shards: 2,
        pin: false,
        steer,
        io,
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), plaintext())
    };
    let (engine, _) = start(&config, None)?;
    assert_eq!(engine.shards(), 2);
    assert_eq!(engine.steered(), steer);
    let address = engine.local_addr();
    let stop = engine.shutdown_handle().unwrap();
    let runner = std::thread::spawn(move || engine.run(|_| {}).unwrap());

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut peers = HashSet::new();
    while peers.len() < PEERS {
        let id: [u8; 16] = rng.r#gen();
        if id != [0; 16] {
            peers.insert(id);
        }
    }
    let peers: Vec<PeerId> = peers.into_iter().map(PeerId).collect();
    let sockets: Vec<UdpSocket> = (0..CLIENT_SOCKETS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .collect();
    let mut answered = vec![false; PEERS];
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    // Send in rounds, re-sending to the unanswered, so a datagram lost in a full socket buffer
    // only costs a round.
    while answered.iter().any(|a| !a) {
        assert!(start.elapsed() < DEADLINE, "not every peer got a PONG");
        for (i, peer) in peers.iter().enumerate() {
            if answered[i] {
                continue;
            }
            let token = (i as u64).to_be_bytes();
            let len = ping_packet(*peer, node_id, token, &mut buf);
            sockets[i % CLIENT_SOCKETS]
                .send_to(&buf[..len], address)
                .unwrap();
        }
        for socket in &sockets {
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                assert_eq!(from, address, "every answer comes from the shared port");
                let packet = Packet::parse(&buf[..len]).expect("a valid PONG packet");
                for message in packet.messages() {
                    if let Message::Pong { token } = message {
                        let i = u64::from_be_bytes(*token) as usize;
                        assert_eq!(packet.header.recipient, peers[i]);
                        answered[i] = true;
                    }
                }
            }
        }
    }
    stop.shutdown();
    let stats = runner.join().unwrap();
    let owners = peers
        .iter()
        .map(|p| {
            let mut datagram = [0u8; 5];
            datagram[1..].copy_from_slice(&p.0[..4]);
            owner_of(&datagram, 2).unwrap()
        })
        .collect();
    Some((owners, stats))
}

fn engine_stat(stats: &ShardStats, name: &str) -> u64 {
    stats.engine.get(name, None)
}

/// Every receive batch is counted once in the batch-size distribution.
fn assert_batches_add_up(stats: &ShardStats) {
    let batches = engine_stat(stats, "weft_shard_recv_batches_total");
    let bucketed: u64 = ["1", "2-4", "5-8", "9-16", "17-32", "33-64", "65+"]
        .iter()
        .map(|size| {
            stats
                .engine
                .get("weft_shard_recv_batch_size_total", Some(("size", size)))
        })
        .sum();
    assert!(batches > 0);
    assert_eq!(bucketed, batches);
}

#[test]
fn steering_sends_each_peer_to_the_shard_that_owns_it_epoll() {
    steering_sends_each_peer_to_the_shard_that_owns_it(IoChoice::Epoll);
}

#[test]
fn steering_sends_each_peer_to_the_shard_that_owns_it_uring() {
    steering_sends_each_peer_to_the_shard_that_owns_it(IoChoice::Uring);
}

fn steering_sends_each_peer_to_the_shard_that_owns_it(io: IoChoice) {
    let Some((owners, stats)) = ping_from_many_peers(true, io) else {
        return;
    };
    assert_eq!(stats.len(), 2);
    let owned: Vec<usize> = (0..2)
        .map(|s| owners.iter().filter(|&&o| o == s).count())
        .collect();
    assert!(owned[0] > 0 && owned[1] > 0, "{owned:?}");
    for (shard, stats) in stats.iter().enumerate() {
        // No packet needed a hand-over: the kernel ran the program, so every datagram landed on
        // its owner, whose endpoint answered it.
        assert_eq!(engine_stat(stats, "weft_shard_handovers_out_total"), 0);
        assert_eq!(engine_stat(stats, "weft_shard_handovers_in_total"), 0);
        let pings = stats.endpoint.get("weft_packets_received_total", None);
        let pongs = stats.endpoint.get("weft_packets_sent_total", None);
        // Re-sent rounds may add PINGs, but only from peers this shard owns; each got a PONG.
        assert!(
            pings >= owned[shard] as u64,
            "shard {shard}: {pings} < {owned:?}"
        );
        assert_eq!(pongs, pings, "shard {shard} answers what it receives");
        assert_eq!(
            engine_stat(stats, "weft_shard_datagrams_received_total"),
            pings
        );
        assert_batches_add_up(stats);
    }
    let total: u64 = stats
        .iter()
        .map(|s| s.endpoint.get("weft_packets_received_total", None))
        .sum();
    assert!(total >= PEERS as u64);
}

#[test]
fn without_steering_misplaced_packets_are_handed_over_epoll() {
    without_steering_misplaced_packets_are_handed_over(IoChoice::Epoll);
}

#[test]
fn without_steering_misplaced_packets_are_handed_over_uring() {
    without_steering_misplaced_packets_are_handed_over(IoChoice::Uring);
}

fn without_steering_misplaced_packets_are_handed_over(io: IoChoice) {
    // Every peer got its PONG (`ping_from_many_peers` waits for all), including the peers whose
    // datagrams landed on the shard that does not own them: those answers exist only because
    // hand-over works. What follows checks the counters add up, never how often a busy
    // machine let a queue fill (that depends on scheduling, not on the engine).
    let Some((_, stats)) = ping_from_many_peers(false, io) else {
        return;
    };
    let out: u64 = stats
        .iter()
        .map(|s| engine_stat(s, "weft_shard_handovers_out_total"))
        .sum();
    let handed_in: u64 = stats
        .iter()
        .map(|s| engine_stat(s, "weft_shard_handovers_in_total"))
        .sum();
    // Four client sockets hash to shards by address, while owners follow peer ids: about half
    // the peers sit on the wrong shard.
    assert!(out > 0, "no hand-over happened");
    assert!(handed_in > 0, "no hand-over arrived");
    let drops: u64 = stats
        .iter()
        .map(|s| engine_stat(s, "weft_shard_handover_drops_total"))
        .sum();
    // PROTOCOL.md §12: a full hand-over queue refuses and counts (the client resends those
    // PINGs); nothing handed over is lost without being counted.
    assert_eq!(out, handed_in + drops, "a hand-over vanished uncounted");
    for (shard, stats) in stats.iter().enumerate() {
        // Each shard's endpoint saw exactly what it read and kept, plus what it was handed.
        let read = engine_stat(stats, "weft_shard_datagrams_received_total");
        let kept = read - engine_stat(stats, "weft_shard_handovers_out_total");
        let handled = stats.endpoint.get("weft_packets_received_total", None);
        assert_eq!(
            handled,
            kept + engine_stat(stats, "weft_shard_handovers_in_total"),
            "shard {shard}"
        );
        assert_eq!(
            stats.endpoint.get("weft_packets_sent_total", None),
            handled,
            "shard {shard} answers every PING it handles"
        );
        // The kernel may put every client socket on one shard, so a shard may read nothing.
        if read > 0 {
            assert_batches_add_up(stats);
        }
    }
}

/// A client endpoint on its own socket, driven by hand until `done` says so.
struct Client {
    socket: UdpSocket,
    endpoint: weft::channel::Endpoint,
}

impl Client {
    fn new() -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let identity = Identity::from_secret_bytes([21; 32], [22; 32]);
        let endpoint =
            weft::channel::Endpoint::new(plaintext(), identity, [23; 32], Instant::now());
        Client { socket, endpoint }
    }

    /// Drives the endpoint until `done` returns true for an event; panics at the deadline.
    fn drive_until(&mut self, mut done: impl FnMut(&weft::channel::Event) -> bool) {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        loop {
            assert!(start.elapsed() < DEADLINE, "the awaited event never came");
            while let Some(t) = self.endpoint.poll_transmit(&mut buf) {
                self.socket.send_to(&buf[..t.len], t.destination).unwrap();
            }
            if let Ok((len, from)) = self.socket.recv_from(&mut buf) {
                self.endpoint.handle(Instant::now(), from, &mut buf[..len]);
            }
            let now = Instant::now();
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            while let Some(event) = self.endpoint.poll_event() {
                if done(&event) {
                    return;
                }
            }
        }
    }
}

#[test]
fn worker_echo_and_shutdown_closes_channels_epoll() {
    messages_reach_the_worker_and_its_replies_come_back_and_shutdown_closes_channels(
        IoChoice::Epoll,
    );
}

#[test]
fn worker_echo_and_shutdown_closes_channels_uring() {
    messages_reach_the_worker_and_its_replies_come_back_and_shutdown_closes_channels(
        IoChoice::Uring,
    );
}

fn messages_reach_the_worker_and_its_replies_come_back_and_shutdown_closes_channels(io: IoChoice) {
    let identity = Identity::from_secret_bytes([7; 32], [8; 32]);
    let config = EngineConfig {
        shards: 2,
        pin: false,
        io,
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), plaintext())
    };
    let Some((engine, Some(link))) = start(&config, Some(16)) else {
        return;
    };
    let address = engine.local_addr();
    let stop = engine.shutdown_handle().unwrap();
    let runner = std::thread::spawn(move || engine.run(|_| {}).unwrap());
    // A test worker: answers each message reversed, and remembers what it saw.
    let worker = std::thread::spawn(move || {
        let WorkerLink {
            deliveries,
            mut replier,
        } = link;
        let mut seen = Vec::new();
        for mut batch in deliveries.iter() {
            for input in batch.drain(..) {
                let Input::Message(delivery) = input else {
                    continue;
                };
                let mut answer = delivery.data.to_vec();
                answer.reverse();
                replier
                    .queue(delivery.shard, delivery.channel, answer)
                    .unwrap();
                seen.push(delivery.data);
            }
            deliveries.recycle(batch);
            assert_eq!(replier.flush(), 0, "no reply refused");
        }
        seen
    });

    let mut client = Client::new();
    let channel = client
        .endpoint
        .open_channel(
            Instant::now(),
            address,
            Some(identity.peer_id()),
            None,
            weft::wire::Capabilities::NONE,
        )
        .unwrap();
    client.drive_until(|e| matches!(e, weft::channel::Event::ChannelOpened { .. }));
    client
        .endpoint
        .send(Instant::now(), channel, b"abc")
        .unwrap();
    client
        .drive_until(|e| matches!(e, weft::channel::Event::Message { data, .. } if data == b"cba"));

    stop.shutdown();
    // PROTOCOL.md §12: a clean stop closes open channels with CHANNEL_CLOSE.
    client.drive_until(|e| {
        matches!(
            e,
            weft::channel::Event::ChannelClosed {
                reason: weft::wire::CloseReason::Shutdown,
                by_peer: true,
                ..
            }
        )
    });
    let stats = runner.join().unwrap();
    assert_eq!(worker.join().unwrap(), vec![b"abc".to_vec()]);
    let delivered: u64 = stats
        .iter()
        .map(|s| engine_stat(s, "weft_shard_worker_deliveries_total"))
        .sum();
    assert_eq!(delivered, 1);
}

#[test]
fn sealed_messages_reach_the_worker_in_the_receive_memory_epoll() {
    sealed_messages_reach_the_worker_in_the_receive_memory(IoChoice::Epoll);
}

#[test]
fn sealed_messages_reach_the_worker_in_the_receive_memory_uring() {
    sealed_messages_reach_the_worker_in_the_receive_memory(IoChoice::Uring);
}

/// Issue 11 point 2 on both backends: a message that is the whole of one sealed DATA reaches
/// the worker as a piece of the receive slab the kernel wrote it into, not copied, and the
/// endpoint counts it as lent. Two shards without steering: when the kernel puts the client on
/// the shard that does not own its peer id, its datagrams are handed over as slab pieces, and
/// are lent all the same.
fn sealed_messages_reach_the_worker_in_the_receive_memory(io: IoChoice) {
    let config = EngineConfig {
        shards: 2,
        steer: false,
        pin: false,
        io,
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), EndpointConfig::default())
    };
    let Some((engine, Some(link))) = start(&config, Some(64)) else {
        return;
    };
    let address = engine.local_addr();
    let stop = engine.shutdown_handle().unwrap();
    let runner = std::thread::spawn(move || engine.run(|_| {}).unwrap());
    // Echoes each message and tells whether it came lent.
    let worker = std::thread::spawn(move || {
        let WorkerLink {
            deliveries,
            mut replier,
        } = link;
        let mut lent = Vec::new();
        for mut batch in deliveries.iter() {
            for input in batch.drain(..) {
                if let Input::Message(delivery) = input {
                    lent.push(delivery.data.is_lent());
                    let _ = replier.queue(delivery.shard, delivery.channel, delivery.data);
                }
            }
            deliveries.recycle(batch);
            replier.flush();
        }
        lent
    });
    let mut client = Client::new();
    client.endpoint = weft::channel::Endpoint::new(
        EndpointConfig::default(),
        Identity::from_secret_bytes([31; 32], [32; 32]),
        [33; 32],
        Instant::now(),
    );
    let tcp = weft::wire::Capabilities::from_bits(7).unwrap();
    let channel = client
        .endpoint
        .open_channel(Instant::now(), address, None, None, tcp)
        .unwrap();
    client.drive_until(|e| matches!(e, weft::channel::Event::ChannelOpened { .. }));
    for i in 0..10u8 {
        let message = [i; 100];
        client
            .endpoint
            .send(Instant::now(), channel, &message)
            .unwrap();
        client.drive_until(
            |e| matches!(e, weft::channel::Event::Message { data, .. } if *data == message),
        );
    }
    stop.shutdown();
    let stats = runner.join().unwrap();
    assert_eq!(worker.join().unwrap(), vec![true; 10], "every message lent");
    let lent: u64 = stats
        .iter()
        .map(|s| {
            s.endpoint
                .get("weft_message_buffers_total", Some(("how", "lent")))
        })
        .sum();
    assert_eq!(lent, 10);
}

#[test]
fn a_full_worker_queue_refuses_and_counts_epoll() {
    a_full_worker_queue_refuses_and_counts(IoChoice::Epoll);
}

#[test]
fn a_full_worker_queue_refuses_and_counts_uring() {
    a_full_worker_queue_refuses_and_counts(IoChoice::Uring);
}

fn a_full_worker_queue_refuses_and_counts(io: IoChoice) {
    let identity = Identity::from_secret_bytes([7; 32], [8; 32]);
    let config = EngineConfig {
        shards: 1,
        pin: false,
        io,
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), plaintext())
    };
    // Capacity 1 and a worker that never reads: the first message waits, the rest are refused.
    let Some((engine, Some(link))) = start(&config, Some(1)) else {
        return;
    };
    let address = engine.local_addr();
    let stop = engine.shutdown_handle().unwrap();
    let runner = std::thread::spawn(move || engine.run(|_| {}).unwrap());
    let mut client = Client::new();
    let channel = client
        .endpoint
        .open_channel(
            Instant::now(),
            address,
            Some(identity.peer_id()),
            None,
            weft::wire::Capabilities::NONE,
        )
        .unwrap();
    client.drive_until(|e| matches!(e, weft::channel::Event::ChannelOpened { .. }));
    for i in 0..5u8 {
        client.endpoint.send(Instant::now(), channel, &[i]).unwrap();
    }
    // Push the messages out, then stop; the shard must not wait for the idle worker.
    let start = Instant::now();
    loop {
        let mut buf = [0u8; 2048];
        while let Some(t) = client.endpoint.poll_transmit(&mut buf) {
            client.socket.send_to(&buf[..t.len], t.destination).unwrap();
        }
        if link.deliveries.len() == 1 || start.elapsed() > DEADLINE {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Give the shard a moment to meet the other four messages.
    std::thread::sleep(Duration::from_millis(200));
    drop(link.replier);
    stop.shutdown();
    let stats = runner.join().unwrap();
    assert_eq!(
        engine_stat(&stats[0], "weft_shard_worker_deliveries_total"),
        1
    );
    assert_eq!(engine_stat(&stats[0], "weft_shard_worker_drops_total"), 4);
    assert_eq!(link.deliveries.len(), 1);
}

#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_refused() {
    let identity = Identity::from_secret_bytes([7; 32], [8; 32]);
    let config = EngineConfig {
        shards: 2,
        pin: false,
        io: IoChoice::Auto,
        // As a seccomp filter or kernel.io_uring_disabled would answer io_uring_setup.
        io_fault: Some(libc::EPERM),
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), plaintext())
    };
    let engine = Engine::start(&config, &identity, [9; 32]).unwrap();
    assert_eq!(engine.io_backend(), "epoll");
    if IoChoice::Auto.tries_uring() {
        let refused = engine.io_fallback().expect("the fallback is reported");
        assert_eq!(refused.errno_name(), "EPERM");
    } else {
        // docs/ENGINE.md: auto runs epoll without trying io_uring, so nothing falls back.
        assert!(engine.io_fallback().is_none());
    }
    // The fallback engine works: it answers a PING.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let address = engine.local_addr();
    let stop = engine.shutdown_handle().unwrap();
    let runner = std::thread::spawn(move || engine.run(|_| {}).unwrap());
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "no PONG from the fallback engine"
        );
        let len = ping_packet(PeerId([3; 16]), identity.peer_id(), [1; 8], &mut buf);
        socket.send_to(&buf[..len], address).unwrap();
        if socket.recv_from(&mut buf).is_ok() {
            break;
        }
    }
    stop.shutdown();
    runner.join().unwrap();
}

#[test]
fn uring_refused_is_an_error_naming_the_errno() {
    let identity = Identity::from_secret_bytes([7; 32], [8; 32]);
    let config = EngineConfig {
        shards: 1,
        pin: false,
        io: IoChoice::Uring,
        io_fault: Some(libc::EPERM),
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), plaintext())
    };
    let Err(error) = Engine::start(&config, &identity, [9; 32]) else {
        panic!("--io uring started although io_uring was refused");
    };
    let text = error.to_string();
    assert!(text.contains("EPERM"), "{text}");
    assert!(text.contains("--io epoll"), "{text}");
    assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
}

#[test]
fn auto_runs_the_measured_backend() {
    let config = EngineConfig {
        shards: 1,
        pin: false,
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), plaintext())
    };
    let identity = Identity::from_secret_bytes([7; 32], [8; 32]);
    let engine = Engine::start(&config, &identity, [9; 32]).unwrap();
    match engine.io_fallback() {
        // docs/ENGINE.md: auto runs the backend measured faster, io_uring where it is allowed.
        None if IoChoice::Auto.tries_uring() => assert_eq!(engine.io_backend(), "uring"),
        None => assert_eq!(engine.io_backend(), "epoll"),
        Some(refused) => {
            eprintln!("io_uring refused here ({refused}); auto runs epoll");
            assert!(IoChoice::Auto.tries_uring());
            assert_eq!(engine.io_backend(), "epoll");
        }
    }
}

#[test]
fn a_reliable_channel_waits_for_a_slow_worker_instead_of_losing_messages() {
    let identity = Identity::from_secret_bytes([7; 32], [8; 32]);
    let config = EngineConfig {
        shards: 1,
        pin: false,
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap(), plaintext())
    };
    // A queue of 4 messages and a worker that dawdles over every batch: far more arrives than
    // the queue holds (PROTOCOL.md §12: reliable channels' credit follows the queue).
    let (engine, link) = Engine::start_with_worker(&config, &identity, [9; 32], 4).unwrap();
    let address = engine.local_addr();
    let stop = engine.shutdown_handle().unwrap();
    let runner = std::thread::spawn(move || engine.run(|_| {}).unwrap());
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&taken);
    let worker = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for mut batch in link.deliveries.iter() {
            std::thread::sleep(Duration::from_millis(2));
            seen.extend(batch.drain(..).filter_map(|input| match input {
                Input::Message(d) => Some(d.data[0]),
                _ => None,
            }));
            counter.store(seen.len(), std::sync::atomic::Ordering::Release);
            link.deliveries.recycle(batch);
        }
        seen
    });
    let mut client = Client::new();
    let tcp = weft::wire::Capabilities::from_bits(7).unwrap();
    let channel = client
        .endpoint
        .open_channel(Instant::now(), address, Some(identity.peer_id()), None, tcp)
        .unwrap();
    client.drive_until(|e| matches!(e, weft::channel::Event::ChannelOpened { .. }));
    for i in 0..200u8 {
        client.endpoint.send(Instant::now(), channel, &[i]).unwrap();
    }
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while taken.load(std::sync::atomic::Ordering::Acquire) < 200 {
        assert!(start.elapsed() < DEADLINE, "the messages never got through");
        while let Some(t) = client.endpoint.poll_transmit(&mut buf) {
            client.socket.send_to(&buf[..t.len], t.destination).unwrap();
        }
        if let Ok((len, from)) = client.socket.recv_from(&mut buf) {
            client
                .endpoint
                .handle(Instant::now(), from, &mut buf[..len]);
        }
        let now = Instant::now();
        if client.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            client.endpoint.handle_timeout(now);
        }
    }
    stop.shutdown();
    let stats = runner.join().unwrap();
    assert_eq!(worker.join().unwrap(), (0..200u8).collect::<Vec<_>>());
    assert_eq!(engine_stat(&stats[0], "weft_shard_worker_drops_total"), 0);
    assert_eq!(
        engine_stat(&stats[0], "weft_shard_worker_deliveries_total"),
        200
    );
}

/// Kind 0: these tests craft plaintext PINGs by hand (PROTOCOL.md §5 allows plaintext only when
/// configured).
fn plaintext() -> EndpointConfig {
    EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    }
}
