//! The issuing policy (PROTOCOL.md §11, issue 14 point 4): exact quotas across members from the
//! decided log, also when requests from one prefix reach different members at once; a nil
//! prevote for a proposal over a quota; the signed NACK and its test vector.

use crate::cluster::{Cluster, Options, Role};
use crate::sim::for_each_seed;
use ed25519_dalek::SigningKey;
use std::net::SocketAddr;
use std::time::Duration;
use weft::consensus::config::MemberConfig;
use weft::consensus::ids::{MemberKey, NetworkId, NodeIdRequest, RequestDigest};
use weft::consensus::log::Log;
use weft::consensus::membership::{Membership, MembershipConfig};
use weft::consensus::policy::{Counters, Family, Limit, Nack, PolicyConfig};
use weft::consensus::schema::{self, Batch, Change, Entry, Message, Sighting};
use weft::consensus::signed::{member_key, sign};
use weft::consensus::validate::{self, Context};

/// 3 ids per IPv4 /24, the other limits out of the way.
fn three_per_24() -> PolicyConfig {
    PolicyConfig {
        ipv4: [8, 3, 1024],
        ..PolicyConfig::default()
    }
}

/// Six clients of one /24 arrive at the same instant: exactly three get ids, the other three a
/// signed NACK naming the /24 limit, whatever member each request reached first.
fn one_prefix_at_once(members_per_client: Option<usize>) {
    for_each_seed(|seed| {
        let options = Options {
            policy: three_per_24(),
            one_prefix_at_once: true,
            members_per_client,
            ..Options::default()
        };
        let mut cluster = Cluster::with(seed, &[Role::Honest; 4], 6, crate::lossy(), options);
        cluster.run_until_issued(crate::LIMIT);
        assert_eq!(cluster.issued_ids().len(), 3, "exactly the quota is issued");
        let certified = cluster.clients.iter().filter(|c| c.certificate.is_some());
        assert_eq!(certified.count(), 3);
        for client in cluster.clients.iter().filter(|c| c.certificate.is_none()) {
            let nack = client.nacks.first().expect("a refused client holds a NACK");
            assert_eq!(nack.body.limit.label(), "ipv4_24");
            assert_eq!(
                nack.body.limit.to_string(),
                "3 ids per IPv4 /24 per 86400 s"
            );
        }
    });
}

#[test]
fn one_prefix_at_once_at_every_member_gets_exactly_its_quota() {
    one_prefix_at_once(None);
}

#[test]
fn one_prefix_at_once_at_different_members_gets_exactly_its_quota() {
    // Each client reaches only f+1 = 2 members, a different pair each.
    one_prefix_at_once(Some(2));
}

fn keys(n: u8) -> Vec<SigningKey> {
    (1..=n).map(|i| SigningKey::from_bytes(&[i; 32])).collect()
}

fn entry(keys: &[SigningKey], network: &NetworkId, key: u8, source: &str) -> Entry {
    let source: SocketAddr = source.parse().unwrap();
    let request = NodeIdRequest {
        key: [key; 32],
        addresses: vec![source],
        salt: 1,
    };
    let mut sightings: Vec<_> = keys[..2]
        .iter()
        .map(|k| {
            let body = Sighting {
                digest: request.digest(),
                source,
                member: member_key(k),
            };
            sign(k, network, body)
        })
        .collect();
    sightings.sort_by_key(|s| s.body.member);
    Entry { request, sightings }
}

#[test]
fn members_prevote_nil_on_a_proposal_over_a_quota() {
    let keys = keys(4);
    let members: Vec<MemberKey> = keys.iter().map(member_key).collect();
    let network = NetworkId::of_genesis(&members);
    let mut sorted = members.clone();
    sorted.sort_unstable();
    let config = MemberConfig {
        network,
        members: sorted.clone(),
        round_base: Duration::from_millis(50),
        resend: Duration::from_secs(1),
    };
    let log = Log::default();
    let counters = Counters::new(three_per_24());
    let membership = Membership::new(members[0], &members, MembershipConfig::default());
    let cx = Context {
        config: &config,
        log: &log,
        counters: &counters,
        membership: &membership,
        last_time: 100,
        now: 100,
    };
    let batch = |entries: Vec<Entry>, time: u64, changes: Vec<Change>| Batch {
        height: 1,
        entries,
        last_commit: Vec::new(),
        time,
        changes,
    };
    let within: Vec<Entry> = (1..=3)
        .map(|i| entry(&keys, &network, i, &format!("10.0.0.{i}:1")))
        .collect();
    assert!(validate::batch(&cx, &batch(within.clone(), 100, vec![]), 1));
    let mut over = within.clone();
    over.push(entry(&keys, &network, 4, "10.0.0.4:1"));
    assert!(
        !validate::batch(&cx, &batch(over, 100, vec![]), 1),
        "a fourth id for one /24 in one batch"
    );
    assert!(
        !validate::batch(&cx, &batch(within.clone(), 99, vec![]), 1),
        "a time before the last batch's"
    );
    assert!(
        !validate::batch(&cx, &batch(within.clone(), 131, vec![]), 1),
        "a time over 30 s ahead of this member's clock"
    );
    assert!(
        !validate::batch(
            &cx,
            &batch(within, 100, vec![Change::Remove(members[1])]),
            1
        ),
        "a removal without this member's own evidence"
    );
    // Counted from the log: once three are decided, one more in the next batch is over.
    let mut counters = Counters::new(three_per_24());
    counters.apply(
        100,
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(|a| a.parse().unwrap()),
    );
    assert!(matches!(
        counters.check("10.0.0.9".parse().unwrap(), 100),
        Err(Limit::Prefix { bits: 24, .. })
    ));
}

/// The vector docs/CONSENSUS.md prints: a NACK for the /24 limit.
const NACK_VECTOR: &str = "0181a44e61636b9295c420444444444444444444444444444444444444444444444444444444444444444481a650726566697894a256341818ce00015180ce65540a00c4205555555555555555555555555555555555555555555555555555555555555555c42017cb79fb2b4120f2b1ec65e4198d6e08b28e813feb01e4a400839b85e18080cec44097c5760af05c16123e8f9b1b882ed1a4739137fb697287783ab820422ce90158cab4ed3abb221bf0ef1167a5cfd232f9176e0bfbc1ba8890160db5760bb8530f";

#[test]
fn the_nack_test_vector_encodes_as_documented() {
    let key = SigningKey::from_bytes(&[0x33; 32]);
    let nack = Nack {
        digest: RequestDigest([0x44; 32]),
        limit: Limit::Prefix {
            family: Family::V4,
            bits: 24,
            quota: 24,
            period: 86_400,
        },
        until: 1_700_006_400,
        network: NetworkId([0x55; 32]),
        member: member_key(&key),
    };
    let signed = sign(&key, &NetworkId([0x55; 32]), nack);
    assert!(signed.verify(&NetworkId([0x55; 32])));
    let bytes = schema::encode(&Message::Nack(signed.clone()));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, NACK_VECTOR);
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONSENSUS.md"))
        .expect("docs/CONSENSUS.md");
    assert!(
        docs.contains(NACK_VECTOR),
        "docs/CONSENSUS.md shows another NACK vector"
    );
    assert_eq!(schema::decode(&bytes), Ok(Message::Nack(signed)));
}
