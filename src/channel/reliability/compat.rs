//! The capability byte and close reasons are the wire module's (PROTOCOL.md §4, §7).

pub use crate::wire::{Capabilities, CloseReason};
