//! A node's proof of its id, as it shows it to overlay peers (PROTOCOL.md §10–11): the network
//! it claims, that network's member-list chain from genesis, the request the id answers and the
//! quorum of signed replies (the certificate). Anyone who trusts the network id checks it with
//! nothing else: the chain verifies from the network id ([`MemberListChain::verify`]), the
//! replies are a certificate of the chain's current members ([`certificate::verify`]), the
//! certificate answers the request, and the request is for the key of the peer that shows it.
//!
//! The overlay carries the proof as opaque bytes (SET_CONNECTION_OPT option 4,
//! docs/OVERLAY.md); the node checks it (`node::trust`).

use super::certificate::{self, CertificateError};
use super::ids::{NetworkId, NodeId, NodeIdRequest};
use super::schema::Reply;
use super::signed::Signed;
use super::trust::{MemberList, MemberListChain, TrustError};
use serde::{Deserialize, Serialize};

/// The most bytes a proof may take: a full member list, a few links and a quorum of replies fit
/// with room; a longer one is refused before it is decoded.
pub const MAX_PROOF_BYTES: usize = 48 * 1024;

/// What a node shows for its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdProof {
    /// The network that issued the id.
    pub network: NetworkId,
    /// Its member lists from genesis.
    pub chain: MemberListChain,
    /// The request the id answers: the node's key, addresses and salt.
    pub request: NodeIdRequest,
    /// A quorum of the current members' matching replies.
    pub replies: Vec<Signed<Reply>>,
}

/// Why a proof is refused; [`ProofError::reason`] is its fixed metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Not a proof, or over [`MAX_PROOF_BYTES`].
    #[error("not a well-formed id proof")]
    Malformed,
    /// A network other than the one trusted.
    #[error("a proof of another network")]
    ForeignNetwork,
    /// The member-list chain does not verify from the network id.
    #[error(transparent)]
    Chain(#[from] TrustError),
    /// The chain ends at an older member list than one already verified.
    #[error("a member list older than epoch {known}")]
    Stale {
        /// The epoch already known.
        known: u64,
    },
    /// The replies are not a certificate of the current members.
    #[error("not certified by the current members: {0}")]
    Certificate(#[from] CertificateError),
    /// The certificate answers another request, names another id, or the request is for
    /// another key than the peer's.
    #[error("the certificate is for another request, id or key")]
    Mismatch,
}

impl ProofError {
    /// The label it is counted under (`weft_overlay_dropped_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            ProofError::Malformed => "malformed_proof",
            ProofError::ForeignNetwork => "foreign_network",
            ProofError::Chain(_) => "bad_member_list",
            ProofError::Stale { .. } => "stale_member_list",
            ProofError::Certificate(_) | ProofError::Mismatch => "bad_certificate",
        }
    }
}

impl IdProof {
    /// Its msgpack bytes.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    /// The proof in `bytes`, refused past [`MAX_PROOF_BYTES`] before decoding.
    pub fn decode(bytes: &[u8]) -> Result<IdProof, ProofError> {
        if bytes.len() > MAX_PROOF_BYTES {
            return Err(ProofError::Malformed);
        }
        rmp_serde::from_slice(bytes).map_err(|_| ProofError::Malformed)
    }

    /// Checks that this proves `node` for the Ed25519 key `key` in `network`, and returns the
    /// member list it was checked against. `known` is the newest list of `network` verified
    /// before: a chain that ends earlier is refused (a peer may not pick an older member list
    /// whose members were voted out).
    pub fn verify(
        &self,
        network: &NetworkId,
        known: Option<&MemberList>,
        node: &NodeId,
        key: &[u8; 32],
    ) -> Result<MemberList, ProofError> {
        if self.network != *network {
            return Err(ProofError::ForeignNetwork);
        }
        // A request for another key is refused before any signature is checked: a peer's
        // proof costs the node signature checks only when it could be the peer's own.
        if self.request.key != *key {
            return Err(ProofError::Mismatch);
        }
        let current = self.chain.verify(network)?;
        if let Some(known) = known
            && known.epoch > current.epoch
        {
            return Err(ProofError::Stale { known: known.epoch });
        }
        let certificate = certificate::verify(network, &current.members, &self.replies)?;
        if certificate.node_id != *node || certificate.digest != self.request.digest() {
            return Err(ProofError::Mismatch);
        }
        Ok(current)
    }
}

/// A proof of id `[7; 20]` signed by the first `signers` of `members` (a network of them all)
/// for `key`'s request: for tests here and in `node::trust`.
#[cfg(test)]
pub(crate) fn proof_for(
    members: &[ed25519_dalek::SigningKey],
    signers: usize,
    key: [u8; 32],
) -> IdProof {
    use super::ids::MemberKey;
    use super::signed::{member_key, sign};
    let keys: Vec<MemberKey> = members.iter().map(member_key).collect();
    let chain = MemberListChain::new(&keys);
    let network = NetworkId::of_genesis(&keys);
    let request = NodeIdRequest {
        key,
        addresses: vec!["127.0.0.1:7700".parse().unwrap()],
        salt: 0,
    };
    let replies = members
        .iter()
        .take(signers)
        .map(|member| {
            sign(
                member,
                &network,
                Reply {
                    digest: request.digest(),
                    node_id: NodeId([7; 20]),
                    network,
                    members: u32::try_from(keys.len()).unwrap(),
                    height: 3,
                    member: member_key(member),
                },
            )
        })
        .collect();
    IdProof {
        network,
        chain,
        request,
        replies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::ids::MemberKey;
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_quorum_proof_verifies_for_its_key_only_and_forgeries_are_refused_by_reason() {
        let members: Vec<SigningKey> = (1..=4u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let key = [9; 32];
        let proof = IdProof::decode(&proof_for(&members, 3, key).encode()).unwrap();
        let network = proof.network;
        let id = NodeId([7; 20]);
        assert_eq!(
            proof
                .verify(&network, None, &id, &key)
                .unwrap()
                .members
                .len(),
            4
        );
        // Another peer's key, another id, another network, too few signers.
        let refuse = |p: &IdProof, n: &NetworkId, id: &NodeId, k: &[u8; 32]| {
            p.verify(n, None, id, k).unwrap_err().reason()
        };
        assert_eq!(refuse(&proof, &network, &id, &[8; 32]), "bad_certificate");
        assert_eq!(
            refuse(&proof, &network, &NodeId([6; 20]), &key),
            "bad_certificate"
        );
        assert_eq!(
            refuse(&proof, &NetworkId([0; 32]), &id, &key),
            "foreign_network"
        );
        let thin = proof_for(&members, 2, key);
        assert_eq!(refuse(&thin, &network, &id, &key), "bad_certificate");
        // A forged signature.
        let mut forged = proof.clone();
        forged.replies[0].signature.0[0] ^= 1;
        assert_eq!(refuse(&forged, &network, &id, &key), "bad_certificate");
        // A chain whose genesis is not the network's.
        let mut swapped = proof.clone();
        swapped.chain = MemberListChain::new(&[MemberKey([1; 32])]);
        assert_eq!(refuse(&swapped, &network, &id, &key), "bad_member_list");
        // A newer list already known.
        let mut newer = MemberList::genesis(&swapped.chain.genesis);
        newer.epoch = 2;
        assert_eq!(
            proof
                .verify(&network, Some(&newer), &id, &key)
                .unwrap_err()
                .reason(),
            "stale_member_list"
        );
        assert_eq!(
            IdProof::decode(b"\x01").unwrap_err().reason(),
            "malformed_proof"
        );
        assert_eq!(
            IdProof::decode(&vec![0; MAX_PROOF_BYTES + 1]).unwrap_err(),
            ProofError::Malformed
        );
    }

    #[test]
    fn a_chain_past_genesis_is_verified_and_certificates_are_checked_against_its_last_list() {
        use crate::consensus::signed::{member_key, sign};
        use crate::consensus::trust::{Endorsement, Link};
        let genesis: Vec<SigningKey> = (1..=4u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let keys: Vec<MemberKey> = genesis.iter().map(member_key).collect();
        // Member 4 is voted out: the list of epoch 1, endorsed by three of genesis.
        let network = NetworkId::of_genesis(&keys);
        let mut next: Vec<MemberKey> = keys[..3].to_vec();
        next.sort_unstable();
        let list = MemberList {
            network,
            epoch: 1,
            height: 10,
            members: next,
        };
        let mut endorsements: Vec<_> = genesis[..3]
            .iter()
            .map(|k| {
                let body = Endorsement {
                    epoch: 1,
                    list: list.digest(),
                    member: member_key(k),
                };
                sign(k, &network, body)
            })
            .collect();
        endorsements.sort_by_key(|e| e.body.member);
        let chain = MemberListChain {
            genesis: MemberList::genesis(&keys).members,
            links: vec![Link {
                list: list.clone(),
                endorsements,
            }],
        };
        let key = [9; 32];
        let id = NodeId([7; 20]);
        // Replies by the three current members, naming three members.
        let old = proof_for(&genesis, 4, key);
        let replies = old.replies[..3]
            .iter()
            .zip(&genesis)
            .map(|(r, k)| {
                let mut body = r.body.clone();
                body.members = 3;
                sign(k, &network, body)
            })
            .collect();
        let proof = IdProof {
            chain: chain.clone(),
            replies,
            ..old.clone()
        };
        assert_eq!(proof.verify(&network, None, &id, &key).unwrap(), list);
        // The old genesis-only proof once epoch 1 is known: stale.
        assert_eq!(
            old.verify(&network, Some(&list), &id, &key)
                .unwrap_err()
                .reason(),
            "stale_member_list"
        );
        // The genesis certificate against the new list: the member count differs.
        let mixed = IdProof { chain, ..old };
        assert_eq!(
            mixed
                .verify(&network, None, &id, &key)
                .unwrap_err()
                .reason(),
            "bad_certificate"
        );
        // A link endorsed by too few of genesis does not verify.
        let mut thin = proof.clone();
        thin.chain.links[0].endorsements.truncate(2);
        assert_eq!(
            thin.verify(&network, None, &id, &key).unwrap_err().reason(),
            "bad_member_list"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any bytes: a proof or a refusal, never a panic; a proof round-trips.
        #[test]
        fn any_bytes_decode_to_a_proof_or_a_refusal(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Ok(proof) = IdProof::decode(&bytes) {
                proptest::prop_assert_eq!(IdProof::decode(&proof.encode()), Ok(proof));
            }
        }

        /// A real proof with any id claimed verifies only for the id it certifies.
        #[test]
        fn only_the_certified_id_verifies(claimed in proptest::prelude::any::<[u8; 20]>(), signers in 0usize..5) {
            let members: Vec<SigningKey> = (1..=4u8).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
            let proof = proof_for(&members, signers, [9; 32]);
            let verdict = proof.verify(&proof.network, None, &NodeId(claimed), &[9; 32]);
            proptest::prop_assert_eq!(verdict.is_ok(), claimed == [7; 20] && signers >= 3);
        }
    }
}
