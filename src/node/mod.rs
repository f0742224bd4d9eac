//! A runnable node: configuration, the data directory, metrics, and the engine that runs them.
//!
//! [`Node::start`] does everything that can fail because of the operator (keys, addresses) before
//! anything runs, so the command line can report it and exit; [`Node::run`] then loops until
//! SIGINT or SIGTERM.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod exposition;
pub mod limits;
pub mod members_url;
pub mod metrics;
pub mod process;
pub mod scrape;
pub mod services;
mod suggest;
pub mod summary;
pub mod trust;

pub use config::{ConfigError, ConfigProblem, NodeConfig};
pub use datadir::{DataDir, DataDirError, IdentityOrigin};
pub use limits::{Limits, LimitsFile};
pub use metrics::{MetricsError, MetricsServer};
pub use scrape::ScrapeLimits;

use crate::channel::EndpointConfig;
use crate::engine::{
    Engine, EngineConfig, ShardStats, ShutdownHandle, UringRefused, merged_endpoint_stats,
};
use crate::service::host::{Host, HostHandle};
use crate::stats::Stats;
use crate::wire::PeerId;
use std::sync::{Arc, Mutex};

/// Messages that may wait for the worker, and replies for each shard.
const WORKER_QUEUE: usize = 4096;
use rand::RngCore;
use std::io;
use std::net::SocketAddr;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or a key file is unusable.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The UDP socket could not bind.
    #[error(
        "cannot listen on UDP {address} (--listen / `listen`): {source}; choose a free address, \
         e.g. 0.0.0.0:7701"
    )]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Another socket (most likely another node) already holds the UDP port.
    #[error(
        "UDP {address} is already in use, most likely by another weft node (--listen / \
         `listen`); stop that one, or choose a free address, e.g. --listen 0.0.0.0:7701"
    )]
    PortHeld {
        /// The address asked for.
        address: SocketAddr,
    },
    /// `--io uring` was asked for and the kernel refused io_uring.
    #[error("cannot start the io_uring backend (--io / `io`): {0}")]
    Io(UringRefused),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The consensus store in the data directory could not be opened (PROTOCOL.md §11).
    #[error(transparent)]
    ConsensusStore(#[from] crate::consensus::store::StoreError),
    /// The overlay's store in the data directory is of another format version, damaged, held
    /// by another process, or unreadable (the message names the file and the fix).
    #[error(transparent)]
    OverlayStore(#[from] crate::overlay::persist::PersistError),
    /// The network id configured or pinned disagrees with the members configured
    /// (PROTOCOL.md §11, trust root).
    #[error(transparent)]
    Trust(#[from] trust::TrustSetupError),
    /// Signal handlers could not be installed.
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(#[source] io::Error),
}

impl StartError {
    /// True when the operator must act on the data directory before the node can start (an
    /// overlay store of another format, damaged, or held by another node): `weft node` exits
    /// 2, as for a bad setting, rather than 1.
    pub fn needs_operator(&self) -> bool {
        use crate::overlay::persist::PersistError;
        matches!(
            self,
            StartError::OverlayStore(
                PersistError::Version { .. }
                    | PersistError::Damaged { .. }
                    | PersistError::Locked { .. }
            )
        )
    }
}

/// A node whose sockets are bound and whose keys are loaded, ready to run.
pub struct Node {
    engine: Engine,
    worker: Option<std::thread::JoinHandle<u64>>,
    /// Commands to the services on the worker, and their counters; `None` when no worker runs.
    host: Option<(HostHandle, Arc<Mutex<Stats>>)>,
    /// Whether the overlay is one of those services.
    overlay: bool,
    metrics: MetricsServer,
    /// `weft status`'s socket; `None` when it could not be bound (logged).
    admin: Option<admin::AdminServer>,
    peer_id: PeerId,
    identity_origin: IdentityOrigin,
    /// The members-URL fetcher, stopped when the node is.
    _fetcher: Option<members_url::Fetcher>,
    /// Why the node stopped itself, when it did (a members URL serving another network, or
    /// members that report another network).
    fatal: members_url::FatalSlot,
    /// The consensus service's view, watched for members of another network.
    consensus: crate::consensus::service::SharedView,
}

impl Node {
    /// Opens the data directory, loads or creates the identity, binds the UDP socket and the
    /// metrics endpoint, and arms SIGINT/SIGTERM to stop [`Node::run`].
    pub fn start(config: &NodeConfig) -> Result<Node, StartError> {
        check_port_free(config.listen)?;
        let data = DataDir::open(&config.data)?;
        let mut rng = rand::rngs::OsRng;
        let (identity, identity_origin) = data.load_or_create_identity(&mut rng)?;
        let peer_id = identity.peer_id();
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let endpoint_config = config.limits.apply(EndpointConfig {
            allow_plaintext: config.allow_plaintext,
            // PROTOCOL.md §12: the echo service runs as a worker fed by the shards' queue.
            echo: false,
            // Members are known peers too: the mesh's sessions to them are IK (PROTOCOL.md §5).
            peer_records: config
                .peers
                .iter()
                .chain(&config.consensus.members)
                .filter(|record| record.peer_id() != peer_id)
                .cloned()
                .collect(),
            ..EndpointConfig::default()
        });
        let engine_config = EngineConfig {
            shards: config.shards,
            io: config.io,
            ..EngineConfig::new(config.listen, endpoint_config)
        };
        let bind_error = |source: io::Error| match source
            .get_ref()
            .and_then(|e| e.downcast_ref::<UringRefused>())
        {
            Some(refused) => StartError::Io(refused.clone()),
            None => StartError::Bind {
                address: config.listen,
                source,
            },
        };
        // PROTOCOL.md §12: echo and the services run as one worker fed by the shards' queues.
        // Every node runs the consensus service, so there is always a worker; the services are
        // built once the socket is bound, so the node's own record names the port it got
        // (`--listen 127.0.0.1:0`), not port 0.
        let (mut engine, link) =
            Engine::start_with_worker(&engine_config, &identity, seed, WORKER_QUEUE)
                .map_err(bind_error)?;
        let bound = NodeConfig {
            listen: engine.local_addr(),
            ..config.clone()
        };
        let services::NodeServices {
            services,
            consensus,
            expected_network,
        } = services::node_services(&bound, &identity, &data)?;
        let host = Host::new(services, config.echo);
        let handle = (host.handle(), host.stats());
        let worker = std::thread::Builder::new()
            .name("weft-worker".into())
            .spawn(move || host.run(link))
            .map_err(bind_error)?;
        let mut fetcher = None;
        let fatal: members_url::FatalSlot = Arc::default();
        if let Some(url) = &config.consensus.members_url {
            // The configured or pinned network id is the one the URL may serve; with neither,
            // the first verified document's genesis names it and is pinned. A document of
            // another network stops the node (`Node::run` returns the reason).
            let (dir, shown) = (data.path().to_path_buf(), url.to_string());
            let trust = members_url::UrlTrust {
                pin: Box::new(move |network| {
                    trust::pin_document(&dir, expected_network, network, &shown)
                        .map(trust::Source::label)
                        .map_err(members_url::Fatal::from)
                }),
                view: Arc::clone(&consensus),
                fatal: Arc::clone(&fatal),
                stop: engine.shutdown_handle().map_err(bind_error)?,
            };
            fetcher = Some(
                members_url::spawn(
                    url.clone(),
                    trust,
                    &identity,
                    bound.listen,
                    handle.0.clone(),
                )
                .map_err(bind_error)?,
            );
        }
        let (worker, host) = (Some(worker), Some(handle));
        let metrics = MetricsServer::start_with(config.metrics, config.metrics_limits.clone())?;
        // Armed before the caller announces readiness, so a signal sent on seeing the ready
        // line is always a clean stop.
        engine.stop_on_signals().map_err(StartError::Signals)?;
        metrics::publish_build_info(engine.io_backend());
        metrics::publish_engine_info(engine.io_backend(), engine.shards());
        if let Some(refused) = engine.io_fallback() {
            metrics::publish_io_fallback(refused.errno_name());
        }
        let facts = admin::NodeFacts {
            peer: peer_id,
            udp: engine.local_addr(),
            metrics: metrics.local_addr(),
            io: engine.io_backend(),
            shards: engine.shards(),
            started: std::time::Instant::now(),
            consensus: Some(Arc::clone(&consensus)),
        };
        let admin = admin::AdminServer::start(data.path(), engine.peers_wanted(), facts)
            .map_err(|error| {
                tracing::warn!(%error, "no admin socket in the data directory; weft status will not reach this node");
            })
            .ok();
        Ok(Node {
            engine,
            worker,
            host,
            overlay: services::runs_overlay(config),
            metrics,
            admin,
            peer_id,
            identity_origin,
            _fetcher: fetcher,
            fatal,
            consensus,
        })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.engine.local_addr()
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.local_addr()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Whether the identity was read from the data directory or created on this start.
    pub fn identity_origin(&self) -> IdentityOrigin {
        self.identity_origin
    }

    /// The DHT on this node (PROTOCOL.md §10); `None` on an echo node, which runs no overlay.
    pub fn dht(&self) -> Option<crate::overlay::api::DhtHandle> {
        let (handle, _) = self.host.as_ref()?;
        self.overlay
            .then(|| crate::overlay::api::DhtHandle::new(handle.clone()))
    }

    /// Sends commands to the services on the node's worker; `None` when none runs.
    pub fn services(&self) -> Option<HostHandle> {
        self.host.as_ref().map(|(handle, _)| handle.clone())
    }

    /// A handle that stops [`Node::run`] from another thread.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        self.engine.shutdown_handle()
    }

    /// How many shards run and whether the steering program is attached.
    pub fn shards(&self) -> (usize, bool) {
        (self.engine.shards(), self.engine.steered())
    }

    /// The I/O backend the engine runs.
    pub fn io_backend(&self) -> &'static str {
        self.engine.io_backend()
    }

    /// Runs until SIGINT, SIGTERM or a [`ShutdownHandle`], publishing metrics about once a second.
    /// A node that stopped itself because its trust root refused what its members URL serves,
    /// or what its members report of their network, returns that [`trust::TrustSetupError`]
    /// inside the error (`weft node` exits 2 on it).
    pub fn run(self) -> io::Result<()> {
        let fatal = Arc::clone(&self.fatal);
        let result = self.run_engine();
        match fatal.lock().ok().and_then(|mut slot| slot.take()) {
            Some(error) => Err(io::Error::other(error)),
            None => result,
        }
    }

    fn run_engine(self) -> io::Result<()> {
        let stop = self.engine.shutdown_handle()?;
        let (fatal, consensus) = (Arc::clone(&self.fatal), Arc::clone(&self.consensus));
        let mut summary = summary::SummaryLog::new(summary::SUMMARY_INTERVAL);
        let admin = self.admin;
        let host_stats = self.host.as_ref().map(|(_, stats)| Arc::clone(stats));
        let mut services_snapshot = Stats::new();
        let result = self
            .engine
            .run(|shards| {
                if let Some(error) = trust::other_network(&consensus) {
                    tracing::error!(%error, "stopping");
                    if let Ok(mut slot) = fatal.lock() {
                        slot.get_or_insert(Box::new(error));
                    }
                    stop.shutdown();
                }
                let merged = merged_endpoint_stats(shards);
                if let Some(line) = summary.observe(std::time::Instant::now(), &merged) {
                    line.log();
                }
                if let Some(stats) = &host_stats
                    && let Ok(stats) = stats.lock()
                {
                    services_snapshot.clone_from(&stats);
                    drop(stats);
                    metrics::publish(&services_snapshot);
                }
                if let Some(admin) = &admin {
                    admin.publish(&merged, &services_snapshot, shards);
                }
                publish_shards(&merged, shards);
            })
            .map(drop);
        drop(admin);
        // The shards have stopped, so the worker's queue is closed and it returns.
        if let Some(worker) = self.worker
            && let Ok(refused) = worker.join()
            && refused > 0
        {
            tracing::warn!(refused, "worker replies refused by full queues");
        }
        result
    }
}

/// The shards bind with SO_REUSEPORT, which lets a second node join the first one's port group
/// and silently take a share of its traffic; a plain bind (no SO_REUSEPORT) fails whenever any
/// socket holds the port, so it tells the two apart before the engine binds. A node started at
/// the same instant can still slip between this probe and the engine's bind.
fn check_port_free(listen: SocketAddr) -> Result<(), StartError> {
    if listen.port() == 0 {
        return Ok(());
    }
    match std::net::UdpSocket::bind(listen) {
        Ok(_probe) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            Err(StartError::PortHeld { address: listen })
        }
        Err(source) => Err(StartError::Bind {
            address: listen,
            source,
        }),
    }
}

/// Publishes the node-wide endpoint counters unlabelled and each shard's loop counters with a
/// `shard` label (PROTOCOL.md §12).
fn publish_shards(merged: &crate::stats::Stats, shards: &[ShardStats]) {
    metrics::publish(merged);
    for (index, shard) in shards.iter().enumerate() {
        metrics::publish_labelled("shard", index, &shard.engine);
    }
}
