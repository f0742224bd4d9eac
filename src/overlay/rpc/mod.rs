//! The overlay's RPC layer (PROTOCOL.md §10, seed 003 §3.2 and §6): msgpack bodies held to the
//! seed's types ([`value`]), the opcodes ([`opcode`]), request and reply frames with every
//! opcode's schema ([`message`]), requests in flight named by hashcodes with timeouts from the
//! peer's round-trip time ([`pending`]), the application's CUSTOM handlers ([`custom`]), and
//! the signed envelopes of what is relayed ([`envelope`]).
//! The schema and its test vectors are in `docs/OVERLAY.md`.

pub mod compression;
pub mod custom;
pub mod envelope;
pub mod message;
pub mod opcode;
pub mod pending;
pub mod value;

pub use custom::{CustomHandlers, Handler};
pub use envelope::{Envelope, EnvelopeError};
pub use message::{
    Body, ConnectionOpt, Frame, FrameError, FrameLimits, MAX_RECORD_BYTES, NodeInfo, RecordMeta,
    Reply, ReplyBody, Request, Subnet,
};
pub use opcode::Opcode;
pub use pending::{Pending, ReplyMismatch, RttEstimate, TimeoutConfig};
pub use value::{Limits, Value, ValueError};
