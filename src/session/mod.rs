//! Sessions and encryption (PROTOCOL.md §2, §5): identities, handshakes, per-channel keys.

mod identity;
pub mod window;

pub use identity::{Identity, peer_id_of};
