//! Node ids, DHT key addresses and contacts (PROTOCOL.md §2, §10): τ = 160-bit ids compared by
//! XOR distance.

use crate::wire::PeerId;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes of a node id (τ = 160 bits).
pub const ID_LEN: usize = 20;

/// A node's place in the key space, issued by the consensus service (PROTOCOL.md §11). The
/// overlay asks the node's `kademlia::CertificateCheck` before an id enters a routing table.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; ID_LEN]);

impl NodeId {
    /// The id as a 128-bit high word and a 32-bit low word.
    fn words(&self) -> (u128, u32) {
        let [h @ .., l0, l1, l2, l3] = self.0;
        let high: [u8; 16] = h;
        (
            u128::from_be_bytes(high),
            u32::from_be_bytes([l0, l1, l2, l3]),
        )
    }

    fn from_words(high: u128, low: u32) -> NodeId {
        let mut out = [0u8; ID_LEN];
        let (h, l) = out.split_at_mut(16);
        h.copy_from_slice(&high.to_be_bytes());
        l.copy_from_slice(&low.to_be_bytes());
        NodeId(out)
    }

    /// XOR distance to `other`, comparable as a big-endian integer. (Whole words: lookups
    /// compute it for every candidate of every reply.)
    pub fn distance(&self, other: &NodeId) -> NodeId {
        let (ah, al) = self.words();
        let (bh, bl) = other.words();
        NodeId::from_words(ah ^ bh, al ^ bl)
    }

    /// How many leading bits are zero (160 for the zero id).
    pub fn leading_zeros(&self) -> u32 {
        let (high, low) = self.words();
        match high {
            0 => 128u32.saturating_add(low.leading_zeros()),
            _ => high.leading_zeros(),
        }
    }

    /// The bit at `index` from the most significant (0..160); false past the end.
    pub fn bit(&self, index: usize) -> bool {
        self.0
            .get(index / 8)
            .is_some_and(|byte| byte & (0x80 >> (index % 8)) != 0)
    }

    /// A copy with bit `index` flipped (no change past the end).
    pub fn with_bit_flipped(mut self, index: usize) -> NodeId {
        if let Some(byte) = self.0.get_mut(index / 8) {
            *byte ^= 0x80 >> (index % 8);
        }
        self
    }

    /// The id a slice of exactly 20 bytes spells.
    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        bytes.try_into().ok().map(NodeId)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…")
    }
}

/// The id in hex, all 40 digits (`Debug` shows only the first 8).
pub fn hex(id: &NodeId) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address of a DHT key in the id space: `derive_key("weft v1 dht key", key)[..20]`
/// (PROTOCOL.md §10), recomputed by every receiver.
pub fn key_address(key: &[u8]) -> NodeId {
    let full = blake3::derive_key("weft v1 dht key", key);
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&full[..ID_LEN]);
    NodeId(id)
}

/// The node id a node uses until the consensus service certifies one (PROTOCOL.md §11):
/// `derive_key("weft v1 provisional node id", peer id)[..20]`. Every receiver recomputes it from
/// the peer id the session proves, so a peer cannot pick its place in the key space, only grind
/// keys for one (what certification will stop); `weft status` marks such an id provisional.
pub fn provisional_id(peer: &PeerId) -> NodeId {
    let full = blake3::derive_key("weft v1 provisional node id", &peer.0);
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&full[..ID_LEN]);
    NodeId(id)
}

/// Where a node of the overlay is: its node id, the peer id its sessions prove, and an address.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Contact {
    /// Its place in the key space.
    pub id: NodeId,
    /// Its peer id (PROTOCOL.md §2).
    pub peer: PeerId,
    /// Where it is reached.
    pub addr: SocketAddr,
}

/// An address as bytes on the wire: 4 or 16 address bytes, then the port big-endian.
pub fn addr_to_bytes(addr: &SocketAddr) -> Vec<u8> {
    let mut out = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

/// The address that 6 or 18 bytes spell.
pub fn addr_from_bytes(bytes: &[u8]) -> Option<SocketAddr> {
    match bytes {
        [a, b, c, d, p0, p1] => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)),
            u16::from_be_bytes([*p0, *p1]),
        )),
        _ if bytes.len() == 18 => {
            let (ip, port) = bytes.split_at(16);
            let ip: [u8; 16] = ip.try_into().ok()?;
            let port: [u8; 2] = port.try_into().ok()?;
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes(port),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_and_bits() {
        let a = NodeId([0; ID_LEN]);
        let b = a.with_bit_flipped(9);
        assert_eq!(a.distance(&b).leading_zeros(), 9);
        assert!(b.bit(9));
        assert!(!b.bit(8));
        assert_eq!(a.leading_zeros(), 160);
        assert!(!a.bit(500));
    }

    #[test]
    fn addresses_round_trip() {
        for text in ["10.0.0.1:7700", "[2001:db8::1]:9"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(addr_from_bytes(&addr_to_bytes(&addr)), Some(addr));
        }
        assert_eq!(addr_from_bytes(&[1, 2, 3]), None);
    }
}
