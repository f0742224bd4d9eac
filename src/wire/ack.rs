//! ACK ranges (PROTOCOL.md §4, counted as RFC 9000 §19.3.1).
//!
//! Body: largest acknowledged, ack delay (µs), range count, first range, then `range count`
//! pairs of (gap, range length), all varints. The first range covers
//! `largest - first_range ..= largest`; each next range has
//! `high = previous_low - gap - 2` and `low = high - range_len`.

use super::codes::MessageType;
use super::cursor::{Reader, Writer};
use super::{ErrorKind, WireError, varint};

/// A parsed ACK; [`Ack::iter`] yields the acknowledged sequence numbers as ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    /// The largest acknowledged sequence number.
    pub largest: u64,
    /// How long the receiver held the ACK back, in microseconds.
    pub ack_delay_us: u64,
    /// How many numbers below `largest` the first range covers.
    pub first_range: u64,
    /// The (gap, range length) pairs after the first range.
    pub ranges: AckRanges<'a>,
}

/// The encoded (gap, range length) pairs of an ACK, borrowed from the packet.
///
/// Only parsing makes non-empty ones, so they are always well-formed varints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AckRanges<'a> {
    count: usize,
    bytes: &'a [u8],
}

impl<'a> AckRanges<'a> {
    /// No range besides the first.
    pub const EMPTY: AckRanges<'static> = AckRanges {
        count: 0,
        bytes: &[],
    };

    /// The number of (gap, range length) pairs.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if the ACK has only its first range.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The raw (gap, range length) pairs.
    pub fn pairs(&self) -> Pairs<'a> {
        Pairs {
            rest: self.bytes,
            left: self.count,
        }
    }
}

/// Iterator over the raw (gap, range length) pairs of [`AckRanges`].
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    rest: &'a [u8],
    left: usize,
}

impl Iterator for Pairs<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.left == 0 {
            return None;
        }
        let mut r = Reader::new(self.rest, 0, ErrorKind::LengthOverrun);
        let pair = r.varint().and_then(|gap| Ok((gap, r.varint()?)));
        match pair {
            Ok(pair) => {
                self.left = self.left.saturating_sub(1);
                self.rest = r.rest();
                Some(pair)
            }
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Iterator over inclusive `(low, high)` ranges of an [`Ack`], highest first.
#[derive(Clone, Debug)]
pub struct AckIter<'a> {
    first: Option<(u64, u64)>,
    low: u64,
    pairs: Pairs<'a>,
}

impl Iterator for AckIter<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let (gap, range_len) = self.pairs.next()?;
        // A hand-built ACK may underflow; it ends the ranges rather than panicking.
        match next_range(self.low, gap, range_len) {
            Some((low, high)) => {
                self.low = low;
                Some((low, high))
            }
            None => {
                self.pairs.left = 0;
                None
            }
        }
    }
}

/// RFC 9000 §19.3.1: the range below `previous_low`, `None` on underflow.
fn next_range(previous_low: u64, gap: u64, range_len: u64) -> Option<(u64, u64)> {
    let high = previous_low.checked_sub(gap)?.checked_sub(2)?;
    let low = high.checked_sub(range_len)?;
    Some((low, high))
}

impl<'a> Ack<'a> {
    /// The acknowledged ranges, inclusive `(low, high)`, in descending order.
    pub fn iter(&self) -> AckIter<'a> {
        // `check` keeps emitted ACKs sane; a hand-built one with first_range > largest yields
        // nothing instead of wrapping.
        let first = self
            .largest
            .checked_sub(self.first_range)
            .map(|low| (low, self.largest));
        AckIter {
            first,
            low: first.map_or(0, |(low, _)| low),
            pairs: if first.is_some() {
                self.ranges.pairs()
            } else {
                AckRanges::EMPTY.pairs()
            },
        }
    }

    pub(super) fn body_len(&self) -> usize {
        [
            self.largest,
            self.ack_delay_us,
            self.ranges.count as u64,
            self.first_range,
        ]
        .into_iter()
        .map(varint::encoded_len)
        .fold(self.ranges.bytes.len(), usize::saturating_add)
    }

    pub(super) fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.varint(self.largest)?;
        w.varint(self.ack_delay_us)?;
        w.varint(self.ranges.count as u64)?;
        w.varint(self.first_range)?;
        w.put(self.ranges.bytes)
    }

    /// The rules of [`decode_body`], for an ACK assembled by hand from parsed parts.
    pub(super) fn check(&self) -> Result<(), WireError> {
        let bad = WireError::new(ErrorKind::BadAck, 0);
        let mut low = self.largest.checked_sub(self.first_range).ok_or(bad)?;
        let mut seen: usize = 0;
        for (gap, range_len) in self.ranges.pairs() {
            (low, _) = next_range(low, gap, range_len).ok_or(bad)?;
            seen = seen.saturating_add(1);
        }
        if seen != self.ranges.count {
            return Err(bad);
        }
        Ok(())
    }
}

/// Decodes an ACK body from a reader bounded by the message's length.
pub(super) fn decode_body<'a>(r: &mut Reader<'a>) -> Result<Ack<'a>, WireError> {
    let largest = r.varint()?;
    let ack_delay_us = r.varint()?;
    let at = r.offset();
    let count = r.varint()?;
    let first_at = r.offset();
    let first_range = r.varint()?;
    // Each pair takes at least two bytes: a count beyond that cannot be honest, and refusing
    // it up front bounds the work.
    if count > (r.remaining() / 2) as u64 {
        return Err(WireError::new(ErrorKind::BadAck, at));
    }
    let mut low = largest
        .checked_sub(first_range)
        .ok_or(WireError::new(ErrorKind::BadAck, first_at))?;
    let mark = r.consumed();
    for _ in 0..count {
        let at = r.offset();
        let gap = r.varint()?;
        let range_len = r.varint()?;
        (low, _) = next_range(low, gap, range_len).ok_or(WireError::new(ErrorKind::BadAck, at))?;
    }
    Ok(Ack {
        largest,
        ack_delay_us,
        first_range,
        ranges: AckRanges {
            // Bounded by the body length above, so it fits.
            count: count as usize,
            bytes: r.since(mark),
        },
    })
}

/// Checks `ranges` and yields (largest, first_range, pairs) for them.
fn ack_parts(ranges: &[(u64, u64)]) -> Result<(u64, u64), WireError> {
    let bad = WireError::new(ErrorKind::BadAck, 0);
    let &(low, high) = ranges.first().ok_or(bad)?;
    if low > high {
        return Err(bad);
    }
    for pair in ranges.windows(2) {
        let [(low, _), (next_low, next_high)] = *pair else {
            return Err(bad);
        };
        // Descending, non-adjacent (a gap of at least one number), and each range ordered.
        if next_low > next_high || next_high.checked_add(2).is_none_or(|h| h > low) {
            return Err(bad);
        }
    }
    Ok((high, high.saturating_sub(low)))
}

fn gap_pairs(ranges: &[(u64, u64)]) -> impl Iterator<Item = (u64, u64)> + '_ {
    ranges.windows(2).filter_map(|pair| match *pair {
        [(low, _), (next_low, next_high)] => Some((
            // `ack_parts` has checked these cannot underflow.
            low.saturating_sub(next_high).saturating_sub(2),
            next_high.saturating_sub(next_low),
        )),
        _ => None,
    })
}

/// The length of the ACK message [`emit_ack`] writes for these ranges, or `None` if they are
/// not valid.
pub fn ack_encoded_len(ranges: &[(u64, u64)], ack_delay_us: u64) -> Option<usize> {
    let body = ack_body_len(ranges, ack_delay_us).ok()?;
    Some(
        varint::encoded_len(MessageType::Ack.code())
            .saturating_add(varint::encoded_len(body as u64))
            .saturating_add(body),
    )
}

fn ack_body_len(ranges: &[(u64, u64)], ack_delay_us: u64) -> Result<usize, WireError> {
    let (largest, first_range) = ack_parts(ranges)?;
    let v = varint::encoded_len;
    let pairs = gap_pairs(ranges)
        .map(|(g, r)| v(g).saturating_add(v(r)))
        .fold(0, usize::saturating_add);
    // `ack_parts` refused an empty list.
    let count = ranges.len().saturating_sub(1);
    Ok([largest, ack_delay_us, count as u64, first_range]
        .into_iter()
        .map(v)
        .fold(pairs, usize::saturating_add))
}

/// Writes a complete ACK message (type, length, body) for inclusive `(low, high)` ranges,
/// sorted descending and non-adjacent; returns its length.
///
/// Empty, unordered, overlapping or adjacent ranges are [`ErrorKind::BadAck`].
pub fn emit_ack(
    ranges: &[(u64, u64)],
    ack_delay_us: u64,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let body = ack_body_len(ranges, ack_delay_us)?;
    let (largest, first_range) = ack_parts(ranges)?;
    let mut w = Writer::new(buf);
    w.varint(MessageType::Ack.code())?;
    w.varint(body as u64)?;
    w.varint(largest)?;
    w.varint(ack_delay_us)?;
    w.varint(ranges.len().saturating_sub(1) as u64)?;
    w.varint(first_range)?;
    for (gap, range_len) in gap_pairs(ranges) {
        w.varint(gap)?;
        w.varint(range_len)?;
    }
    Ok(w.written())
}

#[cfg(test)]
mod tests {
    use super::super::Message;
    use super::*;

    fn parse_ack(buf: &[u8]) -> Ack<'_> {
        match Message::parse(buf) {
            Ok((Message::Ack(ack), n)) if n == buf.len() => ack,
            other => panic!("not an ACK: {other:?}"),
        }
    }

    #[test]
    fn rfc9000_arithmetic() {
        // largest 100, first range 2 → 98..=100; gap 3 → high 93, range 4 → 89..=93.
        let body = [100, 0, 1, 2, 3, 4];
        let mut buf = vec![0x12, body.len() as u8];
        buf.extend_from_slice(&body);
        let ack = parse_ack(&buf);
        assert_eq!(ack.iter().collect::<Vec<_>>(), [(98, 100), (89, 93)]);
        let mut out = [0u8; 16];
        let n = emit_ack(&[(98, 100), (89, 93)], 0, &mut out).unwrap();
        assert_eq!(&out[..n], &buf[..]);
        assert_eq!(ack_encoded_len(&[(98, 100), (89, 93)], 0), Some(n));
    }

    #[test]
    fn ranges_down_to_zero() {
        let ranges = [(10, 10), (5, 8), (0, 3)];
        let mut out = [0u8; 32];
        let n = emit_ack(&ranges, 25_000, &mut out).unwrap();
        let ack = parse_ack(&out[..n]);
        assert_eq!(ack.iter().collect::<Vec<_>>(), ranges);
        assert_eq!(ack.ack_delay_us, 25_000);
        assert_eq!(ack.ranges.len(), 2);
    }

    #[test]
    fn bad_ranges_are_refused() {
        let mut out = [0u8; 32];
        for ranges in [
            &[][..],
            &[(5, 4)],
            &[(5, 9), (3, 4)], // adjacent: 4 and 5 leave no gap
            &[(5, 9), (4, 6)], // overlapping
            &[(0, 1), (5, 9)], // ascending
            &[(5, 9), (3, 2)], // low > high
            &[(u64::MAX, u64::MAX), (0, u64::MAX - 1)],
        ] {
            let e = emit_ack(ranges, 0, &mut out).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadAck, "{ranges:?}");
            assert_eq!(ack_encoded_len(ranges, 0), None);
        }
        assert_eq!(
            emit_ack(&[(0, 0)], 0, &mut out[..3]).unwrap_err().kind,
            ErrorKind::BufferTooSmall
        );
    }

    #[test]
    fn hand_built_ack_is_checked() {
        let ack = Ack {
            largest: 3,
            ack_delay_us: 0,
            first_range: 4,
            ranges: AckRanges::EMPTY,
        };
        assert_eq!(ack.iter().count(), 0);
        let mut buf = [0u8; 16];
        assert_eq!(
            Message::Ack(ack).emit(&mut buf).unwrap_err().kind,
            ErrorKind::BadAck
        );
        // Parsed pairs under a smaller largest underflow.
        let mut out = [0u8; 32];
        let n = emit_ack(&[(50, 50), (0, 10)], 0, &mut out).unwrap();
        let parsed = parse_ack(&out[..n]);
        let moved = Ack {
            largest: 20,
            first_range: 0,
            ..parsed
        };
        assert_eq!(moved.iter().collect::<Vec<_>>(), [(20, 20)]);
        assert_eq!(
            Message::Ack(moved).emit(&mut buf).unwrap_err().kind,
            ErrorKind::BadAck
        );
    }
}
