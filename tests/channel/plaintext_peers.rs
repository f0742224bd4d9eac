//! With `allow_plaintext`, a plaintext (kind-0) peer can neither use nor disturb a peer id that
//! has, or later gets, an authenticated session (issue 10): anyone can claim any id in
//! plaintext, so what a claim built is dropped when the id authenticates, and nothing a claim
//! sends reaches the authenticated peer's channels or moves where they answer.

use super::sim::{Network, NodeId, addr};
use std::time::Duration;
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig, Event};
use weft::session::{Identity, PeerRecord};
use weft::wire::{Capabilities, CloseReason};

fn plaintext() -> EndpointConfig {
    EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    }
}

fn events(net: &mut Network<Endpoint>, node: NodeId) -> Vec<Event> {
    std::iter::from_fn(|| net.node_mut(node).poll_event()).collect()
}

fn opened(events: &[Event]) -> Vec<ChannelHandle> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ChannelOpened { channel, .. } => Some(*channel),
            _ => None,
        })
        .collect()
}

fn messages(events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Message { data, .. } => Some(data.to_vec()),
            _ => None,
        })
        .collect()
}

fn endpoint(
    net: &mut Network<Endpoint>,
    at: u16,
    identity: [u8; 32],
    config: EndpointConfig,
) -> NodeId {
    let now = net.now();
    let identity = Identity::from_secret_bytes(identity, identity);
    net.add_node(
        addr(at),
        Endpoint::new(config, identity, [at as u8; 32], now),
    )
}

#[test]
fn a_plaintext_claim_to_an_id_neither_uses_nor_disturbs_its_later_session() {
    let mut net = Network::new(40);
    let node = endpoint(
        &mut net,
        1,
        [1; 32],
        EndpointConfig {
            echo: true,
            ..plaintext()
        },
    );
    // The impostor claims the honest peer's id in plaintext (kind 0 proves nothing).
    let honest = endpoint(&mut net, 2, [2; 32], EndpointConfig::default());
    let impostor = endpoint(&mut net, 66, [2; 32], plaintext());
    let node_id = net.node(node).local_peer_id();
    let udp = Capabilities::from_bits(0).unwrap();
    let now = net.now();
    let fake = net
        .node_mut(impostor)
        .open_channel(now, addr(1), Some(node_id), None, udp)
        .unwrap();
    net.drive_for(Duration::from_secs(1));
    let now = net.now();
    net.node_mut(impostor).send(now, fake, b"claimed").unwrap();
    net.drive_for(Duration::from_millis(200));
    let before = events(&mut net, node);
    let fake_at_node = opened(&before);
    assert_eq!(fake_at_node.len(), 1, "kind 0 is allowed: {before:?}");
    let _ = events(&mut net, impostor);

    // The honest peer authenticates (IK with the node's record) and opens its own channel.
    let record = PeerRecord::sign(net.node(node).identity(), &[addr(1)]);
    net.node_mut(honest).add_peer_record(record).unwrap();
    let now = net.now();
    let real = net
        .node_mut(honest)
        .open_channel(now, addr(1), Some(node_id), None, udp)
        .unwrap();
    net.drive_for(Duration::from_secs(1));
    assert_eq!(opened(&events(&mut net, honest)), vec![real]);
    let at_node = events(&mut net, node);
    // The claim's channel did not pass to the authenticated id: it was closed.
    assert!(
        at_node.iter().any(|event| matches!(
            event,
            Event::ChannelClosed { channel, reason: CloseReason::Refused, .. } if *channel == fake_at_node[0]
        )),
        "{at_node:?}"
    );
    let now = net.now();
    assert!(
        net.node_mut(node)
            .send(now, fake_at_node[0], b"to whom?")
            .is_err()
    );

    // The honest peer's data is echoed back to it, not to the impostor's address.
    let now = net.now();
    net.node_mut(honest).send(now, real, b"authentic").unwrap();
    net.drive_for(Duration::from_millis(300));
    assert_eq!(
        messages(&events(&mut net, honest)),
        vec![b"authentic".to_vec()]
    );
    // The impostor's plaintext is dropped and reaches nothing; it heard nothing either.
    let now = net.now();
    let _ = net.node_mut(impostor).send(now, fake, b"still me");
    let now = net.now();
    let _ = net
        .node_mut(impostor)
        .open_channel(now, addr(1), Some(node_id), None, udp);
    net.drive_for(Duration::from_secs(1));
    let at_node = events(&mut net, node);
    assert!(
        messages(&at_node).iter().all(|m| m != b"still me"),
        "{at_node:?}"
    );
    assert!(opened(&at_node).is_empty(), "{at_node:?}");
    assert!(messages(&events(&mut net, impostor)).is_empty());
    assert!(
        net.node(node).stats().get(
            "weft_packets_dropped_total",
            Some(("reason", "plaintext_after_session"))
        ) > 0
    );
    // And the session still carries the honest peer's traffic.
    let now = net.now();
    net.node_mut(honest).send(now, real, b"again").unwrap();
    net.drive_for(Duration::from_millis(300));
    assert_eq!(messages(&events(&mut net, honest)), vec![b"again".to_vec()]);
}
