//! What makes a proposed batch valid (PROTOCOL.md §11): every request seen first-hand by f+1
//! members from one source, none ordered before, none twice, and the previous height's commit
//! certificate in canonical form. A member prevotes nil on a batch that fails.

use super::config::MemberConfig;
use super::ids::MemberKey;
use super::log::Log;
use super::schema::{Batch, BatchId, Entry, MAX_BATCH, Vote, VoteKind};
use super::signed::Signed;
use super::{faults, quorum};
use std::collections::BTreeSet;

/// True when `batch` may be decided at `height` on top of `log`.
pub fn batch(config: &MemberConfig, log: &Log, batch: &Batch, height: u64) -> bool {
    if batch.height != height || batch.entries.len() > MAX_BATCH {
        return false;
    }
    let mut keys = BTreeSet::new();
    for entry in &batch.entries {
        let (key, salt) = entry.request.idempotence_key();
        if !keys.insert((key, salt)) || log.lookup(&key, salt).is_some() || !sighted(config, entry)
        {
            return false;
        }
    }
    match height.checked_sub(1) {
        None | Some(0) => batch.last_commit.is_empty(),
        Some(previous) => {
            let Some(decided) = log.get(previous) else {
                return false;
            };
            let round = batch.last_commit.first().map_or(0, |vote| vote.body.round);
            commit(config, &batch.last_commit, previous, round, &decided.batch)
        }
    }
}

/// True when `entry` carries sightings from at least f+1 distinct members, all naming its
/// request and one source, all correctly signed.
fn sighted(config: &MemberConfig, entry: &Entry) -> bool {
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
            || !is_member(config, &body.member)
            || !members.insert(body.member)
            || !sighting.verify(&config.network)
        {
            return false;
        }
    }
    members.len() >= needed
}

fn is_member(config: &MemberConfig, key: &MemberKey) -> bool {
    config.members.binary_search(key).is_ok()
}

/// True when `commit` is a canonical commit certificate for `id` at `height` and `round`: a
/// quorum of correctly signed precommits for it from distinct members, sorted by member.
pub fn commit(
    config: &MemberConfig,
    commit: &[Signed<Vote>],
    height: u64,
    round: u32,
    id: &BatchId,
) -> bool {
    let mut last: Option<MemberKey> = None;
    for vote in commit {
        let body = &vote.body;
        if body.height != height
            || body.round != round
            || body.kind != VoteKind::Precommit
            || body.value != Some(*id)
            || !is_member(config, &body.voter)
            || last.is_some_and(|last| last >= body.voter)
            || !vote.verify(&config.network)
        {
            return false;
        }
        last = Some(body.voter);
    }
    commit.len() >= quorum(config.members.len())
}
