//! The client side of `weft id request --via ADDR` and `weft cluster status --via ADDR`: a
//! service on a short-lived engine that reaches the cluster through one address.
//!
//! 1. It opens a channel to ADDR and asks for the cluster's report ([`Query::Status`]).
//! 2. It checks the member list the report carries: every record verifies and the keys hash to
//!    the network id the report names, and to the one the operator pinned (`--network`) if any
//!    (PROTOCOL.md §11, trust root: pinned on first contact otherwise).
//! 3. It opens a channel to every member by its record's peer id and address, then either asks
//!    each for its report (status) or sends each the request `[public key, addresses, salt]`
//!    and gathers signed replies until a quorum of matching ones verifies as the certificate,
//!    or f+1 members' signed NACKs name the policy limit the request ran into.
//!
//! What it learns goes to a [`Progress`] the command line reads.

use super::asking::{Asking, Refused};
use super::certificate::NodeCertificate;
use super::ids::{MemberKey, NetworkId, NodeIdRequest};
use super::links::{LinkEvent, Links};
use super::query::{self, Query, Report};
use super::trust::{MemberList, MemberListChain};
use crate::service::host::{Context, Service, ServiceTag, body};
use crate::service::{Delivery, Input};
use crate::session::PeerRecord;
use crate::wire::PeerId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the client is after.
#[derive(Clone, Debug)]
pub enum Goal {
    /// Every member's report.
    Status,
    /// A certificate for this request.
    Id(NodeIdRequest),
}

/// What the client learned so far.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// The network, once the first report checked out.
    pub network: Option<NetworkId>,
    /// Its members' records, sorted by key.
    pub members: Vec<PeerRecord>,
    /// The member-list chain the first report carried, verified from the network id, and its
    /// current list; `None` from a node that reports no chain (its records are then genesis).
    pub chain: Option<(MemberListChain, MemberList)>,
    /// Each member's report, by key.
    pub reports: BTreeMap<MemberKey, Report>,
    /// The certificate (goal `Id`).
    pub certificate: Option<NodeCertificate>,
    /// Signed replies held (goal `Id`).
    pub replies: usize,
    /// The request's refusal, once f+1 members signed NACKs naming one limit (goal `Id`).
    pub refused: Option<Refused>,
    /// Why the client gave up.
    pub error: Option<String>,
}

/// The progress, shared with the command line.
pub type SharedProgress = Arc<Mutex<Progress>>;

/// The client service.
pub struct ClusterClient {
    goal: Goal,
    pin: Option<NetworkId>,
    links: Links,
    via: usize,
    /// Members by the peer id their records name: key and link.
    members: BTreeMap<PeerId, (MemberKey, usize)>,
    asking: Option<Asking>,
    progress: SharedProgress,
}

impl ClusterClient {
    /// A client that reaches the cluster through `via`, trusting only `pin` when given.
    pub fn new(
        now: Instant,
        via: std::net::SocketAddr,
        pin: Option<NetworkId>,
        goal: Goal,
    ) -> ClusterClient {
        let mut links = Links::default();
        let via = links.add(now, None, via);
        ClusterClient {
            goal,
            pin,
            links,
            via,
            members: BTreeMap::new(),
            asking: None,
            progress: SharedProgress::default(),
        }
    }

    /// What it learned so far.
    pub fn progress(&self) -> SharedProgress {
        Arc::clone(&self.progress)
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        if let Ok(mut progress) = self.progress.lock() {
            change(&mut progress);
        }
    }

    fn fail(&self, why: String) {
        self.update(|p| {
            p.error.get_or_insert(why);
        });
    }

    /// The first report: check the member list, then link to every member.
    fn on_first_report(&mut self, now: Instant, from: PeerId, report: &Report) {
        let mut records = Vec::with_capacity(report.members.len());
        for bytes in &report.members {
            match PeerRecord::from_bytes(bytes) {
                Ok(record) if record.verify().is_ok() => records.push(record),
                _ => return self.fail("the cluster's member list holds a bad record".into()),
            }
        }
        let keys: Vec<MemberKey> = records.iter().map(|r| MemberKey(r.ed25519)).collect();
        let (network, keys, chain) = match (&report.chain, report.network) {
            // The chain from genesis names today's members (PROTOCOL.md §11, trust root).
            (Some(chain), Some(network)) => match chain.verify(&network) {
                Ok(current) => {
                    let covered = keys.iter().filter(|k| current.contains(k)).count();
                    if covered != keys.len() || covered < current.quorum() {
                        return self.fail(format!(
                            "the cluster's records cover {covered} of its {} current members, \
                             a quorum is {}",
                            current.members.len(),
                            current.quorum()
                        ));
                    }
                    let members = current.members.clone();
                    (network, members, Some((chain.clone(), current)))
                }
                Err(error) => {
                    return self.fail(format!("the cluster's member-list chain: {error}"));
                }
            },
            _ => {
                let network = NetworkId::of_genesis(&keys);
                if report.network != Some(network) {
                    return self
                        .fail("the member list does not hash to the network id it names".into());
                }
                (network, keys, None)
            }
        };
        if let Some(pin) = self.pin
            && pin != network
        {
            return self.fail(format!(
                "the node at --via belongs to network {}, not the pinned {}",
                super::service::hex(&network.0),
                super::service::hex(&pin.0)
            ));
        }
        let via_address = self.links.address(self.via);
        for record in &records {
            let peer = record.peer_id();
            let key = MemberKey(record.ed25519);
            let index = if peer == from {
                self.via
            } else {
                // A member that listens on an unspecified address is reached where it answered.
                let address = match record.addresses.first() {
                    Some(a) if !a.ip().is_unspecified() => *a,
                    _ => via_address,
                };
                self.links.add(now, Some(peer), address)
            };
            self.members.insert(peer, (key, index));
        }
        if let Goal::Id(request) = &self.goal {
            self.asking = Some(Asking::new(now, network, keys, request.clone()));
        }
        self.update(|p| {
            p.network = Some(network);
            p.members = records;
            p.chain = chain;
        });
    }

    /// Sends what the goal wants on link `index`.
    fn greet(&mut self, index: usize, cx: &mut Context<'_>) {
        match (&self.goal, &self.asking) {
            (Goal::Id(_), Some(asking)) => {
                let bytes = asking.encoded().to_vec();
                self.links.send(index, &bytes, cx);
            }
            _ => {
                self.links.send(index, &query::encode(&Query::Status), cx);
            }
        }
    }
}

impl Service for ClusterClient {
    fn tag(&self) -> ServiceTag {
        ServiceTag::CONSENSUS
    }

    fn name(&self) -> &'static str {
        "consensus-client"
    }

    fn on_message(&mut self, now: Instant, delivery: Delivery, cx: &mut Context<'_>) {
        let bytes = body(&delivery);
        if query::is_query(bytes) {
            let Some(Query::Report(report)) = query::decode(bytes) else {
                return;
            };
            if self.members.is_empty() {
                self.on_first_report(now, delivery.peer, &report);
                for index in 0..self.links.len() {
                    if self.links.is_open(index) {
                        self.greet(index, cx);
                    }
                }
            }
            if let Some(&(key, _)) = self.members.get(&delivery.peer) {
                self.update(|p| {
                    p.reports.insert(key, report);
                });
            }
            return;
        }
        if !self.members.contains_key(&delivery.peer) {
            return;
        }
        if let Some(asking) = &mut self.asking
            && asking.on_reply(bytes).is_ok()
        {
            let (certificate, replies) = (asking.certificate().cloned(), asking.replies());
            let refused = asking.refused();
            self.update(|p| {
                p.replies = replies;
                if p.certificate.is_none() {
                    p.certificate = certificate;
                    p.refused = refused;
                }
            });
        }
    }

    fn on_input(&mut self, now: Instant, input: Input, cx: &mut Context<'_>) {
        if let Some(LinkEvent::Opened { index, .. }) = self.links.on_input(now, &input) {
            self.greet(index, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let asking = self.asking.as_ref().and_then(Asking::poll_timeout);
        [self.links.poll_timeout(), asking]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.links.poll(now, cx);
        if let Some(asking) = &mut self.asking
            && asking.due(now)
        {
            let bytes = asking.encoded().to_vec();
            for index in 0..self.links.len() {
                self.links.send(index, &bytes, cx);
            }
        }
    }
}
