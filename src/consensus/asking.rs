//! A node asking the cluster for its id (PROTOCOL.md §11): the request it sends to every member,
//! the signed replies it gathers, and the certificate once a quorum of them match. The node's
//! own consensus service and `weft id request` both use it; neither trusts a reply it cannot
//! verify against the member list it holds.

use super::certificate::{self, NodeCertificate};
use super::ids::{MemberKey, NetworkId, NodeIdRequest};
use super::schema::{self, Message, Refusal, Reply};
use super::signed::Signed;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often an unanswered request is sent again (the id needs two heights; a member may also
/// have refused it while another request from the same address was pending).
pub const ASK_EVERY: Duration = Duration::from_secs(1);

/// One request being asked, and what came back.
#[derive(Clone, Debug)]
pub struct Asking {
    network: NetworkId,
    members: Vec<MemberKey>,
    request: NodeIdRequest,
    encoded: Vec<u8>,
    /// The latest reply from each member (a member answers once per ask).
    replies: BTreeMap<MemberKey, Signed<Reply>>,
    certificate: Option<NodeCertificate>,
    next_ask: Instant,
}

impl Asking {
    /// Asks `members` of `network` for the id of `request`, first at `now`.
    pub fn new(
        now: Instant,
        network: NetworkId,
        members: Vec<MemberKey>,
        request: NodeIdRequest,
    ) -> Asking {
        let encoded = schema::encode(&Message::Request(request.clone()));
        Asking {
            network,
            members,
            request,
            encoded,
            replies: BTreeMap::new(),
            certificate: None,
            next_ask: now,
        }
    }

    /// The request.
    pub fn request(&self) -> &NodeIdRequest {
        &self.request
    }

    /// The request as sent.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The certificate, once a quorum of matching replies came.
    pub fn certificate(&self) -> Option<&NodeCertificate> {
        self.certificate.as_ref()
    }

    /// Replies held (at most one per member).
    pub fn replies(&self) -> usize {
        self.replies.len()
    }

    /// True when the request should go out (again) at `now`; the next time is then armed.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.certificate.is_some() || now < self.next_ask {
            return false;
        }
        self.next_ask = now.checked_add(ASK_EVERY).unwrap_or(now);
        true
    }

    /// When the request goes out again, while it has no certificate.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.certificate.is_none().then_some(self.next_ask)
    }

    /// Takes a message a member sent back: a reply to this request, from a member, correctly
    /// signed, is kept; `Ok(true)` when it completed the certificate.
    pub fn on_reply(&mut self, bytes: &[u8]) -> Result<bool, Refusal> {
        let Message::Reply(reply) = schema::decode(bytes)? else {
            return Err(Refusal::Unexpected);
        };
        if reply.body.digest != self.request.digest() {
            return Err(Refusal::Stale);
        }
        if !self.members.contains(&reply.body.member) {
            return Err(Refusal::NonMember);
        }
        if !reply.verify(&self.network) {
            return Err(Refusal::BadSignature);
        }
        if self.certificate.is_some() {
            return Ok(false);
        }
        self.replies.insert(reply.body.member, reply);
        let replies: Vec<Signed<Reply>> = self.replies.values().cloned().collect();
        self.certificate = certificate::gather(&self.network, &self.members, &replies);
        Ok(self.certificate.is_some())
    }
}

/// The bytes of a certificate as a peer record carries it: the sorted replies, msgpack.
pub fn certificate_bytes(certificate: &NodeCertificate) -> Vec<u8> {
    rmp_serde::to_vec(&certificate.replies).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::ids::NodeId;
    use crate::consensus::signed::{member_key, sign};
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_quorum_of_matching_signed_replies_makes_the_certificate_and_forgeries_do_not_count() {
        let keys: Vec<SigningKey> = (1..=4u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let members: Vec<MemberKey> = keys.iter().map(member_key).collect();
        let network = NetworkId::of_genesis(&members);
        let request = NodeIdRequest {
            key: [9; 32],
            addresses: vec!["127.0.0.1:7700".parse().unwrap()],
            salt: 0,
        };
        let start = Instant::now();
        let mut asking = Asking::new(start, network, members.clone(), request.clone());
        assert!(asking.due(start));
        assert!(!asking.due(start), "once per period");
        let reply = |key: &SigningKey, node_id: u8| {
            schema::encode(&Message::Reply(sign(
                key,
                &network,
                Reply {
                    digest: request.digest(),
                    node_id: NodeId([node_id; 20]),
                    network,
                    members: 4,
                    height: 1,
                    member: member_key(key),
                },
            )))
        };
        let outsider = SigningKey::from_bytes(&[42; 32]);
        assert_eq!(
            asking.on_reply(&reply(&outsider, 1)),
            Err(Refusal::NonMember)
        );
        assert_eq!(asking.on_reply(&reply(&keys[0], 1)), Ok(false));
        assert_eq!(asking.on_reply(&reply(&keys[1], 2)), Ok(false), "disagrees");
        assert_eq!(asking.on_reply(&reply(&keys[2], 1)), Ok(false));
        assert_eq!(asking.on_reply(&reply(&keys[3], 1)), Ok(true));
        let certificate = asking.certificate().unwrap();
        assert_eq!(certificate.node_id, NodeId([1; 20]));
        assert_eq!(certificate.replies.len(), 3);
        assert_eq!(asking.poll_timeout(), None);
    }
}
