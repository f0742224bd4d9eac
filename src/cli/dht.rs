//! `weft dht put KEY VALUE --via ADDR` and `weft dht get KEY --via ADDR`: a short-lived node in
//! client mode (it queries, holds nothing, stays out of other nodes' tables) joins through ADDR,
//! does the one operation and stops. Its identity is a fresh one in a temporary directory.

use super::{EXIT_FAILURE, EXIT_USAGE, parse_socket_addr};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use weft::node::{Node, NodeConfig};
use weft::overlay::api::DhtHandle;

/// Flags of `weft dht`.
#[derive(Debug, Args)]
pub(crate) struct DhtArgs {
    #[command(subcommand)]
    command: DhtCommand,
}

#[derive(Debug, Subcommand)]
enum DhtCommand {
    /// Store VALUE under KEY at the k nodes closest to it.
    Put {
        /// The key (at most 256 bytes)
        key: String,
        /// The value (at most 16 KiB)
        value: String,
        #[command(flatten)]
        via: Via,
    },
    /// Look KEY up and print its value.
    Get {
        /// The key
        key: String,
        #[command(flatten)]
        via: Via,
    },
}

#[derive(Debug, Args)]
struct Via {
    /// UDP address of a node of the network to join through; repeat for several
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr, required = true)]
    via: Vec<SocketAddr>,
    /// Seconds to wait for the join and for the answer
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0,
          value_parser = parse_seconds)]
    timeout: f64,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(s),
        _ => Err(format!(
            "\"{text}\" is not a number of seconds in (0, 3600]"
        )),
    }
}

/// Longest key and value the DHT takes (`FrameLimits::max_key`, `KademliaConfig::max_value`).
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 16 * 1024;

/// A temporary data directory, removed when dropped.
struct TempData(PathBuf);

impl Drop for TempData {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `weft dht`: 0 when the value was stored or found, 1 when not (or no node answered), 2
/// for bad usage.
pub(crate) fn run(args: DhtArgs) -> ExitCode {
    let (key, via) = match &args.command {
        DhtCommand::Put { key, via, .. } | DhtCommand::Get { key, via } => (key, via),
    };
    if key.is_empty() || key.len() > MAX_KEY {
        eprintln!("weft dht: KEY must be 1 to {MAX_KEY} bytes; give a shorter key");
        return ExitCode::from(EXIT_USAGE);
    }
    if let DhtCommand::Put { value, .. } = &args.command
        && value.len() > MAX_VALUE
    {
        eprintln!(
            "weft dht: VALUE is {} bytes, more than the {MAX_VALUE} a record holds; store a shorter value",
            value.len()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let timeout = Duration::from_secs_f64(via.timeout);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let data =
        TempData(std::env::temp_dir().join(format!("weft-dht-{}-{nanos}", std::process::id())));
    let any = |addr: &SocketAddr| -> SocketAddr {
        match addr {
            SocketAddr::V4(a) if a.ip().is_loopback() => "127.0.0.1:0",
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(a) if a.ip().is_loopback() => "[::1]:0",
            SocketAddr::V6(_) => "[::]:0",
        }
        .parse()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    };
    let config = NodeConfig {
        listen: any(&via.via[0]),
        metrics: "127.0.0.1:0"
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
        data: data.0.clone(),
        shards: 1,
        bootstrap: via
            .via
            .iter()
            .map(|&addr| weft::overlay::worker::Bootstrap { addr, peer: None })
            .collect(),
        dht_client: true,
        ..NodeConfig::default()
    };
    let node = match Node::start(&config) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("weft dht: cannot start the client node: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let (Some(dht), Ok(stop)) = (node.dht(), node.shutdown_handle()) else {
        eprintln!("weft dht: the client node runs no overlay");
        return ExitCode::from(EXIT_FAILURE);
    };
    let runner = std::thread::spawn(move || node.run());
    let code = operate(&dht, &args.command, via, timeout);
    stop.shutdown();
    let _ = runner.join();
    drop(data);
    code
}

fn operate(dht: &DhtHandle, command: &DhtCommand, via: &Via, timeout: Duration) -> ExitCode {
    let started = Instant::now();
    if let Err(e) = dht.wait_for_contacts(1, timeout) {
        let list: Vec<String> = via.via.iter().map(ToString::to_string).collect();
        eprintln!(
            "weft dht: no node answered at {} ({e}); check the address with weft ping",
            list.join(", ")
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    match command {
        DhtCommand::Put { key, value, .. } => match dht.put(key.as_bytes(), value.as_bytes(), left)
        {
            Ok(outcome) if outcome.stored > 0 => {
                println!(
                    "stored {key:?} on {} node(s) (lookup depth {}, {} ms)",
                    outcome.stored,
                    outcome.depth,
                    outcome.elapsed.as_millis()
                );
                ExitCode::SUCCESS
            }
            Ok(_) => {
                eprintln!("weft dht: no node acknowledged the STORE of {key:?}");
                ExitCode::from(EXIT_FAILURE)
            }
            Err(e) => {
                eprintln!("weft dht: put {key:?}: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        DhtCommand::Get { key, .. } => match dht.get(key.as_bytes(), left) {
            Ok(outcome) => match outcome.value {
                Some(value) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&value).and_then(|()| out.write_all(b"\n"));
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!(
                        "weft dht: {key:?} not found (lookup depth {})",
                        outcome.depth
                    );
                    ExitCode::from(EXIT_FAILURE)
                }
            },
            Err(e) => {
                eprintln!("weft dht: get {key:?}: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
    }
}
