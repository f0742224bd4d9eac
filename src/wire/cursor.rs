//! Bounds-checked readers and writers shared by the codecs: no indexing, no panics.

use super::{ErrorKind, WireError, varint};

/// Reads fields from a bounded slice; a field past the end is an error of kind `short`.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the packet, so errors point into the packet.
    base: usize,
    short: ErrorKind,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], base: usize, short: ErrorKind) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            base,
            short,
        }
    }

    /// Offset in the packet of the next byte to read.
    pub(super) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Bytes read so far.
    pub(super) fn consumed(&self) -> usize {
        self.pos
    }

    /// The bytes read since `consumed()` returned `mark`.
    pub(super) fn since(&self, mark: usize) -> &'a [u8] {
        self.buf.get(mark..self.pos).unwrap_or_default()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(super) fn err(&self, kind: ErrorKind) -> WireError {
        WireError::new(kind, self.offset())
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| self.err(self.short))?;
        // `pos + n` was checked against the buffer above.
        self.pos = self.pos.saturating_add(n);
        Ok(out)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], WireError> {
        let out = self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>())
            .ok_or_else(|| self.err(self.short))?;
        self.pos = self.pos.saturating_add(N);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, WireError> {
        let [b] = *self.array::<1>()?;
        Ok(b)
    }

    pub(super) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(*self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(*self.array()?))
    }

    pub(super) fn varint(&mut self) -> Result<u64, WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match varint::decode(rest) {
            Ok((v, n)) => {
                self.pos = self.pos.saturating_add(n);
                Ok(v)
            }
            Err(e) if e.kind == ErrorKind::Truncated => Err(self.err(self.short)),
            Err(e) => Err(e.shifted(self.offset())),
        }
    }

    /// A varint used as a byte count within this reader.
    pub(super) fn len_varint(&mut self) -> Result<usize, WireError> {
        let at = self.offset();
        let v = self.varint()?;
        usize::try_from(v).map_err(|_| WireError::new(self.short, at))
    }

    /// Everything not yet read.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }
}

/// Writes fields into a caller's buffer; running out is [`ErrorKind::BufferTooSmall`] at
/// offset 0 (the caller shifts it to where its message starts).
pub(super) struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    pub(super) fn new(buf: &'b mut [u8]) -> Writer<'b> {
        Writer { buf, pos: 0 }
    }

    pub(super) fn written(&self) -> usize {
        self.pos
    }

    pub(super) fn put(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let dst = self
            .pos
            .checked_add(bytes.len())
            .and_then(|end| self.buf.get_mut(self.pos..end))
            .ok_or(WireError::new(ErrorKind::BufferTooSmall, 0))?;
        dst.copy_from_slice(bytes);
        self.pos = self.pos.saturating_add(bytes.len());
        Ok(())
    }

    pub(super) fn zeros(&mut self, n: usize) -> Result<(), WireError> {
        let dst = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get_mut(self.pos..end))
            .ok_or(WireError::new(ErrorKind::BufferTooSmall, 0))?;
        dst.fill(0);
        self.pos = self.pos.saturating_add(n);
        Ok(())
    }

    pub(super) fn u8(&mut self, v: u8) -> Result<(), WireError> {
        self.put(&[v])
    }

    pub(super) fn u16(&mut self, v: u16) -> Result<(), WireError> {
        self.put(&v.to_be_bytes())
    }

    pub(super) fn u32(&mut self, v: u32) -> Result<(), WireError> {
        self.put(&v.to_be_bytes())
    }

    pub(super) fn varint(&mut self, v: u64) -> Result<(), WireError> {
        let rest = self.buf.get_mut(self.pos..).unwrap_or_default();
        let n = varint::encode(v, rest)?;
        self.pos = self.pos.saturating_add(n);
        Ok(())
    }
}
