//! Unit tests of the send queue (`send.rs`), kept apart so that file stays one idea.
#![allow(clippy::arithmetic_side_effects)]

use super::*;

fn side() -> SendSide {
    SendSide::new(true, false, &ReliabilityConfig::default())
}

#[test]
fn a_fill_appends_to_an_empty_buffer_with_room_reserved() {
    let mut send = side();
    let mut pool = BufferPool::new();
    pool.give(vec![0xee; 64]);
    let mut seen = None;
    let number = send.push_with(1000, &mut pool, |buf| {
        seen = Some((buf.len(), buf.capacity()));
        buf.extend_from_slice(&[7; 1000]);
    });
    assert_eq!(number, Ok(0));
    let (len, capacity) = seen.unwrap();
    assert_eq!(
        len, 0,
        "nothing to overwrite: the buffer was not zero-filled first"
    );
    assert!(capacity >= 1000, "appending never reallocates");
    assert_eq!(send.queued_bytes(), 1000);
}

#[test]
fn a_short_or_long_fill_is_held_to_the_announced_length() {
    let mut send = side();
    let mut pool = BufferPool::new();
    // A pooled buffer that held another message: none of it may leak into this one.
    pool.give(vec![0xee; 64]);
    send.push_with(10, &mut pool, |buf| buf.extend_from_slice(b"abc"))
        .unwrap();
    send.push_with(4, &mut pool, |buf| buf.extend_from_slice(b"abcdefgh"))
        .unwrap();
    let queued: Vec<&[u8]> = send
        .messages
        .iter()
        .flatten()
        .map(|m| m.data.as_slice())
        .collect();
    assert_eq!(queued, [&b"abc\0\0\0\0\0\0\0"[..], b"abcd"]);
    assert_eq!(send.queued_bytes(), 14);
}
