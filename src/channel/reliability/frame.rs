//! The frames this layer writes and reads: DATA, DATA_FRAGMENT, ACK, WINDOW, PING and
//! PMTU_PROBE in the encoding of PROTOCOL.md §4. A minimal stand-in codec, kept to one file so it
//! can give way to `crate::wire` once that lands; its output is byte-for-byte the wire format.
//! Parsing never panics and never allocates.

use std::fmt;

/// PROTOCOL.md §4 message type codes.
mod code {
    pub(super) const PADDING: u8 = 0x00;
    pub(super) const DATA: u8 = 0x10;
    pub(super) const DATA_FRAGMENT: u8 = 0x11;
    pub(super) const ACK: u8 = 0x12;
    pub(super) const WINDOW: u8 = 0x13;
    pub(super) const PING: u8 = 0x14;
    pub(super) const PMTU_PROBE: u8 = 0x15;
}

/// Why a payload did not parse.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// Byte offset in the payload where parsing stopped.
    pub offset: usize,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed frame at byte {}", self.offset)
    }
}

impl std::error::Error for FrameError {}

/// Bytes a varint of `v` takes.
pub fn varint_len(v: u64) -> usize {
    // `leading_zeros` of a non-zero u64 is at most 63.
    64usize
        .saturating_sub((v | 1).leading_zeros() as usize)
        .div_ceil(7)
}

/// The sum of frame part lengths, saturating (a length that large simply does not fit).
fn sum(parts: &[usize]) -> usize {
    parts
        .iter()
        .fold(0, |total, &part| total.saturating_add(part))
}

fn put_varint(buf: &mut [u8], mut v: u64) -> Option<usize> {
    let len = varint_len(v);
    let out = buf.get_mut(..len)?;
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (v & 0x7f) as u8 | if i.saturating_add(1) < len { 0x80 } else { 0 };
        v >>= 7;
    }
    Some(len)
}

/// Decodes a minimal LEB128 varint; `None` if short, overlong or non-minimal.
fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        // `i < 10`, so the shift is at most 63.
        v |= bits << 7u32.saturating_mul(u32::try_from(i).unwrap_or(9));
        if byte & 0x80 == 0 {
            // PROTOCOL.md §4: a non-minimal encoding is an error.
            if i > 0 && byte == 0 {
                return None;
            }
            return Some((v, i.saturating_add(1)));
        }
    }
    None
}

/// A cursor that writes into a caller's buffer and fails instead of overrunning it.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn varint(&mut self, v: u64) -> Option<()> {
        let n = put_varint(self.buf.get_mut(self.at..)?, v)?;
        self.at = self.at.saturating_add(n);
        Some(())
    }
    fn bytes(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.at.checked_add(bytes.len())?;
        self.buf.get_mut(self.at..end)?.copy_from_slice(bytes);
        self.at = end;
        Some(())
    }
}

/// Bytes a DATA frame takes.
pub fn data_len(message_number: u64, payload_len: usize) -> usize {
    let body = varint_len(message_number).saturating_add(payload_len);
    sum(&[1, varint_len(body as u64), body])
}

/// Bytes a DATA_FRAGMENT frame takes.
pub fn fragment_len(message_number: u64, total: u64, offset: u64, len: usize) -> usize {
    let body = sum(&[
        varint_len(message_number),
        varint_len(total),
        varint_len(offset),
        len,
    ]);
    sum(&[1, varint_len(body as u64), body])
}

/// Writes DATA; `None` if `buf` is too small.
pub fn write_data(buf: &mut [u8], message_number: u64, payload: &[u8]) -> Option<usize> {
    let mut w = Writer { buf, at: 0 };
    w.bytes(&[code::DATA])?;
    w.varint(varint_len(message_number).saturating_add(payload.len()) as u64)?;
    w.varint(message_number)?;
    w.bytes(payload)?;
    Some(w.at)
}

/// Writes DATA_FRAGMENT; `None` if `buf` is too small.
pub fn write_fragment(
    buf: &mut [u8],
    message_number: u64,
    total: u64,
    offset: u64,
    bytes: &[u8],
) -> Option<usize> {
    let body = sum(&[
        varint_len(message_number),
        varint_len(total),
        varint_len(offset),
        bytes.len(),
    ]);
    let mut w = Writer { buf, at: 0 };
    w.bytes(&[code::DATA_FRAGMENT])?;
    w.varint(body as u64)?;
    w.varint(message_number)?;
    w.varint(total)?;
    w.varint(offset)?;
    w.bytes(bytes)?;
    Some(w.at)
}

/// Writes WINDOW; `None` if `buf` is too small.
pub fn write_window(buf: &mut [u8], max_message: u64, max_bytes: u64) -> Option<usize> {
    let mut w = Writer { buf, at: 0 };
    w.bytes(&[code::WINDOW])?;
    w.varint(varint_len(max_message).saturating_add(varint_len(max_bytes)) as u64)?;
    w.varint(max_message)?;
    w.varint(max_bytes)?;
    Some(w.at)
}

/// Writes PING with `token`; `None` if `buf` is too small.
pub fn write_ping(buf: &mut [u8], token: [u8; 8]) -> Option<usize> {
    let mut w = Writer { buf, at: 0 };
    w.bytes(&[code::PING])?;
    w.bytes(&token)?;
    Some(w.at)
}

/// Writes a PMTU_PROBE that fills exactly `buf.len()` bytes (at least 2); `None` if shorter.
pub fn write_pmtu_probe(buf: &mut [u8]) -> Option<usize> {
    let total = buf.len();
    // The body is whatever the type byte and the length varint leave.
    let body = (1..=3)
        .map(|len_bytes: usize| total.checked_sub(len_bytes.saturating_add(1)))
        .find(|body| body.is_some_and(|b| sum(&[1, varint_len(b as u64), b]) == total))??;
    buf.fill(0);
    buf[0] = code::PMTU_PROBE;
    put_varint(&mut buf[1..], body as u64)?;
    Some(total)
}

/// Writes an ACK for inclusive `(low, high)` ranges, highest first (RFC 9000 §19.3.1 gaps and
/// lengths), keeping as many ranges as fit in `buf`; `None` if not even the first fits.
pub fn write_ack(
    buf: &mut [u8],
    ranges: impl Iterator<Item = (u64, u64)> + Clone,
    ack_delay_us: u64,
) -> Option<usize> {
    let mut iter = ranges.clone();
    let (first_low, largest) = iter.next()?;
    let head = sum(&[
        varint_len(largest),
        varint_len(ack_delay_us),
        varint_len(first_low.abs_diff(largest)),
    ]);
    // Count how many further ranges fit, assuming the worst-case count and length varints.
    let room = buf.len().checked_sub(head.saturating_add(1 + 2 + 2))?;
    let mut body_extra: usize = 0;
    let mut count: u64 = 0;
    let mut prev_low = first_low;
    for (low, high) in iter {
        // Descending, non-adjacent ranges only: `high + 2 <= prev_low`.
        let Some(gap) = prev_low.checked_sub(high).and_then(|d| d.checked_sub(2)) else {
            break;
        };
        if low > high {
            break;
        }
        let pair = varint_len(gap).saturating_add(varint_len(high.abs_diff(low)));
        if body_extra.saturating_add(pair) > room {
            break;
        }
        body_extra = body_extra.saturating_add(pair);
        count = count.saturating_add(1);
        prev_low = low;
    }
    let body = sum(&[head, varint_len(count), body_extra]);
    let mut w = Writer { buf, at: 0 };
    w.bytes(&[code::ACK])?;
    w.varint(body as u64)?;
    w.varint(largest)?;
    w.varint(ack_delay_us)?;
    w.varint(count)?;
    w.varint(largest.abs_diff(first_low))?;
    let mut iter = ranges;
    let (mut prev_low, _) = iter.next()?;
    // The counting pass above checked these ranges' order.
    for (low, high) in iter.take(usize::try_from(count).unwrap_or(usize::MAX)) {
        w.varint(prev_low.saturating_sub(high).saturating_sub(2))?;
        w.varint(high.saturating_sub(low))?;
        prev_low = low;
    }
    Some(w.at)
}

/// A parsed ACK whose ranges decode lazily (validated when parsed, so iterating cannot fail).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AckFrame<'a> {
    /// Largest packet number acknowledged.
    pub largest: u64,
    /// Microseconds the peer held the ACK.
    pub ack_delay_us: u64,
    first_range: u64,
    count: u64,
    rest: &'a [u8],
}

impl<'a> AckFrame<'a> {
    /// Inclusive `(low, high)` ranges, highest first.
    pub fn iter(&self) -> AckIter<'a> {
        AckIter {
            // `parse` checked `first_range <= largest`.
            next: Some((self.largest.saturating_sub(self.first_range), self.largest)),
            remaining: self.count,
            rest: self.rest,
        }
    }

    fn parse(body: &'a [u8]) -> Option<Self> {
        let (largest, a) = get_varint(body)?;
        let (ack_delay_us, b) = get_varint(body.get(a..)?)?;
        let (count, c) = get_varint(body.get(sum(&[a, b])..)?)?;
        let (first_range, d) = get_varint(body.get(sum(&[a, b, c])..)?)?;
        let rest = body.get(sum(&[a, b, c, d])..)?;
        let ack = AckFrame {
            largest,
            ack_delay_us,
            first_range: if first_range <= largest {
                first_range
            } else {
                return None;
            },
            count,
            rest,
        };
        // Walk once to validate every gap and range, and that nothing trails. Each step reads
        // bytes of the body, so a count larger than the body holds ends the walk early.
        let mut iter = ack.iter();
        let mut seen: u64 = 0;
        while seen <= count {
            match iter.step() {
                Some(Some(_)) => seen = seen.saturating_add(1),
                Some(None) => break,
                None => return None,
            }
        }
        (count.checked_add(1) == Some(seen) && iter.rest.is_empty()).then_some(ack)
    }
}

/// Iterator over an [`AckFrame`]'s ranges.
#[derive(Clone, Debug)]
pub struct AckIter<'a> {
    next: Option<(u64, u64)>,
    remaining: u64,
    rest: &'a [u8],
}

impl AckIter<'_> {
    /// `None` on malformed input, `Some(None)` at the end.
    fn step(&mut self) -> Option<Option<(u64, u64)>> {
        let Some(current) = self.next.take() else {
            return Some(None);
        };
        if self.remaining > 0 {
            self.remaining = self.remaining.saturating_sub(1);
            let (gap, a) = get_varint(self.rest)?;
            let (len, b) = get_varint(self.rest.get(a..)?)?;
            self.rest = self.rest.get(sum(&[a, b])..)?;
            let high = current.0.checked_sub(gap)?.checked_sub(2)?;
            let low = high.checked_sub(len)?;
            self.next = Some((low, high));
        }
        Some(Some(current))
    }
}

impl Iterator for AckIter<'_> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        self.step().flatten()
    }
}

/// One frame of a payload.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// DATA.
    Data {
        /// Message number.
        message_number: u64,
        /// Application bytes.
        payload: &'a [u8],
    },
    /// DATA_FRAGMENT.
    DataFragment {
        /// Message number.
        message_number: u64,
        /// Length of the whole message.
        total_length: u64,
        /// Where these bytes sit in the message.
        offset: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// ACK.
    Ack(AckFrame<'a>),
    /// WINDOW.
    Window {
        /// Message numbers below this may be sent.
        max_message: u64,
        /// Cumulative byte credit.
        max_bytes: u64,
    },
    /// PING.
    Ping {
        /// Token to echo.
        token: [u8; 8],
    },
    /// PMTU_PROBE.
    PmtuProbe {
        /// Zero bytes of its body.
        len: usize,
    },
}

impl Frame<'_> {
    /// PROTOCOL.md §7.1: everything but ACK (and padding) elicits an acknowledgement.
    pub fn is_ack_eliciting(&self) -> bool {
        !matches!(self, Frame::Ack(_))
    }
}

/// Iterates the frames of a payload; stops at padding or after the first error.
pub fn parse(payload: &[u8]) -> Frames<'_> {
    Frames {
        payload,
        at: 0,
        failed: false,
    }
}

/// Iterator returned by [`parse`].
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    payload: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Frames<'a> {
    fn frame(&self) -> Option<(Frame<'a>, usize)> {
        let buf = self.payload.get(self.at..)?;
        let kind = *buf.first()?;
        if kind == code::PING {
            let token = buf.get(1..9)?.try_into().ok()?;
            return Some((Frame::Ping { token }, 9));
        }
        let (len, n) = get_varint(buf.get(1..)?)?;
        let start = n.saturating_add(1);
        let body = buf.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
        let frame = match kind {
            code::DATA => {
                let (message_number, a) = get_varint(body)?;
                Frame::Data {
                    message_number,
                    payload: body.get(a..)?,
                }
            }
            code::DATA_FRAGMENT => {
                let (message_number, a) = get_varint(body)?;
                let (total_length, b) = get_varint(body.get(a..)?)?;
                let (offset, c) = get_varint(body.get(sum(&[a, b])..)?)?;
                let bytes = body.get(sum(&[a, b, c])..)?;
                if offset.checked_add(bytes.len() as u64)? > total_length {
                    return None;
                }
                Frame::DataFragment {
                    message_number,
                    total_length,
                    offset,
                    bytes,
                }
            }
            code::ACK => Frame::Ack(AckFrame::parse(body)?),
            code::WINDOW => {
                let (max_message, a) = get_varint(body)?;
                let (max_bytes, b) = get_varint(body.get(a..)?)?;
                if sum(&[a, b]) != body.len() {
                    return None;
                }
                Frame::Window {
                    max_message,
                    max_bytes,
                }
            }
            code::PMTU_PROBE => {
                if body.iter().any(|&b| b != 0) {
                    return None;
                }
                Frame::PmtuProbe { len: body.len() }
            }
            _ => return None,
        };
        Some((frame, start.saturating_add(body.len())))
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, FrameError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.payload.len() {
            return None;
        }
        if self.payload[self.at] == code::PADDING {
            // PROTOCOL.md §4: padding runs to the end and is all zero.
            let ok = self.payload[self.at..].iter().all(|&b| b == 0);
            self.at = self.payload.len();
            if ok {
                return None;
            }
            self.failed = true;
            return Some(Err(FrameError { offset: self.at }));
        }
        match self.frame() {
            Some((frame, len)) => {
                self.at = self.at.saturating_add(len);
                Some(Ok(frame))
            }
            None => {
                self.failed = true;
                Some(Err(FrameError { offset: self.at }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_minimal_leb128() {
        let mut buf = [0u8; 10];
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let n = put_varint(&mut buf, v).unwrap();
            assert_eq!(n, varint_len(v));
            assert_eq!(get_varint(&buf[..n]), Some((v, n)));
        }
        assert_eq!(put_varint(&mut buf, 300), Some(2));
        assert_eq!(buf[..2], [0xac, 0x02]);
        assert_eq!(get_varint(&[0x80, 0x00]), None, "non-minimal");
        assert_eq!(get_varint(&[0x80]), None, "short");
        assert_eq!(get_varint(&[0xff; 11]), None, "too long");
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = [0u8; 200];
        let mut at = 0;
        at += write_data(&mut buf[at..], 5, b"hello").unwrap();
        assert_eq!(at, data_len(5, 5));
        at += write_fragment(&mut buf[at..], 300, 10_000, 1200, b"abc").unwrap();
        assert_eq!(at, data_len(5, 5) + fragment_len(300, 10_000, 1200, 3));
        let ranges = [(90, 100), (50, 80), (10, 10)];
        at += write_ack(&mut buf[at..], ranges.iter().copied(), 1234).unwrap();
        at += write_window(&mut buf[at..], 64, 262_144).unwrap();
        at += write_ping(&mut buf[at..], [7; 8]).unwrap();
        at += write_pmtu_probe(&mut buf[at..at + 20]).unwrap();
        let frames: Vec<_> = parse(&buf[..at + 5]).collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), 6);
        assert_eq!(
            frames[0],
            Frame::Data {
                message_number: 5,
                payload: b"hello"
            }
        );
        assert_eq!(
            frames[1],
            Frame::DataFragment {
                message_number: 300,
                total_length: 10_000,
                offset: 1200,
                bytes: b"abc"
            }
        );
        let Frame::Ack(ack) = frames[2] else { panic!() };
        assert_eq!(ack.ack_delay_us, 1234);
        assert_eq!(ack.iter().collect::<Vec<_>>(), ranges);
        assert_eq!(
            frames[3],
            Frame::Window {
                max_message: 64,
                max_bytes: 262_144
            }
        );
        assert_eq!(frames[4], Frame::Ping { token: [7; 8] });
        assert_eq!(frames[5], Frame::PmtuProbe { len: 18 });
        assert!(!frames[2].is_ack_eliciting() && frames[5].is_ack_eliciting());
    }

    #[test]
    fn ack_keeps_only_the_ranges_that_fit() {
        let ranges: Vec<(u64, u64)> = (0..100u64).rev().map(|i| (i * 10, i * 10 + 3)).collect();
        let mut buf = [0u8; 40];
        let n = write_ack(&mut buf, ranges.iter().copied(), 0).unwrap();
        let Some(Ok(Frame::Ack(ack))) = parse(&buf[..n]).next() else {
            panic!()
        };
        let got: Vec<_> = ack.iter().collect();
        assert!(got.len() > 5 && got.len() < 100);
        assert_eq!(got[..], ranges[..got.len()]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 99;
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            for b in buf.iter_mut() {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (x >> 56) as u8 % 0x18;
            }
            let len = (x >> 8) as usize % 64;
            for frame in parse(&buf[..len]).flatten() {
                if let Frame::Ack(ack) = frame {
                    assert!(ack.iter().count() as u64 <= ack.count + 1);
                }
            }
        }
        // An ACK whose gaps run below zero is rejected, not wrapped.
        let bad = [code::ACK, 5, 3, 0, 1, 0, 5];
        assert!(matches!(parse(&bad).next(), Some(Err(_))));
    }
}
