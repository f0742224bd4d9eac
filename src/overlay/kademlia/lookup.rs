//! One α-parallel iterative lookup (Kademlia §2.3): a shortlist ordered by XOR distance to the
//! target, at most α requests in flight, done when the k closest contacts not known to have
//! failed have all answered, or, for FIND_VALUE, as soon as one returns the value. Depth is the
//! longest chain of dependent requests: a contact from the node's own table is at depth 1, one
//! learned from a reply to a request at depth d is at d + 1.
//!
//! A request still unanswered after the lookup's stall time (about twice the measured RTT)
//! stops counting against α, so a silent node or a first contact paying its handshake does not
//! hold the lookup back (Kademlia §2.3's "nodes that fail to respond quickly"); it stays in
//! flight, its late answer still counts, and at most 2α requests are ever in flight. So does
//! a request overtaken by a reply that brought closer contacts: the lookup asks those at once.

use super::table::subnet_of;
use crate::overlay::id::{Contact, NodeId};
use crate::overlay::rpc::{RecordMeta, Value};
use std::time::{Duration, Instant};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    InFlight,
    Answered,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    contact: Contact,
    distance: NodeId,
    state: State,
    depth: u32,
    /// When it was asked (meaningful while in flight).
    asked: Instant,
    /// The lookup's offer count when it was offered, and when it was asked.
    offered: u64,
    asked_mark: u64,
}

/// A value a lookup found.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The value.
    pub value: Value,
    /// Its metadata.
    pub meta: RecordMeta,
    /// Who returned it.
    pub from: NodeId,
}

/// The lookup's state.
#[derive(Clone, Debug)]
pub struct Lookup {
    target: NodeId,
    own: NodeId,
    candidates: Vec<Candidate>,
    in_flight: usize,
    found: Option<Found>,
    max_depth: u32,
    requests: u32,
    max_requests: u32,
    started: Instant,
    stall: Duration,
    /// Contacts offered so far: orders what was learned before and after a request went.
    offers: u64,
    /// Most candidates learned from replies in one /24 (/64), where the table has that cap.
    subnet_cap: Option<usize>,
}

impl Lookup {
    /// A lookup of `target` starting from `seeds` (the node's own closest contacts).
    pub fn new(target: NodeId, own: NodeId, seeds: &[Contact], started: Instant) -> Lookup {
        let mut lookup = Lookup {
            target,
            own,
            candidates: Vec::new(),
            in_flight: 0,
            found: None,
            max_depth: 0,
            requests: 0,
            max_requests: u32::MAX,
            started,
            stall: Duration::MAX,
            offers: 0,
            subnet_cap: None,
        };
        for seed in seeds {
            lookup.offer(*seed, 1, usize::MAX);
        }
        lookup
    }

    /// The same lookup, no longer counting a request against α once it is unanswered for
    /// `stall` (by default never).
    pub fn with_stall(mut self, stall: Duration) -> Lookup {
        self.stall = stall;
        self
    }

    /// The same lookup, taking at most `cap` contacts in one /24 (/64) from replies (the
    /// table's `per_subnet_cap`): where the rule is on, a reply cannot aim more than `cap` of
    /// the lookup's requests at one network by listing its addresses under made-up ids.
    pub fn with_subnet_cap(mut self, cap: Option<usize>) -> Lookup {
        self.subnet_cap = cap;
        self
    }

    /// The same lookup, sending at most `max` requests.
    pub fn with_max_requests(mut self, max: u32) -> Lookup {
        self.max_requests = max;
        self
    }

    /// Adds `contact` to the shortlist; false when it was refused because another id holds its
    /// address.
    fn offer(&mut self, contact: Contact, depth: u32, keep: usize) -> bool {
        if contact.id == self.own {
            return true;
        }
        if let Some(known) = self
            .candidates
            .iter_mut()
            .find(|c| c.contact.id == contact.id)
        {
            known.depth = known.depth.min(depth);
            return true;
        }
        // One address, one candidate: a reply may list any address under any number of ids,
        // and each asked is an open (handshake INITs) sent there, so a peer could aim a
        // lookup's every request at a third party that never answers.
        if self
            .candidates
            .iter()
            .any(|c| c.contact.addr == contact.addr)
        {
            return false;
        }
        let distance = contact.id.distance(&self.target);
        self.offers = self.offers.saturating_add(1);
        let at = self.candidates.partition_point(|c| c.distance <= distance);
        if at >= keep {
            return true;
        }
        self.candidates.insert(
            at,
            Candidate {
                contact,
                distance,
                state: State::Waiting,
                depth,
                asked: self.started,
                offered: self.offers,
                asked_mark: 0,
            },
        );
        // Bounded shortlist: contacts that wait past `keep` are never reached anyway, unless
        // requests fail, so the far end that was never asked goes.
        while self.candidates.len() > keep {
            match self
                .candidates
                .iter()
                .rposition(|c| c.state == State::Waiting)
            {
                Some(last) if last >= keep => {
                    self.candidates.remove(last);
                }
                _ => break,
            }
        }
        true
    }

    /// True when `c` was asked at least the stall time before `now` and has not answered.
    fn stalled(&self, c: &Candidate, now: Instant) -> bool {
        c.state == State::InFlight && now.saturating_duration_since(c.asked) >= self.stall
    }

    /// Requests in flight that still count against α at `now`: not stalled, and not
    /// overtaken (a closer contact learned since it was asked waits: the lookup has moved
    /// on past it, so it need not wait for that answer before asking the closer one).
    fn active(&self, now: Instant) -> usize {
        let mut newest_closer = 0;
        let mut active = 0usize;
        for c in &self.candidates {
            match c.state {
                State::Waiting => newest_closer = newest_closer.max(c.offered),
                State::InFlight if !self.stalled(c, now) && newest_closer <= c.asked_mark => {
                    active = active.saturating_add(1);
                }
                _ => {}
            }
        }
        active
    }

    /// The next contact to ask at `now`, when fewer than `alpha` requests that have not
    /// stalled are in flight (and fewer than 2α in all) and one of the `k` closest live
    /// candidates has not been asked; returns it with its depth.
    pub fn next_query(&mut self, now: Instant, alpha: usize, k: usize) -> Option<(Contact, u32)> {
        self.next_query_by(now, alpha, k, |_| Duration::ZERO)
    }

    /// [`next_query`](Self::next_query), preferring the lowest `rtt` among the 2α closest
    /// candidates not yet asked that are as close as the closest (as many leading bits shared
    /// with the target; the closest among equal RTTs): a lookup reaches as close in the same
    /// number of hops, and each hop costs the faster path.
    pub fn next_query_by(
        &mut self,
        now: Instant,
        alpha: usize,
        k: usize,
        rtt: impl Fn(&NodeId) -> Duration,
    ) -> Option<(Contact, u32)> {
        if self.found.is_some()
            || self.in_flight >= alpha.saturating_mul(2)
            || self.requests >= self.max_requests
            || self.active(now) >= alpha
        {
            return None;
        }
        let window = alpha.saturating_mul(2).max(1);
        let mut waiting = (self.candidates.iter().enumerate())
            .filter(|(_, c)| c.state != State::Failed)
            .take(k)
            .filter(|(_, c)| c.state == State::Waiting)
            .peekable();
        // Equally close: as many leading bits shared with the target as the closest waiting.
        let shared = waiting.peek()?.1.distance.leading_zeros();
        let (_, at) = waiting
            .take(window)
            .take_while(|(_, c)| c.distance.leading_zeros() == shared)
            .map(|(at, c)| (rtt(&c.contact.id), at))
            .min()?;
        let candidate = self.candidates.get_mut(at)?;
        candidate.state = State::InFlight;
        candidate.asked = now;
        candidate.asked_mark = self.offers;
        self.in_flight = self.in_flight.saturating_add(1);
        self.requests = self.requests.saturating_add(1);
        self.max_depth = self.max_depth.max(candidate.depth);
        Some((candidate.contact, candidate.depth))
    }

    fn settle(&mut self, from: &NodeId, state: State) -> Option<u32> {
        let candidate = self
            .candidates
            .iter_mut()
            .find(|c| c.contact.id == *from && c.state == State::InFlight)?;
        candidate.state = state;
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(candidate.depth)
    }

    /// When (after `now`) the next request in flight stalls, if that would let another go out (a
    /// candidate waits and there is room under 2α); the driver calls
    /// [`next_query`](Self::next_query) again then.
    pub fn next_stall(&self, now: Instant, alpha: usize, k: usize) -> Option<Instant> {
        if self.found.is_some()
            || self.in_flight >= alpha.saturating_mul(2)
            || self.requests >= self.max_requests
            || self.stall == Duration::MAX
        {
            return None;
        }
        let live = || self.candidates.iter().filter(|c| c.state != State::Failed);
        if !live().take(k).any(|c| c.state == State::Waiting) {
            return None;
        }
        live()
            .filter(|c| c.state == State::InFlight)
            .filter_map(|c| c.asked.checked_add(self.stall))
            .filter(|at| *at > now)
            .min()
    }

    /// `from` answered with `contacts`; the shortlist keeps the closest `3k`. Returns how many
    /// were refused because another id already holds their address (or its /24 is full).
    pub fn on_nodes(&mut self, from: &NodeId, contacts: &[Contact], k: usize) -> usize {
        let Some(depth) = self.settle(from, State::Answered) else {
            return 0;
        };
        let keep = k.saturating_mul(3);
        let depth = depth.saturating_add(1);
        (contacts.iter())
            .filter(|contact| self.crowded(contact) || !self.offer(**contact, depth, keep))
            .count()
    }

    /// True when `contact` is new and its /24 (/64) already holds the subnet cap's candidates.
    fn crowded(&self, contact: &Contact) -> bool {
        let Some(cap) = self.subnet_cap else {
            return false;
        };
        let subnet = subnet_of(contact.addr.ip());
        !self.candidates.iter().any(|c| c.contact.id == contact.id)
            && (self.candidates.iter())
                .filter(|c| subnet_of(c.contact.addr.ip()) == subnet)
                .count()
                >= cap
    }

    /// `from` returned the value.
    pub fn on_found(&mut self, from: &NodeId, value: Value, meta: RecordMeta) {
        if self.settle(from, State::Answered).is_some() && self.found.is_none() {
            self.found = Some(Found {
                value,
                meta,
                from: *from,
            });
        }
    }

    /// `from` failed (timeout, NACK, a reply that did not parse).
    pub fn on_failed(&mut self, from: &NodeId) {
        self.settle(from, State::Failed);
    }

    /// True once nothing more will be asked: the value was found, or no request is in flight
    /// and none of the k closest live candidates waits.
    pub fn is_done(&self, k: usize) -> bool {
        if self.found.is_some() {
            return true;
        }
        if self.requests >= self.max_requests {
            return self.in_flight == 0;
        }
        self.in_flight == 0
            && !self
                .candidates
                .iter()
                .filter(|c| c.state != State::Failed)
                .take(k)
                .any(|c| c.state == State::Waiting)
    }

    /// The value, once found.
    pub fn found(&self) -> Option<&Found> {
        self.found.as_ref()
    }

    /// Up to `k` closest contacts that answered, closest first.
    pub fn closest_answered(&self, k: usize) -> Vec<Contact> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Answered)
            .take(k)
            .map(|c| c.contact)
            .collect()
    }

    /// The closest contact that answered without the value (where a found record is cached).
    pub fn closest_without_value(&self) -> Option<Contact> {
        let holder = self.found.as_ref().map(|f| f.from);
        self.candidates
            .iter()
            .find(|c| c.state == State::Answered && Some(c.contact.id) != holder)
            .map(|c| c.contact)
    }

    /// The longest chain of dependent requests so far.
    pub fn depth(&self) -> u32 {
        self.max_depth
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// What it looks for.
    pub fn target(&self) -> NodeId {
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PeerId;
    use std::net::SocketAddr;

    fn contact(n: u8) -> Contact {
        let mut id = [0u8; 20];
        id[0] = n;
        Contact {
            id: NodeId(id),
            peer: PeerId([n; 16]),
            addr: SocketAddr::from(([10, 0, 0, n], 7000)),
        }
    }

    #[test]
    fn alpha_bounds_the_requests_in_flight_and_depth_grows_per_hop() {
        let own = contact(200).id;
        let target = NodeId([0; 20]);
        let seeds: Vec<_> = (100..110).map(contact).collect();
        let mut lookup = Lookup::new(target, own, &seeds, Instant::now());
        let first: Vec<_> =
            std::iter::from_fn(|| lookup.next_query(Instant::now(), 3, 20)).collect();
        assert_eq!(first.len(), 3);
        assert_eq!(first[0].0.id, contact(100).id);
        // The closest answers with closer contacts: they are asked next, one hop deeper.
        lookup.on_nodes(&first[0].0.id, &[contact(1), contact(2)], 20);
        let (next, depth) = lookup.next_query(Instant::now(), 3, 20).unwrap();
        assert_eq!((next.id, depth), (contact(1).id, 2));
        assert_eq!(lookup.depth(), 2);
    }

    #[test]
    fn a_stalled_request_lets_another_go_out_up_to_twice_alpha() {
        let own = contact(200).id;
        let seeds: Vec<_> = (1..=10).map(contact).collect();
        let start = Instant::now();
        let stall = Duration::from_millis(300);
        let mut lookup = Lookup::new(NodeId([0; 20]), own, &seeds, start).with_stall(stall);
        let first: Vec<_> = std::iter::from_fn(|| lookup.next_query(start, 3, 20)).collect();
        assert_eq!(first.len(), 3);
        assert_eq!(lookup.next_stall(start, 3, 20), Some(start + stall));
        // Before the stall time nothing more goes; after it, three more (2α in flight).
        assert!(lookup.next_query(start + stall / 2, 3, 20).is_none());
        let late = start + stall;
        let more: Vec<_> = std::iter::from_fn(|| lookup.next_query(late, 3, 20)).collect();
        assert_eq!(more.len(), 3);
        assert_eq!(lookup.next_stall(late, 3, 20), None, "2α in flight");
        // A stalled request's late answer still counts.
        lookup.on_nodes(&first[0].0.id, &[], 20);
        assert_eq!(lookup.closest_answered(20)[0].id, first[0].0.id);
    }

    #[test]
    fn among_the_equally_close_not_yet_asked_the_fastest_goes_first() {
        // 16..=26 share 3 leading bits with the target; 1 shares 7, so it is asked first
        // however slow. Then 20 is the fastest of the next six; 25 is faster but too far.
        let mut seeds: Vec<_> = (16..=26).map(contact).collect();
        seeds.push(contact(1));
        let start = Instant::now();
        let mut lookup = Lookup::new(NodeId([0; 20]), contact(200).id, &seeds, start);
        let rtt = |id: &NodeId| {
            Duration::from_millis(match id.0[0] {
                1 => 500,
                20 => 20,
                25 => 10,
                _ => 100,
            })
        };
        let asked: Vec<u8> = std::iter::from_fn(|| lookup.next_query_by(start, 3, 20, rtt))
            .map(|(c, _)| c.id.0[0])
            .collect();
        assert_eq!(asked, [1, 20, 16]);
    }

    #[test]
    fn done_when_the_k_closest_answered_or_failed() {
        let own = contact(200).id;
        let seeds: Vec<_> = (1..=4).map(contact).collect();
        let mut lookup = Lookup::new(NodeId([0; 20]), own, &seeds, Instant::now());
        while let Some((c, _)) = lookup.next_query(Instant::now(), 3, 2) {
            if c.id == contact(1).id {
                lookup.on_failed(&c.id);
            } else {
                lookup.on_nodes(&c.id, &[], 2);
            }
        }
        assert!(lookup.is_done(2));
        let answered: Vec<_> = lookup.closest_answered(2).iter().map(|c| c.id).collect();
        assert_eq!(answered, [contact(2).id, contact(3).id]);
        assert_eq!(lookup.requests(), 3);
    }

    #[test]
    fn a_found_value_stops_the_lookup() {
        let seeds: Vec<_> = (1..=5).map(contact).collect();
        let mut lookup = Lookup::new(NodeId([0; 20]), contact(200).id, &seeds, Instant::now());
        let (c, _) = lookup.next_query(Instant::now(), 3, 20).unwrap();
        let meta = RecordMeta {
            version: 1,
            ttl: 10,
        };
        lookup.on_found(&c.id, Value::UInt(7), meta);
        assert!(lookup.is_done(20));
        assert!(lookup.next_query(Instant::now(), 3, 20).is_none());
        assert_eq!(lookup.found().unwrap().value, Value::UInt(7));
    }

    #[test]
    fn a_lookup_sends_at_most_its_bound_of_requests() {
        // Each answer offers a contact closer than any before: without the bound the lookup
        // would never end.
        let seeds = [contact(200)];
        let mut lookup = Lookup::new(NodeId([0; 20]), contact(255).id, &seeds, Instant::now())
            .with_max_requests(5);
        let mut next = 199u8;
        while let Some((c, _)) = lookup.next_query(Instant::now(), 3, 20) {
            lookup.on_nodes(&c.id, &[contact(next)], 20);
            next -= 1;
        }
        assert_eq!(lookup.requests(), 5);
        assert!(lookup.is_done(20));
    }

    #[test]
    fn a_reply_from_someone_not_asked_is_ignored() {
        let seeds: Vec<_> = (1..=5).map(contact).collect();
        let mut lookup = Lookup::new(NodeId([0; 20]), contact(200).id, &seeds, Instant::now());
        lookup.on_nodes(&contact(4).id, &[contact(9)], 20);
        assert_eq!(lookup.requests(), 0);
        assert_eq!(lookup.closest_answered(20), []);
    }
}
