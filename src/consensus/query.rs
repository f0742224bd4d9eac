//! Questions anyone may ask a node about its cluster (`weft cluster status`, and the first
//! contact of `weft id request`): the network id, the member list and where the member stands.
//!
//! Kept out of the agreement schema ([`super::schema`]) on purpose: these messages carry no
//! signature and change nothing, so they start with their own version byte, [`QUERY_VERSION`],
//! which the member's decoder refuses as an unknown version; the service routes on that byte.
//! The member list a report carries is a list of signed peer records; the asker checks that
//! their keys hash to the network id it pins (PROTOCOL.md §11, trust root).

use super::ids::{MemberKey, NetworkId};
use super::trust::MemberListChain;
use serde::{Deserialize, Serialize};

/// The first byte of a query or a report (the agreement schema's is 1).
pub const QUERY_VERSION: u8 = 0x81;

/// The longest query message accepted, checked before decoding: sixteen peer records (96 KiB)
/// and a member-list chain as long as a member document may carry (its 1 MiB of hex is 512 KiB
/// of bytes, `bootstrap::MAX_DOCUMENT_BYTES`); a longer chain is refused rather than decoded.
pub const MAX_QUERY_BYTES: usize = (512 + 96) * 1024;

/// The most member records a report may carry (the schema's bound on members).
pub const MAX_REPORT_MEMBERS: usize = super::schema::MAX_MEMBERS;

/// What a node reports of its cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The network the node belongs to.
    pub network: Option<NetworkId>,
    /// The members' signed peer records (`PeerRecord::to_bytes`), sorted by key.
    pub members: Vec<Vec<u8>>,
    /// The answering node's own key when it is a member.
    pub member: Option<MemberKey>,
    /// The height it is deciding.
    pub height: u64,
    /// Its round in that height, once the height started.
    pub round: Option<u32>,
    /// The last decided height and how long ago it was decided, in milliseconds.
    pub last_decision: Option<(u64, u64)>,
    /// Requests waiting for a proposal.
    pub pending: u64,
    /// Ids this member has seen issued since it started.
    pub issued: u64,
    /// The member-list chain from genesis the node holds (PROTOCOL.md §11, trust root): a
    /// member's decided chain, a client's learned one; `None` when it holds none (a node
    /// configured with a later list that has not learned it) or from an older build.
    #[serde(default)]
    pub chain: Option<MemberListChain>,
}

/// A query or its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// "How does your cluster stand?"
    Status,
    /// The answer.
    Report(Report),
}

/// Encodes a query: the version byte, then msgpack.
pub fn encode(query: &Query) -> Vec<u8> {
    let mut out = vec![QUERY_VERSION];
    out.extend_from_slice(&rmp_serde::to_vec(query).unwrap_or_default());
    out
}

/// Decodes a query from a peer: the size bound, the version, msgpack, then the list bound.
/// `None` for anything else (the caller counts it as malformed).
pub fn decode(bytes: &[u8]) -> Option<Query> {
    if bytes.len() > MAX_QUERY_BYTES {
        return None;
    }
    let (&version, body) = bytes.split_first()?;
    if version != QUERY_VERSION {
        return None;
    }
    let query: Query = rmp_serde::from_slice(body).ok()?;
    match &query {
        Query::Report(report) if report.members.len() > MAX_REPORT_MEMBERS => None,
        _ => Some(query),
    }
}

/// True when `bytes` start as a query (the service routes on it before decoding).
pub fn is_query(bytes: &[u8]) -> bool {
    bytes.first() == Some(&QUERY_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_and_a_long_list_is_refused() {
        let report = Report {
            network: Some(NetworkId([3; 32])),
            members: vec![vec![1, 2, 3]],
            member: Some(MemberKey([4; 32])),
            height: 9,
            round: Some(1),
            last_decision: Some((8, 12)),
            pending: 2,
            issued: 5,
            chain: Some(MemberListChain::new(&[MemberKey([4; 32])])),
        };
        let bytes = encode(&Query::Report(report.clone()));
        assert!(is_query(&bytes));
        assert_eq!(decode(&bytes), Some(Query::Report(report.clone())));
        assert_eq!(decode(&encode(&Query::Status)), Some(Query::Status));
        let long = Report {
            members: vec![Vec::new(); MAX_REPORT_MEMBERS + 1],
            ..report
        };
        assert_eq!(decode(&encode(&Query::Report(long))), None);
        assert_eq!(decode(&[QUERY_VERSION, 0xc1]), None);
        assert_eq!(decode(&[1]), None);
        assert_eq!(decode(&vec![QUERY_VERSION; MAX_QUERY_BYTES + 1]), None);
    }

    proptest::proptest! {
        /// Any bytes after the version byte: refused or decoded, never a panic; what decodes
        /// encodes back to the same query.
        #[test]
        fn any_bytes_are_refused_or_round_trip(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut bytes = vec![QUERY_VERSION];
            bytes.extend_from_slice(&body);
            if let Some(query) = decode(&bytes) {
                proptest::prop_assert_eq!(decode(&encode(&query)), Some(query));
            }
        }
    }
}
