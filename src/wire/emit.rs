//! Allocation-free emitters for the messages a sender builds from its own state rather than
//! from a [`Message`] it holds: the lengths a packet planner needs before it writes, an ACK that
//! keeps as many ranges as fit, and a PMTU_PROBE that fills a given size exactly
//! (PROTOCOL.md §4, §7.1, §7.6).
//!
//! Everything else (DATA, DATA_FRAGMENT, WINDOW, PING) is written with [`Message::emit`], which
//! copies a payload straight from the caller's slice into the packet. The layout is the one
//! [`Message::emit`] and [`super::emit_ack`] write, byte for byte.

use super::cursor::Writer;
use super::{ErrorKind, Message, MessageType, WireError, varint};

/// Bytes `parts` take together, saturating: a sum that large simply does not fit.
fn sum(parts: &[usize]) -> usize {
    parts
        .iter()
        .fold(0, |total, &part| total.saturating_add(part))
}

/// Bytes a message of `kind` with a `body`-byte body takes (type, length varint, body).
fn framed_len(kind: MessageType, body: usize) -> usize {
    sum(&[
        varint::encoded_len(kind.code()),
        varint::encoded_len(body as u64),
        body,
    ])
}

/// Bytes a DATA message carrying `payload_len` bytes as `message_number` takes.
pub fn data_encoded_len(message_number: u64, payload_len: usize) -> usize {
    framed_len(
        MessageType::Data,
        varint::encoded_len(message_number).saturating_add(payload_len),
    )
}

/// Bytes a DATA_FRAGMENT carrying `len` bytes at `offset` of a `total_length`-byte message
/// takes.
pub fn fragment_encoded_len(
    message_number: u64,
    total_length: u64,
    offset: u64,
    len: usize,
) -> usize {
    let body = sum(&[
        varint::encoded_len(message_number),
        varint::encoded_len(total_length),
        varint::encoded_len(offset),
        len,
    ]);
    framed_len(MessageType::DataFragment, body)
}

/// Writes an ACK for inclusive `(low, high)` ranges, highest first, keeping as many ranges as
/// fit in `buf` (the newest ones; RFC 9000 §13.2.4: older ranges are the ones to drop). Ranges
/// after the first that are not descending and non-adjacent end the list. Returns the bytes
/// written; [`ErrorKind::BadAck`] for no range or a first range with `low > high`,
/// [`ErrorKind::BufferTooSmall`] if not even the first range fits.
pub fn emit_ack_fitting(
    ranges: impl Iterator<Item = (u64, u64)> + Clone,
    ack_delay_us: u64,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let bad = WireError::new(ErrorKind::BadAck, 0);
    let too_small = WireError::new(ErrorKind::BufferTooSmall, 0);
    let mut iter = ranges.clone();
    let (first_low, largest) = iter.next().ok_or(bad)?;
    let first_range = largest.checked_sub(first_low).ok_or(bad)?;
    let v = varint::encoded_len;
    let head = sum(&[v(largest), v(ack_delay_us), v(first_range)]);
    // Room for further ranges, assuming two-byte length and count varints (an ACK of this
    // node's is far below 16 KiB and 16,384 ranges) and a one-byte type.
    let room = buf
        .len()
        .checked_sub(head.saturating_add(1 + 2 + 2))
        .ok_or(too_small)?;
    let mut pairs_len: usize = 0;
    let mut count: u64 = 0;
    let mut prev_low = first_low;
    for (low, high) in iter {
        // RFC 9000 §19.3.1: the next range ends at least two below the previous low.
        let Some(gap) = prev_low.checked_sub(high).and_then(|d| d.checked_sub(2)) else {
            break;
        };
        let Some(range_len) = high.checked_sub(low) else {
            break;
        };
        let pair = v(gap).saturating_add(v(range_len));
        if pairs_len.saturating_add(pair) > room {
            break;
        }
        pairs_len = pairs_len.saturating_add(pair);
        count = count.saturating_add(1);
        prev_low = low;
    }
    let body = sum(&[head, v(count), pairs_len]);
    let mut w = Writer::new(buf);
    w.varint(MessageType::Ack.code())?;
    w.varint(body as u64)?;
    w.varint(largest)?;
    w.varint(ack_delay_us)?;
    w.varint(count)?;
    w.varint(first_range)?;
    let mut prev_low = first_low;
    // The counting pass above checked these ranges' order, so nothing here underflows.
    for (low, high) in ranges
        .skip(1)
        .take(usize::try_from(count).unwrap_or(usize::MAX))
    {
        w.varint(prev_low.saturating_sub(high).saturating_sub(2))?;
        w.varint(high.saturating_sub(low))?;
        prev_low = low;
    }
    Ok(w.written())
}

/// Writes a PMTU_PROBE that fills exactly `buf.len()` bytes (PROTOCOL.md §7.6: a probe pads
/// a packet to the probed size); [`ErrorKind::BufferTooSmall`] below the two bytes of an empty
/// probe, or for the rare size that no split into type, length and body reaches exactly (130:
/// a 128-byte body needs a two-byte length); the caller then sends no probe of that size.
pub fn emit_pmtu_probe_filling(buf: &mut [u8]) -> Result<usize, WireError> {
    let total = buf.len();
    let type_len = varint::encoded_len(MessageType::PmtuProbe.code());
    let body = (1..=varint::MAX_LEN)
        .filter_map(|len_bytes| total.checked_sub(type_len.saturating_add(len_bytes)))
        .find(|&body| framed_len(MessageType::PmtuProbe, body) == total)
        .ok_or(WireError::new(ErrorKind::BufferTooSmall, 0))?;
    Message::PmtuProbe { len: body }.emit(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ChannelId, Flags, Header, PeerId, emit_ack, parse_payload};

    /// The bytes the reliability layer's own codec wrote before `wire` became the only one:
    /// DATA 5 "hello", DATA_FRAGMENT 300/10000/1200 "abc", ACK [(90,100),(50,80),(10,10)]
    /// delay 1234, WINDOW 64/262144, PING [7; 8], a 20-byte PMTU_PROBE.
    const GOLDEN: &str = "10060568656c6c6f1109ac02904eb009616263120964d209020a081e2600130440808010\
                          14070707070707070715120000000000000000000000000000000000\
                          00";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn layout_is_byte_identical_to_the_old_codec() {
        let mut buf = [0u8; 200];
        let mut at = 0;
        let token = [7u8; 8];
        for msg in [
            Message::Data {
                message_number: 5,
                payload: b"hello",
            },
            Message::DataFragment {
                message_number: 300,
                total_length: 10_000,
                offset: 1200,
                bytes: b"abc",
            },
        ] {
            at += msg.emit(&mut buf[at..]).unwrap();
        }
        assert_eq!(
            at,
            data_encoded_len(5, 5) + fragment_encoded_len(300, 10_000, 1200, 3)
        );
        let ranges = [(90, 100), (50, 80), (10, 10)];
        at += emit_ack_fitting(ranges.iter().copied(), 1234, &mut buf[at..]).unwrap();
        for msg in [
            Message::Window {
                max_message: 64,
                max_bytes: 262_144,
            },
            Message::Ping { token: &token },
        ] {
            at += msg.emit(&mut buf[at..]).unwrap();
        }
        at += emit_pmtu_probe_filling(&mut buf[at..at + 20]).unwrap();
        let golden: String = GOLDEN.split_whitespace().collect();
        assert_eq!(hex(&buf[..at]), golden);
        // And it parses back as one valid sequence on a data channel.
        let header = Header {
            flags: Flags::SEQUENCED,
            sender: PeerId([1; 16]),
            recipient: PeerId([2; 16]),
            channel: ChannelId::new(1, 2),
            sequence: Some(9),
        };
        let messages: Vec<_> = parse_payload(&header, &buf[..at]).unwrap().collect();
        assert_eq!(messages.len(), 6);
        assert_eq!(messages[5], Message::PmtuProbe { len: 18 });
        let Message::Ack(ack) = messages[2] else {
            panic!("{:?}", messages[2])
        };
        assert_eq!(ack.iter().collect::<Vec<_>>(), ranges);
    }

    #[test]
    fn ack_keeps_the_newest_ranges_that_fit_and_matches_emit_ack() {
        let ranges: Vec<(u64, u64)> = (0..100u64).rev().map(|i| (i * 10, i * 10 + 3)).collect();
        let mut buf = [0u8; 40];
        let n = emit_ack_fitting(ranges.iter().copied(), 0, &mut buf).unwrap();
        let Ok((Message::Ack(ack), len)) = Message::parse(&buf[..n]) else {
            panic!("not an ACK")
        };
        assert_eq!(len, n);
        let kept: Vec<_> = ack.iter().collect();
        assert!(kept.len() > 5 && kept.len() < 100);
        assert_eq!(kept[..], ranges[..kept.len()]);
        let mut whole = [0u8; 40];
        let m = emit_ack(&kept, 0, &mut whole).unwrap();
        assert_eq!(buf[..n], whole[..m], "the same bytes as the slice emitter");
        // What the old codec wrote for the same ranges and room.
        assert_eq!(
            hex(&buf[..n]),
            "1223e107000f03050305030503050305030503050305030503050305030503050305030503"
        );
    }

    #[test]
    fn ack_refuses_what_it_cannot_write() {
        let mut buf = [0u8; 16];
        let none = std::iter::empty();
        assert_eq!(
            emit_ack_fitting(none, 0, &mut buf).unwrap_err().kind,
            ErrorKind::BadAck
        );
        let upside_down = [(5u64, 4u64)];
        assert_eq!(
            emit_ack_fitting(upside_down.iter().copied(), 0, &mut buf)
                .unwrap_err()
                .kind,
            ErrorKind::BadAck
        );
        let one = [(0u64, 0u64)];
        assert_eq!(
            emit_ack_fitting(one.iter().copied(), 0, &mut buf[..3])
                .unwrap_err()
                .kind,
            ErrorKind::BufferTooSmall
        );
        // An adjacent second range ends the list instead of writing a wrapped gap.
        let adjacent = [(5u64, 9u64), (3, 4)];
        let n = emit_ack_fitting(adjacent.iter().copied(), 0, &mut buf).unwrap();
        let Ok((Message::Ack(ack), _)) = Message::parse(&buf[..n]) else {
            panic!()
        };
        assert_eq!(ack.iter().collect::<Vec<_>>(), [(5, 9)]);
    }

    #[test]
    fn probe_fills_every_size_exactly() {
        let mut buf = vec![0xffu8; 70_000];
        for size in (2..300).chain([1200, 1452, 16_383, 16_384, 16_385, 65_535]) {
            if size == 130 || size == 16_387 {
                continue;
            }
            let n = emit_pmtu_probe_filling(&mut buf[..size]).unwrap();
            assert_eq!(n, size);
            let Ok((Message::PmtuProbe { len }, used)) = Message::parse(&buf[..size]) else {
                panic!("size {size}")
            };
            assert_eq!(used, size);
            assert_eq!(len + 1 + varint::encoded_len(len as u64), size);
        }
        for size in [0, 1, 130, 16_387] {
            assert_eq!(
                emit_pmtu_probe_filling(&mut buf[..size]).unwrap_err().kind,
                ErrorKind::BufferTooSmall
            );
        }
    }

    #[test]
    fn lengths_match_what_emit_writes() {
        let payload = [9u8; 300];
        for number in [0u64, 127, 128, 1 << 20, u64::MAX] {
            for len in [0usize, 1, 100, 300] {
                let data = Message::Data {
                    message_number: number,
                    payload: &payload[..len],
                };
                assert_eq!(data_encoded_len(number, len), data.encoded_len());
                let fragment = Message::DataFragment {
                    message_number: number,
                    total_length: 1 << 21,
                    offset: 1 << 14,
                    bytes: &payload[..len],
                };
                assert_eq!(
                    fragment_encoded_len(number, 1 << 21, 1 << 14, len),
                    fragment.encoded_len()
                );
            }
        }
    }
}
