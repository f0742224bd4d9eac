//! The names the consensus service deals in (PROTOCOL.md §11): member keys, the network id, a
//! node-id request and its digest, and the node id derived from a commit certificate.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// A member's Ed25519 public key: its name in votes, sightings and replies, and the order in
/// which canonical lists are sorted.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberKey(#[serde(with = "super::bin")] pub [u8; 32]);

impl fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberKey({self})")
    }
}

impl fmt::Display for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits tell members apart in logs; the whole key is in the member list.
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A 160-bit node id issued by the cluster.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(#[serde(with = "super::bin")] pub [u8; 20]);

/// A network's name: BLAKE3 of its sorted genesis member keys (PROTOCOL.md §11, trust root).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NetworkId(#[serde(with = "super::bin")] pub [u8; 32]);

impl NetworkId {
    /// The id of the network whose genesis members are `members` (in any order; duplicates count
    /// once).
    pub fn of_genesis(members: &[MemberKey]) -> NetworkId {
        let mut sorted = members.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut hasher = blake3::Hasher::new_derive_key("weft v1 network id");
        for key in &sorted {
            hasher.update(&key.0);
        }
        NetworkId(*hasher.finalize().as_bytes())
    }
}

/// The most addresses one request may name: a node's few interfaces, not a list to reflect off.
pub const MAX_REQUEST_ADDRESSES: usize = 8;

/// A node-id request `[public key, addresses, salt]` (seed 001): the client sends the same one
/// to every member, and repeats it with the same salt.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeIdRequest {
    /// The node's Ed25519 public key.
    #[serde(with = "super::bin")]
    pub key: [u8; 32],
    /// Where the node says it is; members never connect to them (PROTOCOL.md §11: no reflection).
    pub addresses: Vec<SocketAddr>,
    /// The client's salt: a repeat uses the same one, a new salt is a new request.
    pub salt: u32,
}

/// BLAKE3 of a request's canonical encoding: what sightings, proposals and replies name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestDigest(#[serde(with = "super::bin")] pub [u8; 32]);

impl NodeIdRequest {
    /// Its digest over the key, the addresses in the order given and the salt, each length-framed
    /// so two requests never share an input.
    pub fn digest(&self) -> RequestDigest {
        let mut hasher = blake3::Hasher::new_derive_key("weft v1 node id request");
        hasher.update(&self.key);
        hasher.update(&(self.addresses.len() as u64).to_le_bytes());
        for address in &self.addresses {
            let text = address.to_string();
            hasher.update(&(text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        hasher.update(&self.salt.to_le_bytes());
        RequestDigest(*hasher.finalize().as_bytes())
    }

    /// What the log is keyed by: the same key and salt get the same id (seed 001: idempotent).
    pub fn idempotence_key(&self) -> ([u8; 32], u32) {
        (self.key, self.salt)
    }
}

/// The node id of a request ordered at height h, from R = BLAKE3 of the canonical commit
/// certificate of h (PROTOCOL.md §11: `derive_key("weft v1 node id", R ‖ public key ‖
/// salt)[..20]`). R is unknown before the request is committed, so nobody can aim the id.
pub fn derive_node_id(certificate_digest: &[u8; 32], key: &[u8; 32], salt: u32) -> NodeId {
    let mut hasher = blake3::Hasher::new_derive_key("weft v1 node id");
    hasher.update(certificate_digest);
    hasher.update(key);
    hasher.update(&salt.to_le_bytes());
    let mut id = [0u8; 20];
    id.copy_from_slice(&hasher.finalize().as_bytes()[..20]);
    NodeId(id)
}
