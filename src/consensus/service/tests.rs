//! Tests of the consensus service on a real host.

use super::*;
use crate::consensus::ids::NodeIdRequest;

/// A client node of a one-member network on a real host over one shard's queues: what it
/// counts of `deliveries` (peer, authenticated).
fn refusals_after(deliveries: &[(PeerId, bool)]) -> crate::stats::Stats {
    use crate::handle::Hashcode;
    use crate::service::host::Host;
    use crate::service::worker_queues;
    use crate::session::Identity;
    let poll = mio::Poll::new().unwrap();
    let wakers: Arc<[mio::Waker]> =
        vec![mio::Waker::new(poll.registry(), mio::Token(1)).unwrap()].into();
    let (link, mut ends) = worker_queues(1, 256, wakers);
    let me = Identity::from_secret_bytes([1; 32], [2; 32]);
    let other = Identity::from_secret_bytes([3; 32], [4; 32]);
    let settings = Settings {
        key: me.signing_key().clone(),
        own: PeerRecord::sign(&me, &["127.0.0.1:7700".parse().unwrap()]),
        members: vec![PeerRecord::sign(
            &other,
            &["127.0.0.1:7701".parse().unwrap()],
        )],
        round_base: Duration::from_millis(100),
        resend: Duration::from_secs(1),
        salt: 0,
        // A client: no store is opened.
        store: std::env::temp_dir(),
        network: None,
        chain: None,
        policy: PolicyConfig::default(),
        membership: MembershipConfig::default(),
    };
    let service = ConsensusService::new(Instant::now(), settings).unwrap();
    let host = Host::new(vec![Box::new(service)], false);
    let stats = host.stats();
    let thread = std::thread::spawn(move || host.run(link));
    let mut shard = ends.remove(0);
    let keepalive = schema::encode(&Message::KeepAlive(schema::KeepAlive {
        members: 1,
        epoch: 0,
        height: 1,
        ask: false,
    }));
    let mut batch: Vec<Input> = deliveries
        .iter()
        .map(|&(peer, authenticated)| {
            let mut data = vec![ServiceTag::CONSENSUS.0];
            data.extend_from_slice(&keepalive);
            Input::Message(Delivery {
                shard: 0,
                peer,
                authenticated,
                channel: crate::channel::ChannelHandle(Hashcode(9)),
                capabilities: super::super::links::mode(),
                message_number: 0,
                data: data.into(),
            })
        })
        .collect();
    assert!(shard.push(&mut batch));
    shard.close_input();
    thread.join().unwrap();
    let stats = stats.lock().unwrap().clone();
    drop(poll);
    stats
}

#[test]
fn member_traffic_from_a_peer_no_session_proved_is_dropped_and_counted() {
    let other = crate::session::Identity::from_secret_bytes([3; 32], [4; 32]);
    let member = peer_id_of(&other.ed25519_public().to_bytes());
    let count =
        |stats: &crate::stats::Stats, reason| stats.get(metric::REFUSALS, Some(("reason", reason)));
    // A plaintext peer claiming the member's id, twice.
    let stats = refusals_after(&[(member, false), (member, false)]);
    assert_eq!(count(&stats, "unauthenticated"), 2);
    // The member itself, over its session: not refused as unauthenticated (this client
    // node runs no member, so it is out of place: unexpected).
    let stats = refusals_after(&[(member, true)]);
    assert_eq!(count(&stats, "unauthenticated"), 0);
    assert_eq!(count(&stats, "unexpected"), 1);
}

#[test]
fn the_routing_prefixes_are_what_the_schema_encodes() {
    let request = NodeIdRequest {
        key: [1; 32],
        addresses: vec!["127.0.0.1:1".parse().unwrap()],
        salt: 0,
    };
    let bytes = schema::encode(&Message::Request(request));
    assert!(is_variant(&bytes, REQUEST_PREFIX));
    assert!(!is_variant(&bytes, REPLY_PREFIX));
    let nack = schema::encode(&Message::Nack(crate::consensus::signed::sign(
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        &NetworkId([0; 32]),
        crate::consensus::policy::Nack {
            digest: crate::consensus::ids::RequestDigest([2; 32]),
            limit: crate::consensus::policy::Limit::Table {
                prefixes: 1,
                period: 1,
            },
            until: 0,
            network: NetworkId([0; 32]),
            member: MemberKey([0; 32]),
        },
    )));
    assert!(is_variant(&nack, NACK_PREFIX) && !is_variant(&nack, REPLY_PREFIX));
    let ask = schema::encode(&Message::Ask { height: 3 });
    assert!(!is_variant(&ask, REQUEST_PREFIX) && !is_variant(&ask, VOTE_PREFIX));
}
