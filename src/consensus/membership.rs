//! Membership (PROTOCOL.md §11): keep-alives with the member count, a silent member asked once
//! and then voted out on each voter's own evidence, a node with a certified id voted in, and
//! each change ordered in the same log as requests. Every change yields a new member list,
//! endorsed by a quorum of the list before it: the chain of [`super::trust`].
//!
//! Sans-IO like the member that owns it: fed `now`, it answers with messages to send.

use super::MAX_MEMBERS;
use super::certificate;
use super::ids::{MemberKey, NetworkId};
use super::schema::{Application, Change, KeepAlive, MAX_LINKS_PER_MESSAGE, Message, Refusal};
use super::signed::{Signed, sign};
use super::trust::{Endorsement, Link, MAX_LINKS, MemberList, MemberListChain, verify_link};
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Applications held at once (one per applicant key).
pub const MAX_APPLICATIONS: usize = 16;

/// Member lists decided but not yet endorsed by a quorum, held at once.
const MAX_PENDING_LINKS: usize = 8;

/// The membership settings of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipConfig {
    /// How often a keep-alive goes to every member. A member not heard for two periods is
    /// asked once; not heard one period after that, it is this member's evidence for removal.
    pub keepalive: Duration,
    /// Applicants this member's operator approved: it votes a node in only if listed here.
    pub approved: BTreeSet<MemberKey>,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            keepalive: Duration::from_secs(60),
            approved: BTreeSet::new(),
        }
    }
}

/// A message membership wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// To every member of the current list.
    Broadcast(Message),
    /// To one member.
    To(MemberKey, Message),
}

/// A decided list waiting for a quorum of endorsements.
#[derive(Clone, Debug)]
struct PendingLink {
    list: MemberList,
    /// The list that decided it: who may endorse.
    endorsers: MemberList,
    endorsements: BTreeMap<MemberKey, Signed<Endorsement>>,
}

/// One member's view of the membership.
#[derive(Clone, Debug)]
pub struct Membership {
    config: MembershipConfig,
    me: MemberKey,
    network: NetworkId,
    /// Every list the log decided, genesis first.
    history: Vec<MemberList>,
    /// The members that decided the last decided height.
    previous: Vec<MemberKey>,
    /// The verified chain, and its last list.
    chain: MemberListChain,
    chain_end: MemberList,
    pending: BTreeMap<u64, PendingLink>,
    own_endorsements: BTreeMap<u64, Signed<Endorsement>>,
    last_heard: BTreeMap<MemberKey, Instant>,
    asked: BTreeMap<MemberKey, Instant>,
    silent: BTreeSet<MemberKey>,
    applications: BTreeMap<MemberKey, Signed<Application>>,
    next_keepalive: Option<Instant>,
    links_sent: BTreeSet<MemberKey>,
}

impl Membership {
    /// The membership of `me` in the network whose genesis members are `genesis`.
    pub fn new(me: MemberKey, genesis: &[MemberKey], config: MembershipConfig) -> Membership {
        let list = MemberList::genesis(genesis);
        Membership {
            config,
            me,
            network: list.network,
            history: vec![list.clone()],
            previous: list.members.clone(),
            chain: MemberListChain::new(genesis),
            chain_end: list,
            pending: BTreeMap::new(),
            own_endorsements: BTreeMap::new(),
            last_heard: BTreeMap::new(),
            asked: BTreeMap::new(),
            silent: BTreeSet::new(),
            applications: BTreeMap::new(),
            next_keepalive: None,
            links_sent: BTreeSet::new(),
        }
    }

    /// The list deciding the current height.
    pub fn current(&self) -> &MemberList {
        // `history` starts with genesis and only grows.
        self.history.last().unwrap_or(&self.chain_end)
    }

    /// The members that decided the last decided height (whose precommits the next batch
    /// carries).
    pub fn previous(&self) -> &[MemberKey] {
        &self.previous
    }

    /// Every list the log decided, genesis first.
    pub fn history(&self) -> &[MemberList] {
        &self.history
    }

    /// The chain of endorsed lists this member holds.
    pub fn chain(&self) -> &MemberListChain {
        &self.chain
    }

    /// Members this member has its own evidence against.
    pub fn silent(&self) -> &BTreeSet<MemberKey> {
        &self.silent
    }

    /// The settings.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// Replaces the settings; lists, chain and evidence stay.
    pub fn set_config(&mut self, config: MembershipConfig) {
        self.config = config;
    }

    /// Approves an applicant: this member will vote it in.
    pub fn approve(&mut self, key: MemberKey) {
        self.config.approved.insert(key);
    }

    /// A member's authenticated channel delivered something: it is alive.
    pub fn heard(&mut self, now: Instant, from: MemberKey) {
        self.last_heard.insert(from, now);
        self.asked.remove(&from);
        self.silent.remove(&from);
    }

    fn keepalive(&self, height: u64, ask: bool) -> Message {
        Message::KeepAlive(KeepAlive {
            members: u32::try_from(self.current().members.len()).unwrap_or(u32::MAX),
            epoch: self.chain_end.epoch,
            height,
            ask,
        })
    }

    /// Keep-alives, asks and evidence; resends own endorsements not yet in a link. Run once a
    /// resend period.
    pub fn tick(&mut self, now: Instant, height: u64) -> Vec<Out> {
        let mut out = Vec::new();
        self.links_sent.clear();
        let current = self.current().clone();
        if !current.contains(&self.me) {
            return out;
        }
        let period = self.config.keepalive;
        if self.next_keepalive.is_none_or(|at| at <= now) {
            self.next_keepalive = now.checked_add(period);
            out.push(Out::Broadcast(self.keepalive(height, false)));
        }
        self.last_heard.retain(|key, _| current.contains(key));
        self.asked.retain(|key, _| current.contains(key));
        self.silent.retain(|key| current.contains(key));
        for member in current.members.iter().filter(|m| **m != self.me) {
            // A member new to this list (or to this member) gets a full grace period.
            let last = *self.last_heard.entry(*member).or_insert(now);
            let quiet = now.saturating_duration_since(last);
            match self.asked.get(member) {
                // PROTOCOL.md §11: a silent member is asked once...
                None if quiet >= period.saturating_mul(2) => {
                    self.asked.insert(*member, now);
                    out.push(Out::To(*member, self.keepalive(height, true)));
                }
                // ...and what it missed since is this member's own evidence.
                Some(asked) if now.saturating_duration_since(*asked) >= period => {
                    self.silent.insert(*member);
                }
                _ => {}
            }
        }
        for endorsement in self.own_endorsements.values() {
            out.push(Out::Broadcast(Message::Endorse(endorsement.clone())));
        }
        out
    }

    /// When [`Membership::tick`] has a keep-alive to send.
    pub fn next_keepalive(&self) -> Option<Instant> {
        self.next_keepalive
    }

    /// A keep-alive from a member: answer an ask, and send the links it lacks.
    pub fn on_keepalive(
        &mut self,
        from: MemberKey,
        keepalive: &KeepAlive,
        height: u64,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        if keepalive.ask {
            out.push(Out::To(from, self.keepalive(height, false)));
        }
        if keepalive.epoch < self.chain_end.epoch {
            out.extend(self.links_for(from, keepalive.epoch));
        }
        out
    }

    /// The links after `epoch`, to `to`, once a resend period.
    fn links_for(&mut self, to: MemberKey, epoch: u64) -> Option<Out> {
        if !self.links_sent.insert(to) {
            return None;
        }
        let skip = usize::try_from(epoch).unwrap_or(usize::MAX);
        let links: Vec<Link> = self
            .chain
            .links
            .iter()
            .skip(skip)
            .take(MAX_LINKS_PER_MESSAGE)
            .cloned()
            .collect();
        (!links.is_empty()).then_some(Out::To(to, Message::Links(links)))
    }

    /// The change this member would propose now: a member it has evidence against, else an
    /// approved application.
    pub fn proposable(&self) -> Option<Change> {
        if self.history.len() > MAX_LINKS {
            return None;
        }
        let current = self.current();
        if let Some(member) = self.silent.iter().find(|m| current.contains(m)) {
            return Some(Change::Remove(*member));
        }
        self.applications
            .values()
            .map(|application| Change::Add(application.clone()))
            .find(|change| self.judge(change))
    }

    /// Whether this member votes for `change` at the current height: a removal only on its own
    /// evidence, an addition only of an approved node whose certificate the current members
    /// signed.
    pub fn judge(&self, change: &Change) -> bool {
        let current = self.current();
        if self.history.len() > MAX_LINKS {
            return false;
        }
        match change {
            Change::Remove(member) => {
                current.contains(member)
                    && current.members.len() > 1
                    && self.silent.contains(member)
            }
            Change::Add(application) => {
                let key = MemberKey(application.body.request.key);
                self.config.approved.contains(&key)
                    && current.members.len() < MAX_MEMBERS
                    && self.application_valid(application)
            }
        }
    }

    fn application_valid(&self, application: &Signed<Application>) -> bool {
        let body = &application.body;
        let key = MemberKey(body.request.key);
        !self.current().contains(&key)
            && application.verify(&self.network)
            && certificate::verify(&self.network, &self.current().members, &body.certificate)
                .is_ok_and(|cert| cert.digest == body.request.digest())
    }

    /// A node applies to join: held (one per key, [`MAX_APPLICATIONS`] in all) if its operator
    /// approved the key and its signature and certificate verify. True when held.
    pub fn on_apply(&mut self, application: Signed<Application>) -> Result<bool, Refusal> {
        let key = MemberKey(application.body.request.key);
        if self.applications.get(&key) == Some(&application) {
            // A resend: checked already.
            return Ok(self.config.approved.contains(&key));
        }
        if !self.config.approved.contains(&key) {
            // Checked before any signature: anyone may send applications, and only approved
            // keys can be voted in, so the others cost a lookup, not up to 17 signature checks.
            return Err(Refusal::Unexpected);
        }
        if !self.application_valid(&application) {
            return Err(Refusal::BadSignature);
        }
        if !self.applications.contains_key(&key) && self.applications.len() >= MAX_APPLICATIONS {
            return Err(Refusal::Unexpected);
        }
        self.applications.insert(key, application);
        Ok(self.config.approved.contains(&key))
    }

    /// A height decided with `changes`: the next list (if any) decides from the next height,
    /// and this member endorses it if it was a member of the list that decided it.
    pub fn decided(&mut self, key: &SigningKey, height: u64, changes: &[Change]) -> Vec<Out> {
        let deciding = self.current().clone();
        self.previous = deciding.members.clone();
        let Some(change) = changes.first() else {
            return Vec::new();
        };
        let mut members = deciding.members.clone();
        match change {
            Change::Remove(member) => members.retain(|m| m != member),
            Change::Add(application) => {
                let added = MemberKey(application.body.request.key);
                self.applications.remove(&added);
                members.push(added);
                members.sort_unstable();
                members.dedup();
            }
        }
        let list = MemberList {
            network: self.network,
            epoch: deciding.epoch.saturating_add(1),
            height: height.saturating_add(1),
            members,
        };
        self.history.push(list.clone());
        let mut out = Vec::new();
        if list.epoch > self.chain_end.epoch && self.pending.len() < MAX_PENDING_LINKS {
            let mut pending = PendingLink {
                list: list.clone(),
                endorsers: deciding.clone(),
                endorsements: BTreeMap::new(),
            };
            if deciding.contains(&self.me) {
                let endorsement = sign(
                    key,
                    &self.network,
                    Endorsement {
                        epoch: list.epoch,
                        list: list.digest(),
                        member: self.me,
                    },
                );
                pending.endorsements.insert(self.me, endorsement.clone());
                self.own_endorsements
                    .insert(list.epoch, endorsement.clone());
                out.push(Out::Broadcast(Message::Endorse(endorsement)));
            }
            self.pending.insert(list.epoch, pending);
            self.complete();
        }
        out
    }

    /// An endorsement from a member: counted toward its list's link, or answered with the
    /// links the sender lacks.
    pub fn on_endorse(&mut self, from: MemberKey, endorsement: Signed<Endorsement>) -> Vec<Out> {
        let epoch = endorsement.body.epoch;
        if epoch <= self.chain_end.epoch {
            // It still resends: it lacks the link.
            return self
                .links_for(from, epoch.saturating_sub(1))
                .into_iter()
                .collect();
        }
        if let Some(pending) = self.pending.get_mut(&epoch) {
            let body = &endorsement.body;
            if body.member == from
                && body.list == pending.list.digest()
                && pending.endorsers.contains(&from)
                && endorsement.verify(&self.network)
            {
                pending.endorsements.insert(from, endorsement);
            }
        }
        self.complete();
        Vec::new()
    }

    /// Links from a member: each that extends this member's chain with a list its own log
    /// decided is verified and kept (a lagging member takes links once it has caught up).
    pub fn on_links(&mut self, links: Vec<Link>) -> Result<(), Refusal> {
        for link in links {
            if link.list.epoch <= self.chain_end.epoch {
                continue;
            }
            let decided = usize::try_from(link.list.epoch)
                .ok()
                .and_then(|epoch| self.history.get(epoch));
            if decided != Some(&link.list) {
                return Ok(());
            }
            verify_link(&self.chain_end, &link).map_err(|_| Refusal::BadSignature)?;
            self.push_link(link);
        }
        Ok(())
    }

    fn push_link(&mut self, link: Link) {
        if self.chain.links.len() >= MAX_LINKS {
            return;
        }
        let epoch = link.list.epoch;
        self.chain_end = link.list.clone();
        self.chain.links.push(link);
        self.pending.retain(|e, _| *e > epoch);
        self.own_endorsements.retain(|e, _| *e > epoch);
    }

    /// Turns the next pending list into a link once a quorum of its deciders endorsed it.
    fn complete(&mut self) {
        loop {
            let Some(next) = self.chain_end.epoch.checked_add(1) else {
                return;
            };
            let Some(pending) = self.pending.get(&next) else {
                return;
            };
            let link = Link {
                list: pending.list.clone(),
                endorsements: pending.endorsements.values().cloned().collect(),
            };
            if verify_link(&self.chain_end, &link).is_err() {
                return;
            }
            self.push_link(link);
        }
    }
}
