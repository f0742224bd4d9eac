//! Unsigned LEB128 varints (PROTOCOL.md §4): 7 value bits a byte, low group first, at most 10
//! bytes, minimal encodings only.
//!
//! Error offsets are relative to the start of the varint; callers shift them into the packet.

use super::{ErrorKind, WireError};

/// The longest encoding of a u64.
pub const MAX_LEN: usize = 10;

/// Decodes a varint at the start of `buf`; returns its value and encoded length.
///
/// A varint that runs past the end of `buf` is [`ErrorKind::Truncated`].
pub fn decode(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(MAX_LEN) {
        // PROTOCOL.md §4: at most 10 bytes; the tenth holds only bit 63 and ends the varint.
        if i == MAX_LEN - 1 && byte > 1 {
            return Err(WireError::new(ErrorKind::VarintOverflow, 0));
        }
        // `i < MAX_LEN`, so the shift is at most 63.
        value |= u64::from(byte & 0x7f) << (7u32.saturating_mul(u32::try_from(i).unwrap_or(9)));
        if byte & 0x80 == 0 {
            // PROTOCOL.md §4: a non-minimal encoding is an error (a zero last group adds nothing).
            if byte == 0 && i > 0 {
                return Err(WireError::new(ErrorKind::NonMinimalVarint, 0));
            }
            return Ok((value, i.saturating_add(1)));
        }
    }
    // Ten bytes always end the loop with a verdict, so only a short buffer gets here.
    Err(WireError::new(ErrorKind::Truncated, 0))
}

/// Encodes `v` minimally at the start of `buf`; returns the number of bytes written.
pub fn encode(v: u64, buf: &mut [u8]) -> Result<usize, WireError> {
    let len = encoded_len(v);
    let Some(out) = buf.get_mut(..len) else {
        return Err(WireError::new(ErrorKind::BufferTooSmall, 0));
    };
    let mut rest = v;
    for (i, byte) in out.iter_mut().enumerate() {
        let more = if i.saturating_add(1) < len { 0x80 } else { 0 };
        *byte = (rest & 0x7f) as u8 | more;
        rest >>= 7;
    }
    Ok(len)
}

/// The number of bytes [`encode`] writes for `v` (1 to 10).
pub const fn encoded_len(v: u64) -> usize {
    // `leading_zeros` of a non-zero u64 is at most 63.
    let bits = 64usize.saturating_sub((v | 1).leading_zeros() as usize);
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: u64) -> usize {
        let mut buf = [0u8; MAX_LEN];
        let n = encode(v, &mut buf).unwrap();
        assert_eq!(n, encoded_len(v));
        assert_eq!(decode(&buf[..n]), Ok((v, n)));
        // Trailing bytes are not part of the varint.
        let mut longer = [0xffu8; MAX_LEN + 2];
        longer[..n].copy_from_slice(&buf[..n]);
        assert_eq!(decode(&longer), Ok((v, n)));
        n
    }

    #[test]
    fn every_length_boundary() {
        assert_eq!(round_trip(0), 1);
        for len in 1..MAX_LEN {
            let last = (1u64 << (7 * len)) - 1;
            assert_eq!(round_trip(last), len, "{last:#x}");
            assert_eq!(round_trip(last + 1), len + 1, "{:#x}", last + 1);
        }
        assert_eq!(round_trip(u64::MAX), MAX_LEN);
        assert_eq!(round_trip(1 << 63), MAX_LEN);
    }

    #[test]
    fn known_encodings() {
        let mut buf = [0u8; MAX_LEN];
        assert_eq!(encode(300, &mut buf), Ok(2));
        assert_eq!(&buf[..2], &[0xac, 0x02]);
        assert_eq!(decode(&[0x7f]), Ok((127, 1)));
        assert_eq!(decode(&[0x80, 0x01]), Ok((128, 2)));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode(&max), Ok((u64::MAX, 10)));
    }

    #[test]
    fn non_minimal_is_rejected() {
        for bad in [
            &[0x80, 0x00][..],
            &[0xff, 0x80, 0x00],
            &[0x81, 0x80, 0x80, 0x00],
        ] {
            assert_eq!(decode(bad).unwrap_err().kind, ErrorKind::NonMinimalVarint);
        }
        let mut ten_zero = [0x80u8; MAX_LEN];
        ten_zero[9] = 0;
        assert_eq!(
            decode(&ten_zero).unwrap_err().kind,
            ErrorKind::NonMinimalVarint
        );
    }

    #[test]
    fn overflow_is_rejected() {
        // 2^64 needs a tenth byte of 2.
        let mut over = [0x80u8; MAX_LEN];
        over[9] = 0x02;
        assert_eq!(decode(&over).unwrap_err().kind, ErrorKind::VarintOverflow);
        // An eleventh byte.
        let mut eleven = [0x80u8; MAX_LEN + 1];
        eleven[9] = 0x81;
        eleven[10] = 0x00;
        assert_eq!(decode(&eleven).unwrap_err().kind, ErrorKind::VarintOverflow);
    }

    #[test]
    fn short_input_is_truncated() {
        assert_eq!(decode(&[]).unwrap_err().kind, ErrorKind::Truncated);
        assert_eq!(decode(&[0x80]).unwrap_err().kind, ErrorKind::Truncated);
        assert_eq!(decode(&[0xff; 9]).unwrap_err().kind, ErrorKind::Truncated);
    }

    #[test]
    fn short_output_is_an_error() {
        let mut buf = [0u8; 1];
        assert_eq!(
            encode(128, &mut buf).unwrap_err().kind,
            ErrorKind::BufferTooSmall
        );
        assert_eq!(encode(127, &mut buf), Ok(1));
        assert_eq!(
            encode(0, &mut []).unwrap_err().kind,
            ErrorKind::BufferTooSmall
        );
    }
}
