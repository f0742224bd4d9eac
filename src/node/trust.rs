//! Where the overlay and the consensus service meet (PROTOCOL.md §10–11): the network a node
//! trusts, and the check that admits a peer's node id to the routing table only with a proof
//! of that network.
//!
//! - **Trust root.** `[consensus] network_id` names the network; the members configured (or
//!   the node alone) must form it, else the node does not start (exit 2, naming the field).
//!   Left out, the node pins the network its members form on its first start, in
//!   [`PIN_FILE`] in the data directory (as SSH's known_hosts): a later start whose members
//!   form another network is refused the same way. `weft dht`'s short-lived client pins the
//!   network the first peer proves, in memory.
//! - **The check** ([`NetworkTrust`], the overlay's `CertificateCheck`): a peer's proof
//!   (`consensus::proof::IdProof`, SET_CONNECTION_OPT option 4) must be of the trusted network,
//!   its member-list chain must verify from the network id (`MemberListChain::verify`) and end
//!   no earlier than the newest list already verified, its replies must be a quorum
//!   certificate of that list's members, for the id claimed, answering a request for the key
//!   whose peer id the session proved. A chain of more than [`MAX_CHAIN_LINKS`] member-list
//!   changes is refused before any signature is checked (`chain_too_long`): each link costs up
//!   to one Ed25519 verification per member of the list before it, and 48 KiB hold hundreds
//!   of links. A verdict is kept (bounded by [`MAX_VERDICTS`]); a
//!   refusal is counted by reason (`weft_overlay_dropped_total`). The node's own id is the one
//!   its consensus service holds a certificate for; until then the overlay is a client.

#![deny(clippy::arithmetic_side_effects)]

use super::NodeConfig;
use crate::consensus::ids::{NetworkId, NodeId as IssuedId};
use crate::consensus::proof::{IdProof, ProofError};
use crate::consensus::service::{SharedView, hex};
use crate::consensus::trust::{MemberList, NetworkPin};
use crate::overlay::id::NodeId;
use crate::overlay::kademlia::CertificateCheck;
use crate::session::peer_id_of;
use crate::wire::PeerId;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The file in the data directory that holds the pinned network id (64 hex digits).
pub const PIN_FILE: &str = "network-id";

/// Most peers whose verdict is kept, admitted and refused each: past it a new peer's proof is
/// refused (`verdicts_full`) and the refusals are forgotten, so a flood of peers cannot grow
/// the node's memory.
pub const MAX_VERDICTS: usize = 65_536;

/// Most member-list changes (chain links) a peer's id proof may carry by default: at most
/// this many times `consensus::MAX_MEMBERS` endorsement checks per proof, where an unbounded
/// 48 KiB proof could ask for hundreds ([`NetworkTrust::with_max_chain_links`] changes it).
pub const MAX_CHAIN_LINKS: usize = 16;

/// The reason a proof with a longer chain is refused under.
pub const CHAIN_TOO_LONG: &str = "chain_too_long";

/// How the node came to trust its network.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `[consensus] network_id`.
    Configured,
    /// Pinned on the node's first start ([`PIN_FILE`]).
    Pinned,
    /// Not yet: the first peer's proof pins it (`weft dht`'s client).
    FirstContact,
    /// Not yet: the first member document that verifies pins it ([`pin_document`]), and the
    /// overlay trusts that network from then on (a members-URL node's first start).
    FirstDocument,
}

impl Source {
    /// How `weft status` says it.
    pub fn label(self) -> &'static str {
        match self {
            Source::Configured => "configured",
            Source::Pinned => "pinned",
            Source::FirstContact => "pinned on first contact",
            Source::FirstDocument => "pinned by the first member document",
        }
    }
}

/// Why the node does not start: its configured or pinned network is not the one its members
/// form.
#[derive(Debug, thiserror::Error)]
pub enum TrustSetupError {
    /// `network_id` names another network than the members form.
    #[error(
        "field \"consensus.network_id\": the members configured form network {members}, not \
         {configured}; fix consensus.members, or set network_id to the network they form"
    )]
    Configured {
        /// The id configured.
        configured: String,
        /// The id the members form.
        members: String,
    },
    /// The pin names another network than the members form.
    #[error(
        "this node pinned network {pinned} in {path} on its first start, but its [consensus] \
         members form network {members}; if they are a later member list of the pinned \
         network, set consensus.network_id = \"{pinned}\" in the config; if the network really \
         changed, set consensus.network_id = \"{members}\" (or delete {path})"
    )]
    Pinned {
        /// The id pinned.
        pinned: String,
        /// The id the members form.
        members: String,
        /// The pin file.
        path: PathBuf,
    },
    /// A members URL serves the document of another network than the one configured.
    #[error(
        "field \"consensus.network_id\": {url} serves the member document of network {served}, \
         not the configured {configured}; fix consensus.members_url (or what it serves), or set \
         network_id to the network it serves if the change is meant"
    )]
    UrlConfigured {
        /// The id configured.
        configured: String,
        /// The id of the document served.
        served: String,
        /// The members URL.
        url: String,
    },
    /// A members URL serves the document of another network than the one pinned.
    #[error(
        "this node pinned network {pinned} in {path} from its first member document, but {url} \
         now serves the document of network {served}; if the network really changed, set \
         consensus.network_id = \"{served}\" in the config (or delete {path}), else fix \
         consensus.members_url (or what it serves)"
    )]
    UrlPinned {
        /// The id pinned.
        pinned: String,
        /// The id of the document served.
        served: String,
        /// The members URL.
        url: String,
        /// The pin file.
        path: PathBuf,
    },
    /// The members configured report that they are a member list of another network.
    #[error(
        "field \"consensus.network_id\": the members configured report that they are member \
         list {epoch} of network {network}, not of network {trusted}, which this node trusts \
         ({how}); set consensus.network_id = \"{network}\" in the config so the node verifies \
         their chain from that network's genesis"
    )]
    OtherNetwork {
        /// The members' network.
        network: String,
        /// Their list's place in its chain.
        epoch: u64,
        /// The network trusted.
        trusted: String,
        /// How it came to be trusted.
        how: &'static str,
    },
    /// The pin file cannot be read, written, or holds no network id.
    #[error("the network pin {path}: {reason}; delete it to pin the network again")]
    File {
        /// The pin file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The network the node trusts at start: `members` is the one its consensus service belongs
/// to (its configured members', or its own as a lone node); `data` the data directory.
pub fn trust_root(
    config: &NodeConfig,
    members: NetworkId,
    data: &Path,
) -> Result<(NetworkPin, Source), TrustSetupError> {
    if config.dht_client {
        // A short-lived client in a scratch directory: it trusts what its first peer proves.
        return Ok((NetworkPin::unpinned(), Source::FirstContact));
    }
    let path = data.join(PIN_FILE);
    if let Some(configured) = config.consensus.network_id {
        if configured != members.0 {
            return Err(TrustSetupError::Configured {
                configured: hex(&configured),
                members: hex(&members.0),
            });
        }
        write_pin(&path, &members)?;
        return Ok((NetworkPin::to(members), Source::Configured));
    }
    match read_pin(&path)? {
        Some(pinned) if pinned != members => Err(TrustSetupError::Pinned {
            pinned: hex(&pinned.0),
            members: hex(&members.0),
            path,
        }),
        Some(_) => Ok((NetworkPin::to(members), Source::Pinned)),
        None => {
            write_pin(&path, &members)?;
            Ok((NetworkPin::to(members), Source::Pinned))
        }
    }
}

/// The error that stops a node whose consensus service found that its configured members
/// belong to another network (`View::other_network`), taken from the view once.
pub fn other_network(consensus: &SharedView) -> Option<TrustSetupError> {
    let mut view = consensus.lock().ok()?;
    let (network, epoch) = view.other_network.take()?;
    Some(TrustSetupError::OtherNetwork {
        network: hex(&network.0),
        epoch,
        trusted: view.network.map_or_else(String::new, |n| hex(&n.0)),
        how: if view.network_trust.is_empty() {
            "the configured members' genesis"
        } else {
            view.network_trust
        },
    })
}

/// The trust root of a node whose members come from a URL (`members_url`), before they have:
/// the network configured, else the one pinned on an earlier start, else none yet: the first
/// verified document's genesis names it, and [`pin_document`] writes it to [`PIN_FILE`].
pub fn url_trust_root(
    config: &NodeConfig,
    data: &Path,
) -> Result<(NetworkPin, Source), TrustSetupError> {
    if let Some(configured) = config.consensus.network_id {
        return Ok((NetworkPin::to(NetworkId(configured)), Source::Configured));
    }
    match read_pin(&data.join(PIN_FILE))? {
        Some(pinned) => Ok((NetworkPin::to(pinned), Source::Pinned)),
        None => Ok((NetworkPin::unpinned(), Source::FirstDocument)),
    }
}

/// Checks the network of a member document that verified (`served`, fetched from `url`)
/// against a members-URL node's trust root (`expected`, from [`url_trust_root`]) and pins it
/// in `data`'s [`PIN_FILE`] when nothing was pinned: the next start then refuses a document
/// of another network. Returns how the node trusts the network now.
pub fn pin_document(
    data: &Path,
    expected: Option<(NetworkId, Source)>,
    served: NetworkId,
    url: &str,
) -> Result<Source, TrustSetupError> {
    let path = data.join(PIN_FILE);
    match expected {
        Some((configured, Source::Configured)) if configured != served => {
            Err(TrustSetupError::UrlConfigured {
                configured: hex(&configured.0),
                served: hex(&served.0),
                url: url.to_string(),
            })
        }
        Some((pinned, _)) if pinned != served => Err(TrustSetupError::UrlPinned {
            pinned: hex(&pinned.0),
            served: hex(&served.0),
            url: url.to_string(),
            path,
        }),
        Some((_, source)) => {
            if source == Source::Configured {
                write_pin(&path, &served)?;
            }
            Ok(source)
        }
        None => match read_pin(&path)? {
            // Pinned since this node started (another process on the same data directory).
            Some(pinned) if pinned != served => Err(TrustSetupError::UrlPinned {
                pinned: hex(&pinned.0),
                served: hex(&served.0),
                url: url.to_string(),
                path,
            }),
            Some(_) => Ok(Source::Pinned),
            None => {
                write_pin(&path, &served)?;
                Ok(Source::Pinned)
            }
        },
    }
}

fn read_pin(path: &Path) -> Result<Option<NetworkId>, TrustSetupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(TrustSetupError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    super::cluster::parse_network_id(&text)
        .map(|id| Some(NetworkId(id)))
        .ok_or_else(|| TrustSetupError::File {
            path: path.to_path_buf(),
            reason: "it holds no network id (64 hex digits)".into(),
        })
}

/// Writes the pin through a temp file and a rename, so a crash leaves the old pin or the new.
fn write_pin(path: &Path, network: &NetworkId) -> Result<(), TrustSetupError> {
    let error = |e: std::io::Error| TrustSetupError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, format!("{}\n", hex(&network.0))).map_err(error)?;
    std::fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .map_err(error)?;
    std::fs::rename(&temp, path).map_err(error)
}

/// The node's `CertificateCheck` (see the module doc).
pub struct NetworkTrust {
    pin: NetworkPin,
    own_peer: PeerId,
    consensus: SharedView,
    /// Unpinned, the network comes from the consensus service once it has one (a members-URL
    /// node's first document); until then every proof is refused.
    follow_consensus: bool,
    /// The newest member list verified, of the pinned network.
    known: Option<MemberList>,
    admitted: HashMap<PeerId, NodeId>,
    refused: HashSet<PeerId>,
    max_chain_links: usize,
}

impl NetworkTrust {
    /// The check of a node whose sessions prove `own_peer`, trusting `pin`, its own id read
    /// from its consensus service's `consensus` view.
    pub fn new(pin: NetworkPin, own_peer: PeerId, consensus: SharedView) -> NetworkTrust {
        NetworkTrust {
            pin,
            own_peer,
            consensus,
            follow_consensus: false,
            known: None,
            admitted: HashMap::new(),
            refused: HashSet::new(),
            max_chain_links: MAX_CHAIN_LINKS,
        }
    }

    /// The check with another bound on the member-list changes a proof may carry (default
    /// [`MAX_CHAIN_LINKS`]): a network whose chain grew past it needs every node raised.
    pub fn with_max_chain_links(mut self, max: usize) -> NetworkTrust {
        self.max_chain_links = max;
        self
    }

    /// Trusts, while unpinned, only the network the consensus service comes to hold (a
    /// members-URL node whose first document pins it), never one a peer presents.
    pub fn following_consensus(mut self) -> NetworkTrust {
        self.follow_consensus = true;
        self
    }

    /// Pins the consensus service's network once it has one (see `following_consensus`); the
    /// refusals made before then are forgotten.
    fn settle(&mut self) {
        if !self.follow_consensus || self.pin.pinned().is_some() {
            return;
        }
        let network = self.consensus.lock().ok().and_then(|view| view.network);
        if let Some(network) = network {
            self.pin = NetworkPin::to(network);
            self.refused.clear();
        }
    }

    /// The network trusted, once pinned.
    pub fn network(&self) -> Option<NetworkId> {
        self.pin.pinned()
    }

    fn check(&mut self, node: &NodeId, peer: &PeerId, bytes: &[u8]) -> Result<(), &'static str> {
        let proof = IdProof::decode(bytes).map_err(|e| e.reason())?;
        if peer_id_of(&proof.request.key) != *peer {
            return Err(ProofError::Mismatch.reason());
        }
        // Before any signature: the chain's length is what the peer chose.
        if proof.chain.links.len() > self.max_chain_links {
            return Err(CHAIN_TOO_LONG);
        }
        if self.follow_consensus && self.pin.pinned().is_none() {
            // No network yet: the member document decides it, not a peer.
            return Err(ProofError::ForeignNetwork.reason());
        }
        // Unpinned, the first proof that verifies against its own network pins it.
        let network = self.pin.pinned().unwrap_or(proof.network);
        let known = self.known.as_ref().filter(|k| k.network == network);
        let current = proof
            .verify(&network, known, &IssuedId(node.0), &proof.request.key)
            .map_err(|e| e.reason())?;
        if self.pin.check(network).is_err() {
            return Err(ProofError::ForeignNetwork.reason());
        }
        if self.known.as_ref().is_none_or(|k| k.epoch < current.epoch) {
            self.known = Some(current);
        }
        Ok(())
    }

    /// The node's own id and proof, from its consensus service once certified.
    fn own_proof(&self) -> Option<(NodeId, Vec<u8>)> {
        let view = self.consensus.lock().ok()?;
        let (id, _) = view.node_id?;
        (!view.proof.is_empty()).then(|| (NodeId(id.0), view.proof.clone()))
    }
}

impl CertificateCheck for NetworkTrust {
    fn certified(&self, node: &NodeId, peer: &PeerId) -> bool {
        if *peer == self.own_peer {
            return self.own_proof().is_some_and(|(id, _)| id == *node);
        }
        self.admitted.get(peer) == Some(node)
    }

    fn may_ask(&self, node: &NodeId, peer: &PeerId) -> bool {
        // A refusal made while a following node had no network yet is not a verdict.
        let waiting = self.follow_consensus && self.pin.pinned().is_none();
        (waiting || !self.refused.contains(peer))
            && self.admitted.get(peer).is_none_or(|id| id == node)
    }

    fn admit(&mut self, node: &NodeId, peer: &PeerId, proof: &[u8]) -> Result<(), &'static str> {
        if self.admitted.get(peer) == Some(node) {
            return Ok(());
        }
        self.settle();
        if self.admitted.len() >= MAX_VERDICTS {
            return Err("verdicts_full");
        }
        if self.refused.len() >= MAX_VERDICTS {
            // Refusals only spare lookups a request; forgetting them costs no safety, and a
            // flood of refused peers cannot lock honest ones out.
            self.refused.clear();
        }
        match self.check(node, peer, proof) {
            Ok(()) => {
                self.refused.remove(peer);
                self.admitted.insert(*peer, *node);
                Ok(())
            }
            Err(error) => {
                self.admitted.remove(peer);
                self.refused.insert(*peer);
                Err(error)
            }
        }
    }

    fn own(&self) -> Option<(NodeId, Vec<u8>)> {
        self.own_proof()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::proof::proof_for;
    use crate::consensus::service::View;
    use ed25519_dalek::SigningKey;
    use std::sync::{Arc, Mutex};

    fn members(seed: u8) -> Vec<SigningKey> {
        (0..4u8)
            .map(|i| SigningKey::from_bytes(&[seed.wrapping_add(i); 32]))
            .collect()
    }

    #[test]
    fn only_a_proof_of_the_pinned_network_for_the_peers_own_key_admits_its_id() {
        let ours = members(1);
        let theirs = members(50);
        let key = [9; 32];
        let peer = peer_id_of(&key);
        let proof = proof_for(&ours, 3, key);
        let network = proof.network;
        let id = NodeId([7; 20]);
        let view: SharedView = Arc::new(Mutex::new(View::default()));
        let mut trust = NetworkTrust::new(NetworkPin::to(network), PeerId([1; 16]), view);
        // Foreign network, a forged signature, another peer's key: refused and remembered.
        let foreign = proof_for(&theirs, 3, key).encode();
        assert_eq!(trust.admit(&id, &peer, &foreign), Err("foreign_network"));
        assert!(!trust.certified(&id, &peer) && !trust.may_ask(&id, &peer));
        let mut forged = proof.clone();
        forged.replies[1].signature.0[5] ^= 1;
        assert_eq!(
            trust.admit(&id, &peer, &forged.encode()),
            Err("bad_certificate")
        );
        let other = peer_id_of(&[8; 32]);
        assert_eq!(
            trust.admit(&id, &other, &proof.encode()),
            Err("bad_certificate")
        );
        assert_eq!(trust.admit(&id, &peer, b"junk"), Err("malformed_proof"));
        // The real one.
        assert_eq!(trust.admit(&id, &peer, &proof.encode()), Ok(()));
        assert!(trust.certified(&id, &peer));
        assert!(!trust.certified(&NodeId([6; 20]), &peer), "one id per peer");
        assert!(!trust.may_ask(&NodeId([6; 20]), &peer));
        assert!(
            trust.may_ask(&NodeId([6; 20]), &PeerId([3; 16])),
            "unknown: may ask"
        );
    }

    #[test]
    fn a_proof_with_more_chain_links_than_the_bound_is_refused_before_any_signature() {
        use crate::consensus::trust::{Link, MemberList};
        let ours = members(1);
        let key = [9; 32];
        let peer = peer_id_of(&key);
        let mut proof = proof_for(&ours, 3, key);
        let network = proof.network;
        let view: SharedView = Arc::new(Mutex::new(View::default()));
        let mut trust = NetworkTrust::new(NetworkPin::to(network), PeerId([1; 16]), view);
        // Made-up links without endorsements: past the bound they are never looked at; within
        // it they fail the chain's check (so the refusal below is the bound's, not theirs).
        let link = |epoch: u64| Link {
            list: MemberList {
                network,
                epoch,
                height: epoch,
                members: vec![crate::consensus::ids::MemberKey([epoch as u8; 32])],
            },
            endorsements: Vec::new(),
        };
        proof.chain.links = (1..=MAX_CHAIN_LINKS as u64 + 1).map(link).collect();
        let long = proof.encode();
        let id = NodeId([7; 20]);
        assert_eq!(trust.admit(&id, &peer, &long), Err(CHAIN_TOO_LONG));
        proof.chain.links.truncate(MAX_CHAIN_LINKS);
        assert_eq!(
            trust.admit(&id, &peer, &proof.encode()),
            Err("bad_member_list"),
            "at the bound the chain is checked"
        );
        // A node that raised the bound checks the longer chain.
        let view: SharedView = Arc::new(Mutex::new(View::default()));
        let mut raised = NetworkTrust::new(NetworkPin::to(network), PeerId([1; 16]), view)
            .with_max_chain_links(MAX_CHAIN_LINKS + 1);
        assert_eq!(raised.admit(&id, &peer, &long), Err("bad_member_list"));
        // The fuzz corpus keeps the long proof (`WEFT_WRITE_CORPUS=1` rewrites it).
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/consensus/proof-chain-too-long"
        );
        if std::env::var_os("WEFT_WRITE_CORPUS").is_some() {
            std::fs::write(path, &long).unwrap();
        }
        assert_eq!(std::fs::read(path).ok(), Some(long), "{path}");
    }

    #[test]
    fn an_unpinned_client_pins_the_first_network_that_proves_itself_and_refuses_others() {
        let (ours, theirs) = (members(1), members(50));
        let view: SharedView = Arc::new(Mutex::new(View::default()));
        let mut trust = NetworkTrust::new(NetworkPin::unpinned(), PeerId([1; 16]), view);
        let id = NodeId([7; 20]);
        // A proof that does not verify pins nothing.
        let thin = proof_for(&theirs, 1, [5; 32]);
        assert!(
            trust
                .admit(&id, &peer_id_of(&[5; 32]), &thin.encode())
                .is_err()
        );
        assert_eq!(trust.network(), None);
        let first = proof_for(&ours, 3, [9; 32]);
        assert_eq!(
            trust.admit(&id, &peer_id_of(&[9; 32]), &first.encode()),
            Ok(())
        );
        assert_eq!(trust.network(), Some(first.network));
        let later = proof_for(&theirs, 4, [8; 32]);
        assert_eq!(
            trust.admit(&id, &peer_id_of(&[8; 32]), &later.encode()),
            Err("foreign_network")
        );
    }

    #[test]
    fn the_own_id_counts_once_the_consensus_service_holds_its_proof() {
        let view: SharedView = Arc::new(Mutex::new(View::default()));
        let me = PeerId([1; 16]);
        let trust = NetworkTrust::new(NetworkPin::unpinned(), me, Arc::clone(&view));
        let id = NodeId([7; 20]);
        assert!(trust.own().is_none() && !trust.certified(&id, &me));
        {
            let mut v = view.lock().unwrap();
            v.node_id = Some((IssuedId([7; 20]), 3));
            v.proof = vec![1, 2, 3];
        }
        assert_eq!(trust.own(), Some((id, vec![1, 2, 3])));
        assert!(trust.certified(&id, &me));
    }

    #[test]
    fn the_network_id_is_configured_or_pinned_and_a_different_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("weft-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (NetworkId([1; 32]), NetworkId([2; 32]));
        let config = NodeConfig::default();
        let (pin, source) = trust_root(&config, a, &dir).unwrap();
        assert_eq!((pin.pinned(), source), (Some(a), Source::Pinned));
        assert_eq!(trust_root(&config, a, &dir).unwrap().1, Source::Pinned);
        let refused = trust_root(&config, b, &dir).unwrap_err().to_string();
        assert!(refused.contains("consensus.network_id"), "{refused}");
        // Configured: the members must form it; then it replaces the pin.
        let mut configured = config.clone();
        configured.consensus.network_id = Some(b.0);
        let refused = trust_root(&configured, a, &dir).unwrap_err().to_string();
        assert!(
            refused.starts_with("field \"consensus.network_id\""),
            "{refused}"
        );
        assert_eq!(
            trust_root(&configured, b, &dir).unwrap().1,
            Source::Configured
        );
        assert_eq!(trust_root(&config, b, &dir).unwrap().1, Source::Pinned);
        std::fs::write(dir.join(PIN_FILE), "zz").unwrap();
        assert!(matches!(
            trust_root(&config, b, &dir),
            Err(TrustSetupError::File { .. })
        ));
        let client = NodeConfig {
            dht_client: true,
            ..config
        };
        assert_eq!(
            trust_root(&client, a, &dir).unwrap().1,
            Source::FirstContact
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_members_url_node_pins_its_first_document_and_refuses_another_network_after() {
        let dir = std::env::temp_dir().join(format!("weft-url-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (NetworkId([1; 32]), NetworkId([2; 32]));
        let url = "http://127.0.0.1:9/members";
        let config = NodeConfig::default();
        let (pin, source) = url_trust_root(&config, &dir).unwrap();
        assert_eq!((pin.pinned(), source), (None, Source::FirstDocument));
        assert_eq!(pin_document(&dir, None, a, url).unwrap(), Source::Pinned);
        // The next start holds the pin, and a document of another network stops the node.
        let (pin, source) = url_trust_root(&config, &dir).unwrap();
        assert_eq!((pin.pinned(), source), (Some(a), Source::Pinned));
        let expected = pin.pinned().map(|n| (n, source));
        assert_eq!(
            pin_document(&dir, expected, a, url).unwrap(),
            Source::Pinned
        );
        let refused = pin_document(&dir, expected, b, url)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&dir.join(PIN_FILE).display().to_string())
                && refused.contains(&format!("consensus.network_id = \"{}\"", hex(&b.0))),
            "{refused}"
        );
        // Configured: the document must be of that network, and it replaces the pin.
        let refused = pin_document(&dir, Some((b, Source::Configured)), a, url).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("field \"consensus.network_id\""),
            "{refused}"
        );
        assert_eq!(
            pin_document(&dir, Some((b, Source::Configured)), b, url).unwrap(),
            Source::Configured
        );
        assert_eq!(read_pin(&dir.join(PIN_FILE)).unwrap(), Some(b));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_following_check_admits_nothing_until_the_consensus_service_holds_the_network() {
        let (ours, theirs) = (members(1), members(50));
        let view: SharedView = Arc::new(Mutex::new(View::default()));
        let mut trust =
            NetworkTrust::new(NetworkPin::unpinned(), PeerId([1; 16]), Arc::clone(&view))
                .following_consensus();
        let id = NodeId([7; 20]);
        let (peer, stranger) = (peer_id_of(&[9; 32]), peer_id_of(&[8; 32]));
        let proof = proof_for(&ours, 3, [9; 32]);
        // A peer's proof pins nothing while the document has not come.
        assert_eq!(
            trust.admit(&id, &stranger, &proof_for(&theirs, 3, [8; 32]).encode()),
            Err("foreign_network")
        );
        assert_eq!(
            trust.admit(&id, &peer, &proof.encode()),
            Err("foreign_network")
        );
        assert_eq!(trust.network(), None);
        assert!(trust.may_ask(&id, &peer), "not a verdict yet");
        // The document names the network: the same peer is admitted, another network is not.
        view.lock().unwrap().network = Some(proof.network);
        assert_eq!(trust.admit(&id, &peer, &proof.encode()), Ok(()));
        assert_eq!(trust.network(), Some(proof.network));
        assert_eq!(
            trust.admit(&id, &stranger, &proof_for(&theirs, 3, [8; 32]).encode()),
            Err("foreign_network")
        );
    }
}
