//! Fuzzes the consensus service's decoders (PROTOCOL.md §11, docs/CONSENSUS.md): the agreement
//! schema (`schema::decode`: size bound, version, msgpack, list bounds) and the cluster query
//! (`query::decode`), a node's id proof (`proof::IdProof::decode` and `verify`, what overlay
//! peers show, and `node::trust`'s check of it, the chain-length bound first), then a member handed the input as from a member and as from a client.
//! Also the member document a members URL serves (`consensus::bootstrap`) and the HTTP response
//! around it (`node::members_url::parse_response`).
//! Whatever decodes must re-encode and decode to the same message, and nothing may panic. Seed corpus: docs/CONSENSUS.md's test vector and a query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use weft::consensus::bootstrap::MemberDocument;
use weft::consensus::config::MemberConfig;
use weft::consensus::ids::NetworkId;
use weft::consensus::member::{Member, Peer};
use weft::consensus::signed::member_key;
use weft::consensus::{proof, query, schema};
use weft::session::Identity;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = schema::decode(data) {
        let again = schema::encode(&message);
        assert_eq!(
            schema::decode(&again).ok(),
            Some(message),
            "a decoded message round-trips"
        );
    }
    if let Some(query) = query::decode(data) {
        assert_eq!(query::decode(&query::encode(&query)), Some(query));
    }
    // The member document a members URL serves, as text and as the bytes its hex would carry.
    for text in [data.to_vec(), weft::consensus::service::hex(data).into_bytes()] {
        if let Ok(document) = MemberDocument::from_text(&text) {
            let _ = document.verify(None);
            assert_eq!(MemberDocument::from_text(document.to_text().as_bytes()), Ok(document));
        }
    }
    let _ = weft::node::members_url::parse_response(data);
    if let Ok(proof) = proof::IdProof::decode(data) {
        let network = proof.network;
        let _ = proof.verify(&network, None, &weft::consensus::ids::NodeId([0; 20]), &[0; 32]);
        // The overlay's check of a peer's proof, as the peer whose key it names: its bounds
        // (the chain's length first) come before any signature.
        let view = std::sync::Arc::new(std::sync::Mutex::new(weft::consensus::service::View::default()));
        let mut trust = weft::node::trust::NetworkTrust::new(
            weft::consensus::trust::NetworkPin::unpinned(),
            weft::wire::PeerId([0; 16]),
            view,
        );
        use weft::overlay::kademlia::CertificateCheck;
        let peer = weft::session::peer_id_of(&proof.request.key);
        let _ = trust.admit(&weft::overlay::id::NodeId([7; 20]), &peer, data);
        assert_eq!(proof::IdProof::decode(&proof.encode()).ok(), Some(proof));
    }
    let keys: Vec<_> = (1..=4u8)
        .map(|i| Identity::from_secret_bytes([i; 32], [i; 32]).signing_key().clone())
        .collect();
    let members: Vec<_> = keys.iter().map(member_key).collect();
    let config = MemberConfig {
        network: NetworkId::of_genesis(&members),
        members: members.clone(),
        round_base: Duration::from_millis(50),
        resend: Duration::from_secs(1),
    };
    let mut member = Member::new(keys[0].clone(), config);
    let now = Instant::now();
    member.handle(now, Peer::Member(members[1]), data);
    member.handle(now, Peer::Client(([192, 0, 2, 1], 7700).into()), data);
    while member.poll_transmit().is_some() {}
    member.handle_timeout(now + Duration::from_secs(2));
});
