//! A member's configuration: what both the member and the checks of what it is sent
//! (`validate`) read, kept apart so neither imports the other.

use super::ids::{MemberKey, NetworkId};
use std::time::Duration;

/// A member's configuration.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// The network's id.
    pub network: NetworkId,
    /// Its members (this one among them).
    pub members: Vec<MemberKey>,
    /// The base of the round timeouts (propose 3×, votes 1×, growing per round).
    pub round_base: Duration,
    /// How often own messages of the current height, own sightings and catch-up asks are
    /// sent again (messages may be lost while channels reconnect).
    pub resend: Duration,
}
