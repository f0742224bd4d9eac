//! Kademlia (PROTOCOL.md §10).
