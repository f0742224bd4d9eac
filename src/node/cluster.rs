//! The `[consensus]` table of a node's config file (PROTOCOL.md §11, bootstrap): the members
//! of the cluster that issues node ids, as their signed peer records, and the timing of the
//! member this node runs when it is one of them.
//!
//! No members means this node is the lone member of its own network and issues itself an id.
//! A node with members configured never forks off a cluster of its own: it asks them, and keeps
//! asking while they are out of reach.

use super::members_url::HttpUrl;
use crate::consensus::ids::MemberKey;
use crate::consensus::policy::PolicyConfig;
use crate::consensus::schema::MAX_MEMBERS;
use crate::session::PeerRecord;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// The fields of `[consensus]`.
pub const CONSENSUS_FIELDS: [&str; 16] = [
    "members",
    "members_url",
    "salt",
    "round_base",
    "resend",
    "network_id",
    "keepalive",
    "approve",
    "window",
    "client_rate",
    "ipv4_32",
    "ipv4_24",
    "ipv4_16",
    "ipv6_64",
    "ipv6_48",
    "ipv6_32",
];

/// [`CONSENSUS_FIELDS`] as error messages name them (the field names must be `'static`).
const FIELD_NAMES: [&str; 16] = [
    "consensus.members",
    "consensus.members_url",
    "consensus.salt",
    "consensus.round_base",
    "consensus.resend",
    "consensus.network_id",
    "consensus.keepalive",
    "consensus.approve",
    "consensus.window",
    "consensus.client_rate",
    "consensus.ipv4_32",
    "consensus.ipv4_24",
    "consensus.ipv4_16",
    "consensus.ipv6_64",
    "consensus.ipv6_48",
    "consensus.ipv6_32",
];

/// The default keep-alive period between members (PROTOCOL.md §11, membership).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);

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
    /// Where the quorum-signed member list is served (`http://HOST:PORT/PATH`), instead of
    /// `members`.
    pub members_url: Option<String>,
    /// The keep-alive period between members, seconds.
    pub keepalive: Option<f64>,
    /// Keys this member votes in when they apply (ed25519 keys or peer records, hex).
    pub approve: Option<Vec<String>>,
    /// The policy's counting window, seconds.
    pub window: Option<f64>,
    /// Client messages per second one source address may hand the member (its /24 four
    /// times as many; `consensus::service::client_rates`).
    pub client_rate: Option<i64>,
    /// Ids per IPv4 address per window.
    pub ipv4_32: Option<i64>,
    /// Ids per IPv4 /24 per window.
    pub ipv4_24: Option<i64>,
    /// Ids per IPv4 /16 per window.
    pub ipv4_16: Option<i64>,
    /// Ids per IPv6 /64 per window.
    pub ipv6_64: Option<i64>,
    /// Ids per IPv6 /48 per window.
    pub ipv6_48: Option<i64>,
    /// Ids per IPv6 /32 per window.
    pub ipv6_32: Option<i64>,
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
    /// Where the member list is fetched from when `members` is empty; `None`: not fetched.
    pub members_url: Option<HttpUrl>,
    /// The keep-alive period between members.
    pub keepalive: Duration,
    /// Applicants this member votes in (PROTOCOL.md §11): none unless the operator lists them.
    pub approve: BTreeSet<MemberKey>,
    /// The issuing policy's quotas and window; every member must be given the same.
    pub policy: PolicyConfig,
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
            members_url: None,
            keepalive: DEFAULT_KEEPALIVE,
            approve: BTreeSet::new(),
            policy: PolicyConfig::default(),
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

/// An applicant's key from its hex text: a 64-digit ed25519 key, or a signed peer record as
/// `weft id` prints it (whose key is taken once its signature verifies).
pub fn approved_key(text: &str) -> Result<MemberKey, String> {
    let text = text.trim();
    if text.len() == 64 {
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = text
                .get(2 * i..2 * i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("\"{text}\" is not 64 hex digits"))?;
        }
        return Ok(MemberKey(key));
    }
    verified_record(text).map(|record| MemberKey(record.ed25519))
}

/// A quota from the file: 1 to 2³²−1 ids per window.
fn quota(field: &'static str, value: Option<i64>, default: u32) -> Result<u32, BadConsensus> {
    match value {
        None => Ok(default),
        Some(value) => u32::try_from(value)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                bad(
                    field,
                    format!(
                        "{value} is not a quota; give 1 to {} ids per window, or leave it out \
                         for the default ({default})",
                        u32::MAX
                    ),
                )
            }),
    }
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
        let members_url = match &self.members_url {
            Some(_) if !members.is_empty() => {
                return Err(bad(
                    "consensus.members_url",
                    "given with consensus.members; give one of them: the members' records, or \
                     the URL that serves their signed list",
                ));
            }
            Some(text) => Some(
                HttpUrl::parse(text).map_err(|problem| bad("consensus.members_url", problem))?,
            ),
            None => None,
        };
        let keepalive = match self.keepalive {
            Some(value) => seconds("consensus.keepalive", value, (1.0, 86_400.0))?,
            None => defaults.keepalive,
        };
        let mut approve = BTreeSet::new();
        for (index, text) in self.approve.iter().flatten().enumerate() {
            let key = approved_key(text).map_err(|reason| {
                bad(
                    "consensus.approve",
                    format!(
                        "entry {index}: {reason}; give the applicant's ed25519 key (64 hex \
                         digits) or the record= line `weft id` prints on its host"
                    ),
                )
            })?;
            approve.insert(key);
        }
        let mut policy = defaults.policy;
        if let Some(value) = self.window {
            policy.period = seconds("consensus.window", value, (1.0, 366.0 * 86_400.0))?;
        }
        let given = [
            self.ipv4_32,
            self.ipv4_24,
            self.ipv4_16,
            self.ipv6_64,
            self.ipv6_48,
            self.ipv6_32,
        ];
        let defaults_q = [policy.ipv4, policy.ipv6].concat();
        let mut quotas = [0u32; 6];
        // FIELD_NAMES ends with the six quota fields, in this order.
        let names = FIELD_NAMES.iter().skip(FIELD_NAMES.len() - 6);
        for (((slot, field), value), default) in
            quotas.iter_mut().zip(names).zip(given).zip(defaults_q)
        {
            *slot = quota(field, value, default)?;
        }
        policy.ipv4 = [quotas[0], quotas[1], quotas[2]];
        if let Some(value) = self.client_rate {
            policy.client_rate =
                u32::try_from(value)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| {
                        bad(
                            "consensus.client_rate",
                            format!(
                                "{value} is not a rate; give 1 to {} client messages a second per \
                             address, or leave it out for the default ({})",
                                u32::MAX,
                                policy.client_rate
                            ),
                        )
                    })?;
        }
        policy.ipv6 = [quotas[3], quotas[4], quotas[5]];
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
            members_url,
            keepalive,
            approve,
            policy,
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
            "approve" => (
                value
                    .as_array()
                    .is_some_and(|items| items.iter().all(toml::Value::is_str)),
                "a list of quoted ed25519 keys (64 hex digits) or peer records",
            ),
            "members_url" => (
                value.is_str(),
                "a quoted URL like \"http://192.0.2.1:8080/members\"",
            ),
            "salt" => (value.is_integer(), "a whole number, like 0"),
            "client_rate" => (
                value.is_integer(),
                "a whole number of client messages a second per address, like 64",
            ),
            "ipv4_32" | "ipv4_24" | "ipv4_16" | "ipv6_64" | "ipv6_48" | "ipv6_32" => (
                value.is_integer(),
                "a whole number of ids per window, like 8",
            ),
            "network_id" => (value.is_str(), "a quoted network id of 64 hex digits"),
            "round_base" | "resend" | "keepalive" | "window" => (
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
            let field = CONSENSUS_FIELDS
                .iter()
                .position(|f| *f == key.as_str())
                .and_then(|i| FIELD_NAMES.get(i))
                .copied()
                .unwrap_or("consensus");
            return Some(bad(field, format!("expected {expected}")));
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

    #[test]
    fn policy_approval_keepalive_and_url_settings_default_to_the_issue_and_name_bad_fields() {
        let defaults = check("").unwrap();
        assert_eq!(defaults.policy.ipv4, [8, 24, 1024]);
        assert_eq!(defaults.policy.ipv6, [8, 24, 1024]);
        assert_eq!(defaults.policy.period, Duration::from_secs(86_400));
        assert_eq!(defaults.policy.client_rate, 64);
        assert_eq!(defaults.keepalive, Duration::from_secs(60));
        assert!(defaults.approve.is_empty() && defaults.members_url.is_none());
        let identity = Identity::from_secret_bytes([5; 32], [6; 32]);
        let record = PeerRecord::sign(&identity, &["127.0.0.1:7701".parse().unwrap()]);
        let key: String = record.ed25519.iter().map(|b| format!("{b:02x}")).collect();
        let config = check(&format!(
            "window = 3600\nipv4_32 = 2\nipv4_24 = 3\nipv4_16 = 4\nipv6_64 = 5\nipv6_48 = 6\n\
             ipv6_32 = 7\nclient_rate = 9\nkeepalive = 5\napprove = [\"{key}\", \"{}\"]\n\
             members_url = \"http://127.0.0.1:8080/m\"\n",
            record.to_hex()
        ))
        .unwrap();
        assert_eq!(config.policy.ipv4, [2, 3, 4]);
        assert_eq!(config.policy.ipv6, [5, 6, 7]);
        assert_eq!(config.policy.period, Duration::from_secs(3600));
        assert_eq!(config.policy.client_rate, 9);
        assert_eq!(config.keepalive, Duration::from_secs(5));
        assert_eq!(
            config.approve.len(),
            1,
            "a key and its record are one applicant"
        );
        assert_eq!(config.members_url.unwrap().port, 8080);
        for (text, name) in [
            ("ipv4_32 = 0\n", "consensus.ipv4_32"),
            ("client_rate = 0\n", "consensus.client_rate"),
            ("ipv6_48 = -3\n", "consensus.ipv6_48"),
            ("ipv4_16 = 1.5\n", "consensus.ipv4_16"),
            ("window = 0\n", "consensus.window"),
            ("keepalive = 0.5\n", "consensus.keepalive"),
            ("approve = [\"abc\"]\n", "consensus.approve"),
            ("approve = \"abc\"\n", "consensus.approve"),
            ("members_url = \"https://a/\"\n", "consensus.members_url"),
            ("members_url = 3\n", "consensus.members_url"),
        ] {
            assert_eq!(field(check(text)), name, "{text}");
        }
        let both = format!(
            "members = [\"{}\"]\nmembers_url = \"http://a/\"\n",
            record.to_hex()
        );
        assert_eq!(field(check(&both)), "consensus.members_url");
    }
}
