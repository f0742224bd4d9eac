//! The consensus service's own message schema (PROTOCOL.md §11), on its own channels: msgpack
//! (rmp-serde) after one version byte. The size bound is checked before any decoding and every
//! list a peer sends is bounded after it; what fails is refused with a [`Refusal`] to count.

use super::ids::{
    MAX_REQUEST_ADDRESSES, MemberKey, NetworkId, NodeId, NodeIdRequest, RequestDigest,
};
use super::policy::Nack;
use super::signed::{Signable, Signed};
use super::trust::{Endorsement, Link};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The schema version this build speaks: the first byte of every message.
pub const SCHEMA_VERSION: u8 = 1;

/// The longest message accepted, checked before decoding.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The most requests one proposal may batch.
pub const MAX_BATCH: usize = 64;

pub use super::MAX_MEMBERS;

/// The most membership changes one batch may carry: one, so the quorum of every height follows
/// from one list.
pub const MAX_CHANGES: usize = 1;

/// The most chain links one message carries.
pub const MAX_LINKS_PER_MESSAGE: usize = 8;

/// Identifies a batch: BLAKE3 of its canonical encoding.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BatchId(#[serde(with = "super::bin")] pub [u8; 32]);

impl std::fmt::Display for BatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A member's signed statement that it received a request itself, from `source` (PROTOCOL.md
/// §11, first-hand sightings): the address the policy counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sighting {
    /// The request seen.
    pub digest: RequestDigest,
    /// Where it came from, as the member's own channel saw it.
    pub source: SocketAddr,
    /// The member that saw it.
    pub member: MemberKey,
}

/// Prevote or precommit.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// First vote of a round.
    Prevote,
    /// Second vote; a quorum of them commits.
    Precommit,
}

/// A vote of one member in one round; `value` `None` is a vote for nil.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Vote {
    /// The height voted on.
    pub height: u64,
    /// The round.
    pub round: u32,
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The batch voted for, or nil.
    pub value: Option<BatchId>,
    /// Who votes.
    pub voter: MemberKey,
}

/// A request with the sightings that let it into a proposal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The request.
    pub request: NodeIdRequest,
    /// At least f+1 sightings of it from distinct members, naming one source.
    pub sightings: Vec<Signed<Sighting>>,
}

/// The value a height decides: a batch of requests, and the canonical commit certificate of the
/// height before (the precommits sorted by voter), from which the ids of that height's requests
/// derive.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Batch {
    /// The height it is proposed for.
    pub height: u64,
    /// Requests it orders.
    pub entries: Vec<Entry>,
    /// Precommits of the previous height for its decided batch, sorted by voter.
    pub last_commit: Vec<Signed<Vote>>,
    /// The proposer's clock (Unix seconds), never before the previous batch's: the time the
    /// policy counts its requests at (PROTOCOL.md §11, per period).
    pub time: u64,
    /// Membership changes it decides (at most [`MAX_CHANGES`]); the new member list decides
    /// from the next height on.
    pub changes: Vec<Change>,
}

/// A change of the member list, ordered in the same log as requests (PROTOCOL.md §11,
/// Membership).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Change {
    /// A node with a certified id, voted in.
    Add(Signed<Application>),
    /// A member voted out, each voter on its own evidence of missed keep-alives.
    Remove(MemberKey),
}

/// A node's application to join: its request and the certificate of its id, signed with the
/// node's key (so only the key's holder applies).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Application {
    /// The request its id was issued for: its key is the applicant's member key.
    pub request: NodeIdRequest,
    /// A quorum of the current members' replies for that request.
    pub certificate: Vec<Signed<Reply>>,
}

impl Signable for Application {
    const DOMAIN: &'static str = "weft v1 consensus application";
    fn signer(&self) -> MemberKey {
        MemberKey(self.request.key)
    }
}

/// A member's keep-alive (PROTOCOL.md §11, Membership): sent to every member every keep-alive
/// period, and at once to a member that asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepAlive {
    /// How many members the sender counts.
    pub members: u32,
    /// The sender's verified member-list chain length (its current list's epoch).
    pub epoch: u64,
    /// The height it is deciding.
    pub height: u64,
    /// True when the sender has not heard from the receiver and asks it to answer.
    pub ask: bool,
}

impl Batch {
    /// Its id: BLAKE3 of its canonical encoding.
    pub fn id(&self) -> BatchId {
        let bytes = rmp_serde::to_vec(self).unwrap_or_default();
        BatchId(
            *blake3::Hasher::new_derive_key("weft v1 batch id")
                .update(&bytes)
                .finalize()
                .as_bytes(),
        )
    }
}

/// A proposer's proposal for one round.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Proposal {
    /// The height.
    pub height: u64,
    /// The round.
    pub round: u32,
    /// The round of the polka that lets a locked value be proposed again, if any.
    pub pol_round: Option<u32>,
    /// The batch.
    pub batch: Batch,
    /// Who proposes.
    pub proposer: MemberKey,
}

/// A member's signed answer to a client once the request's id is final (PROTOCOL.md §11,
/// Reply): a quorum of matching ones is the node's certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reply {
    /// The request answered.
    pub digest: RequestDigest,
    /// The id issued.
    pub node_id: NodeId,
    /// The network that issued it.
    pub network: NetworkId,
    /// How many members the network has.
    pub members: u32,
    /// The height that ordered the request.
    pub height: u64,
    /// The member that answers.
    pub member: MemberKey,
}

impl Signable for Sighting {
    const DOMAIN: &'static str = "weft v1 consensus sighting";
    fn signer(&self) -> MemberKey {
        self.member
    }
}

impl Signable for Vote {
    const DOMAIN: &'static str = "weft v1 consensus vote";
    fn signer(&self) -> MemberKey {
        self.voter
    }
}

impl Signable for Proposal {
    const DOMAIN: &'static str = "weft v1 consensus proposal";
    fn signer(&self) -> MemberKey {
        self.proposer
    }
}

impl Signable for Reply {
    const DOMAIN: &'static str = "weft v1 consensus reply";
    fn signer(&self) -> MemberKey {
        self.member
    }
}

/// Every message of the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Client to every member: issue an id.
    Request(NodeIdRequest),
    /// Member to members: a first-hand sighting, with the request it names.
    Sighting {
        /// The request.
        request: NodeIdRequest,
        /// The signed sighting.
        sighting: Signed<Sighting>,
    },
    /// Member to members: a proposal.
    Proposal(Signed<Proposal>),
    /// Member to members: a vote.
    Vote(Signed<Vote>),
    /// Member to a member that lags: a decided proposal and the precommits that decided it.
    Decided {
        /// The decided proposal.
        proposal: Signed<Proposal>,
        /// A quorum of precommits for it.
        commit: Vec<Signed<Vote>>,
    },
    /// Member to a member that is ahead: send the decision of this height.
    Ask {
        /// The height the asker is deciding.
        height: u64,
    },
    /// Member to client: the id, signed.
    Reply(Signed<Reply>),
    /// Member to client: the request is over a quota, signed, naming the limit.
    Nack(Signed<Nack>),
    /// Member to members: alive, with its member count.
    KeepAlive(KeepAlive),
    /// Node to every member: let me join.
    Apply(Signed<Application>),
    /// Member to members: its endorsement of a new member list.
    Endorse(Signed<Endorsement>),
    /// Member to member: chain links the receiver lacks.
    Links(Vec<Link>),
}

/// Why a message was refused; each is counted under its label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// Longer than [`MAX_MESSAGE_BYTES`].
    Oversized,
    /// A version byte this build does not speak.
    UnknownVersion,
    /// Not a well-formed message, or a list past its bound.
    Malformed,
    /// Signed by, or sent by, a key that is not a member.
    NonMember,
    /// A bad signature.
    BadSignature,
    /// For a height already decided and answered, or too far ahead.
    Stale,
    /// Out of place: a member message from a client, a vote the engine refused, a request
    /// beyond a pending bound.
    Unexpected,
    /// Member traffic on a channel whose peer id no encrypted session proved (a plaintext peer
    /// on an `allow_plaintext` node claiming a member's id).
    Unauthenticated,
    /// A client's message past its source's rate (address or prefix): each may cost the
    /// member a signature (a sighting, a reply, a NACK), so a flood must not buy them all.
    Rate,
}

impl Refusal {
    /// Every refusal, for tables and metrics.
    pub const ALL: [Refusal; 9] = [
        Refusal::Oversized,
        Refusal::UnknownVersion,
        Refusal::Malformed,
        Refusal::NonMember,
        Refusal::BadSignature,
        Refusal::Stale,
        Refusal::Unexpected,
        Refusal::Unauthenticated,
        Refusal::Rate,
    ];

    /// Its metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Oversized => "oversized",
            Refusal::UnknownVersion => "unknown_version",
            Refusal::Malformed => "malformed",
            Refusal::NonMember => "non_member",
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale => "stale",
            Refusal::Unexpected => "unexpected",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::Rate => "rate",
        }
    }
}

/// Encodes a message: the version byte, then msgpack.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = vec![SCHEMA_VERSION];
    // Writing our own values into a Vec does not fail.
    out.extend_from_slice(&rmp_serde::to_vec(message).unwrap_or_default());
    out
}

/// Decodes a message from a peer: the size bound first, then the version, then msgpack, then
/// every list's bound.
pub fn decode(bytes: &[u8]) -> Result<Message, Refusal> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Refusal::Oversized);
    }
    let (&version, body) = bytes.split_first().ok_or(Refusal::Malformed)?;
    if version != SCHEMA_VERSION {
        return Err(Refusal::UnknownVersion);
    }
    let message: Message = rmp_serde::from_slice(body).map_err(|_| Refusal::Malformed)?;
    if within_bounds(&message) {
        Ok(message)
    } else {
        Err(Refusal::Malformed)
    }
}

fn request_ok(request: &NodeIdRequest) -> bool {
    !request.addresses.is_empty() && request.addresses.len() <= MAX_REQUEST_ADDRESSES
}

fn application_ok(application: &Application) -> bool {
    request_ok(&application.request) && application.certificate.len() <= MAX_MEMBERS
}

fn batch_ok(batch: &Batch) -> bool {
    batch.changes.len() <= MAX_CHANGES
        && batch.changes.iter().all(|change| match change {
            Change::Add(application) => application_ok(&application.body),
            Change::Remove(_) => true,
        })
        && batch.entries.len() <= MAX_BATCH
        && batch.last_commit.len() <= MAX_MEMBERS
        && batch
            .entries
            .iter()
            .all(|entry| request_ok(&entry.request) && entry.sightings.len() <= MAX_MEMBERS)
}

fn within_bounds(message: &Message) -> bool {
    match message {
        Message::Request(request) | Message::Sighting { request, .. } => request_ok(request),
        Message::Proposal(proposal) => batch_ok(&proposal.body.batch),
        Message::Decided { proposal, commit } => {
            batch_ok(&proposal.body.batch) && commit.len() <= MAX_MEMBERS
        }
        Message::Apply(application) => application_ok(&application.body),
        Message::Links(links) => {
            links.len() <= MAX_LINKS_PER_MESSAGE
                && links.iter().all(|link| {
                    link.list.members.len() <= MAX_MEMBERS && link.endorsements.len() <= MAX_MEMBERS
                })
        }
        Message::Vote(_)
        | Message::Reply(_)
        | Message::Ask { .. }
        | Message::Nack(_)
        | Message::KeepAlive(_)
        | Message::Endorse(_) => true,
    }
}
