//! A node asking the cluster for its id (PROTOCOL.md §11): the request it sends to every member,
//! the signed replies it gathers, and the certificate once a quorum of them match. The node's
//! own consensus service and `weft id request` both use it; neither trusts a reply it cannot
//! verify against the member list it holds.

use super::certificate::{self, NodeCertificate};
use super::faults;
use super::ids::{MemberKey, NetworkId, NodeIdRequest};
use super::policy::{Limit, Nack};
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
    /// The latest signed refusal from each member.
    nacks: BTreeMap<MemberKey, Signed<Nack>>,
    next_ask: Instant,
}

/// A refusal f+1 members signed: the limit they name (one NACK is one member's word; f+1
/// matching ones include an honest member's, PROTOCOL.md §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The policy limit the request ran into.
    pub limit: Limit,
    /// When its window ends (Unix seconds): the earliest any of them names, retry after.
    pub until: u64,
    /// Members that signed it.
    pub members: usize,
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
            nacks: BTreeMap::new(),
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

    /// The members this request goes to.
    pub fn members(&self) -> &[MemberKey] {
        &self.members
    }

    /// The refusal, once f+1 members signed NACKs naming the same limit and no certificate
    /// came: the request is over a policy quota and asking again before `until` is futile.
    pub fn refused(&self) -> Option<Refused> {
        if self.certificate.is_some() {
            return None;
        }
        let need = faults(self.members.len()).saturating_add(1);
        let mut by_limit: BTreeMap<Limit, (usize, u64)> = BTreeMap::new();
        for nack in self.nacks.values() {
            let entry = by_limit
                .entry(nack.body.limit)
                .or_insert((0, nack.body.until));
            entry.0 = entry.0.saturating_add(1);
            entry.1 = entry.1.min(nack.body.until);
        }
        by_limit
            .into_iter()
            .find(|(_, (count, _))| *count >= need)
            .map(|(limit, (members, until))| Refused {
                limit,
                until,
                members,
            })
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

    /// Takes a message a member sent back: a reply to this request (or a NACK of it), from a
    /// member, correctly signed, is kept; `Ok(true)` when it completed the certificate.
    pub fn on_reply(&mut self, bytes: &[u8]) -> Result<bool, Refusal> {
        let reply = match schema::decode(bytes)? {
            Message::Reply(reply) => reply,
            Message::Nack(nack) => return self.on_nack(nack).map(|()| false),
            _ => return Err(Refusal::Unexpected),
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

impl Asking {
    fn on_nack(&mut self, nack: Signed<Nack>) -> Result<(), Refusal> {
        if nack.body.digest != self.request.digest() {
            return Err(Refusal::Stale);
        }
        if nack.body.network != self.network || !self.members.contains(&nack.body.member) {
            return Err(Refusal::NonMember);
        }
        if !nack.verify(&self.network) {
            return Err(Refusal::BadSignature);
        }
        // One per member (bounded by the member list): the latest counts.
        self.nacks.insert(nack.body.member, nack);
        Ok(())
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

    /// Four members, their network and a request to ask them.
    fn fixture() -> (Vec<SigningKey>, Vec<MemberKey>, NetworkId, NodeIdRequest) {
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
        (keys, members, network, request)
    }

    #[test]
    fn a_quorum_of_matching_signed_replies_makes_the_certificate_and_forgeries_do_not_count() {
        let (keys, members, network, request) = fixture();
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

    #[test]
    fn f_plus_one_matching_signed_nacks_refuse_the_request_and_forged_ones_do_not_count() {
        use crate::consensus::policy::Family;
        let (keys, members, network, request) = fixture();
        let mut asking = Asking::new(Instant::now(), network, members, request.clone());
        let limit = Limit::Prefix {
            family: Family::V4,
            bits: 24,
            quota: 24,
            period: 86_400,
        };
        let nack = |key: &SigningKey, digest, until| {
            schema::encode(&Message::Nack(sign(
                key,
                &network,
                Nack {
                    digest,
                    limit,
                    until,
                    network,
                    member: member_key(key),
                },
            )))
        };
        let digest = request.digest();
        assert_eq!(asking.on_reply(&nack(&keys[0], digest, 900)), Ok(false));
        assert_eq!(
            asking.refused(),
            None,
            "one member's word is not enough (f = 1)"
        );
        let mut forged = nack(&keys[1], digest, 900);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(asking.on_reply(&forged), Err(Refusal::BadSignature));
        let other = NodeIdRequest { salt: 1, ..request };
        assert_eq!(
            asking.on_reply(&nack(&keys[1], other.digest(), 900)),
            Err(Refusal::Stale)
        );
        let outsider = SigningKey::from_bytes(&[42; 32]);
        assert_eq!(
            asking.on_reply(&nack(&outsider, digest, 900)),
            Err(Refusal::NonMember)
        );
        assert_eq!(asking.refused(), None);
        assert_eq!(asking.on_reply(&nack(&keys[1], digest, 800)), Ok(false));
        assert_eq!(
            asking.refused(),
            Some(Refused {
                limit,
                until: 800,
                members: 2
            })
        );
    }
}
