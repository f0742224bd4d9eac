//! The services a node runs on its worker (`service::host`): which ones, built from the
//! configuration, the identity and the data directory. The consensus service adds itself here.
//!
//! The overlay runs on every node but an echo node (whose every message is echoed, so no
//! service hears the network): as a full node, or in client mode for `weft dht`.

use super::{DataDir, NodeConfig};
use crate::overlay::kademlia::KademliaConfig;
use crate::overlay::worker::{Bootstrap, OverlayConfig, OverlayService};
use crate::service::host::Service;
use crate::session::Identity;
use rand::RngCore;

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

/// The services `config` asks for, ready to run on the node's worker.
pub fn node_services(
    config: &NodeConfig,
    identity: &Identity,
    data: &DataDir,
) -> Vec<Box<dyn Service>> {
    // Persistence (`dht-store`'s `OverlayStore::open(data.path())`) plugs in here.
    let _ = data;
    let mut services: Vec<Box<dyn Service>> = Vec::new();
    if runs_overlay(config) {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        services.push(Box::new(OverlayService::new(
            overlay_config(config),
            identity.peer_id(),
            config.listen,
            seed,
        )));
    }
    services
}
