//! The trust root (PROTOCOL.md §11): a network is named by its genesis member list (network id =
//! BLAKE3 of the sorted genesis keys), and every later member list is signed by a quorum of the
//! list before it, a chain anyone verifies from genesis. A node accepts node ids certified by a
//! quorum of its network's current members only, and pins the network id its bootstrap node
//! presents on first contact (as SSH's known_hosts).

use super::ids::{MemberKey, NetworkId};
use super::signed::{Signable, Signed};
use super::{MAX_MEMBERS, quorum};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The links a chain may hold: a network changes its members rarely; a longer chain is refused
/// rather than walked.
pub const MAX_LINKS: usize = 4096;

/// One member list of a network: the `epoch`-th (genesis is 0), in effect from `height` of the
/// log on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberList {
    /// The network.
    pub network: NetworkId,
    /// Its place in the chain: genesis is 0, each change adds one.
    pub epoch: u64,
    /// The first log height this list decides.
    pub height: u64,
    /// The members, sorted, no duplicates.
    pub members: Vec<MemberKey>,
}

impl MemberList {
    /// The genesis list of `members` (any order; duplicates count once). A lone member's
    /// genesis is itself.
    pub fn genesis(members: &[MemberKey]) -> MemberList {
        let mut sorted = members.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        MemberList {
            network: NetworkId::of_genesis(&sorted),
            epoch: 0,
            height: 1,
            members: sorted,
        }
    }

    /// BLAKE3 of its canonical encoding: what endorsements sign.
    pub fn digest(&self) -> [u8; 32] {
        let bytes = rmp_serde::to_vec(self).unwrap_or_default();
        *blake3::Hasher::new_derive_key("weft v1 member list")
            .update(&bytes)
            .finalize()
            .as_bytes()
    }

    /// True when `key` is a member.
    pub fn contains(&self, key: &MemberKey) -> bool {
        self.members.binary_search(key).is_ok()
    }

    /// Matching signatures a decision or certificate needs under this list.
    pub fn quorum(&self) -> usize {
        quorum(self.members.len())
    }
}

/// A member of the previous list vouching for the next one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endorsement {
    /// The epoch of the list endorsed.
    pub epoch: u64,
    /// Its [`MemberList::digest`].
    #[serde(with = "super::bin")]
    pub list: [u8; 32],
    /// The endorsing member (of the list before).
    pub member: MemberKey,
}

impl Signable for Endorsement {
    const DOMAIN: &'static str = "weft v1 consensus member list";
    fn signer(&self) -> MemberKey {
        self.member
    }
}

/// One step of the chain: a list and a quorum of the previous list's endorsements of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The new list.
    pub list: MemberList,
    /// Endorsements by members of the list before, sorted by member.
    pub endorsements: Vec<Signed<Endorsement>>,
}

/// Why a chain or a certificate is not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The genesis list does not hash to the network id.
    #[error("the genesis member list is not the one network id {0} names")]
    WrongGenesis(String),
    /// A genesis or later list that is empty, too long, unsorted or with duplicates.
    #[error("member list {epoch} is malformed (empty, over {MAX_MEMBERS} members, or not sorted)")]
    MalformedList {
        /// Its epoch.
        epoch: u64,
    },
    /// A link out of sequence: wrong epoch, network or a height not after the one before.
    #[error("member list {epoch} does not follow the one before it")]
    OutOfSequence {
        /// Its epoch.
        epoch: u64,
    },
    /// Fewer valid endorsements from distinct members of the list before than a quorum.
    #[error(
        "member list {epoch} has {have} valid endorsements from the list before, {need} needed"
    )]
    TooFewEndorsements {
        /// Its epoch.
        epoch: u64,
        /// Valid ones.
        have: usize,
        /// A quorum.
        need: usize,
    },
    /// More links than [`MAX_LINKS`].
    #[error("the chain has more than {MAX_LINKS} links")]
    TooLong,
    /// A network id other than the one pinned.
    #[error("this node trusts network {pinned}, but was shown network {presented}")]
    PinMismatch {
        /// The id pinned.
        pinned: String,
        /// The id presented.
        presented: String,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn well_formed(members: &[MemberKey]) -> bool {
    !members.is_empty()
        && members.len() <= MAX_MEMBERS
        && members.windows(2).all(|pair| pair[0] < pair[1])
}

/// A network's member lists from genesis on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberListChain {
    /// The genesis members, sorted.
    pub genesis: Vec<MemberKey>,
    /// Every later list with its endorsements, in order.
    pub links: Vec<Link>,
}

impl MemberListChain {
    /// The chain of a network that has not changed its members since `genesis`.
    pub fn new(genesis: &[MemberKey]) -> MemberListChain {
        MemberListChain {
            genesis: MemberList::genesis(genesis).members,
            links: Vec::new(),
        }
    }

    /// Walks the chain from genesis: the genesis list hashes to `network`, and every later list
    /// follows the one before and carries a quorum of its members' endorsements. Returns the
    /// current list.
    pub fn verify(&self, network: &NetworkId) -> Result<MemberList, TrustError> {
        if self.links.len() > MAX_LINKS {
            return Err(TrustError::TooLong);
        }
        if !well_formed(&self.genesis) {
            return Err(TrustError::MalformedList { epoch: 0 });
        }
        let mut current = MemberList::genesis(&self.genesis);
        if current.network != *network {
            return Err(TrustError::WrongGenesis(hex(&network.0)));
        }
        for link in &self.links {
            verify_link(&current, link)?;
            current = link.list.clone();
        }
        Ok(current)
    }
}

/// Checks that `link` follows `previous`: next epoch, same network, a later height, a
/// well-formed list, and a quorum of valid endorsements by distinct members of `previous`.
pub fn verify_link(previous: &MemberList, link: &Link) -> Result<(), TrustError> {
    let list = &link.list;
    let epoch = list.epoch;
    if Some(epoch) != previous.epoch.checked_add(1)
        || list.network != previous.network
        || list.height <= previous.height
    {
        return Err(TrustError::OutOfSequence { epoch });
    }
    if !well_formed(&list.members) {
        return Err(TrustError::MalformedList { epoch });
    }
    let digest = list.digest();
    let mut endorsers = BTreeSet::new();
    for endorsement in link.endorsements.iter().take(MAX_MEMBERS) {
        let body = &endorsement.body;
        if body.epoch == epoch
            && body.list == digest
            && previous.contains(&body.member)
            && !endorsers.contains(&body.member)
            && endorsement.verify(&previous.network)
        {
            endorsers.insert(body.member);
        }
    }
    let need = previous.quorum();
    if endorsers.len() < need {
        return Err(TrustError::TooFewEndorsements {
            epoch,
            have: endorsers.len(),
            need,
        });
    }
    Ok(())
}

/// What [`NetworkPin::check`] did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// Nothing was pinned: this id is now.
    First,
    /// The id matches the one pinned (or configured).
    Same,
}

/// The network id a node trusts: configured, or pinned from the first bootstrap node it
/// contacts; a later mismatch is refused. The host persists [`NetworkPin::pinned`] so the pin
/// outlives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPin {
    pinned: Option<NetworkId>,
}

impl NetworkPin {
    /// A pin that takes the first network id presented.
    pub fn unpinned() -> NetworkPin {
        NetworkPin { pinned: None }
    }

    /// A pin on a configured (or earlier pinned) network id.
    pub fn to(network: NetworkId) -> NetworkPin {
        NetworkPin {
            pinned: Some(network),
        }
    }

    /// The id pinned, if any.
    pub fn pinned(&self) -> Option<NetworkId> {
        self.pinned
    }

    /// Checks the id a bootstrap node presents: pins it on first contact, accepts the same id
    /// later, refuses any other.
    pub fn check(&mut self, presented: NetworkId) -> Result<Pinned, TrustError> {
        match self.pinned {
            None => {
                self.pinned = Some(presented);
                Ok(Pinned::First)
            }
            Some(pinned) if pinned == presented => Ok(Pinned::Same),
            Some(pinned) => Err(TrustError::PinMismatch {
                pinned: hex(&pinned.0),
                presented: hex(&presented.0),
            }),
        }
    }
}
