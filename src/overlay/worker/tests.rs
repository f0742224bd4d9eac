//! The overlay service on a real host over one shard's queues: what it asks of the shard for
//! hostile and honest input, and what it counts.

use super::*;
use crate::handle::Hashcode;
use crate::overlay::api::DhtStatus;
use crate::overlay::kademlia::CertificateCheck;
use crate::overlay::rpc::{
    Body, ConnectionOpt, Frame, FrameLimits, Opcode, Reply, ReplyBody, Request,
};
use crate::service::host::{Host, HostHandle};
use crate::service::{PeerInfo, Request as ShardRequest, ShardLink, worker_queues};
use crate::stats::Stats;
use crate::wire::Capabilities;
use mio::{Poll, Token as MioToken, Waker};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

struct Running {
    shard: ShardLink,
    thread: JoinHandle<u64>,
    stats: Arc<Mutex<Stats>>,
    handle: HostHandle,
    seen: Vec<ShardRequest>,
    _poll: Poll,
}

fn start(config: OverlayConfig) -> Running {
    start_with(config, None, None)
}

/// The service with `store` committing its DHT's journal (turned on) and `check` deciding
/// which node ids are certified.
fn start_with(
    config: OverlayConfig,
    store: Option<Box<dyn DhtStore>>,
    check: Option<Box<dyn CertificateCheck>>,
) -> Running {
    let poll = Poll::new().unwrap();
    let wakers: Arc<[Waker]> = vec![Waker::new(poll.registry(), MioToken(1)).unwrap()].into();
    let (link, mut ends) = worker_queues(1, 256, wakers);
    let service = OverlayService::new(
        config,
        PeerId([1; 16]),
        "127.0.0.1:7700".parse().unwrap(),
        [0; 32],
    );
    let service = match check {
        Some(check) => service.with_certificate_check(check),
        None => service,
    };
    let service = match store {
        Some(store) => {
            let mut service = service.with_store(store);
            service.dht_mut().enable_journal();
            service
        }
        None => service,
    };
    let host = Host::new(vec![Box::new(service)], false);
    let (stats, handle) = (host.stats(), host.handle());
    let thread = std::thread::spawn(move || host.run(link));
    Running {
        shard: ends.remove(0),
        thread,
        stats,
        handle,
        seen: Vec::new(),
        _poll: poll,
    }
}

impl Running {
    fn push(&self, inputs: Vec<Input>) {
        let mut batch = inputs;
        assert!(self.shard.push(&mut batch));
    }

    /// Collects the shard's requests until `enough` holds of all seen so far.
    fn until(&mut self, enough: impl Fn(&[ShardRequest]) -> bool) {
        let started = Instant::now();
        while !enough(&self.seen) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{:?}",
                self.seen
            );
            match self.shard.try_requests() {
                Some(batch) => self.seen.extend(batch),
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    fn status(&self) -> DhtStatus {
        crate::overlay::api::DhtHandle::new(self.handle.clone())
            .status(Duration::from_secs(30))
            .unwrap()
    }

    /// Waits for the first peer-info question and answers it: the peer is at 127.0.0.1:`port`.
    fn answer_info(&mut self, port: u16, rtt: Option<Duration>) {
        self.until(|seen| !info_tokens(seen).is_empty());
        let (token, peer) = info_tokens(&self.seen)[0];
        self.push(vec![Input::PeerInfo {
            token,
            shard: 0,
            peer,
            info: Some(PeerInfo {
                peer,
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                session_kind: Some(2),
                rtt,
                static_keys: None,
            }),
        }]);
    }

    fn stop(mut self) -> Stats {
        self.shard.close_input();
        self.thread.join().unwrap();
        self.stats.lock().unwrap().clone()
    }
}

fn message(peer: u8, body: &[u8]) -> Input {
    let mut data = vec![ServiceTag::OVERLAY.0];
    data.extend_from_slice(body);
    Input::Message(Delivery {
        shard: 0,
        peer: PeerId([peer; 16]),
        authenticated: true,
        channel: ChannelHandle(Hashcode(u32::from(peer))),
        capabilities: Capabilities::RESEND,
        message_number: 0,
        data: data.into(),
    })
}

fn request(op: Opcode, id: u32, body: Body) -> Vec<u8> {
    Request { op, id, body }.encode()
}

fn info_tokens(seen: &[ShardRequest]) -> Vec<(u64, PeerId)> {
    seen.iter()
        .filter_map(|r| match r {
            ShardRequest::PeerInfo { token, peer } => Some((*token, *peer)),
            _ => None,
        })
        .collect()
}

/// Answers every peer-info question seen: each peer at 127.0.0.1:7000 + its first byte.
fn info_answers(seen: &[ShardRequest]) -> Vec<Input> {
    info_tokens(seen)
        .into_iter()
        .map(|(token, peer)| Input::PeerInfo {
            token,
            shard: 0,
            peer,
            info: Some(PeerInfo {
                peer,
                address: SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(peer.0[0]))),
                session_kind: Some(2),
                rtt: None,
                static_keys: None,
            }),
        })
        .collect()
}

/// The replies sent, with their channels.
fn replies_sent(seen: &[ShardRequest]) -> Vec<(ChannelHandle, Reply)> {
    seen.iter()
        .filter_map(|r| match r {
            ShardRequest::Send { channel, data } => {
                match Frame::parse(&data[1..], &FrameLimits::default()) {
                    Ok(Frame::Reply(reply)) => Some((*channel, reply)),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

fn dropped(stats: &Stats, reason: &str) -> u64 {
    stats
        .iter()
        .filter(|e| e.name == DROPPED && e.label.is_some_and(|(_, v)| v == reason))
        .map(|e| e.value)
        .sum()
}

#[test]
fn a_frame_past_the_bound_is_dropped_and_a_new_peers_messages_wait_bounded_for_its_address() {
    let mut running = start(OverlayConfig {
        max_queued: 2,
        ..OverlayConfig::default()
    });
    let ping = request(Opcode::Ping, 7, Body::Ping);
    running.push(vec![
        message(2, &vec![0x90; 70_000]),
        message(3, &ping),
        message(3, &ping),
        message(3, &ping),
    ]);
    running.until(|seen| !info_tokens(seen).is_empty());
    // One question for the address, however many messages wait; nothing answered yet.
    assert_eq!(info_tokens(&running.seen), [(1, PeerId([3; 16]))]);
    let sent = running
        .seen
        .iter()
        .filter(|r| matches!(r, ShardRequest::Send { .. }))
        .count();
    assert_eq!(sent, 0);
    let stats = running.stop();
    assert_eq!(dropped(&stats, "too_large"), 1);
    assert_eq!(dropped(&stats, "queue_full"), 1);
}

#[test]
fn only_an_announced_id_the_peers_key_implies_enters_the_table() {
    let mut running = start(OverlayConfig::default());
    let honest = PeerId([3; 16]);
    let announce = |id: NodeId| {
        request(
            Opcode::SetConnectionOpt,
            9,
            Body::SetConnectionOpt(ConnectionOpt::NodeId(id)),
        )
    };
    running.push(vec![
        message(2, &announce(NodeId([0xaa; 20]))),
        message(3, &announce(provisional_id(&honest))),
    ]);
    running.until(|seen| info_tokens(seen).len() == 2);
    running.push(info_answers(&running.seen));
    // Each gets an answer to its announcement, and our own id once.
    running.until(|seen| replies_sent(seen).len() == 2);
    for (channel, reply) in replies_sent(&running.seen) {
        let from_honest = channel == ChannelHandle(Hashcode(3));
        assert_eq!(reply.ack, from_honest, "{reply:?}");
    }
    let status = running.status();
    assert_eq!(status.contacts, 1, "only the honest peer: {status:?}");
    assert!(status.provisional && !status.client);
    running.stop();
}

/// The requests of the frames sent on `channel`, parsed.
fn requests_on(seen: &[ShardRequest], on: ChannelHandle) -> Vec<Request> {
    seen.iter()
        .filter_map(|r| match r {
            ShardRequest::Send { channel, data } if *channel == on => {
                match Frame::parse(&data[1..], &FrameLimits::default()) {
                    Ok(Frame::Request(request)) => Some(request),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

/// `frame` from `peer` on its RESEND `channel`, the first message there.
fn on_channel(peer: PeerId, channel: ChannelHandle, frame: &[u8]) -> Input {
    let mut data = vec![ServiceTag::OVERLAY.0];
    data.extend_from_slice(frame);
    Input::Message(Delivery {
        shard: 0,
        peer,
        channel,
        capabilities: Capabilities::RESEND,
        message_number: 1,
        authenticated: true,
        data: data.into(),
    })
}

/// The service joining through `bootstrap`, and the first thing it asked of the shard.
fn joining(bootstrap: SocketAddr) -> (Running, ShardRequest) {
    let mut running = start(OverlayConfig {
        bootstrap: vec![Bootstrap {
            addr: bootstrap,
            peer: None,
        }],
        ..OverlayConfig::default()
    });
    running.until(|seen| seen.iter().any(|r| matches!(r, ShardRequest::Open { .. })));
    let first = running.seen.first().cloned().unwrap();
    (running, first)
}

#[test]
fn joining_opens_a_resend_channel_to_the_bootstrap_address_announces_and_looks_itself_up_and_a_new_contacts_first_request_rides_its_open()
 {
    let bootstrap: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let (mut running, first) = joining(bootstrap);
    let ShardRequest::Open {
        token,
        to,
        peer,
        capabilities,
        early: None,
        record: None,
    } = first
    else {
        panic!("{:?}", running.seen);
    };
    assert_eq!(
        (to, peer),
        (bootstrap, None),
        "by address: its key is not known"
    );
    assert_eq!(
        capabilities,
        Capabilities::RESEND,
        "SCTP mode: reliable, unordered"
    );
    let channel = ChannelHandle(Hashcode(40));
    let them = PeerId([4; 16]);
    running.push(vec![Input::Opened {
        token,
        shard: 0,
        channel,
        peer: them,
        capabilities,
    }]);
    running.until(|seen| requests_on(seen, channel).len() >= 2);
    let sent = requests_on(&running.seen, channel);
    let own = provisional_id(&PeerId([1; 16]));
    assert!(
        sent.iter()
            .any(|r| r.body == Body::SetConnectionOpt(ConnectionOpt::NodeId(own))),
        "{sent:?}"
    );
    assert!(
        sent.iter().any(|r| r.body == Body::FindNode(own)),
        "the self-lookup: {sent:?}"
    );
    // The bootstrap node is the first contact, under the id its key implies.
    let status = running.status();
    assert_eq!(status.contacts, 1, "{status:?}");

    // It answers the self-lookup with a contact we have no channel to: our FIND_NODE to it
    // rides the open as early data (issue 15 point 4), not a send after Opened.
    let lookup = sent.iter().find(|r| r.body == Body::FindNode(own)).unwrap();
    let new = PeerId([9; 16]);
    let contact = Contact {
        id: provisional_id(&new),
        peer: new,
        addr: "127.0.0.1:7009".parse().unwrap(),
    };
    let reply = Reply {
        ack: true,
        id: lookup.id,
        op: Opcode::FindNode,
        body: ReplyBody::Nodes(vec![contact.into()]),
    };
    running.push(vec![on_channel(them, channel, &reply.encode())]);
    let opens = |seen: &[ShardRequest]| -> Vec<(u64, Option<Vec<u8>>)> {
        seen.iter()
            .filter_map(|r| match r {
                ShardRequest::Open {
                    token,
                    peer: Some(p),
                    early,
                    ..
                } if *p == new => Some((*token, early.clone())),
                _ => None,
            })
            .collect()
    };
    running.until(|seen| !opens(seen).is_empty());
    let (token, early) = opens(&running.seen).remove(0);
    let early = early.expect("the first request rides the open");
    assert_eq!(early[0], ServiceTag::OVERLAY.0);
    match Frame::parse(&early[1..], &FrameLimits::default()) {
        Ok(Frame::Request(r)) => assert_eq!(r.body, Body::FindNode(own)),
        other => panic!("{other:?}"),
    }
    let second = ChannelHandle(Hashcode(41));
    running.push(vec![Input::Opened {
        token,
        shard: 0,
        channel: second,
        peer: new,
        capabilities,
    }]);
    // Once open, only our id follows: the request is not sent a second time.
    running.until(|seen| !requests_on(seen, second).is_empty());
    let after: Vec<Body> = requests_on(&running.seen, second)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(
        after,
        [Body::SetConnectionOpt(ConnectionOpt::NodeId(own))],
        "{after:?}"
    );
    running.stop();
}

#[test]
fn an_idle_channel_is_closed_and_its_peer_forgotten() {
    let mut running = start(OverlayConfig {
        idle: Duration::from_millis(50),
        ..OverlayConfig::default()
    });
    running.push(vec![message(5, &request(Opcode::Ping, 1, Body::Ping))]);
    running.answer_info(7005, Some(Duration::from_millis(3)));
    running.until(|seen| {
        seen.iter().any(|r| {
            matches!(
                r,
                ShardRequest::Close {
                    reason: CloseReason::Idle,
                    ..
                }
            )
        })
    });
    let closed: Vec<ChannelHandle> = running
        .seen
        .iter()
        .filter_map(|r| match r {
            ShardRequest::Close { channel, .. } => Some(*channel),
            _ => None,
        })
        .collect();
    assert_eq!(closed, [ChannelHandle(Hashcode(5))]);
    assert_eq!(running.status().channels, 0);
    running.stop();
}

/// A store that notes, at each commit, how many STORE ACKs waited for it; `fail` fails them.
struct Noting {
    commits: Arc<Mutex<Vec<usize>>>,
    fail: bool,
}

impl DhtStore for Noting {
    fn sync(&mut self, dht: &mut Dht) -> Result<bool, String> {
        let Some(batch) = dht.poll_changes() else {
            return Ok(false);
        };
        assert!(dht.poll_changes().is_none(), "one batch per pass");
        self.commits.lock().unwrap().push(dht.held_replies());
        if self.fail {
            dht.commit_failed(batch.seq);
            return Err("disk full".into());
        }
        dht.committed(batch.seq);
        Ok(true)
    }
}

/// A network's check in miniature: the proof `b"good"` admits any id, anything else is of
/// another network; the node's own id is certified once the test says so.
struct FakeNetwork {
    admitted: HashMap<PeerId, NodeId>,
    own: Arc<Mutex<Option<NodeId>>>,
}

impl CertificateCheck for FakeNetwork {
    fn certified(&self, node: &NodeId, peer: &PeerId) -> bool {
        if *peer == PeerId([1; 16]) {
            return *self.own.lock().unwrap() == Some(*node);
        }
        self.admitted.get(peer) == Some(node)
    }
    fn may_ask(&self, _: &NodeId, _: &PeerId) -> bool {
        true
    }
    fn admit(&mut self, node: &NodeId, peer: &PeerId, proof: &[u8]) -> Result<(), &'static str> {
        if proof != b"good" {
            return Err("foreign_network");
        }
        self.admitted.insert(*peer, *node);
        Ok(())
    }
    fn own(&self) -> Option<(NodeId, Vec<u8>)> {
        self.own.lock().unwrap().map(|id| (id, b"mine".to_vec()))
    }
}

#[test]
fn the_stores_of_one_batch_are_committed_once_and_acknowledged_only_after_it() {
    for fail in [false, true] {
        let commits = Arc::new(Mutex::new(Vec::new()));
        let store = Noting {
            commits: commits.clone(),
            fail,
        };
        let mut running = start_with(OverlayConfig::default(), Some(Box::new(store)), None);
        let store_of = |id: u32| {
            let body = Body::Store {
                key: vec![b'k', id as u8],
                value: Value::Nil,
                meta: crate::overlay::rpc::RecordMeta {
                    version: 0,
                    ttl: 60,
                },
            };
            request(Opcode::Store, id, body)
        };
        // Three STOREs wait for the peer's address, then are served in one pass.
        running.push((1..=3).map(|id| message(6, &store_of(id))).collect());
        running.answer_info(7006, None);
        let replies = |seen: &[ShardRequest]| -> Vec<Reply> {
            seen.iter()
                .filter_map(|r| match r {
                    ShardRequest::Send { data, .. } => {
                        match Frame::parse(&data[1..], &FrameLimits::default()) {
                            Ok(Frame::Reply(reply)) => Some(reply),
                            _ => None,
                        }
                    }
                    _ => None,
                })
                .collect()
        };
        running.until(|seen| replies(seen).len() == 3);
        // All three waited for one commit; a failed commit NACKs them instead.
        assert_eq!(*commits.lock().unwrap(), [3], "fail: {fail}");
        for reply in replies(&running.seen) {
            assert_eq!(reply.op, Opcode::Store);
            assert_eq!(reply.ack, !fail, "{reply:?}");
        }
        let stats = running.stop();
        let failed = stats
            .iter()
            .filter(|e| e.label == Some(("reason", "store_failed")))
            .map(|e| e.value)
            .sum::<u64>();
        assert_eq!(failed, if fail { 3 } else { 0 });
        let commits_timed = stats
            .iter()
            .filter(|e| e.name == "weft_overlay_store_commit_seconds_bucket")
            .map(|e| e.value)
            .max();
        assert_eq!(commits_timed, Some(1), "one commit timed");
    }
}

#[test]
fn only_a_proven_certified_id_enters_the_table_and_the_node_is_a_client_until_its_own_is_issued() {
    let own = Arc::new(Mutex::new(None));
    let check = FakeNetwork {
        admitted: HashMap::new(),
        own: Arc::clone(&own),
    };
    let config = OverlayConfig {
        accept_provisional: false,
        ..OverlayConfig::default()
    };
    let mut running = start_with(config, None, Some(Box::new(check)));
    assert!(running.status().client, "no certified id yet: a client");
    let certified = |id: u8, proof: &[u8]| {
        let opt = ConnectionOpt::CertifiedId(NodeId([id; 20]), proof.to_vec());
        request(Opcode::SetConnectionOpt, 9, Body::SetConnectionOpt(opt))
    };
    let provisional = request(
        Opcode::SetConnectionOpt,
        9,
        Body::SetConnectionOpt(ConnectionOpt::NodeId(provisional_id(&PeerId([4; 16])))),
    );
    running.push(vec![
        message(2, &certified(0xaa, b"of another network")),
        message(3, &certified(0xbb, b"good")),
        message(4, &provisional),
    ]);
    running.until(|seen| info_tokens(seen).len() == 3);
    running.push(info_answers(&running.seen));
    running.until(|seen| replies_sent(seen).len() == 3);
    for (channel, reply) in replies_sent(&running.seen) {
        assert_eq!(
            reply.ack,
            channel == ChannelHandle(Hashcode(3)),
            "{channel:?}"
        );
    }
    let status = running.status();
    assert_eq!(status.contacts, 1, "only the proven peer: {status:?}");
    // A client tells nobody an id.
    let mine = ChannelHandle(Hashcode(3));
    assert!(requests_on(&running.seen, mine).is_empty());
    // Issued: the node moves to its certified id and shows it with its proof.
    *own.lock().unwrap() = Some(NodeId([0x11; 20]));
    let shown = Body::SetConnectionOpt(ConnectionOpt::CertifiedId(
        NodeId([0x11; 20]),
        b"mine".to_vec(),
    ));
    running.until(|seen| requests_on(seen, mine).iter().any(|r| r.body == shown));
    let status = running.status();
    assert_eq!(status.node_id, NodeId([0x11; 20]));
    assert!(!status.client && !status.provisional, "{status:?}");
    assert_eq!(status.contacts, 1, "the table moved with the id");
    let stats = running.stop();
    assert_eq!(dropped(&stats, "foreign_network"), 1);
}

/// A node that joined through the bootstrap peer `PeerId([4; 16])`, whose channel is open.
fn joined() -> (Running, ChannelHandle, PeerId) {
    let (running, first) = joining("127.0.0.1:7001".parse().unwrap());
    let ShardRequest::Open {
        token,
        capabilities,
        ..
    } = first
    else {
        panic!("{:?}", running.seen);
    };
    let channel = ChannelHandle(Hashcode(40));
    let them = PeerId([4; 16]);
    running.push(vec![Input::Opened {
        token,
        shard: 0,
        channel,
        peer: them,
        capabilities,
    }]);
    (running, channel, them)
}

#[test]
fn a_contact_whose_record_a_reply_carried_is_opened_by_ik_with_the_request_riding_the_open() {
    let (mut running, channel, them) = joined();
    let own = provisional_id(&PeerId([1; 16]));
    running.until(|seen| {
        requests_on(seen, channel)
            .iter()
            .any(|r| r.body == Body::FindNode(own))
    });
    let lookup = requests_on(&running.seen, channel)
        .into_iter()
        .find(|r| r.body == Body::FindNode(own))
        .unwrap();
    // The reply names two contacts: one with its own signed record, one with a record whose
    // key is another peer's (dropped and counted; that contact is opened by XX).
    let keyed = crate::session::Identity::from_secret_bytes([21; 32], [22; 32]);
    let other = crate::session::Identity::from_secret_bytes([23; 32], [24; 32]);
    let contact_of = |peer: PeerId, port: u16| Contact {
        id: provisional_id(&peer),
        peer,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let (a, b) = (
        contact_of(keyed.peer_id(), 7021),
        contact_of(PeerId([8; 16]), 7008),
    );
    let record = crate::session::PeerRecord::sign(&keyed, &[a.addr]);
    let wrong = crate::session::PeerRecord::sign(&other, &[b.addr]);
    let reply = Reply {
        ack: true,
        id: lookup.id,
        op: Opcode::FindNode,
        body: ReplyBody::Nodes(vec![
            crate::overlay::rpc::NodeInfo {
                contact: a,
                record: Some(record.to_bytes()),
            },
            crate::overlay::rpc::NodeInfo {
                contact: b,
                record: Some(wrong.to_bytes()),
            },
        ]),
    };
    running.push(vec![on_channel(them, channel, &reply.encode())]);
    type Open = (Option<Box<crate::session::PeerRecord>>, Option<Vec<u8>>);
    let opens = |seen: &[ShardRequest], to: PeerId| -> Vec<Open> {
        seen.iter()
            .filter_map(|r| match r {
                ShardRequest::Open {
                    peer: Some(p),
                    early,
                    record,
                    ..
                } if *p == to => Some((record.clone(), early.clone())),
                _ => None,
            })
            .collect()
    };
    running.until(|seen| !opens(seen, a.peer).is_empty() && !opens(seen, b.peer).is_empty());
    let (ik, early) = opens(&running.seen, a.peer).remove(0);
    assert_eq!(ik.as_deref(), Some(&record), "opened with the record: IK");
    let early = early.expect("the first request rides the open");
    match Frame::parse(&early[1..], &FrameLimits::default()) {
        Ok(Frame::Request(r)) => assert_eq!(r.body, Body::FindNode(own)),
        other => panic!("{other:?}"),
    }
    let (xx, early) = opens(&running.seen, b.peer).remove(0);
    assert!(xx.is_none() && early.is_some(), "no record of its own: XX");
    // The DHT's counters reach the host's on the pass after the sync interval.
    std::thread::sleep(SYNC_EVERY + Duration::from_millis(50));
    let _ = running.status();
    let stats = running.stop();
    assert_eq!(dropped(&stats, "key_mismatch"), 1);
    let opened = |kind| stats.get("weft_overlay_opens_total", Some(("handshake", kind)));
    // The bootstrap open is by address, not a contact's: only the two contacts count.
    assert_eq!((opened("ik"), opened("xx")), (1, 1));
}

/// Attack on the overlay (docs/SECURITY.md): what a peer negotiated goes with the peer, so peers
/// long gone do not fill `max_peer_options` and refuse every later peer's offers for good.
#[test]
fn a_forgotten_peers_options_make_room_for_a_newcomer() {
    let mut config = OverlayConfig {
        idle: Duration::from_millis(50),
        ..OverlayConfig::default()
    };
    config.kademlia.max_peer_options = 1;
    let mut running = start(config);
    let gzip = u64::from(crate::overlay::rpc::compression::Method::Gzip.code());
    let offer = |id| {
        let opt = ConnectionOpt::Compression(gzip);
        request(Opcode::SetConnectionOpt, id, Body::SetConnectionOpt(opt))
    };
    running.push(vec![message(5, &offer(1))]);
    running.answer_info(7005, None);
    running.until(|seen| {
        seen.iter().any(|r| {
            matches!(
                r,
                ShardRequest::Close {
                    reason: CloseReason::Idle,
                    ..
                }
            )
        })
    });
    let newcomer = PeerId([6; 16]);
    running.push(vec![message(6, &offer(2))]);
    running.until(|seen| info_tokens(seen).iter().any(|(_, p)| *p == newcomer));
    let answers: Vec<Input> = info_answers(&running.seen)
        .into_iter()
        .filter(|i| matches!(i, Input::PeerInfo { peer, .. } if *peer == newcomer))
        .collect();
    running.push(answers);
    let on = ChannelHandle(Hashcode(6));
    running.until(|seen| replies_sent(seen).iter().any(|(c, _)| *c == on));
    let (_, reply) = replies_sent(&running.seen)
        .into_iter()
        .find(|(c, _)| *c == on)
        .unwrap();
    assert!(reply.ack, "the newcomer's offer was refused: {reply:?}");
    running.stop();
}

/// Second round (docs/SECURITY.md): replies to two lookups name one address under two ids; the
/// worker opens to it once at a time, so a third party's address gets one open's INITs, not
/// one per id a peer made up.
#[test]
fn one_address_gets_one_open_at_a_time_whatever_ids_replies_list_there() {
    let (mut running, channel, them) = joined();
    for key in [b"a", b"b"] {
        let (reply, _) = crossbeam_channel::bounded(1);
        let get = DhtCommand::Get {
            key: key.to_vec(),
            reply,
        };
        assert!(running.handle.send(ServiceTag::OVERLAY, Box::new(get)));
    }
    let asked = |seen: &[ShardRequest]| -> Vec<Request> {
        (requests_on(seen, channel).into_iter())
            .filter(|r| matches!(r.body, Body::FindValue { .. }))
            .collect()
    };
    running.until(|seen| asked(seen).len() == 2);
    let victim = SocketAddr::from(([192, 0, 2, 9], 4444));
    for (n, request) in asked(&running.seen).into_iter().enumerate() {
        let peer = PeerId([50 + n as u8; 16]);
        let contact = Contact {
            id: provisional_id(&peer),
            peer,
            addr: victim,
        };
        let reply = Reply {
            ack: true,
            id: request.id,
            op: Opcode::FindNode,
            body: ReplyBody::Nodes(vec![contact.into()]),
        };
        running.push(vec![on_channel(them, channel, &reply.encode())]);
    }
    let to_victim = |seen: &[ShardRequest]| {
        (seen.iter())
            .filter(|r| matches!(r, ShardRequest::Open { to, .. } if *to == victim))
            .count()
    };
    // The second reply's open is refused (counted) rather than sent: wait for the count.
    let started = Instant::now();
    while dropped(&running.stats.lock().unwrap(), "address_opening") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no open refused"
        );
        std::thread::sleep(SYNC_EVERY);
        let _ = running.status();
    }
    while let Some(batch) = running.shard.try_requests() {
        running.seen.extend(batch);
    }
    assert_eq!(to_victim(&running.seen), 1);
    let stats = running.stop();
    assert_eq!(dropped(&stats, "address_opening"), 1);
}
