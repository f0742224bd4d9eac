//! Channels over real loopback sockets (included by tests/channel.rs): a test client opens channels to a `weft node --echo`
//! process and gets its DATA back (PROTOCOL.md §6, echo service).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use weft::channel::{Endpoint, EndpointConfig, Event};
use weft::session::Identity;
use weft::wire::{Capabilities, PeerId};

/// A node process that is killed when the test ends, however it ends.
struct NodeProcess {
    child: Child,
    udp: SocketAddr,
    peer: PeerId,
    data_dir: std::path::PathBuf,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn start_node(extra: &[&str]) -> NodeProcess {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let data_dir = std::env::temp_dir().join(format!(
        "weft-channel-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the weft binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    // Read the ready line on a thread so a node that never prints fails the test, not hangs it.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("the node prints its ready line");
    let mut udp = None;
    let mut peer = None;
    for field in line.split_whitespace() {
        if let Some(value) = field.strip_prefix("udp=") {
            udp = value.parse().ok();
        }
        if let Some(value) = field.strip_prefix("peer=") {
            peer = PeerId::from_hex(value);
        }
    }
    NodeProcess {
        child,
        udp: udp.expect("udp= in the ready line"),
        peer: peer.expect("peer= in the ready line"),
        data_dir,
    }
}

/// Drives a client endpoint over a real socket until `done` says so or the deadline passes.
fn drive_until(
    endpoint: &mut Endpoint,
    socket: &UdpSocket,
    deadline: Duration,
    mut done: impl FnMut(&Event) -> bool,
) -> bool {
    let give_up = Instant::now() + deadline;
    let mut buf = vec![0u8; 2048];
    let mut finished = false;
    while Instant::now() < give_up && !finished {
        while let Some(transmit) = endpoint.poll_transmit(&mut buf) {
            socket
                .send_to(&buf[..transmit.len], transmit.destination)
                .expect("send on loopback");
        }
        while let Some(event) = endpoint.poll_event() {
            finished |= done(&event);
        }
        if finished {
            break;
        }
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("set a read timeout");
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            endpoint.handle(Instant::now(), from, &mut buf[..len]);
        }
        endpoint.handle_timeout(Instant::now());
    }
    finished
}

#[test]
fn a_client_opens_channels_to_an_echo_node_over_loopback() {
    let node = start_node(&["--echo", "--allow-plaintext"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let mut client = Endpoint::new(plaintext(), identity, [1; 32], Instant::now());
    let udp_mode = Capabilities::from_bits(0).unwrap();

    // One channel by the node's peer id with our own c1, one by bare address.
    let first = client
        .open_channel(
            Instant::now(),
            node.udp,
            Some(node.peer),
            Some(0x0101),
            udp_mode,
        )
        .expect("open by peer id");
    let second = client
        .open_channel(Instant::now(), node.udp, None, None, udp_mode)
        .expect("open by address");
    client
        .send(Instant::now(), first, b"early data")
        .expect("early data queues");

    let mut opened = Vec::new();
    let mut echoed = Vec::new();
    let all_open = drive_until(&mut client, &socket, Duration::from_secs(10), |event| {
        if let Event::ChannelOpened { channel, peer, .. } = event {
            assert_eq!(*peer, node.peer);
            opened.push(*channel);
        }
        if let Event::Message { channel, data, .. } = event {
            echoed.push((*channel, data.to_vec()));
        }
        opened.len() == 2 && !echoed.is_empty()
    });
    assert!(all_open, "both channels open and the early data comes back");
    assert_eq!(echoed, vec![(first, b"early data".to_vec())]);

    for i in 0..20u32 {
        let message = format!("message {i}");
        client
            .send(Instant::now(), second, message.as_bytes())
            .expect("send on an open channel");
    }
    let mut received = Vec::new();
    drive_until(&mut client, &socket, Duration::from_secs(10), |event| {
        if let Event::Message { channel, data, .. } = event {
            assert_eq!(*channel, second);
            received.push(String::from_utf8(data.to_vec()).unwrap());
        }
        received.len() == 20
    });
    // Loopback does not lose packets; the unreliable mode delivers in arrival order.
    received.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("message {i}")).collect();
    expected.sort();
    assert_eq!(received, expected);
}

#[test]
fn a_node_answers_a_ping_from_a_bare_address() {
    let node = start_node(&["--allow-plaintext"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let mut client = Endpoint::new(plaintext(), identity, [2; 32], Instant::now());
    client
        .ping(Instant::now(), node.udp, None, [9; 8])
        .expect("a ping queues");
    let mut pong = None;
    drive_until(&mut client, &socket, Duration::from_secs(5), |event| {
        if let Event::Pong { peer, token, .. } = event {
            pong = Some((*peer, *token));
        }
        pong.is_some()
    });
    assert_eq!(pong, Some((node.peer, [9; 8])));
}

/// Kind 0: channel establishment over real sockets without a session (the node runs with
/// `--allow-plaintext`).
fn plaintext() -> EndpointConfig {
    EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    }
}
