//! `weft id`: print this node's peer id and its signed peer record (PROTOCOL.md §2), the
//! record being what `weft ping --record`, a config file or an address book holds.

use super::{EXIT_FAILURE, EXIT_USAGE};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft::node::datadir::{DataDir, ED25519_KEY_FILE, X25519_KEY_FILE};
use weft::session::PeerRecord;

/// Flags of `weft id`.
#[derive(Debug, Args)]
pub(crate) struct IdArgs {
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

/// Prints `peer=HEX` and `record=HEX`; a bad data directory is a clear error.
pub(crate) fn run(args: IdArgs) -> ExitCode {
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

/// Whether either key file is there (a link or a half identity counts: opening it then reports
/// what is wrong with it).
fn holds_identity(data: &std::path::Path) -> bool {
    [ED25519_KEY_FILE, X25519_KEY_FILE]
        .iter()
        .any(|file| std::fs::symlink_metadata(data.join(file)).is_ok())
}
