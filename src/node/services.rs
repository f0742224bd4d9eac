//! The services a node runs on its worker (`service::host`): which ones, built from the
//! configuration, the identity and the data directory. The consensus service and the overlay
//! add themselves here.

use super::{DataDir, NodeConfig};
use crate::consensus::service::{ConsensusService, Settings, SharedView};
use crate::consensus::store::StoreError;
use crate::service::host::Service;
use crate::session::{Identity, PeerRecord};
use std::time::Instant;

/// The services of a node, and what its admin side shows of them.
pub struct NodeServices {
    /// The services, ready to run on the node's worker.
    pub services: Vec<Box<dyn Service>>,
    /// The consensus service's view (`weft status`).
    pub consensus: SharedView,
}

/// The services `config` asks for. Every node runs the consensus service: as a member of the
/// configured cluster, as a client of it, or (no members configured) as the lone member of its
/// own network, so that it ends up with a certified node id (PROTOCOL.md §11, bootstrap).
pub fn node_services(
    config: &NodeConfig,
    identity: &Identity,
    data: &DataDir,
) -> Result<NodeServices, StoreError> {
    let own = PeerRecord::sign(identity, &[config.listen]);
    let consensus = ConsensusService::new(
        Instant::now(),
        Settings {
            key: identity.signing_key().clone(),
            own,
            members: config.consensus.members.clone(),
            round_base: config.consensus.round_base,
            resend: config.consensus.resend,
            salt: config.consensus.salt,
            store: data.path().to_path_buf(),
        },
    )?;
    let view = consensus.view();
    Ok(NodeServices {
        services: vec![Box::new(consensus)],
        consensus: view,
    })
}
