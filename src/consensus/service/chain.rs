//! The service's cluster questions and its member-list chain: the report it gives anyone who
//! asks ([`super::query`]), the reports it asks its own members for, and what it does with the
//! chain they carry ([`super::super::learn`]): a newer list of its network replaces the one it
//! asks for its id (a reply names today's member count, so a certificate of an older list no
//! longer counts), and the proof it shows overlay peers carries the chain.

use super::super::asking::Asking;
use super::super::clients::Where;
use super::super::learn::Learned;
use super::super::proof::IdProof;
use super::super::query::{self, Query, Report};
use super::super::schema::Refusal;
use super::super::trust::MemberList;
use super::{ConsensusService, Member, open_member};
use crate::service::host::Context;
use crate::session::{PeerRecord, peer_id_of};
use crate::wire::PeerId;
use std::time::Instant;

impl ConsensusService {
    pub(super) fn on_query(
        &mut self,
        now: Instant,
        at: Where,
        from: Option<PeerId>,
        bytes: &[u8],
        cx: &mut Context<'_>,
    ) {
        match query::decode(bytes) {
            Some(Query::Status) => {
                let report = self.report(now);
                let _ = cx.send(at.0, at.1, &query::encode(&Query::Report(report)));
            }
            // A report answers this node's own question to a member it links to, over a
            // session that proved the member's key (`from` is `None` otherwise).
            Some(Query::Report(report)) => match from.and_then(|peer| self.members.get(&peer)) {
                Some(&(key, _)) => self.on_report(now, key, &report),
                None => self.refuse(Refusal::Unexpected),
            },
            None => self.refuse(Refusal::Malformed),
        }
    }

    /// What this node tells anyone who asks about its cluster: its network, the records of the
    /// current members it knows, where its member stands, and the chain it holds.
    pub fn report(&self, now: Instant) -> Report {
        let current = self.current_list();
        Report {
            network: Some(self.network),
            members: self
                .records
                .iter()
                .filter(|r| {
                    current
                        .as_ref()
                        .is_none_or(|list| list.contains(&key_of(r)))
                })
                .map(PeerRecord::to_bytes)
                .collect(),
            member: self.member.as_ref().map(|_| self.me),
            height: self.member.as_ref().map_or(0, Member::height),
            round: self.member.as_ref().and_then(Member::round),
            last_decision: self.last_decision.map(|(height, at)| {
                let ago = now.saturating_duration_since(at).as_millis();
                (height, u64::try_from(ago).unwrap_or(u64::MAX))
            }),
            pending: self
                .member
                .as_ref()
                .map_or(0, |m| u64::try_from(m.pending()).unwrap_or(u64::MAX)),
            issued: self.issued,
            chain: self.chain().cloned(),
        }
    }

    /// The chain this node holds: its member's decided one, else the one learned or
    /// configured.
    fn chain(&self) -> Option<&super::super::trust::MemberListChain> {
        match &self.member {
            Some(member) => Some(member.chain()),
            None => self.watch.chain(),
        }
    }

    /// The last list of the chain the node holds (a list decided but not yet endorsed by a
    /// quorum is not in it), when it holds one.
    fn current_list(&self) -> Option<MemberList> {
        let chain = self.chain()?;
        Some(chain.links.last().map_or_else(
            || MemberList::genesis(&chain.genesis),
            |link| link.list.clone(),
        ))
    }

    /// The list version (epoch) and the chain's length, for `weft status`.
    pub(super) fn list_version(&self) -> Option<(u64, usize)> {
        let links = self.chain()?.links.len();
        Some((self.current_list()?.epoch, links))
    }

    /// The proof of the node's id: the chain this node holds, its request and the
    /// certificate; empty while it holds no chain (the overlay keeps it a client until then).
    pub(super) fn proof(
        &self,
        certificate: &super::super::certificate::NodeCertificate,
    ) -> Vec<u8> {
        let Some(chain) = self.chain() else {
            return Vec::new();
        };
        IdProof {
            network: self.network,
            chain: chain.clone(),
            request: self.asking.request().clone(),
            replies: certificate.replies.clone(),
        }
        .encode()
    }

    /// Asks every member this node links to for its report, when due: soon while the node
    /// holds no chain or no certificate, rarely after.
    pub(super) fn ask_chain(&mut self, now: Instant, cx: &mut Context<'_>) {
        let settled = self.asking.certificate().is_some();
        if self.members.is_empty() || !self.watch.due(now, settled) {
            return;
        }
        let status = query::encode(&Query::Status);
        for &(_, index) in self.members.values() {
            self.links.send(index, &status, cx);
        }
    }

    fn on_report(&mut self, now: Instant, from: super::MemberKey, report: &Report) {
        match self.watch.on_report(from, report) {
            Learned::Nothing => {}
            Learned::OtherNetwork { network, epoch } => {
                tracing::error!(
                    network = %super::hex(&network.0),
                    epoch,
                    trusted = %super::hex(&self.network.0),
                    "the members configured belong to another network than the one this node trusts"
                );
                if let Ok(mut view) = self.view.lock() {
                    view.other_network = Some((network, epoch));
                }
            }
            // A member's own log is its chain.
            Learned::Newer { .. } if self.member.is_some() => {}
            Learned::Newer { current, records } => {
                tracing::info!(
                    network = %super::hex(&self.network.0),
                    version = current.epoch,
                    members = current.members.len(),
                    "learned a newer member list from the members"
                );
                self.adopt(now, &current, records);
            }
        }
    }

    /// Takes the current list `current` (its chain verified) and the records of its members:
    /// links to new members, asks today's members for the id, and shows the new chain.
    fn adopt(&mut self, now: Instant, current: &MemberList, records: Vec<PeerRecord>) {
        for record in records {
            let peer = peer_id_of(&record.ed25519);
            if record.ed25519 != self.me.0
                && !self.members.contains_key(&peer)
                && let Some(&address) = record.addresses.first()
            {
                let index = self.links.add(now, Some(peer), address);
                self.members.insert(peer, (key_of(&record), index));
            }
            self.records.retain(|r| r.ed25519 != record.ed25519);
            self.records.push(record);
        }
        self.records.sort_by_key(|r| r.ed25519);
        if self.member.is_none() && current.contains(&self.me) {
            // Configured with a later list that names this node: run its member, from genesis.
            let genesis = self.watch.chain().map(|c| c.genesis.clone());
            if let Some(genesis) = genesis {
                match open_member(now, &self.settings, self.network, &genesis) {
                    Ok(member) => self.member = Some(member),
                    Err(error) => {
                        tracing::error!(%error, "the consensus store could not be opened")
                    }
                }
            }
        }
        self.follow_list(now, &current.members);
        self.proof_stale = true;
    }

    /// Asks `members` for the node's id from now on when they are not whom it asks already
    /// (the list changed): the id stays the same, today's members sign it.
    pub(super) fn follow_list(&mut self, now: Instant, members: &[super::MemberKey]) {
        if self.asking.members() == members {
            return;
        }
        let request = self.asking.request().clone();
        self.asking = Asking::new(now, self.network, members.to_vec(), request);
        self.proof_stale = true;
    }
}

fn key_of(record: &PeerRecord) -> super::MemberKey {
    super::MemberKey(record.ed25519)
}
