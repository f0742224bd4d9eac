use super::*;

/// A ring with two spare slabs, or None where the kernel refuses io_uring (a failure under
/// `CI`, where the backend must be tested).
fn ring_setup() -> Option<UringSetup> {
    match UringSetup::new(None, 2) {
        Ok(setup) => Some(setup),
        Err(e) if matches!(e.errno, libc::EPERM | libc::ENOSYS) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "io_uring refused under CI: {e}"
            );
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A ring receives datagrams into its slabs and lends them (issue 11 point 2): each one
/// lies in the slab its buffer id named, and past the spare slabs the rest is copied.
#[test]
fn a_ring_receives_datagrams_and_closes_idle() {
    let socket = sys::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    let poll = mio::Poll::new().unwrap();
    let Some(setup) = ring_setup() else {
        return;
    };
    let mut io = UringIo::new(setup, poll, socket, false).unwrap();
    let slabs: Vec<(usize, usize)> = (0..usize::from(BUFFERS))
        .map(|bid| {
            let slab = io.bufs.slabs.slab(bid);
            (slab.as_ptr() as usize, slab.capacity())
        })
        .collect();
    let mut held = Vec::new();
    let mut lent = 0;
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stats = Stats::new();
    for i in 0..5u8 {
        peer.send_to(&[i; 40], address).unwrap();
    }
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 5 && start.elapsed() < Duration::from_secs(10) {
        io.wait(Duration::from_millis(50)).unwrap();
        io.receive(&mut stats, |_, from, datagram| {
            assert_eq!(from, peer.local_addr().unwrap());
            got.push(datagram.bytes().to_vec());
            if let Incoming::Lent(lendable) = datagram {
                lent += 1;
                let at = lendable.bytes().as_ptr() as usize;
                assert!(
                    slabs
                        .iter()
                        .any(|&(start, len)| at >= start && at + 40 <= start + len),
                    "a lent datagram lies in a receive slab"
                );
                // Kept, as a worker keeps a message: its slab stays pinned.
                held.push(std::mem::take(lendable));
            }
        });
    }
    assert_eq!(got, (0..5u8).map(|i| vec![i; 40]).collect::<Vec<_>>());
    assert!(lent >= 1, "datagrams are lent");
    // At most two buffers lent from (a GRO train is one), each pinned and replaced by one of
    // the two spares; the rest copied.
    assert!(
        io.bufs.slabs.made() <= 2,
        "nothing made beyond the two spares"
    );
    // Let go: the pinned slabs are spares again, and the next datagram is lent.
    drop(held);
    peer.send_to(&[9; 40], address).unwrap();
    let mut again = None;
    while again.is_none() && start.elapsed() < Duration::from_secs(10) {
        io.wait(Duration::from_millis(50)).unwrap();
        io.receive(&mut stats, |_, _, datagram| {
            again = Some(matches!(datagram, Incoming::Lent(_)));
        });
    }
    assert_eq!(
        again,
        Some(true),
        "lending resumes once the slabs are let go"
    );
    assert!(io.bufs.slabs.made() <= 2);
    assert_eq!(stats.get("weft_shard_datagrams_received_total", None), 6);
    io.close(
        &mut Endpoint::new(
            crate::channel::EndpointConfig::default(),
            crate::session::Identity::from_secret_bytes([1; 32], [2; 32]),
            [3; 32],
            Instant::now(),
        ),
        &mut stats,
    );
    assert!(io.idle(), "close waits for every request");
}

#[test]
fn queued_control_datagrams_leave_lent_and_come_back_after_their_completions() {
    let socket = sys::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let Some(setup) = ring_setup() else {
        return;
    };
    let mut io = UringIo::new(setup, mio::Poll::new().unwrap(), socket, false).unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let to = peer.local_addr().unwrap();
    let identity = crate::session::Identity::from_secret_bytes([1; 32], [2; 32]);
    let config = crate::channel::EndpointConfig::default();
    let mut endpoint = Endpoint::new(config, identity, [3; 32], Instant::now());
    let mut stats = Stats::new();
    let mut buf = [0u8; 2048];
    let mut warm = 0;
    for round in 0..10u8 {
        for n in 0..3u8 {
            assert!(endpoint.queue_datagram(to, &[round * 3 + n; 50]));
        }
        assert_eq!(io.transmit(&mut endpoint, &mut stats), 3);
        io.wait(Duration::from_millis(10)).unwrap();
        for n in 0..3u8 {
            let (len, _) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], &[round * 3 + n; 50]);
        }
        // The slot, and the lent buffers in it, wait for their CQEs.
        let start = Instant::now();
        while io.sends.iter().any(|slot| slot.inflight > 0) {
            assert!(start.elapsed() < Duration::from_secs(10), "no send CQE");
            io.wait(Duration::from_millis(1)).unwrap();
            io.receive(&mut stats, |_, _, _| {});
        }
        if round == 1 {
            warm = endpoint.control_buffers_made();
        }
    }
    // The buffers come back when the slot is next filled: two rounds' worth warm the pool,
    // and no round after makes one.
    assert!(warm <= 6, "{warm} buffers");
    assert_eq!(endpoint.control_buffers_made(), warm);
    io.close(&mut endpoint, &mut stats);
}
