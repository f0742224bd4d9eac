//! Unit tests of the receive side (`recv.rs`), kept apart so that file stays one idea: fragments
//! written in place, reassembly into pooled buffers, which messages are lent.

use super::*;

#[test]
fn fragments_land_in_place_in_any_order() {
    let message: Vec<u8> = (0..100u8).collect();
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
        let mut buf = Vec::with_capacity(100);
        for piece in order {
            let at = piece * 25;
            write_at(&mut buf, at, &message[at..at + 25]);
        }
        assert_eq!(buf, message, "{order:?}");
    }
    // Overlapping and repeated pieces rewrite the same bytes.
    let mut buf = Vec::new();
    write_at(&mut buf, 10, &message[10..60]);
    write_at(&mut buf, 0, &message[0..30]);
    write_at(&mut buf, 50, &message[50..100]);
    write_at(&mut buf, 20, &message[20..40]);
    assert_eq!(buf, message);
}

#[test]
fn a_fragmented_message_is_reassembled_in_a_pooled_buffer() {
    let config = ReliabilityConfig::default();
    let mut recv = RecvSide::new(false, true, false, &config);
    let mut budget = ReassemblyBudget::new(1 << 20, 1 << 20);
    let mut pool = BufferPool::new();
    pool.give(Vec::with_capacity(4096));
    let pooled = pool.take(0);
    let pointer = pooled.as_ptr();
    pool.give(pooled);
    let now = Instant::now();
    let message: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    for (offset, piece) in [(1000, 1000..3000), (0, 0..1000)] {
        recv.on_fragment(
            now,
            0,
            3000,
            offset,
            &message[piece],
            &mut budget,
            &mut pool,
        );
    }
    let delivered = std::iter::from_fn(|| recv.poll_event())
        .find_map(|event| match event {
            Delivery::Message { data, .. } => Some(data),
            _ => None,
        })
        .expect("delivered");
    assert_eq!(delivered, message);
    assert_eq!(
        delivered.as_ptr(),
        pointer,
        "the pool's buffer, no new allocation"
    );
    assert_eq!(budget.peer_used(), 0, "the reassembly charge is given back");
}

#[test]
fn an_ordered_channel_lends_a_message_it_delivers_at_once_and_copies_one_held_behind_a_gap() {
    let config = ReliabilityConfig::default();
    let mut recv = RecvSide::new(true, true, true, &config);
    let mut pool = BufferPool::new();
    let datagram = bytes::Bytes::from(b"..second..first".to_vec());
    pool.lend_from(datagram.clone());
    let now = Instant::now();
    recv.on_data(now, 1, &datagram[2..8], &mut pool);
    recv.on_data(now, 0, &datagram[10..15], &mut pool);
    let delivered: Vec<(u64, Payload)> = std::iter::from_fn(|| recv.poll_event())
        .filter_map(|event| match event {
            Delivery::Message { number, data } => Some((number, data)),
            _ => None,
        })
        .collect();
    assert_eq!(delivered.len(), 2);
    let (first, second) = (&delivered[0], &delivered[1]);
    assert_eq!(
        (first.0, first.1.is_lent()),
        (0, true),
        "delivered at once: lent"
    );
    assert_eq!(first.1.as_ptr(), datagram[10..].as_ptr());
    assert_eq!(
        (second.0, second.1.is_lent()),
        (1, false),
        "held behind the gap: copied"
    );
    assert_eq!(pool.take_counts(), (1, 1));
}
