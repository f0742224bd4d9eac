//! Sessions and encryption (PROTOCOL.md §2, §5): identities, handshakes, per-channel keys.
