//! Which node ids may enter the routing table (PROTOCOL.md §10, §11): only those the node's
//! network certified. The overlay may not import the consensus service (same layer), so the
//! node supplies the check as a [`CertificateCheck`]; a node whose own id it does not certify
//! runs in client mode.

use crate::overlay::id::{Contact, NodeId};
use crate::wire::PeerId;

/// Says whether the node's network certified `node` as the id of `peer`. Called for every
/// sender that claims an id, so an implementation keeps its verdicts (a certificate is checked
/// once, when it arrives), and answers from memory.
pub trait CertificateCheck: Send {
    /// True when `node` is certified for `peer`.
    fn certified(&self, node: &NodeId, peer: &PeerId) -> bool;
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

/// Keeps the contacts of a peer's reply whose id is certified for their peer; returns how many
/// went. (A contact list may pair an honest peer with a made-up id next to the target; asking
/// it would only cost a request.)
pub(crate) fn certified_only(check: &dyn CertificateCheck, contacts: &mut Vec<Contact>) -> usize {
    let before = contacts.len();
    contacts.retain(|c| check.certified(&c.id, &c.peer));
    before.saturating_sub(contacts.len())
}
