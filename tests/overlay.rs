//! The overlay (issue 15, PROTOCOL.md §10): the RPC layer's schema and test vectors, signed
//! envelopes, and the Kademlia DHT driven in the deterministic simulator.

mod sim;

#[path = "overlay/compression.rs"]
mod compression;
#[path = "overlay/harness.rs"]
mod harness;
#[path = "overlay/keys.rs"]
mod keys;
#[path = "overlay/maintenance.rs"]
mod maintenance;
#[path = "overlay/props.rs"]
mod props;
#[path = "overlay/quota.rs"]
mod quota;
#[path = "overlay/records.rs"]
mod records;
#[path = "overlay/review.rs"]
mod review;
#[path = "overlay/rpc.rs"]
mod rpc;
#[path = "overlay/scale.rs"]
mod scale;
#[path = "overlay/scenario.rs"]
mod scenario;
#[path = "overlay/vectors.rs"]
mod vectors;
#[path = "overlay/victim.rs"]
mod victim;
