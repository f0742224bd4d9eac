//! Kademlia (PROTOCOL.md §10), sans-IO: the routing table ([`table`]), one iterative lookup
//! ([`lookup`]), the records held for others ([`store`]), the settings ([`config`]) and the
//! node that ties them to the RPC layer ([`node`], answering in `serve.rs`).

pub mod cache;
pub mod certificate;
pub mod config;
mod connopt;
mod durable;
mod events;
mod guard;
pub mod journal;
pub mod keys;
pub mod lookup;
pub mod node;
mod peers;
mod refresh;
mod serve;
pub mod store;
pub mod table;

pub use cache::NodeCache;
pub use certificate::{CertificateCheck, DriverVouches};
pub use config::KademliaConfig;
pub use journal::{Change, Changes, PeerEntry, PublishedRecord, RestoreReport, Restored};
pub use keys::KeyBook;
pub use lookup::Found;
pub use node::{Dht, Event, LookupResult, Sender, Transmit};
pub use serve::NOT_SERVED;
pub use store::{Record, RecordStore, StoreError};
pub use table::{RoutingTable, Seen};
