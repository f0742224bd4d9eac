//! Argument parsing and dispatch; the only place that knows about arguments and terminals
//! (STYLE.md, layering).

mod bench;
mod bulk;
mod cluster;
mod demo;
mod dht;
mod doctor;
mod id;
mod log;
mod node;
mod ping;
mod status;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;

/// Exit status for a runtime failure (a port in use, an unusable key file, no PONG).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit status for bad usage or a bad config file, as clap uses for bad flags.
pub(crate) const EXIT_USAGE: u8 = 2;

/// A peer-to-peer packet engine.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node until SIGINT or SIGTERM.
    Node(node::NodeArgs),
    /// Store or look up a DHT record through a node of the network (a short-lived client).
    Dht(dht::DhtArgs),
    /// Show a running node's peers and totals (through its admin socket), like `wg show`.
    Status(status::StatusArgs),
    /// Send PINGs to a node and report its PONGs.
    Ping(ping::PingArgs),
    /// Print this node's peer id and signed peer record.
    Id(id::IdArgs),
    /// Ask a consensus cluster how it stands.
    Cluster(cluster::ClusterArgs),
    /// Check the host against tuning/ and print each finding with its fix.
    Doctor(doctor::DoctorArgs),
    /// Start several nodes on loopback, ping them, load channels of every mode, and report.
    Demo(demo::DemoArgs),
    /// Load a node with simulated peers and compare it with a raw-UDP echo.
    Bench(bench::BenchArgs),
    /// The receiving process of `weft bench --bulk` (started by it).
    #[command(hide = true)]
    BulkSink(bulk::SinkArgs),
}

/// Parses the arguments and runs the subcommand; bad flags exit with status 2.
pub(crate) fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Node(args) => node::run(args),
        Command::Ping(args) => ping::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Id(args) => id::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Status(args) => status::run(args),
        Command::Dht(args) => dht::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::BulkSink(args) => bulk::sink(args),
    }
}

/// Parses a flag's socket address with the same message as the config file gives.
fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("\"{text}\" is not a socket address like 0.0.0.0:7700"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "weft",
            "node",
            "--listen",
            "127.0.0.1:0",
            "--echo",
            "--allow-plaintext",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Node(_)));
        let error = Cli::try_parse_from(["weft", "node", "--listen", "abc"]).unwrap_err();
        assert_eq!(error.exit_code(), i32::from(EXIT_USAGE));
        assert!(
            error
                .to_string()
                .contains("not a socket address like 0.0.0.0:7700")
        );
        assert!(Cli::try_parse_from(["weft", "node", "--shards", "0"]).is_err());
        assert!(Cli::try_parse_from(["weft", "node", "--shards", "3"]).is_ok());
        let bench = Cli::try_parse_from([
            "weft",
            "bench",
            "--mode",
            "tcp",
            "--peers",
            "10",
            "--size",
            "100",
            "--rate",
            "5",
            "--duration",
            "1",
            "--json",
            "out.json",
        ])
        .unwrap();
        assert!(matches!(bench.command, Command::Bench(_)));
        assert!(Cli::try_parse_from(["weft", "bench", "--mode", "quic"]).is_err());
        assert!(Cli::try_parse_from(["weft", "bench", "--size", "4"]).is_err());
        assert!(Cli::try_parse_from(["weft", "ping", "x:1", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["weft", "ping", "x:1", "--timeout", "-1"]).is_err());
        assert!(Cli::try_parse_from(["weft", "ping", "x:1", "--peer", "zz"]).is_err());
    }
}
