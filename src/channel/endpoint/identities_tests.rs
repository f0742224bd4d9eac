//! Unit tests of the local identities (`identities.rs`): one endpoint, several peer ids, one
//! responder that sees each as its own peer.

#![allow(clippy::arithmetic_side_effects)]

use super::*;
use crate::session::HandshakeKind;
use crate::wire::PacketWriter;

const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);
const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2);

fn identity(n: u8) -> Identity {
    Identity::from_secret_bytes([n; 32], [n.wrapping_add(100); 32])
}

fn endpoints(max_identities: usize, now: Instant) -> (Endpoint, Endpoint) {
    endpoints_of(max_identities, HandshakeKind::UnknownResponder, now)
}

/// A client and a server whose handshakes are of `kind`: XX, IK with the server's record, or
/// IKpsk2 with a PSK for each of the client's identities 1 and 3.
fn endpoints_of(max_identities: usize, kind: HandshakeKind, now: Instant) -> (Endpoint, Endpoint) {
    let mut config = EndpointConfig {
        max_identities,
        ..EndpointConfig::default()
    };
    let mut server_config = EndpointConfig::default();
    if kind != HandshakeKind::UnknownResponder {
        config.peer_records = vec![PeerRecord::sign(&identity(2), &[SERVER])];
    }
    if kind == HandshakeKind::PreSharedKey {
        config.psks.insert(identity(2).peer_id(), [5; 32]);
        for n in [1, 3] {
            server_config.psks.insert(identity(n).peer_id(), [5; 32]);
        }
    }
    let client = Endpoint::new(config, identity(1), [1; 32], now);
    let server = Endpoint::new(server_config, identity(2), [2; 32], now);
    (client, server)
}

/// Moves datagrams both ways until none is left; returns each side's events.
fn pump(client: &mut Endpoint, server: &mut Endpoint, now: Instant) -> (Vec<Event>, Vec<Event>) {
    let mut buf = vec![0u8; 2048];
    for _ in 0..64 {
        let mut moved = false;
        while let Some(t) = client.poll_transmit(&mut buf) {
            moved = true;
            server.handle(now, CLIENT, &mut buf[..t.len].to_vec());
        }
        while let Some(t) = server.poll_transmit(&mut buf) {
            moved = true;
            client.handle(now, SERVER, &mut buf[..t.len].to_vec());
        }
        if !moved {
            break;
        }
    }
    let drain = |e: &mut Endpoint| std::iter::from_fn(|| e.poll_event()).collect::<Vec<_>>();
    (drain(client), drain(server))
}

fn opened(events: &[Event]) -> Vec<(ChannelHandle, PeerId)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChannelOpened { channel, peer, .. } => Some((*channel, *peer)),
            _ => None,
        })
        .collect()
}

fn dropped(endpoint: &Endpoint, reason: &str) -> u64 {
    endpoint.stats().get(DROPPED, Some(("reason", reason)))
}

#[test]
fn two_identities_of_one_endpoint_are_two_peers_to_one_responder() {
    for kind in [
        HandshakeKind::UnknownResponder,
        HandshakeKind::KnownResponder,
        HandshakeKind::PreSharedKey,
    ] {
        two_identities_to_one_responder(kind);
    }
}

fn two_identities_to_one_responder(kind: HandshakeKind) {
    let now = Instant::now();
    let (mut client, mut server) = endpoints_of(2, kind, now);
    let second = client
        .add_identity(&identity(3))
        .expect("room for a second");
    assert_eq!(client.identity_count(), 2);
    let node = server.local_peer_id();
    let caps = Capabilities::default();
    let first = client
        .open_channel_as(now, LocalIdentity::FIRST, SERVER, node, None, caps)
        .unwrap();
    let other = client
        .open_channel_as(now, second, SERVER, node, None, caps)
        .unwrap();
    let (client_events, server_events) = pump(&mut client, &mut server, now);
    let mine: Vec<ChannelHandle> = opened(&client_events).iter().map(|o| o.0).collect();
    assert!(
        mine.contains(&first) && mine.contains(&other),
        "{client_events:?}"
    );
    // The responder holds two peers with a session each: the two identities' ids.
    let ids = [client.local_peer_id(), identity(3).peer_id()];
    assert_eq!(server.peer_count(), 2);
    assert_eq!(server.session_count(), 2);
    assert!(
        ids.iter().all(|&id| server.has_session_with(id)),
        "{kind:?}"
    );
    let label = Some(("kind", handshake::kind_label(kind)));
    assert_eq!(server.stats().get(HANDSHAKES, label), 2, "{kind:?}");
    let theirs = opened(&server_events);
    let seen: BTreeSet<PeerId> = theirs.iter().map(|o| o.1).collect();
    assert_eq!(seen, ids.into_iter().collect());
    // Each of the responder's channels answers the identity that opened it: the reply is
    // routed inside the client by its recipient id, to that identity's channel.
    for &(channel, peer) in &theirs {
        server.send(now, channel, &peer.0).unwrap();
    }
    let (client_events, _) = pump(&mut client, &mut server, now);
    let mut got = Vec::new();
    for event in client_events {
        if let Event::Message { channel, data, .. } = event {
            got.push((channel, data));
        }
    }
    got.sort_by_key(|(c, _)| *c == other);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0, &got[0].1[..]), (first, &ids[0].0[..]));
    assert_eq!((got[1].0, &got[1].1[..]), (other, &ids[1].0[..]));
    assert_eq!(dropped(&client, "wrong_recipient"), 0);
}

/// A plaintext PING from `sender` to `recipient`.
fn ping(sender: PeerId, recipient: PeerId) -> Vec<u8> {
    let header = Header {
        flags: Flags::default(),
        sender,
        recipient,
        channel: ChannelId::DEFAULT,
        sequence: None,
    };
    let mut buf = vec![0u8; 256];
    let mut writer = PacketWriter::new(&mut buf, &header).unwrap();
    writer.push(&Message::Ping { token: &[7; 8] }).unwrap();
    let len = writer.try_finish().unwrap();
    buf.truncate(len);
    buf
}

#[test]
fn a_datagram_to_an_identity_not_held_or_from_a_peer_it_never_opened_to_is_dropped_and_counted() {
    let now = Instant::now();
    let (mut client, _) = endpoints(2, now);
    let second = client.add_identity(&identity(3)).unwrap();
    let stranger = identity(9).peer_id();
    // Nobody here holds this id.
    client.handle(now, SERVER, &mut ping(stranger, PeerId([0x33; 16])));
    assert_eq!(dropped(&client, "wrong_recipient"), 1);
    // The second identity is held, but it opened nothing to this sender.
    let to_second = client.identity_peer_id(second).unwrap();
    client.handle(now, SERVER, &mut ping(stranger, to_second));
    assert_eq!(dropped(&client, "wrong_recipient"), 2);
    assert_eq!(client.peer_count(), 0);
    assert!(client.poll_transmit(&mut [0u8; 2048]).is_none());
    // The first identity still answers as before.
    client.handle(now, SERVER, &mut ping(stranger, client.local_peer_id()));
    assert_eq!(dropped(&client, "wrong_recipient"), 2);
}

#[test]
fn identities_are_bounded_by_the_config_and_a_bare_address_needs_the_first() {
    let now = Instant::now();
    let (mut client, server) = endpoints(2, now);
    let second = client.add_identity(&identity(3)).unwrap();
    // The same identity again is the same handle; the first is FIRST.
    assert_eq!(client.add_identity(&identity(3)), Ok(second));
    assert_eq!(client.add_identity(&identity(1)), Ok(LocalIdentity::FIRST));
    assert!(matches!(
        client.add_identity(&identity(4)),
        Err(OpenError::LimitReached(_))
    ));
    assert_eq!(client.identity_count(), 2);
    let caps = Capabilities::default();
    assert_eq!(
        client.open_channel_as(now, second, SERVER, PeerId::ZERO, None, caps),
        Err(OpenError::PeerIdNeeded)
    );
    let (mut single, _) = endpoints(1, now);
    assert!(single.add_identity(&identity(3)).is_err());
    assert_eq!(
        single.open_channel_as(now, second, SERVER, server.local_peer_id(), None, caps),
        Err(OpenError::UnknownIdentity)
    );
    // Nothing was left behind by the refused opens.
    assert_eq!(client.peer_count(), 0);
    assert!(client.identities.keys.is_empty());
}
