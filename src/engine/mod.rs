//! The I/O engine (PROTOCOL.md §12): sockets, the clock and the loop that drives the sans-IO core.
