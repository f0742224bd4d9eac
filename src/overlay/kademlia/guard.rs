//! Checks on who a peer claims to be and what it answers (issue 15 review): only certified
//! node ids count ([`super::certificate`]), a node without a certified id of its own is a
//! client, and a lookup's reply must come from the id it was asked as and be about its key.

use super::certificate::CertificateCheck;
use super::node::{Dht, Purpose, Sender};
use super::table::RoutingTable;
use crate::overlay::id::NodeId;
use crate::overlay::rpc::ReplyBody;
use crate::wire::PeerId;
use std::time::Instant;

impl Dht {
    /// Replaces how node ids are certified (by default the driver vouches for them,
    /// [`super::certificate::DriverVouches`]). A node supplies its network's certificates.
    pub fn set_certificate_check(&mut self, check: Box<dyn CertificateCheck>) {
        self.certificates = check;
    }

    /// Checks the proof `peer` showed for `node` ([`CertificateCheck::admit`]); `Err` is the
    /// reason it was refused, counted.
    pub fn admit(
        &mut self,
        node: &NodeId,
        peer: &PeerId,
        proof: &[u8],
    ) -> Result<(), &'static str> {
        // One already admitted costs a lookup; a check is charged to the peer.
        if !self.certificates.certified(node, peer) && !self.charge_check(*peer) {
            return Err("checks_limit");
        }
        let verdict = self.certificates.admit(node, peer, proof);
        if let Err(reason) = verdict {
            self.stats
                .add("weft_overlay_dropped_total", Some(("reason", reason)), 1);
        }
        verdict
    }

    /// The node's own certified id and its proof, once the check has them.
    pub fn own_certified(&self) -> Option<(NodeId, Vec<u8>)> {
        self.certificates.own()
    }

    /// Moves the node to `id` (its certified id, once issued): the routing table is rebuilt
    /// around it with the contacts it held. Records stay; replication moves them to their new
    /// closest nodes.
    pub fn set_own_id(&mut self, now: Instant, id: NodeId) {
        if id == self.own.id {
            return;
        }
        let held = self.table.closest(&id, usize::MAX);
        self.own.id = id;
        self.table = RoutingTable::new(
            id,
            self.config.k,
            self.config.tau,
            self.config.per_subnet_cap,
        );
        for contact in held {
            if contact.id != id {
                let _ = self.table.seen(contact, now);
            }
        }
    }

    /// Looks the node's own id up again (after [`Dht::set_own_id`]): fills the buckets around
    /// the new id and tells the nodes there about it.
    pub fn look_up_self(&mut self, now: Instant) {
        let own = self.own.id;
        self.start_lookup(now, own, Purpose::Maintain);
    }

    /// True when the node runs in client mode: configured so, or its own id is not
    /// certified (yet). A client queries, holds no records, and tells peers no id.
    pub fn is_client(&self) -> bool {
        self.config.client || !self.certificates.certified(&self.own.id, &self.own.peer)
    }

    /// `from` with its node id kept only when certified; an uncertified claim is counted and
    /// the sender treated as a client (served, but kept out of the table).
    pub(super) fn certified_sender(&mut self, from: Sender) -> Sender {
        match from.node {
            Some(node) if !self.certificates.certified(&node, &from.peer) => {
                self.stats.add("weft_overlay_uncertified_total", None, 1);
                Sender { node: None, ..from }
            }
            _ => from,
        }
    }

    /// Whether an ACK to lookup `lookup`'s request to `node` may be used: `node` must be
    /// certified for the peer that answered, which must not claim another id (a contact list
    /// may pair an honest peer with a made-up id close to the target); and a found value must
    /// be the lookup's key's. A reply that does not fit is counted and taken as a failure.
    pub(super) fn answer_fits(
        &mut self,
        from: &Sender,
        node: &NodeId,
        lookup: u64,
        body: &ReplyBody,
    ) -> bool {
        let elsewhere = from.node.is_some_and(|claimed| claimed != *node);
        let reason = if elsewhere || !self.certificates.certified(node, &from.peer) {
            Some("wrong_node")
        } else {
            match (body, self.lookups.get(&lookup).map(|a| &a.purpose)) {
                (ReplyBody::Found { key, .. }, Some(Purpose::Get { key: asked, .. }))
                    if key != asked =>
                {
                    Some("wrong_key")
                }
                (ReplyBody::Found { .. }, Some(Purpose::Get { .. })) | (ReplyBody::Nodes(_), _) => {
                    None
                }
                // A value nobody asked for, or items that are neither.
                (ReplyBody::Found { .. }, _) => Some("wrong_key"),
                _ => None,
            }
        };
        match reason {
            Some(reason) => {
                self.stats
                    .add("weft_overlay_dropped_total", Some(("reason", reason)), 1);
                false
            }
            None => true,
        }
    }

    /// Whether a STORE's ACK names the key that was stored: one that names another (or none)
    /// is counted (`wrong_key`) and the STORE is not counted as stored, so a peer cannot
    /// claim a record it did not take.
    pub(super) fn stored_fits(&mut self, key: &[u8], body: &ReplyBody) -> bool {
        let fits = matches!(body, ReplyBody::Stored { key: named, .. } if named.as_slice() == key);
        if !fits {
            self.stats.add(
                "weft_overlay_dropped_total",
                Some(("reason", "wrong_key")),
                1,
            );
        }
        fits
    }
}
