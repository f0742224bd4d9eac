//! How a node answers each opcode (seed 003 §6). What it does not serve yet (ANNOUNCE,
//! CHANGE_KEY, SHOUT, SPEAK, WHISPER, LOCK, CAS, DIFF: the next issue) is parsed and NACKed,
//! a relayed body without a signature check (the NACK does not depend on it); once an op is
//! served, its envelope must verify first, and one that does not is dropped and counted.

use super::node::{Dht, Event, Sender};
use super::store::RecordStore;
use crate::overlay::id::{key_address, provisional_id};
use crate::overlay::rpc::{Body, ConnectionOpt, Opcode, Reply, ReplyBody, Request, Value};

/// The reason a NACK gives for an opcode this node does not serve yet.
pub const NOT_SERVED: &str = "not served";

impl Dht {
    /// The reply to `request` from `from`, or `None` when it is dropped unanswered.
    pub(super) fn serve(&mut self, wall: u64, from: &Sender, request: Request) -> Option<Reply> {
        let Request { op, id, body } = request;
        let ack = |body: ReplyBody| Reply {
            ack: true,
            id,
            op,
            body,
        };
        let reply = match body {
            Body::Ping => ack(ReplyBody::Items(Vec::new())),
            Body::SetConnectionOpt(opt) => {
                let (option, setting) = match &opt {
                    // The proof is not echoed back: the id says what was answered.
                    ConnectionOpt::CertifiedId(id, _) => (4, Value::Bin(id.0.to_vec())),
                    // Nor the record: the peer id says whose was taken.
                    ConnectionOpt::PeerRecord(_) => (5, Value::Bin(from.peer.0.to_vec())),
                    _ => opt.to_pair(),
                };
                let items = vec![Value::UInt(option), setting];
                let accepted = match &opt {
                    ConnectionOpt::Compression(m) => self.accept_compression(from.peer, *m, false),
                    ConnectionOpt::PreferredCompression(m) => {
                        self.accept_compression(from.peer, *m, true)
                    }
                    ConnectionOpt::Subnet(subnet) => {
                        let same = *subnet == self.config.subnet();
                        if !same {
                            self.events.push_back(Event::Disconnect { peer: from.peer });
                        }
                        same
                    }
                    // A provisional id must be the one the sender's key implies
                    // (`id::provisional_id`), where the driver vouches for ids; a certified one was admitted by the driver
                    // (`CertificateCheck::admit`) before this frame came here.
                    ConnectionOpt::NodeId(id) => {
                        *id == provisional_id(&from.peer)
                            && self.certificates.certified(id, &from.peer)
                    }
                    ConnectionOpt::CertifiedId(id, _) => {
                        self.certificates.certified(id, &from.peer)
                    }
                    ConnectionOpt::PeerRecord(record) => self.accept_record(from, record, wall),
                };
                Reply {
                    ack: accepted,
                    id,
                    op,
                    body: ReplyBody::Items(items),
                }
            }
            // Not served, so its signature is not checked: the answer does not depend on it,
            // and a check (~35 µs) per ~120-byte frame would let a peer buy the worker's time
            // at a few hundred times what its bytes cost (docs/SECURITY.md). Whatever serves
            // a relayed op must check `Envelope::verify` first and drop what fails.
            Body::Envelope(_)
            | Body::Speak(_)
            | Body::Lock { .. }
            | Body::Cas { .. }
            | Body::Diff { .. } => Reply::nack(id, op, NOT_SERVED),
            Body::FindNode(target) => ack(ReplyBody::Nodes(
                self.keys.with_records(self.closest_for(&target, from)),
            )),
            Body::FindValue { key } => match self.records.get(&key, wall) {
                Some((value, meta)) => ack(ReplyBody::Found {
                    key: key.clone(),
                    value: value.clone(),
                    meta,
                }),
                None => Reply {
                    ack: true,
                    id,
                    // Seed 003 §6.11.1: answered as if it were a FIND_NODE.
                    op: Opcode::FindNode,
                    body: ReplyBody::Nodes(
                        self.keys
                            .with_records(self.closest_for(&key_address(&key), from)),
                    ),
                },
            },
            Body::Store { key, value, meta } => {
                if self.is_client() {
                    Reply::nack(id, op, "client mode")
                } else {
                    let max_ttl = self.config.record_ttl.as_secs();
                    let replicate = self.config.replicate.as_secs();
                    // The peer's share is checked first: a peer past it is refused even where
                    // the budget as a whole still has room.
                    let bytes = RecordStore::charge_of(&key, &value);
                    let stored = self.records.admit(&key, &from.peer, bytes).and_then(|()| {
                        self.records
                            .put(&key, value, meta, wall, max_ttl, replicate)
                    });
                    match stored {
                        Ok(meta) => {
                            self.records.set_owner(&key, from.peer);
                            self.journal_record(&key);
                            ack(ReplyBody::Stored { key, meta })
                        }
                        Err(error) => {
                            self.stats.add(
                                "weft_overlay_store_refused_total",
                                Some(("reason", error.reason())),
                                1,
                            );
                            Reply::nack(id, op, error.reason())
                        }
                    }
                }
            }
            Body::Custom { name, body } => match self.custom.call(&name, from.peer, &body) {
                Ok(result) => ack(ReplyBody::Items(vec![result])),
                Err(reason) => Reply::nack(id, op, &reason),
            },
        };
        let counter = if reply.ack {
            "weft_overlay_requests_served_total"
        } else {
            "weft_overlay_requests_nacked_total"
        };
        self.stats.add(counter, Some(("op", op.name())), 1);
        Some(reply)
    }

    /// The k closest contacts to `target` the node knows, the asker left out.
    fn closest_for(
        &self,
        target: &crate::overlay::id::NodeId,
        from: &Sender,
    ) -> Vec<crate::overlay::id::Contact> {
        let mut closest = self.table.closest(target, self.config.k.saturating_add(1));
        closest.retain(|c| c.peer != from.peer);
        closest.truncate(self.config.k);
        closest
    }
}
