//! `weft node`: merge the config file and the flags, start a node, announce it, run it.

use super::{EXIT_FAILURE, EXIT_USAGE, parse_socket_addr};
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft::node::{IdentityOrigin, Node, NodeConfig};

/// Flags of `weft node`; each overrides the config file's field of the same name.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// UDP address to listen on [default: 0.0.0.0:7700]
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    listen: Option<SocketAddr>,
    /// Address of the Prometheus endpoint (GET /metrics) [default: 127.0.0.1:9700]
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    metrics: Option<SocketAddr>,
    /// Data directory holding the node's keys [default: ./weft-data]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Send every DATA message back on its channel
    #[arg(long)]
    echo: bool,
    /// Also accept plaintext (kind 0) peers; off by default, so every peer talks over a session
    #[arg(long)]
    allow_plaintext: bool,
    /// Engine shards, each a thread pinned to a core with its own socket [default: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    shards: Option<u16>,
    /// I/O backend: auto (the one measured faster, docs/ENGINE.md; epoll whenever io_uring is
    /// refused), uring (fails rather than fall back) or epoll [default: auto]
    #[arg(long, value_name = "BACKEND", value_parser = ["auto", "uring", "epoll"])]
    io: Option<String>,
    /// Log lines on stderr: text, or one JSON object per line [default: text]
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Overlay node to join through: its UDP address, or PEER@ADDR with its peer id (which
    /// saves a round trip); repeat for several (replaces the config file's `bootstrap`)
    #[arg(long, value_name = "ADDR")]
    bootstrap: Vec<weft::overlay::worker::Bootstrap>,
    /// Fetch the consensus members from this http:// URL (the signed list `weft cluster
    /// members` prints); replaces the config file's `[consensus] members` and `members_url`
    #[arg(long, value_name = "URL", value_parser = weft::node::members_url::HttpUrl::parse)]
    members_url: Option<weft::node::members_url::HttpUrl>,
    /// TOML config file; flags override its fields
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl NodeArgs {
    /// The file's settings (or the defaults) with the flags given on top.
    fn merge(&self) -> Result<NodeConfig, weft::node::ConfigError> {
        let mut config = match &self.config {
            Some(path) => NodeConfig::load(path)?,
            None => NodeConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(metrics) = self.metrics {
            config.metrics = metrics;
        }
        if let Some(data) = &self.data {
            config.data = data.clone();
        }
        if let Some(shards) = self.shards {
            config.shards = usize::from(shards);
        }
        if let Some(io) = &self.io {
            // clap allowed only the three names, which all parse.
            config.io = io.parse().unwrap_or_default();
        }
        if let Some(format) = &self.log_format {
            // clap allowed only the two names, which both parse.
            config.log_format = format.parse().unwrap_or_default();
        }
        if !self.bootstrap.is_empty() {
            config.bootstrap = self.bootstrap.clone();
        }
        if let Some(url) = &self.members_url {
            config.consensus.members.clear();
            config.consensus.members_url = Some(url.clone());
        }
        config.echo |= self.echo;
        config.allow_plaintext |= self.allow_plaintext;
        Ok(config)
    }
}

/// Runs `weft node`: 0 after a clean stop, 2 for a bad config, 1 when the node cannot start.
pub(crate) fn run(args: NodeArgs) -> ExitCode {
    let config = match args.merge() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("weft node: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    super::log::init(config.log_level.as_deref(), config.log_format);
    let node = match Node::start(&config) {
        Ok(node) => node,
        Err(e @ weft::node::StartError::Trust(_)) => {
            // The configured or pinned network id disagrees: the operator's to fix.
            eprintln!("weft node: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("weft node: {e}");
            let code = if e.needs_operator() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            };
            return ExitCode::from(code);
        }
    };
    match node.identity_origin() {
        IdentityOrigin::Created => tracing::info!(
            peer = %node.peer_id(),
            data = %config.data.display(),
            "created a new identity; back up the data directory's key files"
        ),
        IdentityOrigin::Loaded => tracing::info!(
            peer = %node.peer_id(),
            data = %config.data.display(),
            "loaded identity"
        ),
    }
    tracing::info!(
        udp = %node.udp_addr(),
        metrics = %node.metrics_addr(),
        echo = config.echo,
        allow_plaintext = config.allow_plaintext,
        shards = node.shards().0,
        steered = node.shards().1,
        io = node.io_backend(),
        "node running"
    );
    if let Some(status) = node
        .dht()
        .and_then(|dht| dht.status(std::time::Duration::from_secs(5)).ok())
    {
        tracing::info!(
            node_id = %weft::overlay::id::hex(&status.node_id),
            provisional = status.provisional,
            bootstrap = config.bootstrap.len(),
            "overlay running; a client of the DHT until the consensus service certifies the node id"
        );
    }
    // Scripts and tests wait for this one line, so it goes to stdout, alone, flushed.
    let mut stdout = std::io::stdout().lock();
    let announced = writeln!(
        stdout,
        "ready udp={} metrics={} peer={} io={}",
        node.udp_addr(),
        node.metrics_addr(),
        node.peer_id(),
        node.io_backend()
    )
    .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(e) = announced {
        // Nobody may be reading stdout (a closed pipe); the node still runs.
        tracing::warn!(error = %e, "cannot print the ready line");
    }
    match node.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.get_ref()
                .is_some_and(|inner| inner.is::<weft::node::trust::TrustSetupError>()) =>
        {
            // The members URL serves another network than the one configured or pinned.
            eprintln!("weft node: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("weft node: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
