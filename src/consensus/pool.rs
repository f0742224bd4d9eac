//! Requests waiting for a proposal, with the sightings members shared of them (PROTOCOL.md
//! §11): a request may enter a proposal once f+1 distinct members saw it from one source.
//! Every bound here is the node's: a member holds at most one pending request per source and
//! at most [`MAX_PENDING`] in all, and keeps at most one sighting per member per request.
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
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// The most requests waiting at once.
pub const MAX_PENDING: usize = 4096;

/// One pending request and who saw it from where.
#[derive(Clone, Debug)]
struct Pending {
    request: NodeIdRequest,
    /// Sightings by (source, member): members may disagree on the source.
    sightings: BTreeMap<(SocketAddr, MemberKey), Held>,
}

/// A sighting and whether its signature was checked (or it is this member's own).
#[derive(Clone, Debug)]
struct Held {
    sighting: Signed<Sighting>,
    verified: bool,
}

/// The pending requests.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    pending: BTreeMap<RequestDigest, Pending>,
    /// The source addresses this member saw itself, each with its one pending request.
    by_source: BTreeMap<IpAddr, RequestDigest>,
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

    /// True when this member already holds a different pending request from `source`.
    pub fn source_busy(&self, source: IpAddr, digest: &RequestDigest) -> bool {
        self.by_source
            .get(&source)
            .is_some_and(|held| held != digest && self.pending.contains_key(held))
    }

    /// Records this member's own sighting of `request` from `source`.
    pub fn note_own(&mut self, request: &NodeIdRequest, sighting: Signed<Sighting>) -> bool {
        self.by_source
            .insert(sighting.body.source.ip(), sighting.body.digest);
        self.add(request, sighting, true)
    }

    /// Adds a sighting, `verified` when its signature was checked (or it is this member's
    /// own); false when the pool is full. The first sighting per (source, member) stays.
    pub fn add(
        &mut self,
        request: &NodeIdRequest,
        sighting: Signed<Sighting>,
        verified: bool,
    ) -> bool {
        let digest = sighting.body.digest;
        if !self.pending.contains_key(&digest) && self.pending.len() >= MAX_PENDING {
            return false;
        }
        let pending = self.pending.entry(digest).or_insert_with(|| Pending {
            request: request.clone(),
            sightings: BTreeMap::new(),
        });
        pending
            .sightings
            .entry((sighting.body.source, sighting.body.member))
            .or_insert(Held { sighting, verified });
        true
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

    /// Forgets a request once it is ordered.
    pub fn remove(&mut self, digest: &RequestDigest) {
        if let Some(pending) = self.pending.remove(digest) {
            for key in pending.sightings.keys() {
                if self.by_source.get(&key.0.ip()) == Some(digest) {
                    self.by_source.remove(&key.0.ip());
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
            self.pending.remove(digest);
        }
        let pending = &self.pending;
        self.by_source
            .retain(|_, digest| pending.contains_key(digest));
        gone
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
        assert!(pool.note_own(&request, sighting.clone()));
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
}
