//! Handles and hashcodes (PROTOCOL.md §8).
