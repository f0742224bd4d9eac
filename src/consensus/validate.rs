//! What makes a proposed batch valid (PROTOCOL.md §11): every request seen first-hand by f+1
//! members from one source, none ordered before, none twice, and the previous height's commit
//! certificate in canonical form. A member prevotes nil on a batch that fails.

use super::config::MemberConfig;
use super::ids::{MemberKey, NetworkId};
use super::log::Log;
use super::membership::Membership;
use super::policy::Counters;
use super::schema::{Batch, BatchId, Entry, MAX_BATCH, MAX_CHANGES, Sighting, Vote, VoteKind};
use super::signed::Signed;
use super::{faults, quorum};
use std::collections::BTreeSet;

/// How far ahead of this member's clock a batch's time may be: a proposer can end a policy
/// window this much early, no more.
pub const MAX_CLOCK_AHEAD_SECS: u64 = 30;

/// What a batch is checked against: the member's configuration (its current list), the log,
/// the policy counters and membership, and the clock.
pub struct Context<'a> {
    /// The configuration; `members` is the list deciding this height.
    pub config: &'a MemberConfig,
    /// The decided log.
    pub log: &'a Log,
    /// The policy counters of the decided log.
    pub counters: &'a Counters,
    /// Membership: who decided the previous height, and how this member judges changes.
    pub membership: &'a Membership,
    /// The previous decided batch's time.
    pub last_time: u64,
    /// This member's clock, Unix seconds.
    pub now: u64,
}

/// True when `batch` may be decided at `height` on top of the log (PROTOCOL.md §11): valid
/// requests, none over a quota, a sane time, changes this member votes for, and the previous
/// height's commit certificate.
pub fn batch(cx: &Context<'_>, batch: &Batch, height: u64) -> bool {
    batch_verified(cx, batch, height, &())
}

/// Signatures a member checked already: a sighting or vote it holds byte for byte (the pool's
/// sightings, the commit it decided with) need not be verified a second time when a proposal
/// carries it. Everything else is checked as before.
pub trait Verified {
    /// True when this exact signed sighting was verified before.
    fn sighting(&self, sighting: &Signed<Sighting>) -> bool {
        let _ = sighting;
        false
    }

    /// True when this exact signed vote was verified before.
    fn vote(&self, vote: &Signed<Vote>) -> bool {
        let _ = vote;
        false
    }

    /// Told of each signature that failed its check (a member counts it as a refusal).
    fn failed(&self) {}
}

/// A sighting's signature: vouched for, or checked here (a failure is reported).
fn sighting_ok(network: &NetworkId, sighting: &Signed<Sighting>, verified: &impl Verified) -> bool {
    if verified.sighting(sighting) || sighting.verify(network) {
        return true;
    }
    verified.failed();
    false
}

/// Nothing verified before: every signature is checked.
impl Verified for () {}

/// [`batch`], skipping the signature checks `verified` vouches for (every other check stays).
pub fn batch_verified(
    cx: &Context<'_>,
    batch: &Batch,
    height: u64,
    verified: &impl Verified,
) -> bool {
    let config = cx.config;
    if batch.height != height
        || batch.entries.len() > MAX_BATCH
        || batch.changes.len() > MAX_CHANGES
        || batch.time < cx.last_time
        || batch.time > cx.now.saturating_add(MAX_CLOCK_AHEAD_SECS)
        || !batch.changes.iter().all(|c| cx.membership.judge(c))
    {
        return false;
    }
    let mut keys = BTreeSet::new();
    // PROTOCOL.md §11: members prevote nil on a proposal that would exceed a quota.
    let mut tally = cx.counters.tally(batch.time);
    for entry in &batch.entries {
        let (key, salt) = entry.request.idempotence_key();
        if !keys.insert((key, salt))
            || cx.log.lookup(&key, salt).is_some()
            || !sighted(config, entry, verified)
            || entry
                .sightings
                .first()
                .is_none_or(|s| tally.admit(s.body.source.ip()).is_err())
        {
            return false;
        }
    }
    match height.checked_sub(1) {
        None | Some(0) => batch.last_commit.is_empty(),
        Some(previous) => {
            let Some(decided) = cx.log.get(previous) else {
                return false;
            };
            let round = batch.last_commit.first().map_or(0, |vote| vote.body.round);
            commit_verified(
                &config.network,
                cx.membership.previous(),
                &batch.last_commit,
                (previous, round, &decided.batch),
                verified,
            )
        }
    }
}

/// True when `entry` carries sightings from at least f+1 distinct members, all naming its
/// request and one source, all correctly signed.
fn sighted(config: &MemberConfig, entry: &Entry, verified: &impl Verified) -> bool {
    let needed = faults(config.members.len()).saturating_add(1);
    let digest = entry.request.digest();
    let Some(source) = entry.sightings.first().map(|s| s.body.source) else {
        return false;
    };
    let mut members = BTreeSet::new();
    for sighting in &entry.sightings {
        let body = &sighting.body;
        if body.digest != digest
            || body.source != source
            || config.members.binary_search(&body.member).is_err()
            || !members.insert(body.member)
            || !sighting_ok(&config.network, sighting, verified)
        {
            return false;
        }
    }
    members.len() >= needed
}

/// True when `commit` is a canonical commit certificate for `id` at `height` and `round`: a
/// quorum of `members` (the list that decided `height`), correctly signed precommits for it from
/// distinct members, sorted by member.
pub fn commit(
    network: &NetworkId,
    members: &[MemberKey],
    commit: &[Signed<Vote>],
    height: u64,
    round: u32,
    id: &BatchId,
) -> bool {
    commit_verified(network, members, commit, (height, round, id), &())
}

/// [`commit`] for `(height, round, id)`, skipping the signature checks `verified` vouches for.
fn commit_verified(
    network: &NetworkId,
    members: &[MemberKey],
    commit: &[Signed<Vote>],
    (height, round, id): (u64, u32, &BatchId),
    verified: &impl Verified,
) -> bool {
    let mut last: Option<MemberKey> = None;
    for vote in commit {
        let body = &vote.body;
        if body.height != height
            || body.round != round
            || body.kind != VoteKind::Precommit
            || body.value != Some(*id)
            || members.binary_search(&body.voter).is_err()
            || last.is_some_and(|last| last >= body.voter)
        {
            return false;
        }
        if !(verified.vote(vote) || vote.verify(network)) {
            verified.failed();
            return false;
        }
        last = Some(body.voter);
    }
    commit.len() >= quorum(members.len())
}
