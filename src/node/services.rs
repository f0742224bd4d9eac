//! The services a node runs on its worker (`service::host`): which ones, built from the
//! configuration, the identity and the data directory: the consensus service on every node.
//!
//! The overlay runs on every node but an echo node (whose every message is echoed, so no
//! service hears the network): as a full node, or in client mode for `weft dht`.

use super::{DataDir, NodeConfig};
use crate::consensus::bootstrap::Waiting;
use crate::consensus::membership::MembershipConfig;
use crate::consensus::service::{ConsensusService, Settings, SharedView};
use crate::overlay::kademlia::KademliaConfig;
use crate::overlay::persist::OverlayStore;
use crate::overlay::worker::{Bootstrap, OverlayConfig, OverlayService, wall};
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
    /// The network a members URL must serve, and how it is trusted: the one configured or
    /// pinned; `None` pins the genesis the first verified document names
    /// ([`super::trust::pin_document`]).
    pub expected_network: Option<(crate::consensus::ids::NetworkId, super::trust::Source)>,
}

/// The services `config` asks for. Every node runs the consensus service: as a member of the
/// configured cluster, as a client of it, or (no members configured) as the lone member of its
/// own network, so that it ends up with a certified node id (PROTOCOL.md §11, bootstrap).
///
/// A full overlay node keeps its records, published records and routing table in the data
/// directory (`overlay::persist`, [`overlay::persist::FILE`](crate::overlay::persist::FILE)),
/// read back here; a client (`weft dht`, whose data directory is temporary) holds no records
/// and keeps its DHT in memory.
pub fn node_services(
    config: &NodeConfig,
    identity: &Identity,
    data: &DataDir,
) -> Result<NodeServices, super::StartError> {
    let cluster = &config.consensus;
    // Members see the node at its own address, never at a wildcard it listens on.
    let toward = cluster.members.iter().find_map(|r| r.addresses.first());
    let own = PeerRecord::sign(
        identity,
        &[super::members_url::advertised(
            config.listen,
            toward.copied(),
        )],
    );
    let overlay_record = own.clone();
    let settings = Settings {
        key: identity.signing_key().clone(),
        own,
        members: cluster.members.clone(),
        round_base: cluster.round_base,
        resend: cluster.resend,
        salt: cluster.salt,
        store: data.path().to_path_buf(),
        // Members configured with a network id they do not form are a later member list of
        // that network: the service learns the chain from them. A lone node must form its
        // own (`trust::trust_root` says so).
        network: cluster
            .network_id
            .filter(|_| !cluster.members.is_empty())
            .map(crate::consensus::ids::NetworkId),
        chain: None,
        policy: cluster.policy.clone(),
        membership: MembershipConfig {
            keepalive: cluster.keepalive,
            approved: cluster.approve.clone(),
        },
    };
    let (consensus, view, (pin, source)): (Box<dyn Service>, SharedView, _) =
        if cluster.members_url.is_some() {
            // The members arrive from the URL (`members_url::spawn`); until then, nobody's
            // member, and the network is the one configured or pinned before, if any.
            let waiting = Waiting::new(Instant::now(), settings);
            let view = waiting.view();
            let root = super::trust::url_trust_root(config, data.path())?;
            (Box::new(waiting), view, root)
        } else {
            let consensus = ConsensusService::new(Instant::now(), settings)?;
            let view = consensus.view();
            let root = super::trust::trust_root(config, consensus.network(), data.path())?;
            (Box::new(consensus), view, root)
        };
    if let Ok(mut view) = view.lock() {
        view.network_trust = source.label();
    }
    let expected_network = pin.pinned().map(|network| (network, source));
    let mut check = super::trust::NetworkTrust::new(pin, identity.peer_id(), Arc::clone(&view));
    if source == super::trust::Source::FirstDocument {
        // The overlay trusts the network the first member document pins, never a peer's.
        check = check.following_consensus();
    }
    let mut services: Vec<Box<dyn Service>> = vec![consensus];
    if runs_overlay(config) {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let mut overlay = OverlayService::new(
            overlay_config(config),
            identity.peer_id(),
            config.listen,
            seed,
        );
        // The certificate check goes in before the restore: `Dht::restore` puts back only the
        // contacts it certifies.
        overlay = overlay.with_certificate_check(Box::new(check));
        // Announced on every overlay channel, so peers hand it on and open this node by IK.
        overlay.dht_mut().set_own_record(&overlay_record);
        if !config.dht_client {
            let mut store = OverlayStore::open(data.path())?;
            let report = store.restore_into(overlay.dht_mut(), Instant::now(), wall())?;
            tracing::info!(
                file = %store.path().display(),
                records = report.records,
                expired = report.expired,
                refused = report.refused,
                contacts = report.contacts,
                cached = report.cached,
                peers = report.peers,
                "overlay store loaded"
            );
            overlay = overlay.with_store(Box::new(store));
        }
        services.push(Box::new(overlay));
    }
    Ok(NodeServices {
        services,
        consensus: view,
        expected_network,
    })
}
