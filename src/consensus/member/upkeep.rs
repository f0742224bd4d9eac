//! The member's hooks for the policy (PROTOCOL.md §11, Policy: counters from the decided log,
//! signed NACKs), membership (keep-alives, evidence, applications, the member-list chain) and
//! the wall clock a batch's time comes from.

use super::{Member, Peer};
use crate::consensus::agreement::Agreement;
use crate::consensus::faults;
use crate::consensus::ids::{MemberKey, NodeId, NodeIdRequest, RequestDigest};
use crate::consensus::membership::{Membership, MembershipConfig, Out};
use crate::consensus::policy::{Counters, Limit, Nack, PolicyConfig};
use crate::consensus::pool::{Arrival, HOLD_RESENDS, Pool};
use crate::consensus::schema::Vote;
use crate::consensus::schema::{self, Application, Batch, Message, Refusal, Reply, Sighting};
use crate::consensus::signed::{Signed, sign};
use crate::consensus::store::Store;
use crate::consensus::validate::{self, Context};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What a member verified already (PROTOCOL.md §11 asks each signature checked, not checked
/// twice): the sightings in its pool it checked (or signed), and the precommits it decided the
/// previous height with; and how many signatures failed here.
struct Known<'a> {
    pool: &'a Pool,
    commit: &'a [Signed<Vote>],
    failed: std::cell::Cell<u64>,
}

impl validate::Verified for Known<'_> {
    fn sighting(&self, sighting: &Signed<Sighting>) -> bool {
        self.pool.holds(sighting)
    }

    fn vote(&self, vote: &Signed<Vote>) -> bool {
        self.commit.contains(vote)
    }

    fn failed(&self) {
        self.failed.set(self.failed.get().saturating_add(1));
    }
}

impl<E: Agreement, S: Store> Member<E, S> {
    /// Issues under `policy` instead of the defaults. The counts rebuilt from a store are
    /// kept (counting does not depend on the quotas), unless the period differs.
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.counters.set_config(policy);
        self
    }

    /// Keeps membership under `config` instead of the defaults; the lists, chain and evidence
    /// rebuilt from a store are kept.
    pub fn with_membership(mut self, config: MembershipConfig) -> Self {
        self.membership.set_config(config);
        self
    }

    /// Tells the member the wall clock: `unix` seconds at `now`. A batch's time, which the
    /// policy's windows count by, comes from it; until the host sets it, the member counts from
    /// 0 at the first instant it sees.
    pub fn set_wall_clock(&mut self, now: Instant, unix: u64) {
        self.wall = Some((now, unix));
    }

    /// Approves an applicant: this member votes it in once it applies with a certified id.
    pub fn approve(&mut self, key: MemberKey) {
        self.membership.approve(key);
    }

    /// The policy counters of the decided log.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Requests NACKed, by limit label.
    pub fn nacked(&self) -> &BTreeMap<&'static str, u64> {
        &self.nacked
    }

    /// Membership: the current list, the chain, evidence.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The members deciding the current height.
    pub fn members(&self) -> &[MemberKey] {
        &self.config.members
    }

    pub(super) fn unix(&mut self, now: Instant) -> u64 {
        let (at, unix) = *self.wall.get_or_insert((now, 0));
        unix.saturating_add(now.saturating_duration_since(at).as_secs())
    }

    /// The time this member proposes a batch at: its clock, never before the last batch's.
    pub(super) fn batch_time(&self, now: Instant) -> u64 {
        let clock = self.wall.map_or(0, |(at, unix)| {
            unix.saturating_add(now.saturating_duration_since(at).as_secs())
        });
        clock.max(self.last_time)
    }

    /// Whether this member prevotes for `batch` at `height`. A forged signature in it is
    /// counted as `bad_signature`; the sightings it carries that this member holds are not
    /// checked again once the batch passed.
    pub(super) fn valid(&mut self, now: Instant, batch: &Batch, height: u64) -> bool {
        let now = self.unix(now);
        let cx = Context {
            config: &self.config,
            log: &self.log,
            counters: &self.counters,
            membership: &self.membership,
            last_time: self.last_time,
            now,
        };
        let verified = Known {
            pool: &self.pool,
            commit: self
                .decided
                .get(&height.saturating_sub(1))
                .map_or(&[][..], |kept| &kept.commit[..]),
            failed: std::cell::Cell::new(0),
        };
        let valid = validate::batch_verified(&cx, batch, height, &verified);
        for _ in 0..verified.failed.get() {
            self.refuse(Refusal::BadSignature);
        }
        if valid {
            for sighting in batch.entries.iter().flat_map(|entry| &entry.sightings) {
                self.pool.mark_verified(sighting);
            }
        }
        valid
    }

    /// Up to [`MAX_BATCH`](crate::consensus::schema::MAX_BATCH) entries for this member's
    /// proposal, every sighting in them checked: another member's sighting is verified when a
    /// batch first needs it (once per member), and a forged one is dropped from the pool and
    /// counted, its request proposed with another member's sighting or left for later.
    pub(super) fn proposable(&mut self, now: Instant, needed: usize) -> Vec<schema::Entry> {
        // Each pass that finds a forgery drops at least one sighting; a member that forged
        // many costs at most this many passes, then its requests wait.
        const PASSES: usize = 4;
        for _ in 0..PASSES {
            let entries = self.ready_entries(now, needed, schema::MAX_BATCH);
            let mut forged = false;
            for sighting in entries.iter().flat_map(|entry| &entry.sightings) {
                if self.pool.holds(sighting) {
                    continue;
                }
                if sighting.verify(&self.config.network) {
                    self.pool.mark_verified(sighting);
                } else {
                    self.pool.discard(sighting);
                    self.refuse(Refusal::BadSignature);
                    forged = true;
                }
            }
            if !forged {
                return entries;
            }
        }
        let mut entries = self.ready_entries(now, needed, schema::MAX_BATCH);
        entries.retain(|entry| entry.sightings.iter().all(|s| self.pool.holds(s)));
        entries
    }

    /// Sends a client the signed reply naming its request's final id.
    pub(super) fn reply(&mut self, to: Peer, digest: RequestDigest, node_id: NodeId, height: u64) {
        let reply = sign(
            &self.key,
            &self.config.network,
            Reply {
                digest,
                node_id,
                network: self.config.network,
                members: u32::try_from(self.config.members.len()).unwrap_or(u32::MAX),
                height,
                member: self.me,
            },
        );
        self.send(to, &Message::Reply(reply));
    }

    /// Sends a signed NACK naming `limit` (PROTOCOL.md §11) and counts it.
    pub(super) fn nack(&mut self, to: Peer, digest: RequestDigest, limit: Limit, now: Instant) {
        let clock = self.unix(now);
        let until = self.counters.window_end(clock);
        let nack = sign(
            &self.key,
            &self.config.network,
            Nack {
                digest,
                limit,
                until,
                network: self.config.network,
                member: self.me,
            },
        );
        self.send(to, &Message::Nack(nack));
        let count = self.nacked.entry(limit.label()).or_insert(0);
        *count = count.saturating_add(1);
    }

    pub(super) fn send_membership(&mut self, out: Vec<Out>) {
        for item in out {
            match item {
                Out::Broadcast(message) => self.broadcast(&message),
                Out::To(member, message) => self.send(Peer::Member(member), &message),
            }
        }
    }

    /// A client's request: answered from the log, NACKed over a quota (PROTOCOL.md §11),
    /// or sighted and shared with every member.
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        source: SocketAddr,
        request: NodeIdRequest,
    ) -> Result<(), Refusal> {
        let digest = request.digest();
        if let Some(logged) = self.log.lookup(&request.key, request.salt) {
            // PROTOCOL.md §11, idempotent: a repeat gets the logged id (or waits for it).
            match logged.id {
                Some(node_id) => self.reply(Peer::Client(source), digest, node_id, logged.height),
                None => {
                    self.clients.entry(digest).or_default().insert(source);
                }
            }
            return Ok(());
        }
        if !self.is_member(&self.me) {
            return Err(Refusal::Unexpected);
        }
        let clock = self.unix(now);
        if let Err(limit) = self.counters.check(source.ip(), clock) {
            // PROTOCOL.md §11: over quota, never sighted, so never in a proposal.
            self.nack(Peer::Client(source), digest, limit, now);
            return Ok(());
        }
        match self.pool.arrive(now, source, &request) {
            Arrival::Sighted => {
                self.clients.entry(digest).or_default().insert(source);
                Ok(())
            }
            // Sighted now if its source is free, else when it frees (consensus::pool).
            Arrival::Waiting => {
                self.sight_next(now, source.ip());
                Ok(())
            }
            // What this member remembers for the source is full: the client sends again.
            Arrival::Full => Err(Refusal::Unexpected),
        }
    }

    /// How long a member's last own sighting keeps its source busy (consensus::pool).
    fn hold(&self) -> Duration {
        self.config.resend.saturating_mul(HOLD_RESENDS)
    }

    /// Signs and shares a sighting of `request` from `from`, which this member received itself.
    fn sight(&mut self, now: Instant, from: SocketAddr, request: NodeIdRequest) {
        let digest = request.digest();
        let sighting = sign(
            &self.key,
            &self.config.network,
            Sighting {
                digest,
                source: from,
                member: self.me,
            },
        );
        if !self.pool.note_own(now, &request, sighting.clone()) {
            return self.refuse(Refusal::Unexpected);
        }
        self.clients.entry(digest).or_default().insert(from);
        let message = Message::Sighting { request, sighting };
        self.broadcast(&message);
        self.own_sightings.insert(digest, message);
        self.maybe_start(now);
    }

    /// Sights the remembered request the pool picks for `ip`, if that source is free: one
    /// still unlogged and within quota (a retry of another gets its answer then).
    fn sight_next(&mut self, now: Instant, ip: IpAddr) {
        let (hold, clock) = (self.hold(), self.unix(now));
        while let Some((request, from)) = self.pool.next(now, ip, hold, &self.config.members) {
            if self.log.lookup(&request.key, request.salt).is_some()
                || self.counters.check(from.ip(), clock).is_err()
            {
                continue;
            }
            return self.sight(now, from, request);
        }
    }

    /// Once a resend period and after each decision: drops what the pool gave up on and
    /// sights, for each source that is free again, the request its members converge on.
    pub(super) fn tend_pool(&mut self, now: Instant) {
        let needed = faults(self.config.members.len()).saturating_add(1);
        for digest in self.pool.tend(now, needed, &self.config.members) {
            self.own_sightings.remove(&digest);
            self.clients.remove(&digest);
        }
        if !self.is_member(&self.me) {
            // Voted out: it sights nothing more (its requests' clients ask today's members).
            return;
        }
        for ip in self.pool.remembering() {
            self.sight_next(now, ip);
        }
    }

    /// Keep-alives, endorsements and chain links from a member.
    pub(super) fn on_membership(
        &mut self,
        from: MemberKey,
        message: Message,
    ) -> Result<(), Refusal> {
        let out = match message {
            Message::KeepAlive(keepalive) => {
                if keepalive.height > self.height {
                    self.ask_behind(from, keepalive.height);
                }
                self.membership.on_keepalive(from, &keepalive, self.height)
            }
            Message::Endorse(endorsement) => self.membership.on_endorse(from, endorsement),
            Message::Links(links) => return self.membership.on_links(links),
            _ => return Err(Refusal::Unexpected),
        };
        self.send_membership(out);
        Ok(())
    }

    pub(super) fn on_apply(
        &mut self,
        now: Instant,
        application: Signed<Application>,
    ) -> Result<(), Refusal> {
        if self.membership.on_apply(application)? {
            self.maybe_start(now);
        }
        Ok(())
    }

    /// After a decision is applied (deciding, or resuming from the store): count its requests,
    /// take its time, apply its membership change (the new list decides from the next height).
    pub(super) fn apply_decided(&mut self, height: u64, batch: &Batch) {
        let sources = batch
            .entries
            .iter()
            .filter_map(|entry| entry.sightings.first().map(|s| s.body.source.ip()));
        self.counters.apply(batch.time, sources);
        self.last_time = batch.time;
        let out = self.membership.decided(&self.key, height, &batch.changes);
        self.config.members = self.membership.current().members.clone();
        self.send_membership(out);
    }

    /// After a decision: pending requests now over a quota leave the pool and their clients
    /// get a NACK (PROTOCOL.md §11: never in a proposal).
    pub(super) fn purge_over_quota(&mut self, now: Instant) {
        let clock = self.unix(now);
        let counters = &self.counters;
        let dropped = self
            .pool
            .drop_sources(|source| counters.check(source, clock).err());
        for (digest, limit) in dropped {
            self.own_sightings.remove(&digest);
            for client in self.clients.remove(&digest).unwrap_or_default() {
                self.nack(Peer::Client(client), digest, limit, now);
            }
        }
        self.tend_pool(now);
    }

    /// Keep-alives, asks and evidence, once a resend period; evidence may be work.
    pub(super) fn tick_membership(&mut self, now: Instant) {
        let out = self.membership.tick(now, self.height);
        self.send_membership(out);
        self.tend_pool(now);
        self.maybe_start(now);
    }

    pub(super) fn note_ahead(&mut self, from: MemberKey, height: u64) {
        if self.ahead.is_none_or(|(_, seen)| seen < height) {
            self.ahead = Some((from, height));
        }
    }

    /// After a decision, asks a member seen ahead for the next one at once, rather than
    /// waiting for its next message: a member joining late replays the log this way.
    pub(super) fn ask_ahead(&mut self) {
        match self.ahead {
            Some((member, height)) if height > self.height => self.ask_behind(member, height),
            _ => self.ahead = None,
        }
    }
}
