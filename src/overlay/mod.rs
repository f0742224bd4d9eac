//! Overlay (PROTOCOL.md §10, seed 003): the RPC layer and a Kademlia DHT, sans-IO.
//!
//! [`rpc`] frames and parses every opcode's msgpack body, and signs and checks what is
//! relayed (`rpc::envelope`); [`id`] holds node ids and contacts; [`kademlia`] is the DHT as a
//! state machine fed `(now, wall, from, bytes)` and polled for `(to, bytes)`, its timeout and
//! its events. [`worker`] carries it over one reliable channel per peer as a service on the
//! node's worker, and [`api`] is the application's handle on it; the simulator
//! (`tests/overlay/`) drives it without channels.
//! What is built and what is not: `docs/OVERLAY.md`.
#![deny(clippy::arithmetic_side_effects)]

pub mod api;
pub mod id;
pub mod kademlia;
pub mod persist;
pub mod rpc;
pub mod worker;
