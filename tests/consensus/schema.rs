//! The consensus message schema (docs/CONSENSUS.md): its test vector, refusals before and
//! after decoding, a round-trip property and a no-panic property on arbitrary bytes, the id
//! derivation vector, and certificate verification.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use std::net::SocketAddr;
use weft::consensus::certificate::{self, CertificateError};
use weft::consensus::ids::{
    MemberKey, NetworkId, NodeId, NodeIdRequest, RequestDigest, derive_node_id,
};
use weft::consensus::policy::{Family, Limit, Nack};
use weft::consensus::schema::{
    self, MAX_MESSAGE_BYTES, Message, Refusal, Reply, SCHEMA_VERSION, Vote, VoteKind,
};
use weft::consensus::schema::{Application, KeepAlive};
use weft::consensus::signed::{Signed, member_key, sign};
use weft::consensus::trust::Endorsement;
use weft::consensus::{faults, quorum};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn vector_request() -> NodeIdRequest {
    NodeIdRequest {
        key: [0x11; 32],
        addresses: vec!["192.0.2.1:7700".parse().unwrap()],
        salt: 7,
    }
}

/// The vector docs/CONSENSUS.md prints: a request as the client sends it.
const REQUEST_VECTOR: &str = "0181a75265717565737493c42011111111111111111111111111111111111111111111111111111111111111119181a256349294ccc0000201cd1e1407";

#[test]
fn the_request_test_vector_encodes_as_documented() {
    let bytes = schema::encode(&Message::Request(vector_request()));
    assert_eq!(bytes[0], SCHEMA_VERSION);
    assert_eq!(hex(&bytes), REQUEST_VECTOR);
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONSENSUS.md"))
        .expect("docs/CONSENSUS.md");
    assert!(
        docs.contains(REQUEST_VECTOR),
        "docs/CONSENSUS.md shows another vector"
    );
    assert_eq!(
        schema::decode(&bytes),
        Ok(Message::Request(vector_request()))
    );
}

/// The id derivation of PROTOCOL.md §11, pinned: R = 32 bytes of 0x22, key 0x11…, salt 7.
#[test]
fn the_node_id_derivation_is_pinned() {
    let id = derive_node_id(&[0x22; 32], &[0x11; 32], 7);
    assert_eq!(hex(&id.0), NODE_ID_VECTOR);
    assert_ne!(
        derive_node_id(&[0x22; 32], &[0x11; 32], 8),
        id,
        "the salt counts"
    );
    assert_ne!(derive_node_id(&[0x23; 32], &[0x11; 32], 7), id, "R counts");
}

const NODE_ID_VECTOR: &str = "ef14e472ead577505d38218e4e62288999bb5441";

#[test]
fn quorum_follows_the_engine_threshold() {
    // More than two thirds: §11's formula for n = 1..5 and 7, one more for 6 (stricter, safe).
    let expected = [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (6, 5), (7, 5)];
    for (n, q) in expected {
        assert_eq!(quorum(n), q, "quorum of {n}");
        // Two quorums share more than f members: at least one honest.
        assert!(
            2 * q > n + faults(n),
            "quorums of {n} may not intersect in an honest member"
        );
    }
}

#[test]
fn refusals_before_and_after_decoding() {
    let good = schema::encode(&Message::Request(vector_request()));
    let mut oversized = good.clone();
    oversized.resize(MAX_MESSAGE_BYTES + 1, 0);
    assert_eq!(schema::decode(&oversized), Err(Refusal::Oversized));
    let mut version = good.clone();
    version[0] = SCHEMA_VERSION + 1;
    assert_eq!(schema::decode(&version), Err(Refusal::UnknownVersion));
    assert_eq!(schema::decode(&[]), Err(Refusal::Malformed));
    assert_eq!(
        schema::decode(&good[..good.len() - 1]),
        Err(Refusal::Malformed)
    );
    // A request naming too many addresses is refused after decoding.
    let mut many = vector_request();
    many.addresses = (0..9)
        .map(|p| SocketAddr::from(([192, 0, 2, 1], 7000 + p)))
        .collect();
    assert_eq!(
        schema::decode(&schema::encode(&Message::Request(many))),
        Err(Refusal::Malformed)
    );
    let mut none = vector_request();
    none.addresses.clear();
    assert_eq!(
        schema::decode(&schema::encode(&Message::Request(none))),
        Err(Refusal::Malformed)
    );
}

fn keys(n: u8) -> Vec<SigningKey> {
    (1..=n).map(|i| SigningKey::from_bytes(&[i; 32])).collect()
}

fn reply(key: &SigningKey, network: NetworkId, members: u32, node_id: NodeId) -> Signed<Reply> {
    sign(
        key,
        &network,
        Reply {
            digest: RequestDigest([3; 32]),
            node_id,
            network,
            members,
            height: 1,
            member: member_key(key),
        },
    )
}

#[test]
fn a_certificate_needs_a_quorum_of_matching_member_signatures() {
    let keys = keys(5);
    let (members_keys, outsider) = keys.split_at(4);
    let members: Vec<MemberKey> = members_keys.iter().map(member_key).collect();
    let network = NetworkId::of_genesis(&members);
    let id = NodeId([9; 20]);
    let replies: Vec<_> = members_keys
        .iter()
        .map(|k| reply(k, network, 4, id))
        .collect();
    let certificate = certificate::verify(&network, &members, &replies[..3]).expect("3 of 4");
    assert_eq!(certificate.node_id, id);
    assert_eq!(
        certificate::verify(&network, &members, &replies[..2]),
        Err(CertificateError::TooFew { have: 2, need: 3 })
    );
    // The same member twice is one.
    let twice = vec![replies[0].clone(), replies[0].clone(), replies[1].clone()];
    assert!(matches!(
        certificate::verify(&network, &members, &twice),
        Err(CertificateError::TooFew { have: 2, .. })
    ));
    let mut stranger = replies[..2].to_vec();
    stranger.push(reply(&outsider[0], network, 4, id));
    assert_eq!(
        certificate::verify(&network, &members, &stranger),
        Err(CertificateError::NonMember)
    );
    let mut second_id = replies[..3].to_vec();
    second_id[2] = reply(&members_keys[2], network, 4, NodeId([8; 20]));
    assert_eq!(
        certificate::verify(&network, &members, &second_id),
        Err(CertificateError::Mismatch)
    );
    let mut forged = replies[..3].to_vec();
    forged[2].body.node_id = id;
    forged[2].signature.0[0] ^= 1;
    assert_eq!(
        certificate::verify(&network, &members, &forged),
        Err(CertificateError::BadSignature)
    );
    // Signed for another network: not a signature here.
    let other = NetworkId([1; 32]);
    let mut elsewhere = replies[..2].to_vec();
    let mut body = reply(&members_keys[2], other, 4, id).body;
    body.network = network;
    elsewhere.push(Signed {
        signature: sign(&members_keys[2], &other, body.clone()).signature,
        body,
    });
    assert_eq!(
        certificate::verify(&network, &members, &elsewhere),
        Err(CertificateError::BadSignature)
    );
    // A client gathering mixed replies (one member signing a second id) still finds the quorum.
    let mut mixed = vec![reply(&members_keys[0], network, 4, NodeId([8; 20]))];
    mixed.extend(replies[1..].iter().cloned());
    let gathered = certificate::gather(&network, &members, &mixed).expect("3 honest replies");
    assert_eq!(gathered.node_id, id);
}

#[test]
fn the_network_id_ignores_order_and_duplicates() {
    let members: Vec<MemberKey> = keys(3).iter().map(member_key).collect();
    let mut shuffled = vec![members[2], members[0], members[1], members[0]];
    assert_eq!(
        NetworkId::of_genesis(&members),
        NetworkId::of_genesis(&shuffled)
    );
    shuffled.pop();
    shuffled.pop();
    assert_ne!(
        NetworkId::of_genesis(&members),
        NetworkId::of_genesis(&shuffled)
    );
}

fn vote_strategy() -> impl Strategy<Value = Vote> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<bool>(),
        any::<Option<[u8; 32]>>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(height, round, precommit, value, voter)| Vote {
            height,
            round,
            kind: if precommit {
                VoteKind::Precommit
            } else {
                VoteKind::Prevote
            },
            value: value.map(schema::BatchId),
            voter: MemberKey(voter),
        })
}

proptest! {
    #[test]
    fn messages_round_trip(
        key in any::<[u8; 32]>(),
        ports in proptest::collection::vec(any::<u16>(), 1..=8),
        salt in any::<u32>(),
        vote in vote_strategy(),
        signature in proptest::collection::vec(any::<u8>(), 64),
        numbers in any::<(u32, u64, u64, bool, u8)>(),
    ) {
        let request = NodeIdRequest {
            key,
            addresses: ports.iter().map(|p| SocketAddr::from(([198, 51, 100, 7], *p))).collect(),
            salt,
        };
        let message = Message::Request(request.clone());
        prop_assert_eq!(schema::decode(&schema::encode(&message)), Ok(message));
        let signature = weft::consensus::signed::Signature(signature.try_into().unwrap());
        let signed = Signed { body: vote, signature };
        let message = Message::Vote(signed);
        prop_assert_eq!(schema::decode(&schema::encode(&message)), Ok(message));
        // The policy and membership messages.
        let (count, epoch, height, ask, bits) = numbers;
        let keepalive = KeepAlive { members: count, epoch, height, ask };
        let nack = Nack {
            digest: RequestDigest(key),
            limit: if ask {
                Limit::Prefix { family: Family::V6, bits, quota: count, period: epoch }
            } else {
                Limit::Table { prefixes: count, period: epoch }
            },
            until: height,
            network: NetworkId(key),
            member: MemberKey(key),
        };
        let application = Application { request, certificate: Vec::new() };
        let endorsement = Endorsement { epoch, list: key, member: MemberKey(key) };
        for message in [
            Message::KeepAlive(keepalive),
            Message::Nack(Signed { body: nack, signature }),
            Message::Apply(Signed { body: application, signature }),
            Message::Endorse(Signed { body: endorsement, signature }),
        ] {
            prop_assert_eq!(schema::decode(&schema::encode(&message)), Ok(message));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut versioned = vec![SCHEMA_VERSION];
        versioned.extend_from_slice(&bytes);
        let _ = schema::decode(&bytes);
        let _ = schema::decode(&versioned);
    }
}
