//! Tests of `keys.rs`: packet protection, shedding, the per-session cache.

use super::*;

const HEADER: [u8; 41] = [0x13; 41];

fn pair(channel: ChannelId) -> (ChannelCrypto, ChannelCrypto) {
    let a = [1u8; 32];
    let b = [2u8; 32];
    (
        ChannelCrypto::new(&a, &b, channel),
        ChannelCrypto::new(&b, &a, channel),
    )
}

fn sealed(sender: &mut ChannelCrypto, payload: &[u8]) -> (u64, Vec<u8>) {
    let mut buf = payload.to_vec();
    let mut tag = [0u8; TAG_LEN];
    let seq = sender.seal(&HEADER, &mut buf, &mut tag);
    buf.extend_from_slice(&tag);
    (seq, buf)
}

#[test]
fn seal_then_open_round_trips() {
    let (mut a, mut b) = pair(ChannelId::new(1, 2));
    let (seq, mut packet) = sealed(&mut a, b"hello weft");
    assert_ne!(&packet[..10], b"hello weft");
    let len = b.open(seq, &HEADER, &mut packet).unwrap();
    assert_eq!(&packet[..len], b"hello weft");
    assert_eq!(a.next_sequence(), 1);
}

#[test]
fn a_flipped_bit_in_header_or_ciphertext_or_tag_fails() {
    let (mut a, _) = pair(ChannelId::new(1, 2));
    let (seq, packet) = sealed(&mut a, &[7u8; 64]);
    for byte in 0..HEADER.len() + packet.len() {
        for bit in [0x01u8, 0x80] {
            let (_, mut b) = pair(ChannelId::new(1, 2));
            let mut header = HEADER;
            let mut body = packet.clone();
            if byte < HEADER.len() {
                header[byte] ^= bit;
            } else {
                body[byte - HEADER.len()] ^= bit;
            }
            assert_eq!(
                b.open(seq, &header, &mut body),
                Err(OpenError::Authentication)
            );
        }
    }
}

#[test]
fn wrong_channel_wrong_sequence_or_old_key_fails() {
    let (mut a, _) = pair(ChannelId::new(1, 2));
    let (seq, packet) = sealed(&mut a, b"payload");
    let (_, mut other_channel) = pair(ChannelId::new(1, 3));
    assert!(
        other_channel
            .open(seq, &HEADER, &mut packet.clone())
            .is_err()
    );
    let (_, mut b) = pair(ChannelId::new(1, 2));
    assert!(b.open(seq + 1, &HEADER, &mut packet.clone()).is_err());
    // A key of an older session (other secrets) fails too.
    let mut old = ChannelCrypto::new(&[2; 32], &[9; 32], ChannelId::new(1, 2));
    assert!(old.open(seq, &HEADER, &mut packet.clone()).is_err());
    assert!(b.open(seq, &HEADER, &mut packet.clone()).is_ok());
}

#[test]
fn a_replay_is_refused_and_a_forgery_does_not_move_the_window() {
    let (mut a, mut b) = pair(ChannelId::new(1, 2));
    let (seq, packet) = sealed(&mut a, b"first");
    assert!(b.open(seq, &HEADER, &mut packet.clone()).is_ok());
    assert_eq!(
        b.open(seq, &HEADER, &mut packet.clone()),
        Err(OpenError::Replay)
    );
    // A forged packet far ahead fails its tag and leaves the window where it was...
    let mut forged = vec![0u8; 32];
    assert_eq!(
        b.open(1_000_000, &HEADER, &mut forged),
        Err(OpenError::Authentication)
    );
    assert_eq!(b.check_replay(1_000_000), Seen::Fresh);
    // ...so a genuine packet just after the first still opens.
    let (seq2, packet2) = sealed(&mut a, b"second");
    assert!(b.open(seq2, &HEADER, &mut packet2.clone()).is_ok());
}

#[test]
fn shed_keys_come_back_with_the_same_numbers_and_window() {
    let (mut a, mut b) = pair(ChannelId::new(1, 2));
    let (seq, packet) = sealed(&mut a, b"before");
    assert!(b.open(seq, &HEADER, &mut packet.clone()).is_ok());
    a.shed();
    b.shed();
    assert!(!a.is_expanded() && !b.is_expanded());
    // The replay window survived the shedding...
    assert_eq!(
        b.open(seq, &HEADER, &mut packet.clone()),
        Err(OpenError::Replay)
    );
    // ...and so did the sequence number: no nonce is reused.
    let (seq2, packet2) = sealed(&mut a, b"after");
    assert_eq!(seq2, seq + 1);
    let mut body = packet2.clone();
    let len = b.open(seq2, &HEADER, &mut body).unwrap();
    assert_eq!(&body[..len], b"after");
}

#[test]
fn only_a_busy_channel_keeps_its_expanded_keys_and_an_idle_check_sheds_them() {
    let (mut a, mut b) = pair(ChannelId::new(1, 2));
    // A set-up's few packets each expand their key on the stack.
    for _ in 1..BUSY_PACKETS {
        let (seq, mut packet) = sealed(&mut a, b"few");
        assert!(b.open(seq, &HEADER, &mut packet).is_ok());
    }
    assert!(!a.is_expanded() && !b.is_expanded());
    let (seq, mut packet) = sealed(&mut a, b"busy");
    assert!(b.open(seq, &HEADER, &mut packet).is_ok());
    assert!(a.is_expanded() && b.is_expanded());
    // Busy since the last check: kept; then idle for one interval: shed.
    a.shed_if_idle();
    assert!(a.is_expanded());
    let (seq, mut packet) = sealed(&mut a, b"one");
    a.shed_if_idle();
    assert!(!a.is_expanded());
    // The numbers and the window went on regardless.
    assert!(b.open(seq, &HEADER, &mut packet.clone()).is_ok());
    assert_eq!(b.open(seq, &HEADER, &mut packet), Err(OpenError::Replay));
    assert_eq!(a.next_sequence(), u64::from(BUSY_PACKETS) + 1);
}

#[test]
fn a_packet_shorter_than_a_tag_is_an_error() {
    let (_, mut b) = pair(ChannelId::DEFAULT);
    assert_eq!(
        b.open(0, &HEADER, &mut [0u8; 15]),
        Err(OpenError::Authentication)
    );
}

#[test]
fn the_cache_derives_each_channel_once_and_counts_packets() {
    let mut keys = ChannelKeys::new([1; 32], [2; 32]);
    let mut tag = [0u8; TAG_LEN];
    keys.channel(ChannelId::new(1, 1))
        .seal(&HEADER, &mut [0u8; 8], &mut tag);
    keys.channel(ChannelId::new(1, 1))
        .seal(&HEADER, &mut [0u8; 8], &mut tag);
    keys.channel(ChannelId::DEFAULT)
        .seal(&HEADER, &mut [0u8; 8], &mut tag);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.max_packets_sent(), 2);
    keys.remove(ChannelId::new(1, 1));
    assert!(keys.get(ChannelId::new(1, 1)).is_none());
}

#[test]
fn the_cache_finds_channels_inserted_in_any_order() {
    let mut keys = ChannelKeys::new([1; 32], [2; 32]);
    let mut tag = [0u8; TAG_LEN];
    for (n, sub) in [5u16, 1, 3, 2].into_iter().enumerate() {
        for _ in 0..=n {
            keys.channel(ChannelId::new(1, sub))
                .seal(&HEADER, &mut [0u8; 8], &mut tag);
        }
    }
    for (n, sub) in [5u16, 1, 3, 2].into_iter().enumerate() {
        let crypto = keys.get(ChannelId::new(1, sub)).expect("derived");
        assert_eq!(crypto.next_sequence(), n as u64 + 1);
    }
    keys.remove(ChannelId::new(1, 3));
    assert!(keys.get(ChannelId::new(1, 3)).is_none());
    assert_eq!(keys.get(ChannelId::new(1, 2)).unwrap().next_sequence(), 4);
    assert_eq!(keys.len(), 3);
}

#[test]
fn the_first_channel_lives_inline_and_a_closed_one_makes_room_for_the_next() {
    let mut keys = ChannelKeys::new([1; 32], [2; 32]);
    let mut tag = [0u8; TAG_LEN];
    let (a, b, c) = (
        ChannelId::new(1, 1),
        ChannelId::new(1, 2),
        ChannelId::new(1, 3),
    );
    keys.channel(a).seal(&HEADER, &mut [0u8; 8], &mut tag);
    // No map until a second other channel needs one.
    assert!(keys.first.is_some() && keys.channels.is_none());
    keys.channel(b).seal(&HEADER, &mut [0u8; 8], &mut tag);
    keys.channel(b).seal(&HEADER, &mut [0u8; 8], &mut tag);
    assert_eq!(keys.channels.as_ref().map(|map| map.len()), Some(1));
    keys.remove(a);
    assert!(keys.first.is_none() && keys.get(a).is_none() && keys.is_retired(a));
    // The map's channel stays where it is; a new one takes the free inline place.
    assert_eq!(keys.channel(b).next_sequence(), 2);
    assert!(keys.first.is_none());
    keys.channel(c).seal(&HEADER, &mut [0u8; 8], &mut tag);
    assert_eq!(keys.first.as_ref().map(|(id, _)| *id), Some(c.0));
    assert_eq!(
        (
            keys.len(),
            keys.max_packets_sent(),
            keys.total_packets_sent()
        ),
        (2, 2, 3)
    );
    // The map's last channel closed: the map is given back.
    keys.remove(b);
    assert!(keys.channels.is_none() && keys.is_retired(b));
}

fn sealed_on(keys: &mut ChannelKeys, channel: ChannelId, payload: &[u8]) -> (u64, Vec<u8>) {
    sealed(keys.channel(channel), payload)
}

#[test]
fn a_packet_on_an_unadmitted_channel_opens_without_an_entry() {
    let mut sender = ChannelKeys::new([1; 32], [2; 32]);
    let mut receiver = ChannelKeys::new([2; 32], [1; 32]);
    for c2 in 1..=100u16 {
        let (seq, mut packet) = sealed_on(&mut sender, ChannelId::new(7, c2), b"ping");
        let len = receiver
            .open(ChannelId::new(7, c2), seq, &HEADER, &mut packet)
            .unwrap();
        assert_eq!(&packet[..len], b"ping");
    }
    // Made-up channels leave nothing behind.
    assert_eq!(receiver.len(), 0);
    // The default channel is always open: its first packet keeps its keys and window.
    let (seq, packet) = sealed_on(&mut sender, ChannelId::DEFAULT, b"default");
    assert!(
        receiver
            .open(ChannelId::DEFAULT, seq, &HEADER, &mut packet.clone())
            .is_ok()
    );
    assert_eq!(receiver.len(), 1);
    assert_eq!(
        receiver.open(ChannelId::DEFAULT, seq, &HEADER, &mut packet.clone()),
        Err(OpenError::Replay)
    );
}

#[test]
fn an_admitted_channel_refuses_the_packet_that_opened_it_again() {
    let mut sender = ChannelKeys::new([1; 32], [2; 32]);
    let mut receiver = ChannelKeys::new([2; 32], [1; 32]);
    let id = ChannelId::new(3, 4);
    let (seq, packet) = sealed_on(&mut sender, id, b"first");
    assert!(receiver.open(id, seq, &HEADER, &mut packet.clone()).is_ok());
    receiver.admit(id, seq);
    assert_eq!(
        receiver.open(id, seq, &HEADER, &mut packet.clone()),
        Err(OpenError::Replay)
    );
    let (seq2, packet2) = sealed_on(&mut sender, id, b"second");
    assert!(
        receiver
            .open(id, seq2, &HEADER, &mut packet2.clone())
            .is_ok()
    );
}

#[test]
fn a_closed_channel_is_retired_for_the_session() {
    let mut sender = ChannelKeys::new([1; 32], [2; 32]);
    let mut receiver = ChannelKeys::new([2; 32], [1; 32]);
    let id = ChannelId::new(3, 4);
    let (seq, packet) = sealed_on(&mut sender, id, b"before close");
    receiver.admit(id, 1_000);
    receiver.remove(id);
    assert!(receiver.get(id).is_none());
    assert!(receiver.is_retired(id));
    assert_eq!(receiver.retired_count(), 1);
    // A packet of the closed channel is a replay, whatever its number, and is not kept.
    assert_eq!(
        receiver.open(id, seq, &HEADER, &mut packet.clone()),
        Err(OpenError::Replay)
    );
    receiver.admit(id, seq);
    assert!(receiver.get(id).is_none());
    // The default channel is never retired.
    receiver.remove(ChannelId::DEFAULT);
    assert!(!receiver.is_retired(ChannelId::DEFAULT));
}

#[test]
fn channel_keys_differ_by_channel_and_direction() {
    let secret = [5u8; 32];
    assert_ne!(
        channel_key(&secret, ChannelId::DEFAULT),
        channel_key(&secret, ChannelId::new(0, 1))
    );
    assert_ne!(
        channel_key(&secret, ChannelId::DEFAULT),
        channel_key(&[6u8; 32], ChannelId::DEFAULT)
    );
}

/// Issue 12: an idle session's channels drop their raw keys and derive them again on the next
/// packet. A cache that shed between every pair of packets seals byte for byte what a twin that
/// never shed seals, and its replay window and numbers went on as if it had never idled.
#[test]
fn shed_raw_keys_come_back_equal_and_the_channel_seals_as_if_it_never_idled() {
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let mut shedding = ChannelKeys::new(a, b);
    let mut twin = ChannelKeys::new(a, b);
    let mut peer = ChannelKeys::new(b, a);
    let channels = [
        ChannelId::DEFAULT,
        ChannelId::new(1, 2),
        ChannelId::new(1, 3),
    ];
    for round in 0..3u8 {
        for &channel in &channels {
            for n in 0..u32::from(BUSY_PACKETS) + 2 {
                let body = [round, n as u8, 7, 9];
                let mut one = body;
                let mut other = body;
                let (mut tag_one, mut tag_other) = ([0u8; TAG_LEN], [0u8; TAG_LEN]);
                let seq = shedding
                    .channel(channel)
                    .seal(&HEADER, &mut one, &mut tag_one);
                let twin_seq = twin
                    .channel(channel)
                    .seal(&HEADER, &mut other, &mut tag_other);
                assert_eq!((seq, one, tag_one), (twin_seq, other, tag_other));
                let mut packet = [&one[..], &tag_one[..]].concat();
                if peer.get(channel).is_none() {
                    peer.channel(channel);
                }
                let len = peer.open(channel, seq, &HEADER, &mut packet.clone());
                assert_eq!(len, Ok(body.len()), "round {round} {channel:?} {n}");
                assert_eq!(
                    peer.open(channel, seq, &HEADER, &mut packet),
                    Err(OpenError::Replay)
                );
                // The receiving side sheds too: its window survives the raw keys.
                peer.shed();
                assert!(peer.get_unrestored_keys(channel) == Some(false));
                shedding.shed();
            }
        }
        shedding.shed_if_idle();
        twin.shed_if_idle();
    }
    for &channel in &channels {
        assert_eq!(
            shedding.channel(channel).next_sequence(),
            twin.channel(channel).next_sequence()
        );
    }
}

/// Issue 12: what an idle channel's crypto holds inline. A regression in these sizes fails
/// here before the memory test.
#[test]
fn an_idle_channels_crypto_is_small() {
    let mut keys = ChannelKeys::new([1; 32], [2; 32]);
    keys.channel(ChannelId::DEFAULT);
    keys.channel(ChannelId::new(1, 2));
    keys.shed();
    assert!(
        keys.all()
            .all(|crypto| !crypto.has_keys() && !crypto.is_expanded())
    );
    assert!(std::mem::size_of::<ChannelCrypto>() <= 72);
    assert!(std::mem::size_of::<ChannelKeys>() <= 232);
}
