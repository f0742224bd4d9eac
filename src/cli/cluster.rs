//! `weft cluster status --via ADDR` and `weft id request --via ADDR`: a short-lived engine on an
//! ephemeral identity whose one service, `consensus::client::ClusterClient`, reaches the
//! consensus cluster through ADDR (PROTOCOL.md §11).

use super::{EXIT_FAILURE, EXIT_USAGE};
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use weft::channel::EndpointConfig;
use weft::consensus::bootstrap::MemberDocument;
use weft::consensus::client::{ClusterClient, Goal, Progress};
use weft::consensus::ids::{MemberKey, NetworkId, NodeIdRequest};
use weft::consensus::policy::Limit;
use weft::consensus::quorum;
use weft::consensus::service::hex;
use weft::consensus::trust::MemberListChain;
use weft::engine::{Engine, EngineConfig};
use weft::service::host::Host;
use weft::session::Identity;

/// Flags of `weft cluster`.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Print the network id, its members, each one's height/round, last decision and lag.
    Status(Reach),
    /// Print the cluster's signed member document, the file to serve at `[consensus]
    /// members_url` (docs/CONSENSUS.md)
    Members(Reach),
}

/// How to reach the cluster.
#[derive(Debug, Args)]
pub(crate) struct Reach {
    /// A node of the cluster (any member, or a node configured with its members), IP:PORT
    #[arg(long, value_name = "ADDR", value_parser = super::parse_socket_addr)]
    pub(crate) via: SocketAddr,
    /// Trust only this network id (64 hex digits); left out, the one ADDR presents is pinned
    #[arg(long, value_name = "HEX", value_parser = parse_network)]
    pub(crate) network: Option<NetworkId>,
    /// Give up after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub(crate) timeout: f64,
}

fn parse_network(text: &str) -> Result<NetworkId, String> {
    let bad =
        || format!("\"{text}\" is not a network id: 64 hex digits as `weft cluster status` prints");
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(NetworkId(id))
}

/// Runs `weft cluster`.
pub(crate) fn run(args: ClusterArgs) -> ExitCode {
    match args.command {
        ClusterCommand::Status(reach) => status(&reach),
        ClusterCommand::Members(reach) => members(&reach),
    }
}

/// `weft cluster members`: the member document of the network ADDR reports, its records
/// checked against the network id (and `--network`) by the client, and the document verified
/// again as a fetching node will.
fn members(args: &Reach) -> ExitCode {
    let progress = match reach(args, Goal::Status, |p| p.network.is_some()) {
        Ok(progress) => progress,
        Err(error) => return failed("weft cluster members", &error),
    };
    let keys: Vec<MemberKey> = progress
        .members
        .iter()
        .map(|r| MemberKey(r.ed25519))
        .collect();
    // The chain the node reported, else (an older node) its records as genesis.
    let chain = progress
        .chain
        .as_ref()
        .map_or_else(|| MemberListChain::new(&keys), |(chain, _)| chain.clone());
    let document = MemberDocument::new(chain, &progress.members);
    if let Err(error) = document.verify(progress.network) {
        eprintln!("weft cluster members: the cluster's list does not verify: {error}");
        return ExitCode::from(EXIT_FAILURE);
    }
    print!("{}", document.to_text());
    ExitCode::SUCCESS
}

/// Runs a client for `goal` until `done` says so or the deadline passes; the last progress.
pub(crate) fn reach(
    reach: &Reach,
    goal: Goal,
    done: impl Fn(&Progress) -> bool,
) -> Result<Progress, String> {
    if !(reach.timeout > 0.0 && reach.timeout <= 3600.0) {
        return Err("--timeout: give 0 to 3600 seconds".into());
    }
    let bind: SocketAddr = match reach.via {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => "127.0.0.1:0".parse().unwrap_or(reach.via),
        SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap_or(reach.via),
        SocketAddr::V6(_) => "[::]:0".parse().unwrap_or(reach.via),
    };
    // An identity of its own: the channels' peer id says nothing about the id asked for.
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let config = EngineConfig {
        shards: 1,
        ..EngineConfig::new(bind, EndpointConfig::default())
    };
    let (engine, link) = Engine::start_with_worker(&config, &identity, rand::random(), 1024)
        .map_err(|e| format!("cannot start a local endpoint: {e}"))?;
    let client = ClusterClient::new(Instant::now(), reach.via, reach.network, goal);
    let progress = client.progress();
    let host = Host::new(vec![Box::new(client)], false);
    let worker = std::thread::spawn(move || host.run(link));
    let stop = engine
        .shutdown_handle()
        .map_err(|e| format!("cannot start a local endpoint: {e}"))?;
    let engine = std::thread::spawn(move || engine.run(|_| {}));
    let deadline = Instant::now() + Duration::from_secs_f64(reach.timeout);
    let last = loop {
        let now = progress.lock().map(|p| p.clone()).unwrap_or_default();
        if now.error.is_some() || done(&now) || Instant::now() >= deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.shutdown();
    let _ = engine.join();
    let _ = worker.join();
    if let Some(error) = last.error.clone() {
        return Err(error);
    }
    if last.network.is_none() {
        return Err(format!(
            "no answer from {} within {} s; is a weft node listening there?",
            reach.via, reach.timeout
        ));
    }
    Ok(last)
}

fn status(args: &Reach) -> ExitCode {
    let progress = match reach(args, Goal::Status, |p| {
        p.network.is_some() && p.reports.len() >= p.members.len()
    }) {
        Ok(progress) => progress,
        Err(error) => return failed("weft cluster status", &error),
    };
    print!("{}", render_status(&progress, args.network.is_some()));
    ExitCode::SUCCESS
}

/// Reports why `command` failed: a bad flag exits 2, anything else 1.
fn failed(command: &str, error: &str) -> ExitCode {
    eprintln!("{command}: {error}");
    ExitCode::from(if error.starts_with("--") {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    })
}

/// The status table: the network (`configured` when `--network` named it, else pinned as the
/// node asked presented it), then one row per member.
pub(crate) fn render_status(progress: &Progress, configured: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let network = progress.network.map_or_else(String::new, |n| hex(&n.0));
    let members = progress.members.len();
    let trust = if configured {
        "configured with --network"
    } else {
        "pinned: as the node asked presented it"
    };
    let _ = writeln!(out, "network: {network} ({trust})");
    match &progress.chain {
        Some((chain, current)) => {
            let _ = writeln!(
                out,
                "member list: version {} ({} link(s) from genesis, {} genesis member(s))",
                current.epoch,
                chain.links.len(),
                chain.genesis.len()
            );
        }
        None => {
            let _ = writeln!(out, "member list: genesis (the node reported no chain)");
        }
    }
    let _ = writeln!(
        out,
        "members: {members} (quorum {}), {} answered",
        quorum(members),
        progress.reports.len()
    );
    let top = progress
        .reports
        .values()
        .map(|r| r.height)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "\n{:<10} {:<22} {:>7} {:>6} {:>16} {:>8} {:>7} {:>4}",
        "member", "address", "height", "round", "last decision", "pending", "issued", "lag"
    );
    for record in &progress.members {
        let key = weft::consensus::ids::MemberKey(record.ed25519);
        let address = record
            .addresses
            .first()
            .map_or_else(|| "-".into(), ToString::to_string);
        match progress.reports.get(&key) {
            Some(report) => {
                let round = report
                    .round
                    .map_or_else(|| "idle".into(), |r| r.to_string());
                let last = report.last_decision.map_or_else(
                    || "none".into(),
                    |(height, ago)| format!("{height} ({:.1} s ago)", ago as f64 / 1000.0),
                );
                let _ = writeln!(
                    out,
                    "{:<10} {:<22} {:>7} {:>6} {:>16} {:>8} {:>7} {:>4}",
                    key.to_string(),
                    address,
                    report.height,
                    round,
                    last,
                    report.pending,
                    report.issued,
                    top.saturating_sub(report.height)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<10} {:<22} {:>7}",
                    key.to_string(),
                    address,
                    "no answer"
                );
            }
        }
    }
    out
}

/// A policy limit as an operator reads it: `per-/24 limit 24 per 24 h`.
pub(crate) fn describe_limit(limit: &Limit) -> String {
    let period = |seconds: u64| match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    };
    match limit {
        Limit::Prefix {
            bits,
            quota,
            period: seconds,
            ..
        } => format!("per-/{bits} limit {quota} per {}", period(*seconds)),
        Limit::Table {
            prefixes,
            period: seconds,
        } => format!(
            "prefix table full ({prefixes} prefixes per {})",
            period(*seconds)
        ),
    }
}

/// `weft id request`: asks the cluster for the id of `key` at `addresses` with `salt`.
pub(crate) fn request_id(reach_args: &Reach, request: NodeIdRequest) -> ExitCode {
    let progress = match reach(reach_args, Goal::Id(request.clone()), |p| {
        p.certificate.is_some() || p.refused.is_some()
    }) {
        Ok(progress) => progress,
        Err(error) => return failed("weft id request", &error),
    };
    if let (None, Some(refused)) = (&progress.certificate, progress.refused) {
        // Asking again is futile until the window ends: say which limit, and when.
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        println!(
            "refused: {} ({}), signed by {} of {} members",
            describe_limit(&refused.limit),
            refused.limit.label(),
            refused.members,
            progress.members.len()
        );
        println!(
            "retry_after={} (in {} s)",
            refused.until,
            refused.until.saturating_sub(unix)
        );
        eprintln!(
            "weft id request: the cluster refused the request: {}; ask again after the window \
             ends, or from another network prefix",
            describe_limit(&refused.limit)
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let Some(certificate) = progress.certificate else {
        eprintln!(
            "weft id request: {} matching signed replies of the {} needed within {} s; \
             `weft cluster status --via {}` shows whether the cluster decides",
            progress.replies,
            quorum(progress.members.len()),
            reach_args.timeout,
            reach_args.via
        );
        return ExitCode::from(EXIT_FAILURE);
    };
    let network = progress.network.map_or_else(String::new, |n| hex(&n.0));
    println!("node_id={}", hex(&certificate.node_id.0));
    println!("network={network}");
    println!("height={}", certificate.height);
    println!(
        "certificate={}",
        hex(&weft::consensus::asking::certificate_bytes(&certificate))
    );
    println!(
        "replies={} of {} members",
        certificate.replies.len(),
        progress.members.len()
    );
    ExitCode::SUCCESS
}
