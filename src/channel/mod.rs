//! Channels (PROTOCOL.md §6–§7): the sans-IO endpoint, channel establishment and reliability.
