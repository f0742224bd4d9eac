//! Consensus service (PROTOCOL.md §11): the small BFT cluster that issues node ids.
//!
//! A [`member::Member`] is a sans-IO state machine: the host ([`service::ConsensusService`], a
//! service on the node's worker) feeds it `(now, from, bytes)` and timeouts and sends what it polls out. Members
//! order node-id requests in one log through an [`agreement::Agreement`] engine (Malachite's
//! Tendermint core, [`malachite`]), share signed first-hand sightings of requests, and answer a
//! client with signed replies once its id is final; a quorum of matching replies is the node's
//! certificate ([`certificate`]). The [`policy`] counters come from the decided log, the
//! member list changes through the same log ([`membership`]), and each list is endorsed by a
//! quorum of the one before, a chain verified from the network id ([`trust`]).
//! docs/CONSENSUS.md says what is built and what is not.
#![deny(clippy::arithmetic_side_effects)]

pub mod agreement;
pub mod asking;
mod bin;
pub mod bootstrap;
pub mod certificate;
pub mod client;
pub mod clients;
pub mod config;
pub mod ids;
pub mod learn;
pub mod links;
pub mod log;
pub mod malachite;
pub mod member;
pub mod membership;
pub mod policy;
pub mod pool;
pub mod proof;
pub mod query;
pub mod schema;
pub mod service;
pub mod signed;
pub mod store;
pub mod trust;
pub mod validate;

/// The most members a cluster may have (messages grow as N², PROTOCOL.md §11).
pub const MAX_MEMBERS: usize = 16;

/// Byzantine members `n` members tolerate: f = ⌊(n−1)/3⌋.
pub fn faults(members: usize) -> usize {
    members.saturating_sub(1) / 3
}

/// Matching signatures a decision or certificate needs among `members`: more than two thirds
/// (Malachite's threshold, used for certificates too), which is every member when n ≤ 3.
pub fn quorum(members: usize) -> usize {
    (members.saturating_mul(2) / 3).saturating_add(1)
}
