//! Consensus service (PROTOCOL.md §11): the small BFT cluster that issues node ids.
//!
//! Empty until its issue lands; the layer exists so the module tree mirrors PROTOCOL.md §1.
