//! `weft status`: asks a running node, through the admin socket in its data directory, for its
//! peers and totals, like `wg show`.

use super::EXIT_FAILURE;
use clap::Args;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use weft::node::admin::ADMIN_SOCKET;

/// The node answers within its gathering deadline (5 s); a little more for the round trip.
const ANSWER_DEADLINE: Duration = Duration::from_secs(8);
/// The most of an answer read: a status of some hundred thousand peers.
const MAX_ANSWER: u64 = 256 << 20;

/// Flags of `weft status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The running node's data directory (its admin socket is there)
    #[arg(long, value_name = "DIR", default_value = weft::node::config::DEFAULT_DATA)]
    data: PathBuf,
    /// One JSON object, for scripts
    #[arg(long)]
    json: bool,
}

/// Runs `weft status`: 0 with the node's answer printed, 1 when no node answers.
pub(crate) fn run(args: StatusArgs) -> ExitCode {
    let path = args.data.join(ADMIN_SOCKET);
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e) => {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    "run weft status as the node's user".to_string()
                }
                _ => format!(
                    "is a node running with --data {}? Point --data at its data directory",
                    args.data.display()
                ),
            };
            eprintln!("weft status: cannot reach {}: {e}; {hint}", path.display());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let request: &[u8] = if args.json {
        b"status json\n"
    } else {
        b"status\n"
    };
    let mut answer = String::new();
    let result = stream
        .set_read_timeout(Some(ANSWER_DEADLINE))
        .and_then(|()| stream.write_all(request))
        .and_then(|()| stream.take(MAX_ANSWER).read_to_string(&mut answer));
    if let Err(e) = result {
        eprintln!("weft status: {}: {e}", path.display());
        return ExitCode::from(EXIT_FAILURE);
    }
    if let Some(error) = answer.strip_prefix("error: ") {
        eprintln!("weft status: the node says: {}", error.trim_end());
        return ExitCode::from(EXIT_FAILURE);
    }
    let _ = std::io::stdout().write_all(answer.as_bytes());
    ExitCode::SUCCESS
}
