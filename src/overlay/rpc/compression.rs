//! Compression of overlay frames (seed 003 §3.3.1, §4.1.1; PROTOCOL.md §10): the methods none
//! 0, bz2 1, gzip 2, lzma 3, zlib 4, snappy 5 and, as an extension, zstd 6. A compressed frame
//! travels as the seed's transmission: a zero byte, the method, the payload's length (u32,
//! big-endian), then the payload. A plain frame is one msgpack array, whose first byte is never
//! zero, so the two cannot be confused and a peer that negotiated nothing sends plain frames.
//!
//! Decoding is bounded: every method is stream-decoded into a buffer that refuses to grow past
//! the frame bound (`FrameLimits::value.max_bytes`), so a decompression bomb stops at the bound
//! plus one byte (plus at most one block of the decoder's own state: 128 KiB for zstd, the
//! 900 KB block for bz2, the dictionary capped at the bound for lzma) and is counted as
//! `decompression_bomb`. All codecs are pure Rust (docs/DEPENDENCIES.md).
//!
//! What a peer's frame costs the node must follow its bytes, not only the bound: a payload may
//! inflate to at most [`MAX_RATIO`] times its own length (a 45-byte zstd frame no longer buys
//! 64 KiB of decoding and parsing), and a sender sends plain what would inflate further. The
//! bound on output cannot bound bz2, whose decoder undoes a whole block (up to 900 KB) before
//! its first byte out (2 ms for a 50-byte frame), nor lzma-rs's slow decoder (0.6 ms for
//! 64 KiB out): [`Method::DEFAULT_READS`] leaves both out.

use std::io::{Read, Write};

/// A compression method (seed 003 §3.3.1; 6 is zstd, this project's extension).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// 0: none.
    None,
    /// 1: bz2 (a bzip2 stream).
    Bz2,
    /// 2: gzip (RFC 1952).
    Gzip,
    /// 3: lzma (the `.lzma` "alone" format: properties, dictionary size, length, LZMA data).
    Lzma,
    /// 4: zlib (RFC 1950).
    Zlib,
    /// 5: snappy (the raw block format: a varint length, then the block).
    Snappy,
    /// 6: zstd (a Zstandard frame, RFC 8878); an extension of the seed's list.
    Zstd,
}

impl Method {
    /// Every method, by code.
    pub const ALL: [Method; 7] = [
        Method::None,
        Method::Bz2,
        Method::Gzip,
        Method::Lzma,
        Method::Zlib,
        Method::Snappy,
        Method::Zstd,
    ];

    /// The method with `code`, if there is one.
    pub fn from_code(code: u64) -> Option<Method> {
        Method::ALL
            .into_iter()
            .find(|m| u64::from(m.code()) == code)
    }

    /// Its code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Method::None => 0,
            Method::Bz2 => 1,
            Method::Gzip => 2,
            Method::Lzma => 3,
            Method::Zlib => 4,
            Method::Snappy => 5,
            Method::Zstd => 6,
        }
    }

    /// Its name, for settings and docs.
    pub fn name(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Bz2 => "bz2",
            Method::Gzip => "gzip",
            Method::Lzma => "lzma",
            Method::Zlib => "zlib",
            Method::Snappy => "snappy",
            Method::Zstd => "zstd",
        }
    }

    /// The methods a node reads unless configured otherwise: those whose decoding costs about
    /// what the bytes it makes cost to parse. bz2 (a whole block decoded before the first byte
    /// comes out) and lzma (lzma-rs decodes at ~100 MB/s) are read only where configured.
    pub const DEFAULT_READS: [Method; 5] = [
        Method::None,
        Method::Gzip,
        Method::Zlib,
        Method::Snappy,
        Method::Zstd,
    ];

    /// The bit of this method in a set of methods (`u8`, one bit per code).
    pub fn bit(self) -> u8 {
        1u8 << self.code()
    }
}

/// What one peer negotiated (seed 003 §3.3.1–2).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// Methods both sides read, as [`Method::bit`]s.
    pub reads: u8,
    /// The method the peer asked to be sent.
    pub preferred: Option<Method>,
}

/// Why a compressed frame was refused; each is a metric reason label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// The transmission header is short, or its length disagrees with the bytes.
    #[error("compressed frame header malformed")]
    Header,
    /// A method code this node does not read.
    #[error("compression method not supported")]
    Unsupported,
    /// The payload inflates past the frame bound.
    #[error("decompressed frame past the bound")]
    Bomb,
    /// The payload is not valid for its method.
    #[error("compressed payload corrupt")]
    Corrupt,
}

impl CompressionError {
    /// The reason label it is counted under.
    pub fn reason(self) -> &'static str {
        match self {
            CompressionError::Header => "compression_header",
            CompressionError::Unsupported => "compression_unsupported",
            CompressionError::Bomb => "decompression_bomb",
            CompressionError::Corrupt => "decompression_corrupt",
        }
    }
}

/// The transmission header: a zero byte, the method, the payload length (u32 BE).
pub const HEADER: usize = 6;

/// The most a payload may inflate, as a multiple of its own length: past it the transmission
/// is refused as a bomb, whatever the frame bound. Honest frames (contacts, keys, records)
/// compress a few times over; a sender sends plain what would inflate further
/// ([`within_ratio`]).
pub const MAX_RATIO: usize = 64;

/// Whether a payload of `payload` bytes may inflate to `frame` bytes ([`MAX_RATIO`]).
pub fn within_ratio(payload: usize, frame: usize) -> bool {
    frame <= payload.saturating_mul(MAX_RATIO)
}

/// A writer that keeps at most `limit` bytes and fails on the first byte past it, so a
/// decoder writing into it stops there.
struct Bounded {
    out: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.out.len());
        if buf.len() > room {
            self.over = true;
            return Err(std::io::Error::other("past the bound"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `reader` into a buffer of at most `limit` bytes: [`CompressionError::Bomb`] as soon as
/// one byte more comes out.
fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let mut take = reader.take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1));
    take.read_to_end(&mut out)
        .map_err(|_| CompressionError::Corrupt)?;
    if out.len() > limit {
        return Err(CompressionError::Bomb);
    }
    Ok(out)
}

/// `bytes` compressed with `method` (the payload only, without the header).
pub fn compress(method: Method, bytes: &[u8]) -> Vec<u8> {
    // Writing into a Vec cannot fail, so every codec's io::Result is Ok here.
    match method {
        Method::None => bytes.to_vec(),
        Method::Bz2 => {
            let mut encoder =
                bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            let _ = encoder.write_all(bytes);
            encoder.finish().unwrap_or_default()
        }
        Method::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = encoder.write_all(bytes);
            encoder.finish().unwrap_or_default()
        }
        Method::Zlib => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = encoder.write_all(bytes);
            encoder.finish().unwrap_or_default()
        }
        Method::Lzma => {
            let mut out = Vec::new();
            let _ = lzma_rs::lzma_compress(&mut &bytes[..], &mut out);
            out
        }
        Method::Snappy => snap::raw::Encoder::new()
            .compress_vec(bytes)
            .unwrap_or_default(),
        Method::Zstd => {
            ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

/// `payload` decompressed with `method` into at most `limit` bytes; one byte more is a bomb,
/// refused before the decoder goes further.
pub fn decompress(
    method: Method,
    payload: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    match method {
        Method::None => {
            if payload.len() > limit {
                return Err(CompressionError::Bomb);
            }
            Ok(payload.to_vec())
        }
        Method::Bz2 => read_bounded(bzip2::read::BzDecoder::new(payload), limit),
        Method::Gzip => read_bounded(flate2::read::GzDecoder::new(payload), limit),
        Method::Zlib => read_bounded(flate2::read::ZlibDecoder::new(payload), limit),
        Method::Lzma => {
            // The dictionary grows only as output is produced and is capped at the bound; the
            // output goes through a writer that refuses a byte past it.
            let options = lzma_rs::decompress::Options {
                memlimit: Some(limit.saturating_add(1)),
                ..Default::default()
            };
            let mut out = Bounded {
                out: Vec::new(),
                limit,
                over: false,
            };
            let result =
                lzma_rs::lzma_decompress_with_options(&mut &payload[..], &mut out, &options);
            match result {
                Ok(()) if !out.over => Ok(out.out),
                Err(lzma_rs::error::Error::LzmaError(message))
                    if message.contains("memory limit") =>
                {
                    Err(CompressionError::Bomb)
                }
                _ if out.over => Err(CompressionError::Bomb),
                _ => Err(CompressionError::Corrupt),
            }
        }
        Method::Snappy => {
            // The block states its length first: checked before a byte is allocated.
            let claimed =
                snap::raw::decompress_len(payload).map_err(|_| CompressionError::Corrupt)?;
            if claimed > limit {
                return Err(CompressionError::Bomb);
            }
            snap::raw::Decoder::new()
                .decompress_vec(payload)
                .map_err(|_| CompressionError::Corrupt)
        }
        Method::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(payload)
                .map_err(|_| CompressionError::Corrupt)?;
            read_bounded(decoder, limit)
        }
    }
}

/// `frame` as a transmission compressed with `method` (seed 003 §4.1.1).
pub fn wrap(method: Method, frame: &[u8]) -> Vec<u8> {
    let payload = compress(method, frame);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(payload.len().saturating_add(HEADER));
    out.push(0);
    out.push(method.code());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Whether `bytes` is a compressed transmission rather than a plain frame.
pub fn is_wrapped(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0)
}

/// The frame inside a transmission: its method must be among `supported` (a set of
/// [`Method::bit`]s), its length must match, and it may inflate to at most `limit` bytes and
/// at most [`MAX_RATIO`] times the payload's length.
pub fn unwrap(bytes: &[u8], supported: u8, limit: usize) -> Result<Vec<u8>, CompressionError> {
    let (Some(&0), Some(&code), Some(len), Some(payload)) = (
        bytes.first(),
        bytes.get(1),
        bytes.get(2..HEADER),
        bytes.get(HEADER..),
    ) else {
        return Err(CompressionError::Header);
    };
    let len = u32::from_be_bytes(len.try_into().map_err(|_| CompressionError::Header)?);
    if usize::try_from(len).ok() != Some(payload.len()) {
        return Err(CompressionError::Header);
    }
    let method = Method::from_code(u64::from(code)).ok_or(CompressionError::Unsupported)?;
    if supported & method.bit() == 0 {
        return Err(CompressionError::Unsupported);
    }
    let limit = limit.min(payload.len().saturating_mul(MAX_RATIO));
    decompress(method, payload, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_round_trips_and_stops_a_bomb_at_the_bound() {
        // Compressible, but within the ratio.
        let frame: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 29) as u8)
            .collect();
        let bomb = vec![0u8; 1 << 20];
        for method in Method::ALL {
            let wrapped = wrap(method, &frame);
            assert_eq!(
                unwrap(&wrapped, 0x7f, 64 * 1024),
                Ok(frame.clone()),
                "{method:?}"
            );
            let wrapped = wrap(method, &bomb);
            assert_eq!(
                unwrap(&wrapped, 0x7f, 64 * 1024),
                Err(CompressionError::Bomb),
                "{method:?}"
            );
        }
    }
}
