//! The `[consensus]` table of a node's config file (PROTOCOL.md §11, bootstrap): the members
//! of the cluster that issues node ids, as their signed peer records, and the timing of the
//! member this node runs when it is one of them.
//!
//! No members means this node is the lone member of its own network and issues itself an id.
//! A node with members configured never forks off a cluster of its own: it asks them, and keeps
//! asking while they are out of reach.

use crate::consensus::schema::MAX_MEMBERS;
use crate::session::PeerRecord;
use serde::Deserialize;
use std::time::Duration;

/// The fields of `[consensus]`.
pub const CONSENSUS_FIELDS: [&str; 5] = ["members", "salt", "round_base", "resend", "network_id"];

/// The default base of the round timeouts: a proposal waits 3×, a vote step 1×, growing per
/// round. A LAN or one machine decides in far less; a timeout only ends a round that stalled.
pub const DEFAULT_ROUND_BASE: Duration = Duration::from_millis(100);

/// The default period of a member's resends of its own messages.
pub const DEFAULT_RESEND: Duration = Duration::from_secs(1);

/// `[consensus]` as written.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusFile {
    /// The members' signed peer records (hex, as `weft id --address IP:PORT` prints them).
    pub members: Option<Vec<String>>,
    /// The salt of this node's own id request.
    pub salt: Option<i64>,
    /// The base of the round timeouts, seconds.
    pub round_base: Option<f64>,
    /// The resend period, seconds.
    pub resend: Option<f64>,
    /// The network this node trusts, 64 hex digits (`node::trust`); left out, it is pinned.
    pub network_id: Option<String>,
}

/// The consensus settings once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsensusConfig {
    /// The members' verified records, each with an address; empty: this node alone.
    pub members: Vec<PeerRecord>,
    /// The salt of this node's own id request.
    pub salt: u32,
    /// The base of the round timeouts.
    pub round_base: Duration,
    /// The resend period.
    pub resend: Duration,
    /// The network id configured (`node::trust`); `None`: pinned on the first start.
    pub network_id: Option<[u8; 32]>,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            members: Vec::new(),
            salt: 0,
            round_base: DEFAULT_ROUND_BASE,
            resend: DEFAULT_RESEND,
            network_id: None,
        }
    }
}

/// What is wrong with `[consensus]`; the config module turns it into its message, which names
/// the field and the fix.
#[derive(Debug, PartialEq, Eq)]
pub enum BadConsensus {
    /// A member record is not valid (its 0-based position and why).
    Member(usize, String),
    /// A field is unknown, of the wrong kind or out of range.
    Field(&'static str, String),
}

fn bad(field: &'static str, problem: impl Into<String>) -> BadConsensus {
    BadConsensus::Field(field, problem.into())
}

fn seconds(field: &'static str, value: f64, range: (f64, f64)) -> Result<Duration, BadConsensus> {
    if !(range.0..=range.1).contains(&value) {
        return Err(bad(
            field,
            format!(
                "{value} is out of range; give {} to {} seconds, or leave it out for the default",
                range.0, range.1
            ),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// A peer record from its hex text, its signature verified: one that does not verify would let a
/// config typo pin a wrong key (PROTOCOL.md §5). The error says what is wrong.
pub fn verified_record(text: &str) -> Result<PeerRecord, String> {
    let record = PeerRecord::from_hex(text).map_err(|error| error.to_string())?;
    record
        .verify()
        .map_err(|error| format!("its signature does not verify ({error})"))?;
    Ok(record)
}

impl ConsensusFile {
    /// Checks the table.
    pub fn check(&self) -> Result<ConsensusConfig, BadConsensus> {
        let defaults = ConsensusConfig::default();
        let texts = self.members.as_deref().unwrap_or_default();
        if texts.len() > MAX_MEMBERS {
            return Err(bad(
                "consensus.members",
                format!(
                    "{} members; a cluster has at most {MAX_MEMBERS}",
                    texts.len()
                ),
            ));
        }
        let mut members: Vec<PeerRecord> = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let record = verified_record(text)
                .and_then(|record| {
                    if record.addresses.is_empty() {
                        Err("it names no address to reach the member at".to_string())
                    } else if members.iter().any(|m| m.ed25519 == record.ed25519) {
                        Err("the same member twice".to_string())
                    } else {
                        Ok(record)
                    }
                })
                .map_err(|reason| BadConsensus::Member(index, reason))?;
            members.push(record);
        }
        let salt = match self.salt {
            Some(value) => u32::try_from(value).map_err(|_| {
                bad(
                    "consensus.salt",
                    format!("{value} is not a salt; give 0 to {}", u32::MAX),
                )
            })?,
            None => defaults.salt,
        };
        let round_base = match self.round_base {
            Some(value) => seconds("consensus.round_base", value, (0.001, 60.0))?,
            None => defaults.round_base,
        };
        let resend = match self.resend {
            Some(value) => seconds("consensus.resend", value, (0.01, 600.0))?,
            None => defaults.resend,
        };
        let network_id = match &self.network_id {
            Some(text) => Some(parse_network_id(text).ok_or_else(|| {
                bad(
                    "consensus.network_id",
                    format!(
                        "\"{text}\" is not a network id; give the 64 hex digits `weft status` \
                         or `weft cluster status` prints, or leave it out to pin the network \
                         on the first start"
                    ),
                )
            })?),
            None => None,
        };
        Ok(ConsensusConfig {
            members,
            salt,
            round_base,
            resend,
            network_id,
        })
    }
}

/// The 32 bytes 64 hex digits spell.
pub fn parse_network_id(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(i.checked_mul(2)?..i.checked_mul(2)?.checked_add(2)?)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The first field of `[consensus]` that is unknown or of the wrong kind.
pub fn diagnose(table: &toml::Table) -> Option<BadConsensus> {
    for (key, value) in table {
        let (matches, expected) = match key.as_str() {
            "members" => (
                value
                    .as_array()
                    .is_some_and(|items| items.iter().all(toml::Value::is_str)),
                "a list of quoted peer records as `weft id --address IP:PORT` prints them",
            ),
            "salt" => (value.is_integer(), "a whole number, like 0"),
            "network_id" => (value.is_str(), "a quoted network id of 64 hex digits"),
            "round_base" | "resend" => (
                value.is_integer() || value.is_float(),
                "seconds, like 1 or 0.1",
            ),
            _ => {
                return Some(bad(
                    "consensus",
                    format!(
                        "unknown field \"consensus.{key}\" — valid fields of [consensus]: {}",
                        CONSENSUS_FIELDS.join(", ")
                    ),
                ));
            }
        };
        if !matches {
            return Some(bad(
                match key.as_str() {
                    "members" => "consensus.members",
                    "salt" => "consensus.salt",
                    "round_base" => "consensus.round_base",
                    "network_id" => "consensus.network_id",
                    _ => "consensus.resend",
                },
                format!("expected {expected}"),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Identity, PeerRecord};

    fn check(text: &str) -> Result<ConsensusConfig, BadConsensus> {
        let table: toml::Table = toml::from_str(text).unwrap();
        if let Some(problem) = diagnose(&table) {
            return Err(problem);
        }
        toml::from_str::<ConsensusFile>(text).unwrap().check()
    }

    fn field(result: Result<ConsensusConfig, BadConsensus>) -> &'static str {
        match result {
            Err(BadConsensus::Field(field, _)) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn members_are_verified_records_with_an_address_and_each_bad_value_names_its_field() {
        let identity = Identity::from_secret_bytes([5; 32], [6; 32]);
        let record = PeerRecord::sign(&identity, &["127.0.0.1:7701".parse().unwrap()]);
        let config = check(&format!(
            "members = [\"{}\"]\nsalt = 3\nround_base = 0.2\n",
            record.to_hex()
        ))
        .unwrap();
        assert_eq!(config.members, vec![record.clone()]);
        assert_eq!(config.salt, 3);
        assert_eq!(
            check("").unwrap(),
            ConsensusConfig::default(),
            "no members: alone"
        );
        let bare = PeerRecord::sign(&identity, &[]);
        match check(&format!("members = [\"{}\"]\n", bare.to_hex())) {
            Err(BadConsensus::Member(0, reason)) => assert!(reason.contains("no address")),
            other => panic!("{other:?}"),
        }
        match check(&format!("members = [\"{0}\", \"{0}\"]\n", record.to_hex())) {
            Err(BadConsensus::Member(1, reason)) => assert_eq!(reason, "the same member twice"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check("members = [\"zz\"]\n"),
            Err(BadConsensus::Member(0, _))
        ));
        assert_eq!(field(check("salt = -1\n")), "consensus.salt");
        assert_eq!(field(check("round_base = 0\n")), "consensus.round_base");
        assert_eq!(field(check("members = 1\n")), "consensus.members");
        assert_eq!(field(check("member = []\n")), "consensus");
        assert_eq!(field(check("network_id = 5\n")), "consensus.network_id");
        assert_eq!(
            field(check("network_id = \"abc\"\n")),
            "consensus.network_id"
        );
        let id = "0f".repeat(32);
        let config = check(&format!("network_id = \"{id}\"\n")).unwrap();
        assert_eq!(config.network_id, Some([0x0f; 32]));
    }
}
