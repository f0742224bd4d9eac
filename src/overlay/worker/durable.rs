//! The worker's side of persistence (issue 15.5): what the DHT journaled is committed once per
//! batch of inputs ([`Service::end_batch`]), so one fsync covers every STORE of the batch, and
//! the STORE ACKs the DHT held for it go out only after it.
//!
//! [`Service::end_batch`]: crate::service::host::Service::end_batch

use super::OverlayService;
use crate::service::host::Context;
use crate::stats::catalog::OVERLAY_STORE_COMMIT;
use std::time::Instant;

impl OverlayService {
    /// Commits the batch's changes, times the commit, then sends what waited for it. A failed
    /// commit NACKs the STOREs it held (the DHT counts them, `store_failed`) and is logged.
    pub(super) fn commit(&mut self, now: Instant, cx: &mut Context<'_>) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let started = Instant::now();
        match store.sync(&mut self.dht) {
            Ok(false) => return,
            Ok(true) => {}
            Err(error) => {
                tracing::warn!(%error, "overlay: cannot commit the DHT's changes");
                // The NACKs it caused are counted at once, not at the next periodic copy.
                self.last_sync = None;
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let slots = self
            .commit_slots
            .get_or_insert_with(|| cx.stats().register_histogram(&OVERLAY_STORE_COMMIT))
            .clone();
        cx.stats().observe(&slots, micros);
        self.flush(now, cx);
    }

    /// Records on disk, when a store is open.
    pub(super) fn records_on_disk(&self) -> Option<u64> {
        self.store.as_ref().and_then(|s| s.records())
    }
}
