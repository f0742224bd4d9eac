//! `weft id`: print this node's peer id and its signed peer record (PROTOCOL.md §2), the
//! record being what `weft ping --record`, a config file or an address book holds.

use super::{EXIT_FAILURE, EXIT_USAGE};
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft::consensus::ids::{MAX_REQUEST_ADDRESSES, NodeIdRequest};
use weft::node::datadir::{DataDir, ED25519_KEY_FILE, X25519_KEY_FILE};
use weft::session::PeerRecord;

/// Flags of `weft id`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct IdArgs {
    #[command(subcommand)]
    action: Option<IdAction>,
    /// Data directory holding the identity
    #[arg(long, value_name = "DIR", default_value = weft::node::config::DEFAULT_DATA)]
    data: PathBuf,
    /// Create the directory and a new identity in it when it holds none
    #[arg(long)]
    create: bool,
    /// An address to put in the record (repeat for several), e.g. the node's public IP:PORT
    #[arg(long = "address", value_name = "ADDR", value_parser = super::parse_socket_addr)]
    addresses: Vec<SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum IdAction {
    /// Ask the consensus cluster for this node's id and print it with its certificate
    Request(RequestArgs),
}

/// Flags of `weft id request`.
#[derive(Debug, Args)]
struct RequestArgs {
    #[command(flatten)]
    reach: super::cluster::Reach,
    /// Data directory holding the identity whose key the id is for
    #[arg(long, value_name = "DIR", default_value = weft::node::config::DEFAULT_DATA)]
    data: PathBuf,
    /// An address the node says it is at (repeat for up to 8); default: the node's --listen
    /// default on this host, 127.0.0.1:7700
    #[arg(long = "address", value_name = "ADDR", value_parser = super::parse_socket_addr)]
    addresses: Vec<SocketAddr>,
    /// The request's salt: the same key and salt always get the same id
    #[arg(long, default_value_t = 0)]
    salt: u32,
}

/// Prints `peer=HEX` and `record=HEX`; a bad data directory is a clear error.
pub(crate) fn run(args: IdArgs) -> ExitCode {
    if let Some(IdAction::Request(request)) = args.action {
        return request_id(request);
    }
    if args.addresses.len() > 16 {
        eprintln!("weft id: --address: at most 16 addresses fit in a peer record");
        return ExitCode::from(EXIT_USAGE);
    }
    if !args.create && !holds_identity(&args.data) {
        // What is wrong with an existing directory (others may write it, …) comes first.
        if args.data.is_dir()
            && let Err(error) = DataDir::open(&args.data)
        {
            eprintln!("weft id: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
        // A mistyped --data must not quietly mint a second identity (issue 13).
        eprintln!(
            "weft id: {} holds no identity (no {ED25519_KEY_FILE} or {X25519_KEY_FILE}); check \
             --data (the node's is where `weft node --data` points), or pass --create to make a \
             new identity there",
            args.data.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let data = match DataDir::open(&args.data) {
        Ok(data) => data,
        Err(error) => {
            eprintln!("weft id: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let identity = match data.load_or_create_identity(&mut rand::rngs::OsRng) {
        Ok((identity, _)) => identity,
        Err(error) => {
            eprintln!("weft id: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let record = PeerRecord::sign(&identity, &args.addresses);
    println!("peer={}", identity.peer_id());
    println!("record={}", record.to_hex());
    ExitCode::SUCCESS
}

/// `weft id request`: the identity must exist already (an id for a key nobody keeps is lost).
fn request_id(args: RequestArgs) -> ExitCode {
    if args.addresses.len() > MAX_REQUEST_ADDRESSES {
        eprintln!(
            "weft id request: --address: at most {MAX_REQUEST_ADDRESSES} addresses fit in a request"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if !holds_identity(&args.data) {
        eprintln!(
            "weft id request: {} holds no identity; point --data at the node's data directory, \
             or create one with `weft id --create --data DIR`",
            args.data.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let identity = match DataDir::open(&args.data)
        .and_then(|data| data.load_or_create_identity(&mut rand::rngs::OsRng))
    {
        Ok((identity, _)) => identity,
        Err(error) => {
            eprintln!("weft id request: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let addresses = if args.addresses.is_empty() {
        vec![SocketAddr::from(([127, 0, 0, 1], 7700))]
    } else {
        args.addresses
    };
    let request = NodeIdRequest {
        key: identity.ed25519_public().to_bytes(),
        addresses,
        salt: args.salt,
    };
    println!("peer={}", identity.peer_id());
    super::cluster::request_id(&args.reach, request)
}

/// Whether either key file is there (a link or a half identity counts: opening it then reports
/// what is wrong with it).
fn holds_identity(data: &std::path::Path) -> bool {
    [ED25519_KEY_FILE, X25519_KEY_FILE]
        .iter()
        .any(|file| std::fs::symlink_metadata(data.join(file)).is_ok())
}
