//! A node's certificate (PROTOCOL.md §11, Reply): a quorum of matching signed replies from
//! distinct members of its network, which anyone holding the member list verifies.

use super::ids::{MemberKey, NetworkId, NodeId, RequestDigest};
use super::quorum;
use super::schema::Reply;
use super::signed::Signed;
use super::trust::{MemberListChain, TrustError};
use std::collections::BTreeSet;

/// A verified certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCertificate {
    /// The request it answers.
    pub digest: RequestDigest,
    /// The id.
    pub node_id: NodeId,
    /// The height that ordered it.
    pub height: u64,
    /// The replies, one per member, sorted by member.
    pub replies: Vec<Signed<Reply>>,
}

/// Why replies are not a certificate.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Fewer matching replies from distinct members than a quorum.
    #[error("{have} matching replies from distinct members, {need} needed")]
    TooFew {
        /// How many matched.
        have: usize,
        /// A quorum.
        need: usize,
    },
    /// A reply from a key that is not a member.
    #[error("a reply from a key that is not a member")]
    NonMember,
    /// A reply whose signature does not verify.
    #[error("a reply whose signature does not verify")]
    BadSignature,
    /// Replies that disagree, or name another network or member count.
    #[error("replies that do not match")]
    Mismatch,
}

/// Verifies that `replies` are a certificate of `network`, whose members are `members`: all
/// name the same request, id, height, this network and its member count, each is from a
/// distinct member with a valid signature, and there are at least a quorum of them.
pub fn verify(
    network: &NetworkId,
    members: &[MemberKey],
    replies: &[Signed<Reply>],
) -> Result<NodeCertificate, CertificateError> {
    let mut roster: Vec<MemberKey> = members.to_vec();
    roster.sort_unstable();
    roster.dedup();
    let need = quorum(roster.len());
    let first = replies
        .first()
        .ok_or(CertificateError::TooFew { have: 0, need })?;
    let mut seen = BTreeSet::new();
    for reply in replies {
        let body = &reply.body;
        if body.digest != first.body.digest
            || body.node_id != first.body.node_id
            || body.height != first.body.height
            || body.network != *network
            || usize::try_from(body.members).ok() != Some(roster.len())
        {
            return Err(CertificateError::Mismatch);
        }
        if roster.binary_search(&body.member).is_err() {
            return Err(CertificateError::NonMember);
        }
        if !reply.verify(network) {
            return Err(CertificateError::BadSignature);
        }
        seen.insert(body.member);
    }
    if seen.len() < need {
        return Err(CertificateError::TooFew {
            have: seen.len(),
            need,
        });
    }
    let mut sorted: Vec<Signed<Reply>> = Vec::with_capacity(seen.len());
    for reply in replies {
        if !sorted
            .iter()
            .any(|kept| kept.body.member == reply.body.member)
        {
            sorted.push(reply.clone());
        }
    }
    sorted.sort_by_key(|reply| reply.body.member);
    Ok(NodeCertificate {
        digest: first.body.digest,
        node_id: first.body.node_id,
        height: first.body.height,
        replies: sorted,
    })
}

/// From replies gathered by a client (possibly disagreeing, some forged), the certificate of
/// the first id that a quorum vouches for, if any.
pub fn gather(
    network: &NetworkId,
    members: &[MemberKey],
    replies: &[Signed<Reply>],
) -> Option<NodeCertificate> {
    let valid: Vec<&Signed<Reply>> = replies
        .iter()
        .filter(|reply| members.contains(&reply.body.member) && reply.verify(network))
        .collect();
    for candidate in &valid {
        let matching: Vec<Signed<Reply>> = valid
            .iter()
            .filter(|reply| {
                reply.body.digest == candidate.body.digest
                    && reply.body.node_id == candidate.body.node_id
                    && reply.body.height == candidate.body.height
                    && reply.body.members == candidate.body.members
                    && reply.body.network == candidate.body.network
            })
            .map(|reply| (*reply).clone())
            .collect();
        if let Ok(certificate) = verify(network, members, &matching) {
            return Some(certificate);
        }
    }
    None
}

/// Why a node's certificate is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// The member-list chain does not verify from the network id.
    #[error(transparent)]
    Chain(#[from] TrustError),
    /// The replies are not a certificate of the current members.
    #[error("not certified by the network's current members: {0}")]
    Certificate(#[from] CertificateError),
}

/// Accepts `replies` as a node's certificate only if a quorum of `network`'s current members
/// signed them, the current list being the end of `chain` verified from genesis (PROTOCOL.md
/// §11, trust root). A node whose certificate names an older member list repeats its request:
/// the log answers with the same id, signed by today's members.
pub fn accept(
    chain: &MemberListChain,
    network: &NetworkId,
    replies: &[Signed<Reply>],
) -> Result<NodeCertificate, AcceptError> {
    let current = chain.verify(network)?;
    Ok(verify(network, &current.members, replies)?)
}
