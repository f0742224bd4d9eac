//! Packets and messages on the wire (PROTOCOL.md §3, §4).
