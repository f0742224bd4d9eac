//! Signed peer records (PROTOCOL.md §2): what an address book, a config file or the DHT hands
//! out about a node. The byte format is documented in docs/SESSIONS.md; the hex text form is
//! that format in lowercase hex.

use super::identity::{Identity, peer_id_of};
use crate::wire::PeerId;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version byte of the record format.
pub const RECORD_VERSION: u8 = 1;
/// At most this many addresses in one record.
pub const MAX_ADDRESSES: usize = 16;
/// At most this many certificate bytes in one record.
pub const MAX_CERTIFICATE_LEN: usize = 4096;
/// Length of a node id (160 bits, PROTOCOL.md §2, §11).
pub const NODE_ID_LEN: usize = 20;
/// Domain separation for the record signature.
const SIGNING_CONTEXT: &[u8] = b"weft v1 peer record";

/// Why a record was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes end before the record does, or continue after it.
    #[error("peer record has the wrong length at byte {0}")]
    Length(usize),
    /// An unknown format version.
    #[error("peer record version {0} is not supported")]
    Version(u8),
    /// A malformed field (address tag, node id length, too many entries).
    #[error("peer record is malformed at byte {0}")]
    Malformed(usize),
    /// The Ed25519 key is not a valid point.
    #[error("peer record carries an invalid Ed25519 key")]
    BadKey,
    /// `verify_strict` refused the signature.
    #[error("peer record signature does not verify")]
    BadSignature,
    /// The hex text form has a non-hex character or an odd length.
    #[error("peer record hex text is malformed")]
    Hex,
}

/// A node's signed public description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRecord {
    /// The Ed25519 identity key.
    pub ed25519: [u8; 32],
    /// The X25519 static key for handshakes of kinds 1 and 3.
    pub x25519: [u8; 32],
    /// Where the node listens.
    pub addresses: Vec<SocketAddr>,
    /// The node id issued by the consensus service (§11), once it has one.
    pub node_id: Option<[u8; NODE_ID_LEN]>,
    /// The quorum certificate binding `node_id` to `ed25519` (opaque here; empty if none).
    pub certificate: Vec<u8>,
    /// Ed25519 signature over [`SIGNING_CONTEXT`] ‖ the encoded record before the signature.
    pub signature: [u8; 64],
}

impl PeerRecord {
    /// Builds and signs the record of `identity`.
    pub fn sign(identity: &Identity, addresses: &[SocketAddr]) -> PeerRecord {
        Self::sign_with_node_id(identity, addresses, None, Vec::new())
    }

    /// Builds and signs a record that also carries an issued node id and its certificate.
    /// Addresses beyond [`MAX_ADDRESSES`] and certificate bytes beyond [`MAX_CERTIFICATE_LEN`]
    /// are cut off, so the record always encodes.
    pub fn sign_with_node_id(
        identity: &Identity,
        addresses: &[SocketAddr],
        node_id: Option<[u8; NODE_ID_LEN]>,
        mut certificate: Vec<u8>,
    ) -> PeerRecord {
        certificate.truncate(MAX_CERTIFICATE_LEN);
        let mut record = PeerRecord {
            ed25519: identity.ed25519_public().to_bytes(),
            x25519: identity.x25519_public().to_bytes(),
            addresses: addresses.iter().take(MAX_ADDRESSES).copied().collect(),
            node_id,
            certificate,
            signature: [0; 64],
        };
        let mut signed = SIGNING_CONTEXT.to_vec();
        record.encode_body(&mut signed);
        record.signature = identity.signing_key().sign(&signed).to_bytes();
        record
    }

    /// The peer id the record speaks for.
    pub fn peer_id(&self) -> PeerId {
        peer_id_of(&self.ed25519)
    }

    /// Checks the signature with `verify_strict` (no malleable or small-order signatures).
    pub fn verify(&self) -> Result<(), RecordError> {
        let key = VerifyingKey::from_bytes(&self.ed25519).map_err(|_| RecordError::BadKey)?;
        let mut signed = SIGNING_CONTEXT.to_vec();
        self.encode_body(&mut signed);
        key.verify_strict(&signed, &Signature::from_bytes(&self.signature))
            .map_err(|_| RecordError::BadSignature)
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.ed25519);
        out.extend_from_slice(&self.x25519);
        let addresses = &self.addresses[..self.addresses.len().min(MAX_ADDRESSES)];
        out.push(addresses.len() as u8);
        for address in addresses {
            match address.ip() {
                IpAddr::V4(ip) => {
                    out.push(4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&address.port().to_be_bytes());
        }
        match &self.node_id {
            Some(id) => {
                out.push(NODE_ID_LEN as u8);
                out.extend_from_slice(id);
            }
            None => out.push(0),
        }
        let certificate = &self.certificate[..self.certificate.len().min(MAX_CERTIFICATE_LEN)];
        out.extend_from_slice(&(certificate.len() as u16).to_be_bytes());
        out.extend_from_slice(certificate);
    }

    /// The compact byte form (docs/SESSIONS.md).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_body(&mut out);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses the byte form. The whole input is validated before anything is allocated; the
    /// signature is not checked here (call [`verify`](Self::verify)).
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerRecord, RecordError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != RECORD_VERSION {
            return Err(RecordError::Version(version));
        }
        let ed25519 = r.array::<32>()?;
        let x25519 = r.array::<32>()?;
        let count_at = r.at;
        let count = usize::from(r.u8()?);
        if count > MAX_ADDRESSES {
            return Err(RecordError::Malformed(count_at));
        }
        let addresses_at = r.at;
        for _ in 0..count {
            r.address()?;
        }
        let node_id_at = r.at;
        let node_id = match r.u8()? {
            0 => None,
            20 => Some(r.array::<NODE_ID_LEN>()?),
            _ => return Err(RecordError::Malformed(node_id_at)),
        };
        let certificate_at = r.at;
        let certificate_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        if certificate_len > MAX_CERTIFICATE_LEN {
            return Err(RecordError::Malformed(certificate_at));
        }
        let certificate = r.take(certificate_len)?;
        let signature = r.array::<64>()?;
        if r.at != bytes.len() {
            return Err(RecordError::Length(r.at));
        }
        // Everything is valid: only now allocate, re-reading the addresses already checked.
        let mut again = Reader {
            bytes,
            at: addresses_at,
        };
        let mut addresses = Vec::with_capacity(count);
        for _ in 0..count {
            addresses.push(again.address()?);
        }
        Ok(PeerRecord {
            ed25519,
            x25519,
            addresses,
            node_id,
            certificate: certificate.to_vec(),
            signature,
        })
    }

    /// The hex text form for config files.
    pub fn to_hex(&self) -> String {
        let mut text = String::with_capacity(512);
        for byte in self.to_bytes() {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        text
    }

    /// Parses the hex text form (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<PeerRecord, RecordError> {
        let text = text.trim().as_bytes();
        if !text.len().is_multiple_of(2) {
            return Err(RecordError::Hex);
        }
        let mut bytes = Vec::with_capacity(text.len() / 2);
        for pair in text.chunks_exact(2) {
            let high = (pair[0] as char).to_digit(16).ok_or(RecordError::Hex)?;
            let low = (pair[1] as char).to_digit(16).ok_or(RecordError::Hex)?;
            bytes.push(high.saturating_mul(16).saturating_add(low) as u8);
        }
        PeerRecord::from_bytes(&bytes)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).ok_or(RecordError::Length(self.at))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(RecordError::Length(self.bytes.len()))?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn address(&mut self) -> Result<SocketAddr, RecordError> {
        let tag_at = self.at;
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return Err(RecordError::Malformed(tag_at)),
        };
        let port = u16::from_be_bytes(self.array::<2>()?);
        Ok(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses() -> Vec<SocketAddr> {
        vec![
            "192.0.2.7:4433".parse().unwrap(),
            "[2001:db8::1]:9000".parse().unwrap(),
        ]
    }

    #[test]
    fn a_signed_record_verifies_and_names_its_peer() {
        let identity = Identity::from_secret_bytes([3; 32], [4; 32]);
        let record = PeerRecord::sign(&identity, &addresses());
        assert_eq!(record.verify(), Ok(()));
        assert_eq!(record.peer_id(), identity.peer_id());
        assert_eq!(record.x25519, identity.x25519_public().to_bytes());
    }

    #[test]
    fn bytes_and_hex_round_trip() {
        let identity = Identity::from_secret_bytes([3; 32], [4; 32]);
        let record =
            PeerRecord::sign_with_node_id(&identity, &addresses(), Some([9; 20]), vec![1, 2, 3]);
        let parsed = PeerRecord::from_bytes(&record.to_bytes()).unwrap();
        assert_eq!(parsed, record);
        assert_eq!(PeerRecord::from_hex(&record.to_hex()).unwrap(), record);
        assert_eq!(parsed.verify(), Ok(()));
    }

    #[test]
    fn tampering_with_any_byte_fails_parse_or_verify() {
        let identity = Identity::from_secret_bytes([3; 32], [4; 32]);
        let bytes = PeerRecord::sign(&identity, &addresses()).to_bytes();
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            let ok = PeerRecord::from_bytes(&tampered).is_ok_and(|r| r.verify().is_ok());
            assert!(!ok, "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn truncated_or_padded_input_is_an_error_not_a_panic() {
        let identity = Identity::from_secret_bytes([3; 32], [4; 32]);
        let bytes = PeerRecord::sign(&identity, &addresses()).to_bytes();
        for n in 0..bytes.len() {
            assert!(PeerRecord::from_bytes(&bytes[..n]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            PeerRecord::from_bytes(&longer),
            Err(RecordError::Length(_))
        ));
        assert_eq!(PeerRecord::from_hex("0g"), Err(RecordError::Hex));
    }
}
