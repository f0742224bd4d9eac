//! Which node ids may enter the routing table (PROTOCOL.md §10, §11): only those the node's
//! network certified. The overlay may not import the consensus service (same layer), so the
//! node supplies the check as a [`CertificateCheck`] (`node::trust`); a node whose own id it
//! does not certify runs in client mode.

use crate::overlay::id::{Contact, NodeId};
use crate::wire::PeerId;

/// Says whether the node's network certified `node` as the id of `peer`. Called for every
/// sender that claims an id, so an implementation keeps its verdicts (a certificate is checked
/// once, when it arrives, by [`CertificateCheck::admit`]), and answers from memory.
pub trait CertificateCheck: Send {
    /// True when `node` is certified for `peer`.
    fn certified(&self, node: &NodeId, peer: &PeerId) -> bool;

    /// True when a contact `(node, peer)` that another peer named may be asked during a
    /// lookup: not known to be false. Its answer counts only once `peer` has shown its proof
    /// ([`CertificateCheck::certified`]), so a made-up contact costs one request.
    fn may_ask(&self, node: &NodeId, peer: &PeerId) -> bool {
        self.certified(node, peer)
    }

    /// Checks the proof `peer` showed for `node` (SET_CONNECTION_OPT option 4) and remembers
    /// the verdict; `Err` is the reason it is refused, a fixed metric label.
    fn admit(&mut self, node: &NodeId, peer: &PeerId, proof: &[u8]) -> Result<(), &'static str> {
        let _ = proof;
        if self.certified(node, peer) {
            Ok(())
        } else {
            Err("bad_certificate")
        }
    }

    /// The node's own certified id and the proof it shows peers, once it has one; `None`
    /// where ids are not certified (the driver vouches) or not yet.
    fn own(&self) -> Option<(NodeId, Vec<u8>)> {
        None
    }
}

/// Takes every id the driver passes as certified: for the simulator and tests, where the
/// driver itself vouches for the ids it hands over.
#[derive(Copy, Clone, Debug, Default)]
pub struct DriverVouches;

impl CertificateCheck for DriverVouches {
    fn certified(&self, _: &NodeId, _: &PeerId) -> bool {
        true
    }
}

/// Keeps the contacts of a peer's reply that may be asked ([`CertificateCheck::may_ask`]);
/// returns how many went. (A contact list may pair an honest peer with a made-up id next to
/// the target; asking it would only cost a request, its answer not counting.)
pub(crate) fn certified_only(check: &dyn CertificateCheck, contacts: &mut Vec<Contact>) -> usize {
    let before = contacts.len();
    contacts.retain(|c| check.may_ask(&c.id, &c.peer));
    before.saturating_sub(contacts.len())
}
