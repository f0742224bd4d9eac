use super::*;

#[test]
fn socket_addresses_round_trip() {
    for text in [
        "127.0.0.1:7700",
        "[::1]:9",
        "[fe80::1%3]:65535",
        "0.0.0.0:0",
    ] {
        let address: SocketAddr = text.parse().unwrap();
        let (storage, _) = to_sockaddr(address);
        assert_eq!(from_sockaddr(&storage), Some(address));
    }
}

#[test]
fn steering_program_is_ld_mod_ret() {
    let program = steering_program(4);
    assert_eq!((program[0].code, program[0].k), (0x20, 1));
    assert_eq!((program[1].code, program[1].k), (0x94, 4));
    assert_eq!(program[2].code, 0x16);
}

#[test]
fn batches_carry_datagrams_both_ways() {
    let a = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let to = b.local_addr().unwrap();
    let mut send = SendBatch::new(gso_supported(&a));
    for i in 0..10u8 {
        let slot = send.slot().unwrap();
        slot[..100].fill(i);
        send.push(to, if i == 9 { 50 } else { 100 });
    }
    let flushed = send.flush(a.as_raw_fd());
    assert_eq!(flushed.datagrams, 10);
    assert!(send.is_empty());
    let mut recv = RecvBatch::new();
    let mut got = Vec::new();
    while got.len() < 10 {
        match recv.recv(b.as_raw_fd()) {
            Ok(n) => {
                for i in 0..n {
                    let (r, bytes) = recv.message(i);
                    assert_eq!(r.from, Some(a.local_addr().unwrap()));
                    // Without GRO each message is one datagram.
                    assert_eq!(r.segment, None);
                    got.push(bytes.to_vec());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    for (i, bytes) in got.iter().enumerate() {
        let len = if i == 9 { 50 } else { 100 };
        assert_eq!(bytes, &vec![i as u8; len]);
    }
}

/// An endpoint holding `count` queued control datagrams to `to` (bytes `n`, 60 of them).
fn endpoint_with_queued(to: SocketAddr, count: u8) -> crate::channel::Endpoint {
    use crate::channel::{Endpoint, EndpointConfig};
    let identity = crate::session::Identity::from_secret_bytes([4; 32], [5; 32]);
    let now = std::time::Instant::now();
    let mut endpoint = Endpoint::new(EndpointConfig::default(), identity, [6; 32], now);
    for n in 0..count {
        assert!(endpoint.queue_datagram(to, &[n; 60]));
    }
    endpoint
}

#[test]
fn a_lent_datagram_is_sent_from_its_own_buffer_and_its_buffer_comes_back() {
    let a = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let to = b.local_addr().unwrap();
    let mut send = SendBatch::new(gso_supported(&a));
    let mut endpoint = endpoint_with_queued(to, 0);
    let mut recv = RecvBatch::new();
    for round in 0..20u8 {
        // A lent datagram between two written into slots: it neither joins their train
        // nor is copied; the iovec points at the endpoint's own buffer.
        assert!(endpoint.queue_datagram(to, &[round; 60]));
        send.slot().unwrap()[..100].fill(0xA0);
        send.push(to, 100);
        let mut lent = endpoint.poll_transmit_lent().expect("a queued datagram");
        let pointer = lent.as_mut_ptr();
        send.push_lent(lent).expect("room");
        send.slot().unwrap()[..100].fill(0xA1);
        send.push(to, 100);
        assert_eq!(send.base_at(1), pointer);
        assert_eq!(send.train_at(1).count, 1);
        assert_eq!(send.returned().len(), 0, "held until the batch is sent");
        let flushed = send.flush(a.as_raw_fd());
        assert_eq!(flushed.datagrams, 3);
        let mut got = Vec::new();
        while got.len() < 3 {
            match recv.recv(b.as_raw_fd()) {
                Ok(n) => (0..n).for_each(|i| got.push(recv.message(i).1.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [vec![0xA0; 100], vec![round; 60], vec![0xA1; 100]]);
        // Sent: the same buffer comes back, for the endpoint's pool.
        let mut back: Vec<_> = send.returned().collect();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_mut_ptr(), pointer);
        endpoint.recycle_datagram(back.remove(0));
    }
    // One buffer made, at warm-up; the other nineteen rounds reused it.
    assert_eq!(endpoint.control_buffers_made(), 1);
}
