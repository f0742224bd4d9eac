//! A node learning its network's current member list from the members it reaches (PROTOCOL.md
//! §11, trust root; issue 14 point 2).
//!
//! A node configured by file knows the members it was given. After a membership change those
//! are no longer the network's genesis: a node configured with the genesis list must learn the
//! later lists to have its id certified by today's members (a reply names today's member
//! count), and a node configured with a later list must learn the chain to prove it. So the
//! service asks its members for their cluster report ([`super::query`]) now and then; a report
//! carries the answering node's member-list chain, which is believed only once it verifies from
//! the network id the node trusts ([`MemberListChain::verify`]) and only when it is newer than
//! the chain held. Reports from f+1 configured members of *another* network whose current list
//! is exactly the configured one say the configured list belongs to that network (a later list
//! of it, or its genesis under a mistyped `network_id`): the node's trust root is wrong, and
//! the operator must name the network ([`Learned::OtherNetwork`]). f+1, so that one Byzantine
//! member cannot stop a node.
//!
//! Sans-IO: fed reports and `now`, it says what was learned and when to ask again.

use super::faults;
use super::ids::{MemberKey, NetworkId};
use super::query::Report;
use super::trust::{MemberList, MemberListChain};
use crate::session::PeerRecord;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often members are asked for their chain while the node holds none for its network, or
/// no certificate yet.
pub const ASK_SOON: Duration = Duration::from_secs(2);

/// How often they are asked once the node holds a chain and a certificate: membership changes
/// are rare, and keep-alives between members are a minute apart by default.
pub const ASK_LATER: Duration = Duration::from_secs(30);

/// What a report taught.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Nothing new.
    Nothing,
    /// A newer member list of the node's network, its chain verified from the network id: the
    /// current list and the members' records the report carried (verified, current members
    /// only).
    Newer {
        /// The current list.
        current: MemberList,
        /// The records of current members the report carried.
        records: Vec<PeerRecord>,
    },
    /// f+1 configured members report that the members configured are the `epoch`-th list of
    /// `network`, not of the network this node trusts: it must be configured with that id.
    OtherNetwork {
        /// The network the configured list belongs to.
        network: NetworkId,
        /// Its place in that network's chain.
        epoch: u64,
    },
}

/// The chain a node holds and when to ask for a newer one.
#[derive(Clone, Debug)]
pub struct ChainWatch {
    network: NetworkId,
    /// The configured members, sorted.
    configured: Vec<MemberKey>,
    /// The chain held, when one verifies from the network id (a node configured with a later
    /// list holds none until a member shows it).
    chain: Option<MemberListChain>,
    current: Option<MemberList>,
    /// The other network each configured member reported, with the list's epoch (one entry
    /// per configured member at most).
    others: BTreeMap<MemberKey, (NetworkId, u64)>,
    next_ask: Instant,
}

impl ChainWatch {
    /// The watch of a node of `network` configured with `configured` members, holding `chain`
    /// (the configured list as genesis, when it is; `None` when it is a later list).
    pub fn new(
        now: Instant,
        network: NetworkId,
        configured: &[MemberKey],
        chain: Option<MemberListChain>,
    ) -> ChainWatch {
        let mut configured = configured.to_vec();
        configured.sort_unstable();
        configured.dedup();
        let current = chain.as_ref().and_then(|c| c.verify(&network).ok());
        ChainWatch {
            network,
            configured,
            chain: current.as_ref().and(chain),
            current,
            others: BTreeMap::new(),
            next_ask: now,
        }
    }

    /// The chain held.
    pub fn chain(&self) -> Option<&MemberListChain> {
        self.chain.as_ref()
    }

    /// The current list held.
    pub fn current(&self) -> Option<&MemberList> {
        self.current.as_ref()
    }

    /// True when the members should be asked at `now`; the next time is then armed, soon while
    /// `settled` is false (no chain or no certificate yet).
    pub fn due(&mut self, now: Instant, settled: bool) -> bool {
        if now < self.next_ask {
            return false;
        }
        let every = if settled && self.chain.is_some() {
            ASK_LATER
        } else {
            ASK_SOON
        };
        self.next_ask = now.checked_add(every).unwrap_or(now);
        true
    }

    /// When the members are asked next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_ask
    }

    /// Takes a report that member `from` (its session proved the key) sent.
    pub fn on_report(&mut self, from: MemberKey, report: &Report) -> Learned {
        let (Some(network), Some(chain)) = (report.network, &report.chain) else {
            return Learned::Nothing;
        };
        let Ok(current) = chain.verify(&network) else {
            return Learned::Nothing;
        };
        if network != self.network {
            if current.members != self.configured || !self.configured.contains(&from) {
                return Learned::Nothing;
            }
            self.others.insert(from, (network, current.epoch));
            let agreeing = self
                .others
                .values()
                .filter(|(other, _)| *other == network)
                .count();
            return if agreeing > faults(self.configured.len()) {
                Learned::OtherNetwork {
                    network,
                    epoch: current.epoch,
                }
            } else {
                Learned::Nothing
            };
        }
        self.others.remove(&from);
        if self
            .current
            .as_ref()
            .is_some_and(|held| held.epoch >= current.epoch)
        {
            return Learned::Nothing;
        }
        let mut records: Vec<PeerRecord> = Vec::new();
        for bytes in report.members.iter().take(super::MAX_MEMBERS) {
            if let Ok(record) = PeerRecord::from_bytes(bytes)
                && record.verify().is_ok()
                && current.contains(&MemberKey(record.ed25519))
                && !records.iter().any(|r| r.ed25519 == record.ed25519)
            {
                records.push(record);
            }
        }
        self.chain = Some(chain.clone());
        self.current = Some(current.clone());
        Learned::Newer { current, records }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::signed::sign;
    use crate::consensus::trust::{Endorsement, Link};
    use crate::session::Identity;

    /// The chain of the network of `identities` after every member past the first `keep` was
    /// removed at height 5, endorsed by all of them.
    fn chain_after_removal(identities: &[Identity], keep: usize) -> MemberListChain {
        let keys: Vec<MemberKey> = identities
            .iter()
            .map(|i| MemberKey(i.ed25519_public().to_bytes()))
            .collect();
        let mut chain = MemberListChain::new(&keys);
        let genesis = MemberList::genesis(&keys);
        let mut kept = keys[..keep].to_vec();
        kept.sort_unstable();
        let list = MemberList {
            network: genesis.network,
            epoch: 1,
            height: 5,
            members: kept,
        };
        let endorsements = identities
            .iter()
            .map(|i| {
                let member = MemberKey(i.ed25519_public().to_bytes());
                let body = Endorsement {
                    epoch: 1,
                    list: list.digest(),
                    member,
                };
                sign(i.signing_key(), &genesis.network, body)
            })
            .collect();
        chain.links.push(Link { list, endorsements });
        chain
    }

    fn report(network: NetworkId, chain: MemberListChain, records: &[PeerRecord]) -> Report {
        Report {
            network: Some(network),
            members: records.iter().map(PeerRecord::to_bytes).collect(),
            chain: Some(chain),
            ..Report::default()
        }
    }

    #[test]
    fn a_newer_chain_of_the_network_is_learned_and_a_later_list_of_another_is_named() {
        let identities: Vec<Identity> = (1..=4u8)
            .map(|i| Identity::from_secret_bytes([i; 32], [i.wrapping_add(100); 32]))
            .collect();
        let records: Vec<PeerRecord> = identities
            .iter()
            .map(|i| PeerRecord::sign(i, &["127.0.0.1:7700".parse().unwrap()]))
            .collect();
        let keys: Vec<MemberKey> = records.iter().map(|r| MemberKey(r.ed25519)).collect();
        let genesis = MemberListChain::new(&keys);
        let network = NetworkId::of_genesis(&keys);
        let later = chain_after_removal(&identities, 3);
        let now = Instant::now();
        let mut watch = ChainWatch::new(now, network, &keys, Some(genesis.clone()));
        assert_eq!(watch.current().map(|c| c.epoch), Some(0));
        assert!(watch.due(now, false) && !watch.due(now, false));
        // The genesis again, a forged chain, or no chain: nothing.
        let from = keys[1];
        assert_eq!(
            watch.on_report(from, &report(network, genesis, &records)),
            Learned::Nothing
        );
        let mut forged = later.clone();
        forged.links[0].endorsements.truncate(1);
        assert_eq!(
            watch.on_report(from, &report(network, forged, &records)),
            Learned::Nothing
        );
        // The chain after the fourth member's removal.
        let Learned::Newer {
            current,
            records: kept,
        } = watch.on_report(from, &report(network, later.clone(), &records))
        else {
            panic!("a newer chain");
        };
        assert_eq!(
            (current.epoch, current.members.len(), kept.len()),
            (1, 3, 3)
        );
        assert_eq!(watch.chain(), Some(&later));
        assert_eq!(
            watch.on_report(from, &report(network, later.clone(), &records)),
            Learned::Nothing
        );

        // A node configured with the three as if they were genesis: they are epoch 1 of
        // `network`, as f+1 = 1 of three members (one of them twice) say; a non-member's word
        // does not count.
        let three = &keys[..3];
        let own = NetworkId::of_genesis(three);
        let mut wrong = ChainWatch::new(now, own, three, Some(MemberListChain::new(three)));
        let told = report(network, later, &records);
        assert_eq!(wrong.on_report(keys[3], &told), Learned::Nothing);
        assert_eq!(
            wrong.on_report(keys[0], &told),
            Learned::OtherNetwork { network, epoch: 1 }
        );
    }
}
