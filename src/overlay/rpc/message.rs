//! RPC frames (PROTOCOL.md §10): a request is `[op, request_id, args]`, a reply
//! `[ACK or NACK, request_id, op, ...items]`, each one msgpack value (see `docs/OVERLAY.md` for
//! every opcode's args and items). Parsing goes bytes → [`Value`] (size bound first) → typed
//! frame, and never panics on what a peer sent.

use super::envelope::Envelope;
use super::opcode::Opcode;
use super::value::{Limits, Value, ValueError};
use crate::overlay::id::{Contact, NodeId, addr_from_bytes, addr_to_bytes, key_address};
use crate::wire::PeerId;

/// Bounds for parsing a frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// The msgpack bounds.
    pub value: Limits,
    /// Most contacts a reply may list (k).
    pub max_contacts: usize,
    /// Longest DHT key in bytes.
    pub max_key: usize,
}

impl Default for FrameLimits {
    fn default() -> FrameLimits {
        FrameLimits {
            value: Limits::default(),
            max_contacts: 20,
            max_key: 256,
        }
    }
}

/// Why a frame was refused; each is a metric reason label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not a value of the subset.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Not `[op, id, ...]`, an op outside 0..16, or an id past 32 bits.
    #[error("frame does not follow the schema")]
    Frame,
    /// The args or items do not follow the opcode's schema.
    #[error("body does not follow its opcode's schema")]
    Body,
    /// A key whose address is not the one the frame carries.
    #[error("key and address disagree")]
    AddressMismatch,
    /// More contacts than k, or a key past the bound.
    #[error("body past a bound")]
    Bound,
}

impl FrameError {
    /// The reason label it is counted under.
    pub fn reason(self) -> &'static str {
        match self {
            FrameError::Value(e) => e.reason(),
            FrameError::Frame => "frame",
            FrameError::Body => "body",
            FrameError::AddressMismatch => "address_mismatch",
            FrameError::Bound => "bound",
        }
    }
}

/// A record's metadata as it travels: `{"version": uint, "ttl": seconds left}`. Relative time,
/// so two nodes' clocks need not agree.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// Its version (PROTOCOL.md §10: assigned by the key's home node).
    pub version: u64,
    /// Seconds until it expires.
    pub ttl: u64,
}

impl RecordMeta {
    fn to_value(self) -> Value {
        Value::Map(vec![
            ("version".into(), Value::UInt(self.version)),
            ("ttl".into(), Value::UInt(self.ttl)),
        ])
    }

    fn from_value(value: &Value) -> Result<RecordMeta, FrameError> {
        match value {
            Value::Map(entries) if entries.len() == 2 => Ok(RecordMeta {
                version: value
                    .get("version")
                    .and_then(Value::as_u64)
                    .ok_or(FrameError::Body)?,
                ttl: value
                    .get("ttl")
                    .and_then(Value::as_u64)
                    .ok_or(FrameError::Body)?,
            }),
            _ => Err(FrameError::Body),
        }
    }
}

/// A connection option and its setting (seed 003 §3.3).
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectionOpt {
    /// Option 0: a compression method the sender can read.
    Compression(u64),
    /// Option 1: the method the sender prefers.
    PreferredCompression(u64),
    /// Option 2: the subnet descriptor.
    Subnet(Subnet),
    /// Option 3 (weft): the sender's node id (bin 20), sent first on every channel a node that
    /// is not a client opens, so the receiver may put it in its routing table. A provisional
    /// id (`id::provisional_id`), for networks without certified ids.
    NodeId(NodeId),
    /// Option 4 (weft): the sender's certified node id and its proof, `[bin 20, bin]`: what
    /// option 3 is where ids are certified (PROTOCOL.md §11). The proof is opaque here; the
    /// node checks it against its network (`kademlia::CertificateCheck::admit`).
    CertifiedId(NodeId, Vec<u8>),
    /// Option 5 (weft): the sender's signed peer record (`session::PeerRecord`'s bytes, at
    /// most [`MAX_RECORD_BYTES`]), sent once on every channel by a node that is not a client,
    /// so the receiver can hand it on in FIND_NODE replies and others open the sender by IK.
    /// ACKed when it is the sender's own (its key hashes to the session's peer id) and its
    /// signature verifies, else NACKed.
    PeerRecord(Vec<u8>),
}

/// The subnet descriptor `[k, α, τ, β, ℓ, transport, network description]`: a peer whose
/// descriptor differs is NACKed and disconnected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// Bucket size and replication.
    pub k: u64,
    /// Lookup parallelism.
    pub alpha: u64,
    /// Id bits.
    pub tau: u64,
    /// Key bits.
    pub beta: u64,
    /// Self-initiated connection limit.
    pub ell: u64,
    /// The transport, e.g. `"weft/udp"`.
    pub transport: String,
    /// The network's name.
    pub description: String,
}

impl Subnet {
    fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::UInt(self.k),
            Value::UInt(self.alpha),
            Value::UInt(self.tau),
            Value::UInt(self.beta),
            Value::UInt(self.ell),
            Value::Str(self.transport.clone()),
            Value::Str(self.description.clone()),
        ])
    }

    fn from_value(value: &Value) -> Result<Subnet, FrameError> {
        let [k, alpha, tau, beta, ell, transport, description] =
            value.as_array().ok_or(FrameError::Body)?
        else {
            return Err(FrameError::Body);
        };
        let n = |v: &Value| v.as_u64().ok_or(FrameError::Body);
        let s = |v: &Value| v.as_str().map(str::to_owned).ok_or(FrameError::Body);
        Ok(Subnet {
            k: n(k)?,
            alpha: n(alpha)?,
            tau: n(tau)?,
            beta: n(beta)?,
            ell: n(ell)?,
            transport: s(transport)?,
            description: s(description)?,
        })
    }
}

impl ConnectionOpt {
    /// The option's number and its setting as a value.
    pub fn to_pair(&self) -> (u64, Value) {
        match self {
            ConnectionOpt::Compression(m) => (0, Value::UInt(*m)),
            ConnectionOpt::PreferredCompression(m) => (1, Value::UInt(*m)),
            ConnectionOpt::Subnet(s) => (2, s.to_value()),
            ConnectionOpt::NodeId(id) => (3, Value::Bin(id.0.to_vec())),
            ConnectionOpt::CertifiedId(id, proof) => (
                4,
                Value::Array(vec![Value::Bin(id.0.to_vec()), Value::Bin(proof.clone())]),
            ),
            ConnectionOpt::PeerRecord(record) => (5, Value::Bin(record.clone())),
        }
    }

    fn from_pair(option: &Value, setting: &Value) -> Result<ConnectionOpt, FrameError> {
        match option.as_u64() {
            Some(0) => Ok(ConnectionOpt::Compression(
                setting.as_u64().ok_or(FrameError::Body)?,
            )),
            Some(1) => Ok(ConnectionOpt::PreferredCompression(
                setting.as_u64().ok_or(FrameError::Body)?,
            )),
            Some(2) => Ok(ConnectionOpt::Subnet(Subnet::from_value(setting)?)),
            Some(3) => Ok(ConnectionOpt::NodeId(node_id(setting)?)),
            Some(4) => match setting.as_array() {
                Some([id, proof]) => Ok(ConnectionOpt::CertifiedId(
                    node_id(id)?,
                    proof.as_bin().ok_or(FrameError::Body)?.to_vec(),
                )),
                _ => Err(FrameError::Body),
            },
            Some(5) => match setting.as_bin() {
                Some(record) if record.len() > MAX_RECORD_BYTES => Err(FrameError::Bound),
                Some(record) => Ok(ConnectionOpt::PeerRecord(record.to_vec())),
                None => Err(FrameError::Body),
            },
            _ => Err(FrameError::Body),
        }
    }
}

/// A request's args, typed by its opcode.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// PING: args nil.
    Ping,
    /// SET_CONNECTION_OPT `[option, setting]`.
    SetConnectionOpt(ConnectionOpt),
    /// ANNOUNCE, CHANGE_KEY, SHOUT, WHISPER: an envelope whose op is the request's.
    Envelope(Envelope),
    /// SPEAK: any value.
    Speak(Value),
    /// FIND_NODE: the target id.
    FindNode(NodeId),
    /// FIND_VALUE `[address, key]`.
    FindValue {
        /// The key.
        key: Vec<u8>,
    },
    /// STORE `[address, key, value, metadata]`.
    Store {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Value,
        /// Its metadata.
        meta: RecordMeta,
    },
    /// LOCK `[address, key, lease seconds]`.
    Lock {
        /// The key.
        key: Vec<u8>,
        /// How long the lease lasts.
        lease: u64,
    },
    /// CAS `[address, key, expected version, value]`.
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The version the sender read.
        expected: u64,
        /// The new value.
        value: Value,
    },
    /// DIFF `[address, key, version, patch map]`.
    Diff {
        /// The key.
        key: Vec<u8>,
        /// The version the patch applies to.
        version: u64,
        /// Entries to set (nil removes).
        patch: Value,
    },
    /// CUSTOM `[handler name, body]`.
    Custom {
        /// The handler it is for.
        name: String,
        /// Its body.
        body: Value,
    },
}

/// A request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The operation (never ACK or NACK).
    pub op: Opcode,
    /// The sender's request id (a hashcode through its cipher, PROTOCOL.md §8).
    pub id: u32,
    /// Its args.
    pub body: Body,
}

/// A reply's items, typed by its opcode.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyBody {
    /// ACK FIND_NODE (also the answer to a FIND_VALUE whose key is not held): contacts, each
    /// with its signed peer record when the replier holds one.
    Nodes(Vec<NodeInfo>),
    /// ACK FIND_VALUE `key, value, metadata`.
    Found {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Value,
        /// Its metadata.
        meta: RecordMeta,
    },
    /// ACK STORE `key, metadata`.
    Stored {
        /// The key.
        key: Vec<u8>,
        /// The metadata as stored.
        meta: RecordMeta,
    },
    /// Any other ACK, and every NACK: the items as they came.
    Items(Vec<Value>),
}

/// A reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// ACK or NACK.
    pub ack: bool,
    /// The id of the request it answers.
    pub id: u32,
    /// The opcode the reply is for.
    pub op: Opcode,
    /// Its items.
    pub body: ReplyBody,
}

/// One frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A request.
    Request(Request),
    /// A reply.
    Reply(Reply),
}

fn node_id(value: &Value) -> Result<NodeId, FrameError> {
    value
        .as_bin()
        .and_then(NodeId::from_slice)
        .ok_or(FrameError::Body)
}

fn key_at(address: &Value, key: &Value, limits: &FrameLimits) -> Result<Vec<u8>, FrameError> {
    let address = node_id(address)?;
    let key = key.as_bin().ok_or(FrameError::Body)?;
    if key.len() > limits.max_key {
        return Err(FrameError::Bound);
    }
    // PROTOCOL.md §10: the address is recomputed by every receiver.
    if key_address(key) != address {
        return Err(FrameError::AddressMismatch);
    }
    Ok(key.to_vec())
}

fn addressed(key: &[u8]) -> [Value; 2] {
    [
        Value::Bin(key_address(key).0.to_vec()),
        Value::Bin(key.to_vec()),
    ]
}

/// Longest signed peer record a contact may carry (`session::PeerRecord`'s bytes): a record
/// with a few addresses and no certificate is about 140 bytes.
pub const MAX_RECORD_BYTES: usize = 512;

/// A contact as a FIND_NODE reply lists it: where the node is and, when the replier holds it,
/// the node's signed peer record (PROTOCOL.md §2), whose X25519 key lets the asker open it by
/// IK. The record is opaque bytes here: the DHT checks that its key hashes to the contact's
/// peer id, and its signature before it is used (`kademlia::keys`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The contact.
    pub contact: Contact,
    /// Its signed peer record, as the replier sent it.
    pub record: Option<Vec<u8>>,
}

impl From<Contact> for NodeInfo {
    fn from(contact: Contact) -> NodeInfo {
        NodeInfo {
            contact,
            record: None,
        }
    }
}

/// A node info as `[node id, peer id, address]`, or with its record as a fourth item.
pub fn node_info_to_value(info: &NodeInfo) -> Value {
    let mut value = contact_to_value(&info.contact);
    if let (Value::Array(items), Some(record)) = (&mut value, &info.record) {
        items.push(Value::Bin(record.clone()));
    }
    value
}

/// The node info `[node id, peer id, address]` or `[node id, peer id, address, record]`
/// spells (the first form is what a node that knows no records sends, and what older nodes
/// send).
pub fn node_info_from_value(value: &Value) -> Result<NodeInfo, FrameError> {
    match value.as_array().ok_or(FrameError::Body)? {
        [id, peer, addr, record] => {
            let record = record.as_bin().ok_or(FrameError::Body)?;
            if record.len() > MAX_RECORD_BYTES {
                return Err(FrameError::Bound);
            }
            Ok(NodeInfo {
                contact: contact_of(id, peer, addr)?,
                record: Some(record.to_vec()),
            })
        }
        _ => contact_from_value(value).map(NodeInfo::from),
    }
}

/// A contact as `[node id, peer id, address]`.
pub fn contact_to_value(contact: &Contact) -> Value {
    Value::Array(vec![
        Value::Bin(contact.id.0.to_vec()),
        Value::Bin(contact.peer.0.to_vec()),
        Value::Bin(addr_to_bytes(&contact.addr)),
    ])
}

/// The contact `[node id, peer id, address]` spells.
pub fn contact_from_value(value: &Value) -> Result<Contact, FrameError> {
    let [id, peer, addr] = value.as_array().ok_or(FrameError::Body)? else {
        return Err(FrameError::Body);
    };
    contact_of(id, peer, addr)
}

fn contact_of(id: &Value, peer: &Value, addr: &Value) -> Result<Contact, FrameError> {
    Ok(Contact {
        id: node_id(id)?,
        peer: peer
            .as_bin()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(PeerId)
            .ok_or(FrameError::Body)?,
        addr: addr
            .as_bin()
            .and_then(addr_from_bytes)
            .ok_or(FrameError::Body)?,
    })
}

fn body_from_value(op: Opcode, args: &Value, limits: &FrameLimits) -> Result<Body, FrameError> {
    let items = || args.as_array().ok_or(FrameError::Body);
    Ok(match op {
        Opcode::Ack | Opcode::Nack => return Err(FrameError::Frame),
        Opcode::Ping => match args {
            Value::Nil => Body::Ping,
            _ => return Err(FrameError::Body),
        },
        Opcode::SetConnectionOpt => {
            let [option, setting] = items()? else {
                return Err(FrameError::Body);
            };
            Body::SetConnectionOpt(ConnectionOpt::from_pair(option, setting)?)
        }
        Opcode::Announce | Opcode::ChangeKey | Opcode::Shout | Opcode::Whisper => {
            let envelope = Envelope::from_value(args).map_err(|_| FrameError::Body)?;
            if envelope.op != op {
                return Err(FrameError::Body);
            }
            Body::Envelope(envelope)
        }
        Opcode::Speak => Body::Speak(args.clone()),
        Opcode::FindNode => Body::FindNode(node_id(args)?),
        Opcode::FindValue => {
            let [address, key] = items()? else {
                return Err(FrameError::Body);
            };
            Body::FindValue {
                key: key_at(address, key, limits)?,
            }
        }
        Opcode::Store => {
            let [address, key, value, meta] = items()? else {
                return Err(FrameError::Body);
            };
            Body::Store {
                key: key_at(address, key, limits)?,
                value: value.clone(),
                meta: RecordMeta::from_value(meta)?,
            }
        }
        Opcode::Lock => {
            let [address, key, lease] = items()? else {
                return Err(FrameError::Body);
            };
            Body::Lock {
                key: key_at(address, key, limits)?,
                lease: lease.as_u64().ok_or(FrameError::Body)?,
            }
        }
        Opcode::Cas => {
            let [address, key, expected, value] = items()? else {
                return Err(FrameError::Body);
            };
            Body::Cas {
                key: key_at(address, key, limits)?,
                expected: expected.as_u64().ok_or(FrameError::Body)?,
                value: value.clone(),
            }
        }
        Opcode::Diff => {
            let [address, key, version, patch] = items()? else {
                return Err(FrameError::Body);
            };
            if !matches!(patch, Value::Map(_)) {
                return Err(FrameError::Body);
            }
            Body::Diff {
                key: key_at(address, key, limits)?,
                version: version.as_u64().ok_or(FrameError::Body)?,
                patch: patch.clone(),
            }
        }
        Opcode::Custom => {
            let [name, body] = items()? else {
                return Err(FrameError::Body);
            };
            Body::Custom {
                name: name.as_str().ok_or(FrameError::Body)?.to_owned(),
                body: body.clone(),
            }
        }
    })
}

impl Body {
    /// The args as a value.
    pub fn to_value(&self) -> Value {
        match self {
            Body::Ping => Value::Nil,
            Body::SetConnectionOpt(opt) => {
                let (option, setting) = opt.to_pair();
                Value::Array(vec![Value::UInt(option), setting])
            }
            Body::Envelope(envelope) => envelope.to_value(),
            Body::Speak(value) => value.clone(),
            Body::FindNode(target) => Value::Bin(target.0.to_vec()),
            Body::FindValue { key } => Value::Array(addressed(key).to_vec()),
            Body::Store { key, value, meta } => {
                let mut items = addressed(key).to_vec();
                items.extend([value.clone(), meta.to_value()]);
                Value::Array(items)
            }
            Body::Lock { key, lease } => {
                let mut items = addressed(key).to_vec();
                items.push(Value::UInt(*lease));
                Value::Array(items)
            }
            Body::Cas {
                key,
                expected,
                value,
            } => {
                let mut items = addressed(key).to_vec();
                items.extend([Value::UInt(*expected), value.clone()]);
                Value::Array(items)
            }
            Body::Diff {
                key,
                version,
                patch,
            } => {
                let mut items = addressed(key).to_vec();
                items.extend([Value::UInt(*version), patch.clone()]);
                Value::Array(items)
            }
            Body::Custom { name, body } => {
                Value::Array(vec![Value::Str(name.clone()), body.clone()])
            }
        }
    }
}

impl Request {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        Value::Array(vec![
            Value::UInt(u64::from(self.op.code())),
            Value::UInt(u64::from(self.id)),
            self.body.to_value(),
        ])
        .encode()
    }
}

impl Reply {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let head = if self.ack { Opcode::Ack } else { Opcode::Nack };
        let mut items = vec![
            Value::UInt(u64::from(head.code())),
            Value::UInt(u64::from(self.id)),
            Value::UInt(u64::from(self.op.code())),
        ];
        match &self.body {
            ReplyBody::Nodes(nodes) => items.extend(nodes.iter().map(node_info_to_value)),
            ReplyBody::Found { key, value, meta } => {
                items.extend([Value::Bin(key.clone()), value.clone(), meta.to_value()])
            }
            ReplyBody::Stored { key, meta } => {
                items.extend([Value::Bin(key.clone()), meta.to_value()])
            }
            ReplyBody::Items(rest) => items.extend(rest.iter().cloned()),
        }
        Value::Array(items).encode()
    }

    /// A NACK for `op` with a reason a person reads.
    pub fn nack(id: u32, op: Opcode, reason: &str) -> Reply {
        Reply {
            ack: false,
            id,
            op,
            body: ReplyBody::Items(vec![Value::Str(reason.to_owned())]),
        }
    }
}

fn reply_body(
    ack: bool,
    op: Opcode,
    items: &[Value],
    limits: &FrameLimits,
) -> Result<ReplyBody, FrameError> {
    if !ack {
        return Ok(ReplyBody::Items(items.to_vec()));
    }
    Ok(match op {
        Opcode::FindNode => {
            if items.len() > limits.max_contacts {
                return Err(FrameError::Bound);
            }
            ReplyBody::Nodes(
                items
                    .iter()
                    .map(node_info_from_value)
                    .collect::<Result<_, _>>()?,
            )
        }
        Opcode::FindValue => {
            let [key, value, meta] = items else {
                return Err(FrameError::Body);
            };
            let key = key.as_bin().ok_or(FrameError::Body)?;
            if key.len() > limits.max_key {
                return Err(FrameError::Bound);
            }
            ReplyBody::Found {
                key: key.to_vec(),
                value: value.clone(),
                meta: RecordMeta::from_value(meta)?,
            }
        }
        Opcode::Store => {
            let [key, meta] = items else {
                return Err(FrameError::Body);
            };
            let key = key.as_bin().ok_or(FrameError::Body)?;
            if key.len() > limits.max_key {
                return Err(FrameError::Bound);
            }
            ReplyBody::Stored {
                key: key.to_vec(),
                meta: RecordMeta::from_value(meta)?,
            }
        }
        _ => ReplyBody::Items(items.to_vec()),
    })
}

impl Frame {
    /// Parses one frame that fills `bytes`, under `limits`.
    pub fn parse(bytes: &[u8], limits: &FrameLimits) -> Result<Frame, FrameError> {
        let value = Value::decode(bytes, limits.value)?;
        let items = value.as_array().ok_or(FrameError::Frame)?;
        let (Some(op), Some(id)) = (items.first(), items.get(1)) else {
            return Err(FrameError::Frame);
        };
        let op = op
            .as_u64()
            .and_then(Opcode::from_u64)
            .ok_or(FrameError::Frame)?;
        let id = id
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or(FrameError::Frame)?;
        if op.is_reply() {
            let Some(for_op) = items.get(2) else {
                return Err(FrameError::Frame);
            };
            let for_op = for_op
                .as_u64()
                .and_then(Opcode::from_u64)
                .filter(|op| !op.is_reply())
                .ok_or(FrameError::Frame)?;
            let ack = op == Opcode::Ack;
            let rest = items.get(3..).unwrap_or(&[]);
            return Ok(Frame::Reply(Reply {
                ack,
                id,
                op: for_op,
                body: reply_body(ack, for_op, rest, limits)?,
            }));
        }
        let [_, _, args] = items else {
            return Err(FrameError::Frame);
        };
        Ok(Frame::Request(Request {
            op,
            id,
            body: body_from_value(op, args, limits)?,
        }))
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Request(r) => r.encode(),
            Frame::Reply(r) => r.encode(),
        }
    }
}
