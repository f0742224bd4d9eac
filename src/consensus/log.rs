//! The decided log (PROTOCOL.md §11, idempotent): one batch per height, and the map
//! (public key, salt) → id that makes a repeated request get the same id. A height's ids become
//! final one height later, when the next decided batch carries its canonical commit
//! certificate. In memory for now; durability (redb) is a later step (docs/CONSENSUS.md).

use super::ids::{NodeId, NodeIdRequest, derive_node_id};
use super::schema::{BatchId, Vote};
use super::signed::Signed;
use std::collections::BTreeMap;

/// One decided height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// The height.
    pub height: u64,
    /// The batch decided.
    pub batch: BatchId,
    /// The requests it ordered (first time each (key, salt) was ordered).
    pub requests: Vec<NodeIdRequest>,
    /// Their ids, once the next height decided; same order as `requests`.
    pub ids: Option<Vec<NodeId>>,
}

/// Where a (key, salt) stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The height that ordered it.
    pub height: u64,
    /// Its id, once final.
    pub id: Option<NodeId>,
}

/// The log of one member.
#[derive(Clone, Debug, Default)]
pub struct Log {
    heights: Vec<Decided>,
    index: BTreeMap<([u8; 32], u32), (usize, usize)>,
}

/// R: BLAKE3 of the canonical commit certificate (the precommits, sorted by voter, as the next
/// decided batch carries them).
pub fn commit_digest(commit: &[Signed<Vote>]) -> [u8; 32] {
    let bytes = rmp_serde::to_vec(commit).unwrap_or_default();
    *blake3::Hasher::new_derive_key("weft v1 commit certificate")
        .update(&bytes)
        .finalize()
        .as_bytes()
}

impl Log {
    /// The next height to decide (heights start at 1).
    pub fn next_height(&self) -> u64 {
        (self.heights.len() as u64).saturating_add(1)
    }

    /// Every decided height, in order.
    pub fn heights(&self) -> &[Decided] {
        &self.heights
    }

    /// The decided height `height`.
    pub fn get(&self, height: u64) -> Option<&Decided> {
        let index = usize::try_from(height.checked_sub(1)?).ok()?;
        self.heights.get(index)
    }

    /// Where `(key, salt)` stands, if ordered.
    pub fn lookup(&self, key: &[u8; 32], salt: u32) -> Option<Logged> {
        let &(at, position) = self.index.get(&(*key, salt))?;
        let decided = self.heights.get(at)?;
        Some(Logged {
            height: decided.height,
            id: decided
                .ids
                .as_ref()
                .and_then(|ids| ids.get(position).copied()),
        })
    }

    /// Appends the next height's decision; requests whose (key, salt) is already ordered are
    /// skipped (validation refuses such batches, so this is a backstop).
    pub fn append(&mut self, batch: BatchId, requests: &[NodeIdRequest]) {
        let at = self.heights.len();
        let mut kept = Vec::with_capacity(requests.len());
        for request in requests {
            let key = request.idempotence_key();
            if self.index.contains_key(&key) {
                continue;
            }
            self.index.insert(key, (at, kept.len()));
            kept.push(request.clone());
        }
        self.heights.push(Decided {
            height: self.next_height(),
            batch,
            requests: kept,
            ids: None,
        });
    }

    /// Makes the ids of `height` final from the commit certificate the next decided batch
    /// carries; returns the requests and their ids.
    pub fn finalize(
        &mut self,
        height: u64,
        commit: &[Signed<Vote>],
    ) -> Vec<(NodeIdRequest, NodeId)> {
        let r = commit_digest(commit);
        let Some(index) = height.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
            return Vec::new();
        };
        let Some(decided) = self.heights.get_mut(index) else {
            return Vec::new();
        };
        if decided.ids.is_some() {
            return Vec::new();
        }
        let ids: Vec<NodeId> = decided
            .requests
            .iter()
            .map(|request| derive_node_id(&r, &request.key, request.salt))
            .collect();
        decided.ids = Some(ids.clone());
        decided.requests.iter().cloned().zip(ids).collect()
    }
}
