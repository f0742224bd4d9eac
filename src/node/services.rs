//! The services a node runs on its worker (`service::host`): which ones, built from the
//! configuration, the identity and the data directory: the consensus service on every node.
//!
//! The overlay runs on every node but an echo node (whose every message is echoed, so no
//! service hears the network): as a full node, or in client mode for `weft dht`.

use super::{DataDir, NodeConfig};
use crate::consensus::service::{ConsensusService, Settings, SharedView};
use crate::overlay::kademlia::KademliaConfig;
use crate::overlay::worker::{Bootstrap, OverlayConfig, OverlayService};
use crate::service::host::Service;
use crate::session::{Identity, PeerRecord};
use rand::RngCore;
use std::sync::Arc;
use std::time::Instant;

/// Whether a node with `config` runs the overlay.
pub fn runs_overlay(config: &NodeConfig) -> bool {
    !config.echo
}

/// The overlay's settings for a node with `config`. The per-/24 rule is off: it is meant for
/// public networks, and nodes under test or in `weft demo` share 127.0.0.1.
pub fn overlay_config(config: &NodeConfig) -> OverlayConfig {
    OverlayConfig {
        kademlia: KademliaConfig {
            client: config.dht_client,
            per_subnet_cap: None,
            ..KademliaConfig::default()
        },
        // Only ids certified by the node's network enter its tables (`node::trust`).
        accept_provisional: false,
        // A bare address that a known peer's record lists is opened by that peer's id.
        bootstrap: config
            .bootstrap
            .iter()
            .map(|b| Bootstrap {
                peer: b.peer.or_else(|| {
                    config
                        .peers
                        .iter()
                        .find(|r| r.addresses.contains(&b.addr))
                        .map(|r| r.peer_id())
                }),
                ..*b
            })
            .collect(),
        ..OverlayConfig::default()
    }
}

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
) -> Result<NodeServices, super::StartError> {
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
    let (pin, source) = super::trust::trust_root(config, consensus.network(), data.path())?;
    if let Ok(mut view) = view.lock() {
        view.network_trust = source.label();
    }
    let check = super::trust::NetworkTrust::new(pin, identity.peer_id(), Arc::clone(&view));
    let mut services: Vec<Box<dyn Service>> = vec![Box::new(consensus)];
    // Persistence (`overlay::persist::OverlayStore::open(data.path())`) plugs in here.
    if runs_overlay(config) {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let overlay = OverlayService::new(
            overlay_config(config),
            identity.peer_id(),
            config.listen,
            seed,
        );
        // After any `with_store`, which replaces the DHT.
        services.push(Box::new(overlay.with_certificate_check(Box::new(check))));
    }
    Ok(NodeServices {
        services,
        consensus: view,
    })
}
