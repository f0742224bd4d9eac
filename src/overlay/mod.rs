//! Overlay (PROTOCOL.md §10): Kademlia DHT, flooding and routed messages.
//!
//! Empty until its issue lands; the layer exists so the module tree mirrors PROTOCOL.md §1.
