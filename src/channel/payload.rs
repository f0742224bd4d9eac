//! A delivered message's bytes (issue 11 point 2): a pooled buffer the message was copied into,
//! or a piece of the receive memory the datagram arrived in, lent without a copy.
//!
//! Which one a message gets is decided once, where the reliability layer takes it
//! (`BufferPool::message`): a message that is the whole of one DATA (or a DATA_FRAGMENT that
//! holds all of it) in a sealed datagram the backend lends, and that is handed on at once, is
//! cut out of that datagram (`Bytes::slice_ref`, a reference count, no copy). Everything else
//! is copied into a pooled buffer as before: reassembled messages (their bytes come from
//! several datagrams), messages an ordered channel holds behind a gap (a peer could otherwise
//! pin receive memory for as long as it leaves the gap open), plaintext kind-0 datagrams (the
//! router walks them itself, off the sealed data path), the simulator's and the tests'
//! datagrams (`Endpoint::handle` takes a plain slice), and every datagram while the backend has
//! no spare receive memory. A lent piece pins its whole receive slab until it is dropped, which
//! is why the backend bounds the slabs it lends (`engine/slabs.rs`).
//!
//! The endpoint freezes a lendable datagram once it is opened in place ([`Datagram::share`]):
//! the walk reads its messages as slices of it, so a `BytesMut` could not be split while they
//! are read, but a frozen `Bytes` shares its memory with them.

use bytes::{Bytes, BytesMut};
use std::ops::Deref;

/// A message's bytes: a pooled buffer, or receive memory lent without a copy. Reads as `[u8]`;
/// [`into_vec`](Self::into_vec) and [`to_mut`](Self::to_mut) copy only a lent piece.
#[derive(Clone)]
pub enum Payload {
    /// A buffer from the endpoint's pool (or the application's own).
    Pooled(Vec<u8>),
    /// A piece of the receive slab the datagram arrived in.
    Lent(Bytes),
}

impl Payload {
    /// The bytes as a `Vec`: the pooled buffer itself, or a copy of a lent piece.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Pooled(vec) => vec,
            Payload::Lent(bytes) => bytes.to_vec(),
        }
    }

    /// The bytes writable: a lent piece is copied into a `Vec` first.
    pub fn to_mut(&mut self) -> &mut Vec<u8> {
        if let Payload::Lent(bytes) = self {
            *self = Payload::Pooled(bytes.to_vec());
        }
        match self {
            Payload::Pooled(vec) => vec,
            // Made pooled just above.
            Payload::Lent(_) => unreachable!("a lent payload was just copied"),
        }
    }

    /// True when the bytes are receive memory lent without a copy.
    pub fn is_lent(&self) -> bool {
        matches!(self, Payload::Lent(_))
    }
}

impl Default for Payload {
    fn default() -> Payload {
        Payload::Pooled(Vec::new())
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Pooled(vec) => vec,
            Payload::Lent(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Payload {
    fn from(vec: Vec<u8>) -> Payload {
        Payload::Pooled(vec)
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Payload {
        Payload::Pooled(bytes.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Payload {
    fn from(bytes: &[u8; N]) -> Payload {
        Payload::Pooled(bytes.to_vec())
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Payload {
        Payload::Pooled(text.as_bytes().to_vec())
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Payload {
        Payload::Pooled(text.into_bytes())
    }
}

impl From<Payload> for Vec<u8> {
    fn from(payload: Payload) -> Vec<u8> {
        payload.into_vec()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Payload {}

impl PartialEq<[u8]> for Payload {
    fn eq(&self, other: &[u8]) -> bool {
        &self[..] == other
    }
}

impl PartialEq<&[u8]> for Payload {
    fn eq(&self, other: &&[u8]) -> bool {
        &self[..] == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Payload {
    fn eq(&self, other: &[u8; N]) -> bool {
        self[..] == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Payload {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self[..] == other[..]
    }
}

impl PartialEq<Vec<u8>> for Payload {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self[..] == other[..]
    }
}

impl PartialEq<Payload> for Vec<u8> {
    fn eq(&self, other: &Payload) -> bool {
        self[..] == other[..]
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self[..].fmt(f)
    }
}

/// A received datagram whose memory the backend lends (a piece cut from its receive slab): the
/// endpoint opens it in place, then freezes it, so that the messages cut from it share it.
#[derive(Debug, Default)]
pub struct Lendable {
    open: BytesMut,
    frozen: Bytes,
}

impl Lendable {
    /// The datagram `bytes`, received into memory the backend may lend.
    pub fn new(bytes: BytesMut) -> Lendable {
        Lendable {
            open: bytes,
            frozen: Bytes::new(),
        }
    }

    /// The receive memory back, as it was received when the endpoint has not taken it yet
    /// (to hand it to another shard's endpoint); a copy otherwise.
    pub fn into_bytes(self) -> BytesMut {
        if self.frozen.is_empty() {
            self.open
        } else {
            BytesMut::from(&self.frozen[..])
        }
    }

    /// Its bytes, as received (or, once the endpoint took it, as it left them).
    pub fn bytes(&self) -> &[u8] {
        if self.frozen.is_empty() {
            &self.open
        } else {
            &self.frozen
        }
    }
}

/// A datagram as the endpoint takes it: bytes a caller owns (copied out of when a message is
/// kept), or receive memory it may lend.
#[derive(Debug)]
pub(crate) enum Datagram<'d> {
    Copied(&'d mut [u8]),
    Lent(&'d mut Lendable),
}

impl<'d> Datagram<'d> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Datagram::Copied(bytes) => bytes,
            Datagram::Lent(lendable) => lendable.bytes(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }

    /// The bytes to open in place.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Datagram::Copied(bytes) => bytes,
            Datagram::Lent(lendable) => &mut lendable.open,
        }
    }

    /// Done writing: the bytes the messages are read from, and, for lendable memory, the
    /// frozen datagram to cut them from ([`BufferPool::lend_from`](super::BufferPool)).
    pub(crate) fn share(self) -> (&'d [u8], Option<Bytes>) {
        match self {
            Datagram::Copied(bytes) => (bytes, None),
            Datagram::Lent(lendable) => {
                if lendable.frozen.is_empty() {
                    lendable.frozen = std::mem::take(&mut lendable.open).freeze();
                }
                let lendable: &'d Lendable = lendable;
                (&lendable.frozen, Some(lendable.frozen.clone()))
            }
        }
    }
}

impl<'d> From<&'d mut [u8]> for Datagram<'d> {
    fn from(bytes: &'d mut [u8]) -> Datagram<'d> {
        Datagram::Copied(bytes)
    }
}

impl<'d> From<&'d mut Vec<u8>> for Datagram<'d> {
    fn from(bytes: &'d mut Vec<u8>) -> Datagram<'d> {
        Datagram::Copied(bytes)
    }
}
