//! The services a node runs on its worker (`service::host`): which ones, built from the
//! configuration, the identity and the data directory. The consensus service and the overlay
//! add themselves here.

use super::{DataDir, NodeConfig};
use crate::service::host::Service;
use crate::session::Identity;

/// The services `config` asks for, ready to run on the node's worker.
pub fn node_services(
    config: &NodeConfig,
    identity: &Identity,
    data: &DataDir,
) -> Vec<Box<dyn Service>> {
    let _ = (config, identity, data);
    Vec::new()
}
