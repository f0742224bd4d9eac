//! Crossing INITs (PROTOCOL.md §5) are resolved only by authenticated handshakes: an off-path
//! host that forges INITs claiming a peer's lower id cannot cancel our own open or rekey to
//! that peer (issue 10, finding 6).

use super::sim::{Network, NodeId, addr};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use weft::channel::{Endpoint, EndpointConfig, Event};
use weft::session::{Mac1Key, PeerRecord};
use weft::wire::{Capabilities, ChannelId, Flags, Header, Message, Packet, PacketWriter, PeerId};

fn init(
    kind: u8,
    sender: PeerId,
    recipient: PeerId,
    handshake: &[u8],
    mac1: Option<&Mac1Key>,
    cookie: Option<&[u8; 16]>,
) -> Vec<u8> {
    let header = Header {
        flags: Flags::default(),
        sender,
        recipient,
        channel: ChannelId::DEFAULT,
        sequence: None,
    };
    let mut buf = vec![0u8; 1200];
    let mut writer = PacketWriter::new(&mut buf, &header).unwrap();
    writer
        .push(&Message::HandshakeInit {
            kind,
            sender_index: 0x0bad_0bad,
            handshake,
            mac1: &[0; 16],
            cookie,
        })
        .unwrap();
    let len = writer.try_finish().unwrap();
    buf.truncate(len);
    if let Some(key) = mac1 {
        let at = len - 1 - 16 - cookie.map_or(0, |_| 16);
        let mac = key.compute(&buf[..at]);
        buf[at..at + 16].copy_from_slice(&mac);
    }
    buf
}

struct Crossing {
    net: Network<Endpoint>,
    /// The node whose own handshake the forger attacks: its peer id is the higher one, so a
    /// genuine INIT from `low` would win the crossing.
    high: NodeId,
    low: NodeId,
    /// Datagrams the victim sent to the forger's own address.
    to_forger: Rc<RefCell<Vec<Vec<u8>>>>,
}

const FORGER: u16 = 66;

fn crossing(seed: u64) -> Crossing {
    let mut net = Network::new(seed);
    let a = net.add_endpoint(addr(1), EndpointConfig::default());
    let b = net.add_endpoint(addr(2), EndpointConfig::default());
    // The forger's address holds a node only so that answers sent there are delivered (and
    // seen by the hook).
    let _ = net.add_endpoint(addr(FORGER), EndpointConfig::default());
    let (high, low) = if net.node(a).local_peer_id() > net.node(b).local_peer_id() {
        (a, b)
    } else {
        (b, a)
    };
    let record = PeerRecord::sign(net.node(low).identity(), &[net.addr(low)]);
    net.node_mut(high).add_peer_record(record).unwrap();
    let to_forger = Rc::new(RefCell::new(Vec::new()));
    let sink = to_forger.clone();
    net.on_deliver(move |_, to, bytes| {
        if *to == addr(FORGER) {
            sink.borrow_mut().push(bytes.clone());
        }
        true
    });
    Crossing {
        net,
        high,
        low,
        to_forger,
    }
}

impl Crossing {
    /// The cookie the forger fetches at its own address for an XX INIT claiming `low`'s id:
    /// asking for it changes nothing at the victim.
    fn fetch_cookie(&mut self) -> [u8; 16] {
        let (high, low) = (self.high, self.low);
        let claimed = self.net.node(low).local_peer_id();
        let xx = init(2, claimed, PeerId::ZERO, &[5; 32], None, None);
        self.net.inject(addr(FORGER), high, &xx);
        self.net.drive_for(Duration::from_millis(200));
        let cookie = self.to_forger.borrow().iter().find_map(|bytes| {
            let packet = Packet::parse(bytes).ok()?;
            match packet.messages().next()? {
                Message::HandshakeCookie { cookie, .. } => Some(*cookie),
                _ => None,
            }
        });
        cookie.expect("the forger got a cookie at its own address")
    }

    /// Off-path forgeries claiming `low`'s id, delivered to `high` while its own handshake to
    /// `low` is pending: an IK INIT with a valid mac1 and garbage behind it, sent from `low`'s
    /// address, and an XX INIT from the forger's address carrying its cookie.
    fn forge(&mut self, cookie: &[u8; 16]) {
        let (high, low) = (self.high, self.low);
        let victim = self.net.node(high).local_peer_id();
        let claimed = self.net.node(low).local_peer_id();
        let mac1 = Mac1Key::new(self.net.node(high).identity().x25519_public().as_bytes());
        let ik = init(1, claimed, victim, &[7; 204], Some(&mac1), None);
        let low_addr = self.net.addr(low);
        self.net.inject(low_addr, high, &ik);
        let xx = init(2, claimed, PeerId::ZERO, &[5; 32], None, Some(cookie));
        self.net.inject(addr(FORGER), high, &xx);
    }

    fn opened(&mut self, node: NodeId) -> usize {
        std::iter::from_fn(|| self.net.node_mut(node).poll_event())
            .filter(|event| matches!(event, Event::ChannelOpened { .. }))
            .count()
    }
}

#[test]
fn a_forged_crossing_init_does_not_cancel_our_open() {
    let mut c = crossing(60);
    let (high, low) = (c.high, c.low);
    let cookie = c.fetch_cookie();
    let (now, to, peer) = (
        c.net.now(),
        c.net.addr(low),
        c.net.node(low).local_peer_id(),
    );
    c.net
        .node_mut(high)
        .open_channel(
            now,
            to,
            Some(peer),
            None,
            Capabilities::from_bits(7).unwrap(),
        )
        .unwrap();
    c.forge(&cookie);
    c.net.drive_for(Duration::from_secs(2));
    assert_eq!(c.opened(high), 1, "the open finished despite the forgeries");
    assert!(c.net.node(high).has_session_with(peer));
    let stats = c.net.node(high).stats();
    assert_eq!(
        stats.get("weft_handshakes_completed_total", Some(("kind", "ik"))),
        1
    );
}

#[test]
fn a_forged_crossing_init_does_not_cancel_our_rekey() {
    let mut c = crossing(61);
    let (high, low) = (c.high, c.low);
    let cookie = c.fetch_cookie();
    let (now, to, peer) = (
        c.net.now(),
        c.net.addr(low),
        c.net.node(low).local_peer_id(),
    );
    c.net
        .node_mut(high)
        .open_channel(
            now,
            to,
            Some(peer),
            None,
            Capabilities::from_bits(7).unwrap(),
        )
        .unwrap();
    c.net.drive_for(Duration::from_secs(1));
    assert_eq!(c.opened(high), 1);
    let now = c.net.now();
    c.net.node_mut(high).rekey(now, peer).unwrap();
    c.forge(&cookie);
    c.net.drive_for(Duration::from_secs(2));
    assert_eq!(c.net.node(high).stats().get("weft_rekeys_total", None), 1);
    assert_eq!(c.net.node(low).stats().get("weft_rekeys_total", None), 1);
    // And the rekeyed session carries traffic both ways.
    let token = [9; 8];
    let now = c.net.now();
    c.net
        .node_mut(high)
        .ping(now, to, Some(peer), token)
        .unwrap();
    c.net.drive_for(Duration::from_millis(500));
    let ponged = std::iter::from_fn(|| c.net.node_mut(high).poll_event())
        .any(|event| matches!(event, Event::Pong { token: t, .. } if t == token));
    assert!(ponged);
}
