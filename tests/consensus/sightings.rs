//! Sightings are checked once each, and only those a batch can carry (docs/CONSENSUS.md,
//! Performance): a batch carries the sightings of the f+1 lowest member keys, so those are
//! checked as they arrive (a forged one refused and counted at once, off the path from a
//! proposal to its prevote); another member's waits until a batch needs it. A proposer
//! checks the f+1 it puts in its batch that it has not checked and drops a forged one,
//! counted, proposing the request with another member's; a member checks the ones a proposal
//! carries that it has not checked before, and prevotes nil on a forged one, counted.

use ed25519_dalek::SigningKey;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::consensus::ids::{MemberKey, NetworkId, NodeIdRequest};
use weft::consensus::member::{Member, MemberConfig, Peer};
use weft::consensus::schema::{self, Message, Proposal, Refusal, Sighting, Vote, VoteKind};
use weft::consensus::signed::{Signature, Signed, member_key, sign};

const UNIX: u64 = 1_700_000_000;

/// Four members, keys in member order.
fn four() -> (Vec<SigningKey>, MemberConfig) {
    let mut keys: Vec<SigningKey> = (0..4u8)
        .map(|i| SigningKey::from_bytes(&[i + 40; 32]))
        .collect();
    keys.sort_by_key(member_key);
    let members: Vec<MemberKey> = keys.iter().map(member_key).collect();
    let config = MemberConfig {
        network: NetworkId::of_genesis(&members),
        members,
        round_base: Duration::from_millis(50),
        resend: Duration::from_secs(1),
    };
    (keys, config)
}

fn member(key: &SigningKey, config: &MemberConfig, now: Instant) -> Member {
    let mut member = Member::new(key.clone(), config.clone());
    member.set_wall_clock(now, UNIX);
    member
}

fn sent(member: &mut Member) -> Vec<Message> {
    std::iter::from_fn(|| member.poll_transmit())
        .filter_map(|t| schema::decode(&t.bytes).ok())
        .collect()
}

fn bad_signatures(member: &Member) -> u64 {
    member
        .refused()
        .get(&Refusal::BadSignature)
        .copied()
        .unwrap_or(0)
}

/// The first prevote a member sent.
fn prevote(messages: &[Message]) -> Vote {
    messages
        .iter()
        .find_map(|m| match m {
            Message::Vote(v) if v.body.kind == VoteKind::Prevote => Some(v.body.clone()),
            _ => None,
        })
        .expect("a prevote")
}

/// A request from `source`, its key all `key`.
fn request_from(source: &str, key: u8) -> (SocketAddr, NodeIdRequest) {
    let source: SocketAddr = source.parse().unwrap();
    let request = NodeIdRequest {
        key: [key; 32],
        addresses: vec![source],
        salt: 0,
    };
    (source, request)
}

/// `key`'s sighting of `request` from `source`.
fn sighting_by(
    key: &SigningKey,
    config: &MemberConfig,
    request: &NodeIdRequest,
    source: SocketAddr,
) -> Signed<Sighting> {
    sign(
        key,
        &config.network,
        Sighting {
            digest: request.digest(),
            source,
            member: member_key(key),
        },
    )
}

/// The message that shares `sighting` of `request` with the other members.
fn shared(request: &NodeIdRequest, sighting: Signed<Sighting>) -> Vec<u8> {
    schema::encode(&Message::Sighting {
        request: request.clone(),
        sighting,
    })
}

#[test]
fn a_forged_sighting_is_dropped_by_the_proposer_and_refused_in_a_proposal() {
    let (keys, config) = four();
    let members = config.members.clone();
    let now = Instant::now();
    let (source, request) = request_from("192.0.2.7:7000", 7);
    let sighting = |key: &SigningKey| sighting_by(key, &config, &request, source);
    let shared = |sighting: Signed<Sighting>| shared(&request, sighting);
    let mut forged = sighting(&keys[0]);
    forged.signature = Signature([9; 64]);
    // Height 1's round-0 proposer is the second member. It saw the request itself and gets
    // the first member's sighting (forged: it sorts first, so a batch would take it, and it is
    // checked and refused as it arrives) and the third's (not checked until a batch needs it).
    let mut proposer = member(&keys[1], &config, now);
    let inputs = [
        (
            Peer::Client(source),
            schema::encode(&Message::Request(request.clone())),
        ),
        (Peer::Member(members[0]), shared(forged)),
        (Peer::Member(members[2]), shared(sighting(&keys[2]))),
    ];
    proposer.handle_batch(now, inputs.iter().map(|(from, bytes)| (*from, &bytes[..])));
    let out = sent(&mut proposer);
    let proposal: Signed<Proposal> = out
        .iter()
        .find_map(|m| match m {
            Message::Proposal(p) => Some(p.clone()),
            _ => None,
        })
        .expect("the second member proposes height 1");
    let entries = &proposal.body.batch.entries;
    assert_eq!(entries.len(), 1, "the request is proposed all the same");
    let by: Vec<MemberKey> = entries[0].sightings.iter().map(|s| s.body.member).collect();
    assert_eq!(
        by,
        vec![members[1], members[2]],
        "the forged sighting left out"
    );
    assert_eq!(bad_signatures(&proposer), 1, "the forgery counted once");

    // The fourth member checks both sightings (it holds neither) and prevotes for the batch.
    let mut honest = member(&keys[3], &config, now);
    let bytes = schema::encode(&Message::Proposal(proposal.clone()));
    honest.handle(now, Peer::Member(members[1]), &bytes);
    let vote = prevote(&sent(&mut honest));
    assert_eq!(vote.value, Some(proposal.body.batch.id()));
    assert_eq!(bad_signatures(&honest), 0);

    // The same batch with the third member's sighting forged, signed by the proposer: refused,
    // counted, a nil prevote.
    let mut body = proposal.body.clone();
    body.batch.entries[0].sightings[1].signature = Signature([9; 64]);
    let bad = sign(&keys[1], &config.network, body);
    let mut checker = member(&keys[3], &config, now);
    let bytes = schema::encode(&Message::Proposal(bad));
    checker.handle(now, Peer::Member(members[1]), &bytes);
    let vote = prevote(&sent(&mut checker));
    assert_eq!(
        vote.value, None,
        "a batch with a forged sighting gets a nil prevote"
    );
    assert_eq!(bad_signatures(&checker), 1);
}

/// Only the sightings a batch can carry (the f+1 lowest member keys') are checked as they
/// arrive: a forged one from the lowest member is refused at once, a forged one from the
/// highest is held unchecked (checking it would cost a verification no batch needs) and
/// found only if a batch would carry it.
#[test]
fn only_the_sightings_a_batch_carries_are_checked_as_they_arrive() {
    let (keys, config) = four();
    let members = config.members.clone();
    let now = Instant::now();
    let (source, request) = request_from("192.0.2.8:7000", 8);
    let forged = |key: &SigningKey| {
        let mut sighting = sighting_by(key, &config, &request, source);
        sighting.signature = Signature([9; 64]);
        shared(&request, sighting)
    };
    let mut checker = member(&keys[2], &config, now);
    checker.handle(now, Peer::Member(members[3]), &forged(&keys[3]));
    assert_eq!(
        bad_signatures(&checker),
        0,
        "the highest key's is held unchecked"
    );
    assert_eq!(checker.pending(), 1);
    checker.handle(now, Peer::Member(members[0]), &forged(&keys[0]));
    assert_eq!(
        bad_signatures(&checker),
        1,
        "the lowest key's is checked at once"
    );
}
