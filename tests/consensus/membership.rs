//! The trust root and membership (PROTOCOL.md §11, issue 14 points 2 and 6): the member-list
//! chain verified from genesis, certificates accepted from the current members only, the pinned
//! network id; in the simulator, a silent member voted out, a node voted in, and a Byzantine
//! member unable to vote out a live honest one. The cluster checks after every step that every
//! list in every honest chain verifies and is the one the log decided.

use crate::cluster::{Cluster, Options, Role};
use crate::sim::for_each_seed;
use ed25519_dalek::SigningKey;
use std::time::Duration;
use weft::consensus::certificate::{self, AcceptError};
use weft::consensus::ids::{MemberKey, NetworkId, NodeId, RequestDigest};
use weft::consensus::schema::Reply;
use weft::consensus::signed::{Signed, member_key, sign};
use weft::consensus::trust::{
    Endorsement, Link, MemberList, MemberListChain, NetworkPin, Pinned, TrustError,
};

fn keys(n: u8) -> Vec<SigningKey> {
    (1..=n).map(|i| SigningKey::from_bytes(&[i; 32])).collect()
}

fn link(signers: &[SigningKey], network: NetworkId, epoch: u64, members: &[MemberKey]) -> Link {
    let mut members = members.to_vec();
    members.sort_unstable();
    let list = MemberList {
        network,
        epoch,
        height: 10 * epoch + 1,
        members,
    };
    let endorsements = signers
        .iter()
        .map(|key| {
            let body = Endorsement {
                epoch,
                list: list.digest(),
                member: member_key(key),
            };
            sign(key, &network, body)
        })
        .collect();
    Link { list, endorsements }
}

#[test]
fn a_lone_members_genesis_is_itself() {
    let key = member_key(&keys(1)[0]);
    let network = NetworkId::of_genesis(&[key]);
    let current = MemberListChain::new(&[key]).verify(&network).unwrap();
    assert_eq!(current.members, vec![key]);
    assert_eq!((current.epoch, current.quorum()), (0, 1));
}

#[test]
fn the_chain_verifies_from_genesis_and_refuses_what_does_not_follow() {
    let keys = keys(5);
    let members: Vec<MemberKey> = keys.iter().map(member_key).collect();
    let genesis = &members[..4];
    let network = NetworkId::of_genesis(genesis);
    let mut chain = MemberListChain::new(genesis);
    // Three of four endorse a list without the fourth; then three of those three add the fifth.
    chain
        .links
        .push(link(&keys[..3], network, 1, &members[..3]));
    let mut five = members[..3].to_vec();
    five.push(members[4]);
    chain.links.push(link(&keys[..3], network, 2, &five));
    let current = chain.verify(&network).unwrap();
    assert_eq!(current.epoch, 2);
    assert!(current.contains(&members[4]) && !current.contains(&members[3]));

    let other = NetworkId::of_genesis(&members[1..]);
    assert!(matches!(
        chain.verify(&other),
        Err(TrustError::WrongGenesis(_))
    ));

    let mut short = MemberListChain::new(genesis);
    short
        .links
        .push(link(&keys[..2], network, 1, &members[..3]));
    assert_eq!(
        short.verify(&network),
        Err(TrustError::TooFewEndorsements {
            epoch: 1,
            have: 2,
            need: 3
        })
    );
    // A non-member's endorsement and a repeated one do not count.
    let mut padded = link(&keys[..2], network, 1, &members[..3]);
    let extra = link(
        &[keys[4].clone(), keys[0].clone()],
        network,
        1,
        &members[..3],
    );
    padded.endorsements.extend(extra.endorsements);
    let mut chain2 = MemberListChain::new(genesis);
    chain2.links.push(padded);
    assert!(matches!(
        chain2.verify(&network),
        Err(TrustError::TooFewEndorsements { have: 2, .. })
    ));
    let mut skipped = MemberListChain::new(genesis);
    skipped
        .links
        .push(link(&keys[..3], network, 2, &members[..3]));
    assert_eq!(
        skipped.verify(&network),
        Err(TrustError::OutOfSequence { epoch: 2 })
    );
}

fn replies(keys: &[SigningKey], network: NetworkId, members: u32) -> Vec<Signed<Reply>> {
    keys.iter()
        .map(|key| {
            let body = Reply {
                digest: RequestDigest([9; 32]),
                node_id: NodeId([8; 20]),
                network,
                members,
                height: 3,
                member: member_key(key),
            };
            sign(key, &network, body)
        })
        .collect()
}

#[test]
fn a_certificate_is_accepted_from_the_current_members_only() {
    let keys = keys(4);
    let members: Vec<MemberKey> = keys.iter().map(member_key).collect();
    let network = NetworkId::of_genesis(&members);
    let mut chain = MemberListChain::new(&members);
    let old = replies(&keys[..3], network, 4);
    assert!(certificate::accept(&chain, &network, &old).is_ok());
    chain
        .links
        .push(link(&keys[..3], network, 1, &members[..3]));
    assert!(matches!(
        certificate::accept(&chain, &network, &old),
        Err(AcceptError::Certificate(_))
    ));
    let new = replies(&keys[..3], network, 3);
    assert!(certificate::accept(&chain, &network, &new).is_ok());
    let foreign = NetworkId([1; 32]);
    assert!(matches!(
        certificate::accept(&chain, &foreign, &new),
        Err(AcceptError::Chain(TrustError::WrongGenesis(_)))
    ));
}

#[test]
fn the_first_network_id_is_pinned_and_a_later_mismatch_refused() {
    let mut pin = NetworkPin::unpinned();
    assert_eq!(pin.check(NetworkId([1; 32])), Ok(Pinned::First));
    assert_eq!(pin.check(NetworkId([1; 32])), Ok(Pinned::Same));
    let refused = pin.check(NetworkId([2; 32])).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("this node trusts network 0101")
    );
    assert_eq!(pin.pinned(), Some(NetworkId([1; 32])));
    let mut configured = NetworkPin::to(NetworkId([3; 32]));
    assert!(configured.check(NetworkId([1; 32])).is_err());
}

fn membership_options(arrivals: Duration) -> Options {
    Options {
        keepalive: Duration::from_secs(1),
        arrivals,
        even: true,
        ..Options::default()
    }
}

#[test]
fn a_silent_member_of_four_is_voted_out_and_three_keep_issuing() {
    for_each_seed(|seed| {
        let roles = [Role::Honest, Role::Silent, Role::Honest, Role::Honest];
        let options = membership_options(Duration::from_secs(15));
        let mut cluster = Cluster::with(seed, &roles, 4, crate::lossy(), options);
        cluster.run_until_issued(crate::LIMIT);
        let silent = cluster.members[1];
        for list in cluster.lists() {
            assert_eq!(list.len(), 3, "the silent member is voted out");
            assert!(!list.contains(&silent));
        }
        let late = cluster
            .clients
            .iter()
            .filter(|c| c.roster.len() == 3)
            .count();
        assert!(late > 0, "no id was issued by the three");
        assert_eq!(cluster.issued_ids().len(), 4);
    });
}

#[test]
fn a_new_node_joins_four_and_takes_part() {
    for_each_seed(|seed| {
        let roles = [
            Role::Honest,
            Role::Honest,
            Role::Honest,
            Role::Honest,
            Role::Joiner,
        ];
        let options = membership_options(Duration::from_secs(12));
        let mut cluster = Cluster::with(seed, &roles, 4, crate::lossy(), options);
        cluster.run_until_issued(crate::LIMIT);
        let joiner = cluster.members[4];
        for list in cluster.lists() {
            assert_eq!(list.len(), 5, "the node is voted in");
            assert!(list.contains(&joiner));
        }
        // Any signed reply of the new member as one of five counts, also one that came after
        // the client's quorum (which of five replies come first is the wire's choice).
        let answered = cluster
            .clients
            .iter()
            .any(|c| c.answered_by.contains(&(joiner, 5)));
        assert!(answered, "the new member never answered a client");
    });
}

#[test]
fn a_byzantine_member_cannot_vote_out_an_honest_live_one() {
    for_each_seed(|seed| {
        let roles = [Role::Evictor, Role::Honest, Role::Honest, Role::Honest];
        let options = membership_options(Duration::from_secs(8));
        let mut cluster = Cluster::with(seed, &roles, 3, crate::lossy(), options);
        cluster.run_until_issued(crate::LIMIT);
        for list in cluster.lists() {
            assert_eq!(list.len(), 4, "a live honest member was voted out");
        }
    });
}
