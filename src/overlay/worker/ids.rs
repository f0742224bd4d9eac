//! The node ids of the worker's peers and its own (see the module doc of `worker`): the
//! announcement each side of a channel sends, the check of a peer's, and the move to the
//! node's certified id once the consensus service issued it.

use super::{ANNOUNCE, CERTIFY_POLL, Link, OverlayService};
use crate::overlay::id::{Contact, NodeId, provisional_id};
use crate::overlay::rpc::{Body, ConnectionOpt, Frame, Opcode, Request};
use crate::wire::PeerId;
use std::time::Instant;

/// What a frame announced of its sender's node id.
pub(super) enum Announced {
    /// Not an announcement.
    Nothing,
    /// An id that checked out.
    Id(NodeId),
    /// An id refused (counted).
    Refused,
}

impl OverlayService {
    /// Sends our node id on a peer's channel, once, and our signed peer record after it (not
    /// in client mode, nor before the id is certified where ids are).
    pub(super) fn announce(&mut self, now: Instant, peer: PeerId) {
        if self.client() || self.dht.is_client() {
            return;
        }
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(addr) = entry.addr else {
            return;
        };
        if entry.announced {
            return;
        }
        entry.announced = true;
        let to = Contact {
            id: entry.node.unwrap_or_else(|| provisional_id(&peer)),
            peer,
            addr,
        };
        let own = self.dht.own().id;
        let opt = match self.dht.own_certified() {
            Some((id, proof)) if id == own => ConnectionOpt::CertifiedId(id, proof),
            _ => ConnectionOpt::NodeId(own),
        };
        let body = Body::SetConnectionOpt(opt);
        self.dht
            .request(now, &to, Opcode::SetConnectionOpt, body, ANNOUNCE);
        // Then our signed record (option 5), which the peer hands on in FIND_NODE replies so
        // that others open us by IK.
        if let Some(record) = self.dht.own_record() {
            let body = Body::SetConnectionOpt(ConnectionOpt::PeerRecord(record.to_vec()));
            self.dht
                .request(now, &to, Opcode::SetConnectionOpt, body, ANNOUNCE);
        }
    }

    /// True when `bytes` may be a SET_CONNECTION_OPT request (`[3, id, ...]`): only those are
    /// parsed here, to learn a peer's node id; the DHT parses every frame itself.
    pub(super) fn may_announce(bytes: &[u8]) -> bool {
        matches!(bytes, [0x93, 0x03, ..])
    }

    /// The node id `bytes` announces for `peer`: a certified one is admitted by the DHT's
    /// check, a provisional one only where the driver vouches.
    pub(super) fn announced_id(&mut self, peer: &PeerId, bytes: &[u8]) -> Announced {
        let Ok(Frame::Request(Request {
            body: Body::SetConnectionOpt(opt),
            ..
        })) = Frame::parse(bytes, &self.config.kademlia.frame)
        else {
            return Announced::Nothing;
        };
        let checked = match opt {
            ConnectionOpt::NodeId(id) => {
                (self.config.accept_provisional && id == provisional_id(peer)).then_some(id)
            }
            ConnectionOpt::CertifiedId(id, proof) => {
                self.dht.admit(&id, peer, &proof).is_ok().then_some(id)
            }
            _ => return Announced::Nothing,
        };
        checked.map_or(Announced::Refused, Announced::Id)
    }

    /// A bootstrap peer showed its id (or failed to): it joins the contacts to start from.
    pub(super) fn bootstrap_id(&mut self, now: Instant, peer: PeerId, id: Option<NodeId>) {
        if let Some(addr) = self.awaiting.remove(&peer) {
            let contact = id.map(|id| Contact { id, peer, addr });
            self.bootstrap_answered(now, contact);
        }
    }

    /// Takes the node's certified id once the check has it: the DHT moves there, every open
    /// channel hears the id, and a self-lookup tells the nodes around it.
    pub(super) fn check_own_id(&mut self, now: Instant) {
        let Some((id, _)) = self.dht.own_certified() else {
            self.certify_at = now.checked_add(CERTIFY_POLL);
            return;
        };
        self.certify_at = None;
        self.provisional = false;
        tracing::info!(node_id = %crate::overlay::id::hex(&id), "overlay: certified node id");
        self.dht.set_own_id(now, id);
        let open: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(p.link, Link::Open { .. }))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in open {
            if let Some(entry) = self.peers.get_mut(&peer) {
                entry.announced = false;
            }
            self.announce(now, peer);
        }
        if !self.dht.table().is_empty() {
            self.dht.look_up_self(now);
        }
    }

    /// Makes a bootstrap peer show its id: a peer learns of a channel only from a message on
    /// it, and a node that announces nothing (a client) would otherwise wait forever. A PING
    /// does; the peer announces before it answers.
    pub(super) fn ask_for_id(&mut self, now: Instant, peer: PeerId, addr: std::net::SocketAddr) {
        if !self.dht.is_client() {
            return; // `attach` announced our id, which the peer answers with its own.
        }
        let to = Contact {
            id: provisional_id(&peer),
            peer,
            addr,
        };
        self.dht
            .request(now, &to, Opcode::Ping, Body::Ping, ANNOUNCE);
    }
}
