//! Requests waiting for a proposal, with the sightings members shared of them (PROTOCOL.md
//! §11): a request may enter a proposal once f+1 distinct members saw it from one source.
//! Every bound here is the node's: at most [`MAX_PENDING`] requests in all, one sighting per
//! member per request, and per source IP the rule below.
//!
//! **One source, one request at a time, with a hold** (docs/CONSENSUS.md, The member): a
//! member signs a sighting of a request from a source IP only while that source is free: its
//! last own sighting from there was decided, dropped, or is [`HOLD_RESENDS`] resend periods
//! old, and fewer than [`OWN_PER_SOURCE`] of its own sightings from there are pending. A
//! request that arrives while the source is busy is remembered ([`WAIT_PER_SOURCE`] per
//! source, [`MAX_WAITING`] in all, forgotten [`FORGET_AFTER`] after its client's last send;
//! never evicting another) and sighted when the source frees: the remembered one with the
//! most sightings from other members, the lowest digest on a tie. So members that each hold a
//! different request from one IP (a NAT, or members sharing a host) converge on one within a
//! hold, and every remembered request is sighted in turn; a request no f+1 members sighted in
//! [`UNREADY_TTL`] is dropped, which frees its source's count.
//!
//! Another member's sighting is held **unverified** until a batch needs it (docs/CONSENSUS.md,
//! Performance): a proposer checks the f+1 sightings it puts in a batch, a member checks the
//! ones a proposal carries, and each signature is checked once per member (the pool remembers
//! it). A member can only add sightings in its own name (its session proved it), so an
//! unverified one costs nothing an honest member relies on: a forged one is found, dropped and
//! counted when a batch would carry it.

use super::ids::{MemberKey, NodeIdRequest, RequestDigest};
use super::schema::{Entry, Sighting};
use super::signed::Signed;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The most requests waiting at once.
pub const MAX_PENDING: usize = 4096;

/// The most pending requests that came in on other members' sightings: the rest of
/// [`MAX_PENDING`] is kept for this member's own, so members flooding sightings of requests
/// nobody else saw cannot stop it sighting its clients' requests.
pub const MAX_BY_OTHERS: usize = 3072;

/// The most pending requests that came in on one other member's sighting.
pub const MAX_BY_ONE: usize = 1024;

/// Resend periods a member's last own sighting from a source keeps that source busy.
pub const HOLD_RESENDS: u32 = 3;

/// Own sightings from one source IP pending at once, at most (the default per-address quota).
pub const OWN_PER_SOURCE: usize = 8;

/// Requests remembered per busy source IP, at most.
pub const WAIT_PER_SOURCE: usize = 8;

/// Requests remembered for busy sources in all, at most.
pub const MAX_WAITING: usize = 1024;

/// A remembered request is forgotten this long after its client last sent it.
pub const FORGET_AFTER: Duration = Duration::from_secs(30);

/// A pending request without f+1 sightings from one source is dropped this long after the
/// pool first tended it (its sighters resend, so only one nobody stands behind stays gone).
pub const UNREADY_TTL: Duration = Duration::from_secs(60);

/// One pending request and who saw it from where.
#[derive(Clone, Debug)]
struct Pending {
    request: NodeIdRequest,
    /// Sightings by (source, member): members may disagree on the source.
    sightings: BTreeMap<(SocketAddr, MemberKey), Held>,
    /// When [`Pool::tend`] first saw it: its [`UNREADY_TTL`] runs from there.
    since: Option<Instant>,
    /// The other member whose sighting brought it in; `None` for this member's own.
    by: Option<MemberKey>,
}

/// A sighting and whether its signature was checked (or it is this member's own).
#[derive(Clone, Debug)]
struct Held {
    sighting: Signed<Sighting>,
    verified: bool,
}

/// What this member saw itself from one source IP.
#[derive(Clone, Debug, Default)]
struct Source {
    /// Its last own sighting from here, and when it signed it.
    last: Option<(RequestDigest, Instant)>,
    /// Its own sightings from here still pending.
    sighted: BTreeSet<RequestDigest>,
    /// Requests that came from here while it was busy, not sighted yet.
    waiting: BTreeMap<RequestDigest, Waiting>,
}

/// A request remembered for a busy source.
#[derive(Clone, Debug)]
struct Waiting {
    request: NodeIdRequest,
    /// The address it came from (the one a sighting will name).
    from: SocketAddr,
    /// When its client last sent it.
    last: Instant,
}

/// What became of a request a client sent this member itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// This member sighted it from this source IP already.
    Sighted,
    /// Remembered until its source frees.
    Waiting,
    /// The source's or the pool's memory is full: refused, the client sends again.
    Full,
}

/// The pending requests.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    pending: BTreeMap<RequestDigest, Pending>,
    /// The source IPs this member saw requests from itself.
    sources: BTreeMap<IpAddr, Source>,
    /// Requests remembered across all sources.
    waiting: usize,
    /// Pending requests each other member's sighting brought in.
    by_others: BTreeMap<MemberKey, usize>,
}

/// Distinct `members` that sighted `pending` from one address (of IP `ip`, when given).
fn support(pending: &Pending, ip: Option<IpAddr>, members: &[MemberKey]) -> usize {
    let mut by_source: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for (source, member) in pending.sightings.keys() {
        if ip.is_some_and(|ip| ip != source.ip()) || members.binary_search(member).is_err() {
            continue;
        }
        let count = by_source.entry(*source).or_insert(0);
        *count = count.saturating_add(1);
    }
    by_source.into_values().max().unwrap_or(0)
}

impl Source {
    fn busy(
        &self,
        now: Instant,
        hold: Duration,
        pending: &BTreeMap<RequestDigest, Pending>,
    ) -> bool {
        let held = self.last.is_some_and(|(digest, at)| {
            pending.contains_key(&digest) && at.checked_add(hold).is_none_or(|end| now < end)
        });
        held || self.sighted.len() >= OWN_PER_SOURCE
    }

    fn is_empty(&self) -> bool {
        self.last.is_none() && self.sighted.is_empty() && self.waiting.is_empty()
    }
}

impl Pool {
    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when none waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Requests remembered for busy sources.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// A client sent this member `request` itself, from `from`: already sighted from that
    /// source IP, or remembered until the source frees ([`Pool::next`] then hands it out).
    pub fn arrive(&mut self, now: Instant, from: SocketAddr, request: &NodeIdRequest) -> Arrival {
        let digest = request.digest();
        let total = self.waiting;
        let source = self.sources.entry(from.ip()).or_default();
        if source.sighted.contains(&digest) && self.pending.contains_key(&digest) {
            return Arrival::Sighted;
        }
        if let Some(waiting) = source.waiting.get_mut(&digest) {
            waiting.last = now;
            return Arrival::Waiting;
        }
        if source.waiting.len() >= WAIT_PER_SOURCE || total >= MAX_WAITING {
            if source.is_empty() {
                self.sources.remove(&from.ip());
            }
            return Arrival::Full;
        }
        source.waiting.insert(
            digest,
            Waiting {
                request: request.clone(),
                from,
                last: now,
            },
        );
        self.waiting = total.saturating_add(1);
        Arrival::Waiting
    }

    /// The remembered request from `ip` to sight now, taken out of memory, when that source is
    /// free (its last own sighting decided, dropped or `hold` old, and fewer than
    /// [`OWN_PER_SOURCE`] own ones pending): the one with the most sightings from `members`,
    /// the lowest digest on a tie, so members that hold different requests from one IP
    /// converge on one.
    pub fn next(
        &mut self,
        now: Instant,
        ip: IpAddr,
        hold: Duration,
        members: &[MemberKey],
    ) -> Option<(NodeIdRequest, SocketAddr)> {
        let source = self.sources.get_mut(&ip)?;
        if source.busy(now, hold, &self.pending) {
            return None;
        }
        let pending = &self.pending;
        let best = source
            .waiting
            .keys()
            .map(|digest| {
                let support = pending
                    .get(digest)
                    .map_or(0, |p| support(p, Some(ip), members));
                (support, std::cmp::Reverse(*digest))
            })
            .max()
            .map(|(_, digest)| digest.0)?;
        let waiting = source.waiting.remove(&best)?;
        self.waiting = self.waiting.saturating_sub(1);
        Some((waiting.request, waiting.from))
    }

    /// Source IPs with requests remembered that may be free now (see [`Pool::next`]).
    pub fn remembering(&self) -> Vec<IpAddr> {
        self.sources
            .iter()
            .filter(|(_, source)| !source.waiting.is_empty())
            .map(|(ip, _)| *ip)
            .collect()
    }

    /// Records this member's own sighting of `request`, signed at `now`: its source is busy
    /// from here (see [`Pool::next`]).
    pub fn note_own(
        &mut self,
        now: Instant,
        request: &NodeIdRequest,
        sighting: Signed<Sighting>,
    ) -> bool {
        let digest = sighting.body.digest;
        let ip = sighting.body.source.ip();
        if !self.insert(request, sighting, true, None) {
            return false;
        }
        let source = self.sources.entry(ip).or_default();
        source.last = Some((digest, now));
        source.sighted.insert(digest);
        if source.waiting.remove(&digest).is_some() {
            self.waiting = self.waiting.saturating_sub(1);
        }
        true
    }

    /// Adds another member's sighting, not checked yet (`verified` once it was); false when
    /// the pool is full, or holds its share of requests only other members saw
    /// ([`MAX_BY_ONE`], [`MAX_BY_OTHERS`]). The first sighting per (source, member) stays.
    pub fn add(
        &mut self,
        request: &NodeIdRequest,
        sighting: Signed<Sighting>,
        verified: bool,
    ) -> bool {
        let member = sighting.body.member;
        self.insert(request, sighting, verified, Some(member))
    }

    fn insert(
        &mut self,
        request: &NodeIdRequest,
        sighting: Signed<Sighting>,
        verified: bool,
        by: Option<MemberKey>,
    ) -> bool {
        let digest = sighting.body.digest;
        if !self.pending.contains_key(&digest) {
            if self.pending.len() >= MAX_PENDING {
                return false;
            }
            if let Some(member) = by {
                let one = self.by_others.get(&member).copied().unwrap_or(0);
                let all = self
                    .by_others
                    .values()
                    .fold(0usize, |sum, n| sum.saturating_add(*n));
                if one >= MAX_BY_ONE || all >= MAX_BY_OTHERS {
                    return false;
                }
                self.by_others.insert(member, one.saturating_add(1));
            }
        }
        let pending = self.pending.entry(digest).or_insert_with(|| Pending {
            request: request.clone(),
            sightings: BTreeMap::new(),
            since: None,
            by,
        });
        pending
            .sightings
            .entry((sighting.body.source, sighting.body.member))
            .or_insert(Held { sighting, verified });
        true
    }

    /// Takes a request out of the pending ones, giving back the share it was counted in.
    fn take(&mut self, digest: &RequestDigest) -> Option<Pending> {
        let pending = self.pending.remove(digest)?;
        if let Some(member) = pending.by
            && let Some(count) = self.by_others.get_mut(&member)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_others.remove(&member);
            }
        }
        Some(pending)
    }

    /// True when the pool holds exactly this sighting (signature included) and its signature
    /// was checked: a proposal carrying it need not be verified again.
    pub fn holds(&self, sighting: &Signed<Sighting>) -> bool {
        self.held(sighting).is_some_and(|held| held.verified)
    }

    fn held(&self, sighting: &Signed<Sighting>) -> Option<&Held> {
        let body = &sighting.body;
        self.pending
            .get(&body.digest)
            .and_then(|pending| pending.sightings.get(&(body.source, body.member)))
            .filter(|held| held.sighting == *sighting)
    }

    /// Notes that this exact sighting's signature checked out, if the pool holds it.
    pub fn mark_verified(&mut self, sighting: &Signed<Sighting>) {
        let body = &sighting.body;
        if let Some(held) = self
            .pending
            .get_mut(&body.digest)
            .and_then(|pending| pending.sightings.get_mut(&(body.source, body.member)))
            .filter(|held| held.sighting == *sighting)
        {
            held.verified = true;
        }
    }

    /// Drops this exact sighting (its signature failed), and its request when no sighting is
    /// left; the member's valid sighting, sent again, takes its place.
    pub fn discard(&mut self, sighting: &Signed<Sighting>) {
        if self.held(sighting).is_none() {
            return;
        }
        let body = &sighting.body;
        let empty = self.pending.get_mut(&body.digest).is_some_and(|pending| {
            pending.sightings.remove(&(body.source, body.member));
            pending.sightings.is_empty()
        });
        if empty {
            self.remove(&body.digest);
        }
    }

    /// Forgets a request once it is ordered: its source IPs are free of it.
    pub fn remove(&mut self, digest: &RequestDigest) {
        if let Some(pending) = self.take(digest) {
            let ips: BTreeSet<IpAddr> = pending.sightings.keys().map(|k| k.0.ip()).collect();
            for ip in ips {
                let Some(source) = self.sources.get_mut(&ip) else {
                    continue;
                };
                source.sighted.remove(digest);
                if source.last.is_some_and(|(last, _)| last == *digest) {
                    source.last = None;
                }
                if source.is_empty() {
                    self.sources.remove(&ip);
                }
            }
        }
    }

    /// Drops every sighting whose source `refuse` names a limit for (PROTOCOL.md §11: an
    /// over-quota request never enters a proposal); returns the requests left with no sighting,
    /// now forgotten, each with the limit of its last source.
    pub fn drop_sources<L: Copy>(
        &mut self,
        refuse: impl Fn(IpAddr) -> Option<L>,
    ) -> Vec<(RequestDigest, L)> {
        let mut gone = Vec::new();
        for (digest, pending) in &mut self.pending {
            let mut last = None;
            pending
                .sightings
                .retain(|(source, _), _| match refuse(source.ip()) {
                    Some(limit) => {
                        last = Some(limit);
                        false
                    }
                    None => true,
                });
            if let (true, Some(limit)) = (pending.sightings.is_empty(), last) {
                gone.push((*digest, limit));
            }
        }
        for (digest, _) in &gone {
            self.take(digest);
        }
        self.forget_gone();
        gone
    }

    /// Keeps the sources' bookkeeping to requests still pending, and drops sources with
    /// nothing left.
    fn forget_gone(&mut self) {
        let pending = &self.pending;
        for source in self.sources.values_mut() {
            source.sighted.retain(|digest| pending.contains_key(digest));
            if source.last.is_some_and(|(d, _)| !pending.contains_key(&d)) {
                source.last = None;
            }
        }
        self.sources.retain(|_, source| !source.is_empty());
    }

    /// Once a resend period and after each decision: forgets remembered requests whose client
    /// stopped sending ([`FORGET_AFTER`]) and drops pending requests that gathered no `needed`
    /// sightings from one source of `members` within [`UNREADY_TTL`]; returns the dropped
    /// ones' digests. Then [`Pool::remembering`] and [`Pool::next`] say what to sight.
    pub fn tend(
        &mut self,
        now: Instant,
        needed: usize,
        members: &[MemberKey],
    ) -> Vec<RequestDigest> {
        let mut dropped = Vec::new();
        for (digest, pending) in &mut self.pending {
            let since = *pending.since.get_or_insert(now);
            let old = since.checked_add(UNREADY_TTL).is_some_and(|end| now >= end);
            if old && support(pending, None, members) < needed {
                dropped.push(*digest);
            }
        }
        for digest in &dropped {
            self.take(digest);
        }
        let mut forgotten = 0usize;
        for source in self.sources.values_mut() {
            source.waiting.retain(|_, waiting| {
                let keep = waiting
                    .last
                    .checked_add(FORGET_AFTER)
                    .is_none_or(|end| now < end);
                if !keep {
                    forgotten = forgotten.saturating_add(1);
                }
                keep
            });
        }
        self.waiting = self.waiting.saturating_sub(forgotten);
        self.forget_gone();
        dropped
    }

    /// Up to `limit` entries ready for a proposal: requests with sightings from `needed`
    /// distinct `members` naming one source (the lowest such source, so every proposer picks
    /// the same one: the address the policy counts), in digest order, each with exactly
    /// `needed` sightings (sorted by member) so the proposal is canonical.
    pub fn ready(&self, needed: usize, limit: usize, members: &[MemberKey]) -> Vec<Entry> {
        let mut out = Vec::new();
        for pending in self.pending.values() {
            if out.len() >= limit {
                break;
            }
            let mut by_source: BTreeMap<SocketAddr, Vec<&Signed<Sighting>>> = BTreeMap::new();
            for ((source, member), held) in &pending.sightings {
                if members.binary_search(member).is_err() {
                    continue;
                }
                by_source.entry(*source).or_default().push(&held.sighting);
            }
            if let Some(sightings) = by_source.values().find(|s| s.len() >= needed) {
                out.push(Entry {
                    request: pending.request.clone(),
                    sightings: sightings
                        .iter()
                        .take(needed)
                        .map(|s| (*s).clone())
                        .collect(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::ids::NetworkId;
    use crate::consensus::signed::{Signature, member_key, sign};
    use ed25519_dalek::SigningKey;

    /// A proposal's sighting skips its signature check only when the pool holds it byte for
    /// byte: the same body under another signature (a forgery) is checked like any other.
    #[test]
    fn only_the_exact_sighting_held_counts_as_verified() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let network = NetworkId([9; 32]);
        let source: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let request = NodeIdRequest {
            key: [1; 32],
            addresses: vec![source],
            salt: 0,
        };
        let sighting = sign(
            &key,
            &network,
            Sighting {
                digest: request.digest(),
                source,
                member: member_key(&key),
            },
        );
        let mut pool = Pool::default();
        assert!(!pool.holds(&sighting));
        assert!(pool.note_own(Instant::now(), &request, sighting.clone()));
        assert!(pool.holds(&sighting));
        let mut forged = sighting.clone();
        forged.signature = Signature([7; 64]);
        assert!(!pool.holds(&forged));
        pool.remove(&request.digest());
        assert!(!pool.holds(&sighting));
    }

    /// Another member's sighting counts as verified only once it is marked so; a forged one
    /// is dropped with its request when it was the only one, and a valid one then takes its
    /// slot.
    #[test]
    fn a_sighting_from_a_member_waits_for_its_check() {
        let key = SigningKey::from_bytes(&[6; 32]);
        let network = NetworkId([9; 32]);
        let source: SocketAddr = "192.0.2.2:4000".parse().unwrap();
        let request = NodeIdRequest {
            key: [2; 32],
            addresses: vec![source],
            salt: 0,
        };
        let body = Sighting {
            digest: request.digest(),
            source,
            member: member_key(&key),
        };
        let valid = sign(&key, &network, body.clone());
        let mut forged = valid.clone();
        forged.signature = Signature([7; 64]);
        let mut pool = Pool::default();
        assert!(pool.add(&request, forged.clone(), false));
        assert_eq!(
            pool.ready(1, 8, &[body.member]).len(),
            1,
            "counted before its check"
        );
        assert!(!pool.holds(&forged));
        // The first sighting per member stays until it is dropped.
        assert!(pool.add(&request, valid.clone(), false));
        assert!(!pool.holds(&valid));
        pool.discard(&forged);
        assert!(pool.is_empty(), "its only sighting was forged");
        assert!(pool.add(&request, valid.clone(), false));
        pool.mark_verified(&forged);
        assert!(!pool.holds(&valid));
        pool.mark_verified(&valid);
        assert!(pool.holds(&valid));
        pool.discard(&forged);
        assert!(pool.holds(&valid), "another signature drops nothing");
    }

    fn request(key: u8, port: u16) -> (NodeIdRequest, SocketAddr) {
        let from = SocketAddr::from(([192, 0, 2, 9], port));
        let request = NodeIdRequest {
            key: [key; 32],
            addresses: vec![from],
            salt: 0,
        };
        (request, from)
    }

    fn sight(key: &SigningKey, request: &NodeIdRequest, from: SocketAddr) -> Signed<Sighting> {
        let body = Sighting {
            digest: request.digest(),
            source: from,
            member: member_key(key),
        };
        sign(key, &NetworkId([9; 32]), body)
    }

    const HOLD: Duration = Duration::from_secs(3);

    /// A source is busy while the member's last own sighting from it is pending and younger
    /// than the hold; a request arriving meanwhile is remembered and handed out after.
    #[test]
    fn a_busy_source_remembers_a_request_and_hands_it_out_when_the_hold_ends() {
        let me = SigningKey::from_bytes(&[1; 32]);
        let members = [member_key(&me)];
        let t0 = Instant::now();
        let (first, from) = request(1, 4000);
        let (second, other) = request(2, 4001);
        let mut pool = Pool::default();
        assert_eq!(pool.arrive(t0, from, &first), Arrival::Waiting);
        let (taken, at) = pool.next(t0, from.ip(), HOLD, &members).expect("free");
        assert_eq!((&taken, at), (&first, from));
        assert!(pool.note_own(t0, &taken, sight(&me, &taken, at)));
        assert_eq!(pool.arrive(t0, from, &first), Arrival::Sighted);
        assert_eq!(pool.arrive(t0, other, &second), Arrival::Waiting);
        assert_eq!(pool.waiting(), 1);
        assert!(
            pool.next(t0 + HOLD / 2, from.ip(), HOLD, &members)
                .is_none()
        );
        let (taken, at) = pool.next(t0 + HOLD, from.ip(), HOLD, &members).unwrap();
        assert_eq!(
            (taken, at),
            (second, other),
            "named by the address it came from"
        );
        assert_eq!(pool.waiting(), 0);
    }

    /// A decided request frees its source at once.
    #[test]
    fn a_decided_request_frees_its_source() {
        let me = SigningKey::from_bytes(&[1; 32]);
        let members = [member_key(&me)];
        let t0 = Instant::now();
        let (first, from) = request(1, 4000);
        let (second, _) = request(2, 4000);
        let mut pool = Pool::default();
        assert!(pool.note_own(t0, &first, sight(&me, &first, from)));
        assert_eq!(pool.arrive(t0, from, &second), Arrival::Waiting);
        assert!(pool.next(t0, from.ip(), HOLD, &members).is_none());
        pool.remove(&first.digest());
        assert!(pool.next(t0, from.ip(), HOLD, &members).is_some());
    }

    /// Members that hold different requests from one IP converge: the remembered request with
    /// the most other members' sightings first, else the lowest digest.
    #[test]
    fn the_request_others_sighted_most_goes_first_then_the_lowest_digest() {
        let keys: Vec<SigningKey> = (1..=3u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let mut members: Vec<MemberKey> = keys.iter().map(member_key).collect();
        members.sort_unstable();
        let t0 = Instant::now();
        let mut requests: Vec<(NodeIdRequest, SocketAddr)> =
            (1..=3u8).map(|k| request(k, 4000)).collect();
        requests.sort_by_key(|(r, _)| r.digest());
        let mut pool = Pool::default();
        for (r, from) in &requests {
            assert_eq!(pool.arrive(t0, *from, r), Arrival::Waiting);
        }
        // The highest digest has another member's sighting: it goes first.
        let (top, from) = requests[2].clone();
        assert!(pool.add(&top, sight(&keys[1], &top, from), false));
        let ip = from.ip();
        let first = pool.next(t0, ip, HOLD, &members).unwrap().0;
        assert_eq!(first, top);
        assert!(pool.note_own(t0, &first, sight(&keys[0], &first, from)));
        let later = t0 + HOLD;
        let second = pool.next(later, ip, HOLD, &members).unwrap().0;
        assert_eq!(second, requests[0].0, "then the lowest digest");
    }

    /// A full memory refuses the next request rather than evict one another client sent.
    #[test]
    fn a_full_source_memory_refuses_rather_than_evicts() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        for k in 0..WAIT_PER_SOURCE {
            let (r, from) = request(k as u8, 4000);
            assert_eq!(pool.arrive(t0, from, &r), Arrival::Waiting);
        }
        let (late, from) = request(200, 4000);
        assert_eq!(pool.arrive(t0, from, &late), Arrival::Full);
        let (kept, from) = request(0, 4000);
        assert_eq!(pool.arrive(t0, from, &kept), Arrival::Waiting, "still held");
        assert_eq!(pool.waiting(), WAIT_PER_SOURCE);
        // Forgotten once its client stops sending.
        assert!(pool.tend(t0 + FORGET_AFTER, 1, &[]).is_empty());
        assert_eq!(pool.waiting(), 0);
        assert_eq!(
            pool.arrive(t0 + FORGET_AFTER, from, &late),
            Arrival::Waiting
        );
    }

    /// A request that gathers no f+1 sightings within the TTL is dropped, and frees its
    /// source; one with f+1 stays.
    #[test]
    fn an_unready_request_is_dropped_after_its_ttl() {
        let keys: Vec<SigningKey> = (1..=2u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let mut members: Vec<MemberKey> = keys.iter().map(member_key).collect();
        members.sort_unstable();
        let t0 = Instant::now();
        let (alone, from) = request(1, 4000);
        let (backed, _) = request(2, 5000);
        let other = SocketAddr::from(([198, 51, 100, 1], 5000));
        let mut pool = Pool::default();
        assert!(pool.note_own(t0, &alone, sight(&keys[0], &alone, from)));
        assert!(pool.note_own(t0, &backed, sight(&keys[0], &backed, other)));
        assert!(pool.add(&backed, sight(&keys[1], &backed, other), false));
        assert!(pool.tend(t0, 2, &members).is_empty());
        let (next, _) = request(3, 4000);
        let late = t0 + UNREADY_TTL;
        assert_eq!(pool.arrive(late, from, &next), Arrival::Waiting);
        let forever = Duration::MAX;
        assert!(pool.next(late, from.ip(), forever, &members).is_none());
        let dropped = pool.tend(late, 2, &members);
        assert_eq!(dropped, vec![alone.digest()]);
        assert_eq!(pool.len(), 1);
        assert!(pool.next(late, from.ip(), forever, &members).is_some());
    }

    /// One member sighting requests nobody else saw cannot fill the pool: past its share its
    /// sightings of new requests are refused, another member's still come in, and this
    /// member's own always find room.
    #[test]
    fn one_member_cannot_fill_the_pool_against_the_others() {
        let flooder = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let me = SigningKey::from_bytes(&[5; 32]);
        let from = SocketAddr::from(([192, 0, 2, 9], 4000));
        let junk = |n: usize| NodeIdRequest {
            key: [7; 32],
            addresses: vec![from],
            salt: n as u32,
        };
        let mut pool = Pool::default();
        for n in 0..MAX_BY_ONE {
            let r = junk(n);
            assert!(pool.add(&r, sight(&flooder, &r, from), false));
        }
        let r = junk(MAX_BY_ONE);
        assert!(
            !pool.add(&r, sight(&flooder, &r, from), false),
            "past its share"
        );
        assert!(
            pool.add(&r, sight(&other, &r, from), false),
            "another's comes in"
        );
        let (mine, at) = request(1, 4000);
        assert!(pool.note_own(Instant::now(), &mine, sight(&me, &mine, at)));
        // A request it brought in that leaves gives its share back.
        pool.remove(&junk(0).digest());
        let r = junk(MAX_BY_ONE + 1);
        assert!(pool.add(&r, sight(&flooder, &r, from), false));
    }
}
