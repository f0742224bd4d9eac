//! A runnable node: configuration, the data directory, metrics, and the engine that runs them.
//!
//! [`Node::start`] does everything that can fail because of the operator (keys, addresses) before
//! anything runs, so the command line can report it and exit; [`Node::run`] then loops until
//! SIGINT or SIGTERM.

pub mod config;
pub mod datadir;
pub mod metrics;

pub use config::{ConfigError, ConfigProblem, NodeConfig};
pub use datadir::{DataDir, DataDirError, IdentityOrigin};
pub use metrics::{MetricsError, MetricsServer};

use crate::channel::{Endpoint, EndpointConfig};
use crate::engine::{Driver, ShutdownHandle};
use crate::wire::PeerId;
use rand::RngCore;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

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
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Signal handlers could not be installed.
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(#[source] io::Error),
}

/// A node whose sockets are bound and whose keys are loaded, ready to run.
pub struct Node {
    driver: Driver,
    metrics: MetricsServer,
    peer_id: PeerId,
    identity_origin: IdentityOrigin,
}

impl Node {
    /// Opens the data directory, loads or creates the identity, binds the UDP socket and the
    /// metrics endpoint, and arms SIGINT/SIGTERM to stop [`Node::run`].
    pub fn start(config: &NodeConfig) -> Result<Node, StartError> {
        let data = DataDir::open(&config.data)?;
        let mut rng = rand::rngs::OsRng;
        let (identity, identity_origin) = data.load_or_create_identity(&mut rng)?;
        let peer_id = identity.peer_id();
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let endpoint_config = EndpointConfig {
            allow_plaintext: config.allow_plaintext,
            echo: config.echo,
            ..EndpointConfig::default()
        };
        let endpoint = Endpoint::new(endpoint_config, identity, seed, Instant::now());
        let mut driver =
            Driver::bind(config.listen, endpoint).map_err(|source| StartError::Bind {
                address: config.listen,
                source,
            })?;
        let metrics = MetricsServer::start(config.metrics)?;
        // Armed before the caller announces readiness, so a signal sent on seeing the ready
        // line is always a clean stop.
        driver.stop_on_signals().map_err(StartError::Signals)?;
        Ok(Node {
            driver,
            metrics,
            peer_id,
            identity_origin,
        })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.driver.local_addr()
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

    /// A handle that stops [`Node::run`] from another thread.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        self.driver.shutdown_handle()
    }

    /// Runs until SIGINT, SIGTERM or a [`ShutdownHandle`], publishing metrics about once a second.
    pub fn run(mut self) -> io::Result<()> {
        self.driver.run(metrics::publish)
    }
}
