//! A node's configuration: a TOML file whose every field is optional, merged under the command
//! line's flags, with defaults for what neither gives.
//!
//! Bad input from the operator is a clear message that names the field and the fix
//! (PROTOCOL.md §9), never a panic or a `Debug` dump.

use super::cluster::{BadConsensus, ConsensusConfig, ConsensusFile};
use super::limits::{BadLimit, LIMIT_FIELDS, Limits, LimitsFile, SECONDS_FIELDS};
use super::scrape::ScrapeLimits;
use super::suggest::closest;
use crate::engine::IoChoice;
use crate::session::PeerRecord;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The fields a config file may hold, in the order the documentation lists them.
pub const FIELDS: [&str; 13] = [
    "listen",
    "metrics",
    "data",
    "echo",
    "allow_plaintext",
    "log_level",
    "log_format",
    "peers",
    "io",
    "shards",
    "limits",
    "bootstrap",
    "consensus",
];

/// The most shards a node runs; far above any core count, low enough that a typo such as
/// `shards = 40000` is caught rather than spawning that many threads.
pub const MAX_SHARDS: usize = 1024;

/// How the node writes its log lines (`--log-format`, `log_format`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, `tracing-subscriber`'s default format.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ();
    fn from_str(text: &str) -> Result<LogFormat, ()> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(()),
        }
    }
}

/// Default UDP address a node listens on.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7700";
/// Default address of the metrics endpoint; loopback, so metrics are private unless asked for
/// (PROTOCOL.md §12).
pub const DEFAULT_METRICS: &str = "127.0.0.1:9700";
/// Default data directory.
pub const DEFAULT_DATA: &str = "./weft-data";

/// A config file as written: every field optional, unknown fields refused.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// UDP address to listen on.
    pub listen: Option<String>,
    /// Address of the Prometheus metrics endpoint.
    pub metrics: Option<String>,
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Echo DATA back on its channel.
    pub echo: Option<bool>,
    /// Accept kind-0 (plaintext) peers.
    pub allow_plaintext: Option<bool>,
    /// A `tracing` filter such as `info` or `weft=debug,warn`.
    pub log_level: Option<String>,
    /// `"text"` or `"json"`.
    pub log_format: Option<String>,
    /// Signed peer records (hex, as `weft id` prints them) of known peers: sessions to them are
    /// IK (PROTOCOL.md §5).
    pub peers: Option<Vec<String>>,
    /// The I/O backend: `"auto"`, `"uring"` or `"epoll"` (PROTOCOL.md §12).
    pub io: Option<String>,
    /// Engine shards, 1 to [`MAX_SHARDS`]; left out, one per core.
    pub shards: Option<i64>,
    /// The `[limits]` table: budgets against hostile peers and scrapers.
    pub limits: Option<LimitsFile>,
    /// UDP addresses of overlay nodes to join through (PROTOCOL.md §10).
    pub bootstrap: Option<Vec<String>>,
    /// The `[consensus]` table: the cluster that issues node ids (PROTOCOL.md §11).
    pub consensus: Option<ConsensusFile>,
}

/// A node's settings once the file, the flags and the defaults are merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint.
    pub metrics: SocketAddr,
    /// Data directory, created if missing.
    pub data: PathBuf,
    /// Echo DATA back on its channel (PROTOCOL.md §6, echo service).
    pub echo: bool,
    /// Accept kind-0 (plaintext) peers (PROTOCOL.md §5).
    pub allow_plaintext: bool,
    /// A `tracing` filter; `None` means `RUST_LOG` or `info`.
    pub log_level: Option<String>,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Engine shards (PROTOCOL.md §12); 0 means one per core.
    pub shards: usize,
    /// Verified peer records of known peers (PROTOCOL.md §2).
    pub peers: Vec<PeerRecord>,
    /// The I/O backend (PROTOCOL.md §12).
    pub io: IoChoice,
    /// Bounds on the metrics endpoint's scrapers (connections at once, whole-request deadline);
    /// the defaults are explained on [`ScrapeLimits`]; `[limits]` `metrics_*` in the file.
    pub metrics_limits: ScrapeLimits,
    /// Budgets every shard's endpoint holds peers to (`[limits]` in the file); the defaults are
    /// the endpoint's own.
    pub limits: Limits,
    /// Overlay nodes to join through (`--bootstrap`, `bootstrap`); empty: the first node.
    pub bootstrap: Vec<crate::overlay::worker::Bootstrap>,
    /// Run the overlay in client mode: query the DHT, hold no records, stay out of other
    /// nodes' tables (`weft dht`).
    pub dht_client: bool,
    /// The consensus cluster: its members (none: this node alone) and timing.
    pub consensus: ConsensusConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: parse_default(DEFAULT_LISTEN),
            metrics: parse_default(DEFAULT_METRICS),
            data: PathBuf::from(DEFAULT_DATA),
            echo: false,
            // PROTOCOL.md §5: kind 0 (no encryption) is refused unless the operator allows it.
            allow_plaintext: false,
            log_level: None,
            log_format: LogFormat::Text,
            shards: 0,
            peers: Vec::new(),
            io: IoChoice::Auto,
            metrics_limits: ScrapeLimits::default(),
            limits: Limits::default(),
            bootstrap: Vec::new(),
            dht_client: false,
            consensus: ConsensusConfig::default(),
        }
    }
}

fn parse_default(text: &str) -> SocketAddr {
    match text.parse() {
        Ok(address) => address,
        // The defaults are constants checked by a unit test.
        Err(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
#[error("config {}: {problem}", path.display())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: ConfigProblem,
}

/// What is wrong with a config file; each message names the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    /// The file could not be read.
    #[error("cannot read it: {0}; check the path given to --config")]
    Read(#[source] std::io::Error),
    /// The text is not TOML.
    #[error(
        "not valid TOML at line {line}, column {column}: {message} \
         (strings such as addresses and paths need quotes: listen = \"0.0.0.0:7700\")"
    )]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A field this version does not know.
    #[error("unknown field \"{field}\"{} — valid fields: {}", Suggestion(*.suggestion), FIELDS.join(", "))]
    UnknownField {
        /// The field as written.
        field: String,
        /// A valid field it is probably a typo of.
        suggestion: Option<&'static str>,
    },
    /// A field of `[limits]` this version does not know.
    #[error(
        "unknown field \"limits.{field}\"{} — valid fields of [limits]: {}",
        Suggestion(*.suggestion),
        LIMIT_FIELDS.join(", ")
    )]
    UnknownLimit {
        /// The field as written.
        field: String,
        /// A valid field it is probably a typo of.
        suggestion: Option<&'static str>,
    },
    /// A field of `[limits]` holds the wrong kind of value.
    #[error("field \"limits.{field}\": expected {expected}, found {found}")]
    LimitType {
        /// The field.
        field: &'static str,
        /// What it should hold.
        expected: &'static str,
        /// What it holds, shortened.
        found: String,
    },
    /// A field of `[limits]` holds a value out of range or at odds with another limit.
    #[error("field \"limits.{field}\": {problem}")]
    BadLimit {
        /// The field.
        field: &'static str,
        /// What is wrong and the fix.
        problem: String,
    },
    /// A peer record in `peers` is not valid.
    #[error(
        "field \"peers\", entry {index}: {reason}; copy the record= line that `weft id` prints on \
         that peer"
    )]
    BadRecord {
        /// 0-based position in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry of `bootstrap` is not `ADDR` or `PEER@ADDR`.
    #[error(
        "field \"bootstrap\", entry {index}: {reason}; give the UDP address another node \
         listens on, like \"192.0.2.1:7700\", or its peer id and address, PEER@ADDR"
    )]
    BadBootstrap {
        /// 0-based position in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A member record in `[consensus]` is not valid.
    #[error(
        "field \"consensus.members\", entry {index}: {reason}; copy the record= line that \
         `weft id --address IP:PORT` prints on that member"
    )]
    BadMember {
        /// 0-based position in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of `[consensus]` is unknown, of the wrong kind or out of range.
    #[error("field \"{field}\": {problem}")]
    BadConsensus {
        /// The field (`consensus.salt`; `consensus` itself for an unknown one).
        field: &'static str,
        /// What is wrong and the fix.
        problem: String,
    },
    /// A field holds the wrong kind of value.
    #[error("field \"{field}\": expected {expected}, found {found}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should hold.
        expected: &'static str,
        /// What it holds, shortened.
        found: String,
    },
    /// An address field does not parse.
    #[error("field \"{field}\": \"{value}\" is not a socket address like {example}")]
    BadAddress {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// A valid example (the default).
        example: &'static str,
    },
    /// `data` is empty.
    #[error("field \"data\": the path is empty; give a directory such as \"{DEFAULT_DATA}\"")]
    EmptyData,
    /// `io` names no backend.
    #[error(
        "field \"io\": \"{value}\" is not an I/O backend; use \"auto\", \"uring\" or \"epoll\""
    )]
    BadIo {
        /// Its value.
        value: String,
    },
    /// `shards` is out of range.
    #[error(
        "field \"shards\": {value} is not a shard count; give 1 to {MAX_SHARDS}, or leave the \
         field out for one shard per core"
    )]
    BadShards {
        /// Its value.
        value: i64,
    },
    /// `log_format` names no format.
    #[error("field \"log_format\": \"{value}\" is not a log format; use \"text\" or \"json\"")]
    BadLogFormat {
        /// Its value.
        value: String,
    },
    /// `log_level` is not a `tracing` filter.
    #[error(
        "field \"log_level\": \"{value}\" is not a log filter like \"info\", \"debug\" or \
         \"weft=debug,warn\" ({reason})"
    )]
    BadLogLevel {
        /// Its value.
        value: String,
        /// The filter parser's message.
        reason: String,
    },
}

impl From<BadConsensus> for ConfigProblem {
    fn from(bad: BadConsensus) -> ConfigProblem {
        match bad {
            BadConsensus::Member(index, reason) => ConfigProblem::BadMember { index, reason },
            BadConsensus::Field(field, problem) => ConfigProblem::BadConsensus { field, problem },
        }
    }
}

impl From<BadLimit> for ConfigProblem {
    fn from(BadLimit { field, problem }: BadLimit) -> ConfigProblem {
        ConfigProblem::BadLimit { field, problem }
    }
}

struct Suggestion(Option<&'static str>);

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(field) => write!(f, " (did you mean \"{field}\"?)"),
            None => Ok(()),
        }
    }
}

impl NodeConfig {
    /// Reads and checks a config file; fields it leaves out take their defaults.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            problem: ConfigProblem::Read(e),
        })?;
        NodeConfig::parse(&text).map_err(|problem| ConfigError {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Checks the text of a config file; fields it leaves out take their defaults.
    pub fn parse(text: &str) -> Result<NodeConfig, ConfigProblem> {
        let file = ConfigFile::parse(text)?;
        let defaults = NodeConfig::default();
        let listen = match &file.listen {
            Some(value) => parse_address("listen", value, DEFAULT_LISTEN)?,
            None => defaults.listen,
        };
        let metrics = match &file.metrics {
            Some(value) => parse_address("metrics", value, DEFAULT_METRICS)?,
            None => defaults.metrics,
        };
        let data = match file.data {
            Some(path) if path.as_os_str().is_empty() => return Err(ConfigProblem::EmptyData),
            Some(path) => path,
            None => defaults.data,
        };
        if let Some(filter) = &file.log_level {
            check_log_level(filter)?;
        }
        let io = match &file.io {
            Some(value) => value.parse().map_err(|_| ConfigProblem::BadIo {
                value: value.clone(),
            })?,
            None => defaults.io,
        };
        let log_format = match &file.log_format {
            Some(value) => value.parse().map_err(|()| ConfigProblem::BadLogFormat {
                value: value.clone(),
            })?,
            None => defaults.log_format,
        };
        let shards = match file.shards {
            Some(value) => usize::try_from(value)
                .ok()
                .filter(|n| (1..=MAX_SHARDS).contains(n))
                .ok_or(ConfigProblem::BadShards { value })?,
            None => defaults.shards,
        };
        let mut limits = defaults.limits;
        let mut metrics_limits = defaults.metrics_limits;
        if let Some(file) = &file.limits {
            file.merge(&mut limits, &mut metrics_limits)?;
        }
        let consensus = match &file.consensus {
            Some(table) => table.check()?,
            None => ConsensusConfig::default(),
        };
        let mut peers = Vec::new();
        for (index, text) in file.peers.iter().flatten().enumerate() {
            let record = super::cluster::verified_record(text)
                .map_err(|reason| ConfigProblem::BadRecord { index, reason })?;
            peers.push(record);
        }
        let mut bootstrap = Vec::new();
        for (index, value) in file.bootstrap.iter().flatten().enumerate() {
            let node = value
                .parse()
                .map_err(|reason| ConfigProblem::BadBootstrap { index, reason })?;
            bootstrap.push(node);
        }
        Ok(NodeConfig {
            listen,
            metrics,
            data,
            echo: file.echo.unwrap_or(defaults.echo),
            allow_plaintext: file.allow_plaintext.unwrap_or(defaults.allow_plaintext),
            log_level: file.log_level,
            log_format,
            shards,
            peers,
            io,
            metrics_limits,
            limits,
            bootstrap,
            dht_client: false,
            consensus,
        })
    }
}

impl ConfigFile {
    /// Parses the text of a config file without checking the values' contents.
    pub fn parse(text: &str) -> Result<ConfigFile, ConfigProblem> {
        match toml::from_str::<ConfigFile>(text) {
            Ok(file) => Ok(file),
            Err(error) => Err(diagnose(text, &error)),
        }
    }
}

/// Turns serde's refusal into a message naming the field: the derive says only "unknown field"
/// or "invalid type", so look at the document again as a plain table.
fn diagnose(text: &str, error: &toml::de::Error) -> ConfigProblem {
    let table = match toml::from_str::<toml::Table>(text) {
        Ok(table) => table,
        Err(syntax) => return syntax_problem(text, &syntax),
    };
    for (key, value) in &table {
        let Some(&field) = FIELDS.iter().find(|f| **f == key.as_str()) else {
            return ConfigProblem::UnknownField {
                field: key.clone(),
                suggestion: suggest(key),
            };
        };
        if field == "consensus" {
            match value.as_table() {
                Some(table) => match super::cluster::diagnose(table) {
                    Some(problem) => return problem.into(),
                    None => continue,
                },
                None => {
                    return ConfigProblem::WrongType {
                        field,
                        expected: "a table: a [consensus] line, then name = value lines",
                        found: describe(value),
                    };
                }
            }
        }
        if field == "limits" {
            match value.as_table() {
                Some(limits) => match diagnose_limits(limits) {
                    Some(problem) => return problem,
                    None => continue,
                },
                None => {
                    return ConfigProblem::WrongType {
                        field,
                        expected: "a table: a [limits] line, then name = value lines",
                        found: describe(value),
                    };
                }
            }
        }
        let (matches, expected) = match field {
            "echo" | "allow_plaintext" => (value.is_bool(), "true or false"),
            "data" => (value.is_str(), "a quoted path like \"./weft-data\""),
            "log_level" => (value.is_str(), "a quoted filter like \"info\""),
            "log_format" => (value.is_str(), "a quoted format: \"text\" or \"json\""),
            "shards" => (value.is_integer(), "a whole number of shards, like 4"),
            "io" => (
                value.is_str(),
                "a quoted backend: \"auto\", \"uring\" or \"epoll\"",
            ),
            "peers" => (
                value
                    .as_array()
                    .is_some_and(|items| items.iter().all(toml::Value::is_str)),
                "a list of quoted peer records as `weft id` prints them",
            ),
            "bootstrap" => (
                value
                    .as_array()
                    .is_some_and(|items| items.iter().all(toml::Value::is_str)),
                "a list of quoted addresses like [\"192.0.2.1:7700\"] (or PEER@ADDR)",
            ),
            _ => (value.is_str(), "a quoted address like \"0.0.0.0:7700\""),
        };
        if !matches {
            return ConfigProblem::WrongType {
                field,
                expected,
                found: describe(value),
            };
        }
    }
    syntax_problem(text, error)
}

/// The first field of `[limits]` that is unknown or of the wrong kind.
fn diagnose_limits(limits: &toml::Table) -> Option<ConfigProblem> {
    for (key, value) in limits {
        let Some(&field) = LIMIT_FIELDS.iter().find(|f| **f == key.as_str()) else {
            return Some(ConfigProblem::UnknownLimit {
                field: key.clone(),
                suggestion: closest(key, &LIMIT_FIELDS),
            });
        };
        let (matches, expected) = if SECONDS_FIELDS.contains(&field) {
            (
                value.is_integer() || value.is_float(),
                "seconds, like 10 or 2.5",
            )
        } else {
            (value.is_integer(), "a whole number, like 1024")
        };
        if !matches {
            return Some(ConfigProblem::LimitType {
                field,
                expected,
                found: describe(value),
            });
        }
    }
    None
}

fn syntax_problem(text: &str, error: &toml::de::Error) -> ConfigProblem {
    let offset = error.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    ConfigProblem::Syntax {
        line,
        column,
        message: error.message().trim().to_string(),
    }
}

fn describe(value: &toml::Value) -> String {
    let mut shown = value.to_string();
    if shown.chars().count() > 40 {
        shown = shown.chars().take(40).collect::<String>() + "…";
    }
    let kind = value.type_str();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{shown} ({article} {kind})")
}

/// The valid field closest to a typo, if it is within two edits.
fn suggest(typo: &str) -> Option<&'static str> {
    closest(typo, &FIELDS)
}

fn parse_address(
    field: &'static str,
    value: &str,
    example: &'static str,
) -> Result<SocketAddr, ConfigProblem> {
    value.parse().map_err(|_| ConfigProblem::BadAddress {
        field,
        value: value.to_string(),
        example,
    })
}

/// Checks that a `log_level` value is a filter `tracing-subscriber` accepts.
pub fn check_log_level(filter: &str) -> Result<(), ConfigProblem> {
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(|_| ())
        .map_err(|e| ConfigProblem::BadLogLevel {
            value: filter.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What the config parser says of `text`, which it must refuse.
    pub(crate) fn problem(text: &str) -> String {
        match NodeConfig::parse(text) {
            Ok(config) => panic!("accepted {text:?} as {config:?}"),
            Err(problem) => problem.to_string(),
        }
    }

    #[test]
    fn defaults_are_valid_constants() {
        let config = NodeConfig::default();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.metrics.to_string(), DEFAULT_METRICS);
        assert!(!config.allow_plaintext);
        assert!(!config.echo);
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(NodeConfig::parse("").unwrap(), NodeConfig::default());
    }

    #[test]
    fn every_field_is_read() {
        let config = NodeConfig::parse(
            "listen = \"127.0.0.1:1\"\nmetrics = \"[::1]:2\"\ndata = \"/var/lib/weft\"\n\
             echo = true\nallow_plaintext = false\nlog_level = \"weft=debug,warn\"\n\
             io = \"epoll\"\n",
        )
        .unwrap();
        assert_eq!(config.io, IoChoice::Epoll);
        assert_eq!(config.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(config.metrics, "[::1]:2".parse().unwrap());
        assert_eq!(config.data, PathBuf::from("/var/lib/weft"));
        assert!(config.echo);
        assert!(!config.allow_plaintext);
        assert_eq!(config.log_level.as_deref(), Some("weft=debug,warn"));
    }

    #[test]
    fn unknown_field_is_named_with_the_valid_ones_and_a_suggestion() {
        let message = problem("listne = \"0.0.0.0:7700\"");
        assert!(message.contains("unknown field \"listne\""), "{message}");
        assert!(message.contains("did you mean \"listen\""), "{message}");
        assert!(
            message.contains(
                "listen, metrics, data, echo, allow_plaintext, log_level, log_format, peers, io, \
                 shards, limits, bootstrap, consensus"
            ),
            "{message}"
        );
        let message = problem("colour = 1");
        assert!(!message.contains("did you mean"), "{message}");
    }

    #[test]
    fn bad_address_names_the_field_and_an_example() {
        assert_eq!(
            problem("listen = \"abc\""),
            "field \"listen\": \"abc\" is not a socket address like 0.0.0.0:7700"
        );
        assert!(problem("metrics = \"localhost\"").contains("field \"metrics\""));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let message = problem("echo = \"yes\"");
        assert!(
            message.starts_with("field \"echo\": expected true or false"),
            "{message}"
        );
        let message = problem("listen = 7700");
        assert!(
            message.starts_with("field \"listen\": expected a quoted address"),
            "{message}"
        );
        assert!(message.contains("7700 (an integer)"), "{message}");
        assert!(problem("[data]\nx = 1").starts_with("field \"data\""));
    }

    #[test]
    fn syntax_error_gives_line_and_column() {
        let message = problem("echo = true\nlisten = 0.0.0.0:7700\n");
        assert!(
            message.starts_with("not valid TOML at line 2, column"),
            "{message}"
        );
        assert!(message.contains("need quotes"), "{message}");
    }

    #[test]
    fn bad_io_names_the_field_and_the_choices() {
        let message = problem("io = \"kqueue\"");
        assert!(
            message.contains("field \"io\"") && message.contains("\"epoll\""),
            "{message}"
        );
        let message = problem("io = 1");
        assert!(message.starts_with("field \"io\": expected"), "{message}");
        assert_eq!(
            NodeConfig::parse("io = \"uring\"").unwrap().io,
            IoChoice::Uring
        );
    }

    #[test]
    fn shards_and_log_format_are_fields() {
        let config = NodeConfig::parse("shards = 3\nlog_format = \"json\"\n").unwrap();
        assert_eq!(config.shards, 3);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(NodeConfig::parse("").unwrap().log_format, LogFormat::Text);
        for bad in ["shards = 0", "shards = -1", "shards = 1025"] {
            let message = problem(bad);
            assert!(message.starts_with("field \"shards\""), "{message}");
            assert!(message.contains("1 to 1024"), "{message}");
        }
        assert!(problem("shards = \"4\"").starts_with("field \"shards\": expected a whole"));
        let message = problem("log_format = \"xml\"");
        assert!(message.contains("\"text\" or \"json\""), "{message}");
    }

    #[test]
    fn empty_data_and_bad_log_level_are_refused() {
        assert!(problem("data = \"\"").starts_with("field \"data\""));
        assert!(problem("log_level = \"weft=loud\"").starts_with("field \"log_level\""));
    }

    #[test]
    fn error_names_the_file() {
        let error = ConfigError {
            path: PathBuf::from("/x.toml"),
            problem: NodeConfig::parse("listne = 1").unwrap_err(),
        };
        assert!(
            error
                .to_string()
                .starts_with("config /x.toml: unknown field \"listne\"")
        );
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let error = NodeConfig::load(Path::new("/nonexistent/weft.toml")).unwrap_err();
        assert!(matches!(error.problem, ConfigProblem::Read(_)));
        assert!(error.to_string().contains("--config"));
    }

    #[test]
    fn peers_hold_verified_records_and_a_bad_one_names_its_entry() {
        let identity = crate::session::Identity::from_secret_bytes([5; 32], [6; 32]);
        let record = PeerRecord::sign(&identity, &["10.0.0.1:7700".parse().unwrap()]);
        let text = format!("peers = [\"{}\"]\n", record.to_hex());
        let config = NodeConfig::parse(&text).unwrap();
        assert_eq!(config.peers, vec![record.clone()]);

        let mut tampered = record.to_hex();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        let text = format!("peers = [\"{}\", \"{tampered}\"]\n", record.to_hex());
        let message = NodeConfig::parse(&text).unwrap_err().to_string();
        assert!(message.contains("\"peers\", entry 1"), "{message}");
        assert!(message.contains("weft id"), "{message}");

        let message = NodeConfig::parse("peers = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"peers\""), "{message}");
    }

    #[test]
    fn bootstrap_holds_addresses_and_a_bad_one_names_its_entry() {
        let config = NodeConfig::parse("bootstrap = [\"127.0.0.1:7700\", \"[::1]:9\"]\n").unwrap();
        assert_eq!(config.bootstrap.len(), 2);
        let message = problem("bootstrap = [\"127.0.0.1:7700\", \"node1\"]\n");
        assert!(
            message.contains("\"bootstrap\", entry 1: \"node1\""),
            "{message}"
        );
        assert!(message.contains("like \"192.0.2.1:7700\""), "{message}");
        let message = problem("bootstrap = \"127.0.0.1:7700\"\n");
        assert!(
            message.contains("field \"bootstrap\": expected a list"),
            "{message}"
        );
    }
}
