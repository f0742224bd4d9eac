//! What the overlay service tells: the application's answers as lookups finish, the
//! counters it copies into the host's table, and its status.

use super::{OverlayService, Waiting};
use crate::overlay::api::{DhtStatus, GetOutcome, PutOutcome};
use crate::overlay::kademlia::Event;
use crate::overlay::rpc::Value;
use crate::service::host::Context;
use crate::stats::catalog::{OVERLAY_LOOKUP_DEPTH, OVERLAY_LOOKUP_DURATION};
use crate::stats::{HistogramSlots, StatKind};
use crate::wire::CloseReason;
use std::time::{Duration, Instant};

impl OverlayService {
    fn histograms(&mut self, cx: &mut Context<'_>) -> (HistogramSlots, HistogramSlots) {
        self.histograms
            .get_or_insert_with(|| {
                let stats = cx.stats();
                (
                    stats.register_histogram(&OVERLAY_LOOKUP_DEPTH),
                    stats.register_histogram(&OVERLAY_LOOKUP_DURATION),
                )
            })
            .clone()
    }

    fn observe(&mut self, depth: u32, elapsed: Duration, cx: &mut Context<'_>) {
        let (depth_slots, duration_slots) = self.histograms(cx);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        cx.stats().observe(&depth_slots, u64::from(depth));
        cx.stats().observe(&duration_slots, micros);
    }

    pub(super) fn on_event(&mut self, now: Instant, event: Event, cx: &mut Context<'_>) {
        match event {
            Event::Lookup { token, result } => {
                if let Some(Waiting::Get(reply)) = self.requests.remove(&token) {
                    self.observe(result.depth, result.elapsed, cx);
                    let value = result.found.and_then(|found| match found.value {
                        Value::Bin(bytes) => Some(bytes),
                        Value::Str(text) => Some(text.into_bytes()),
                        _ => None,
                    });
                    let _ = reply.send(GetOutcome {
                        value,
                        depth: result.depth,
                        elapsed: result.elapsed,
                    });
                }
            }
            Event::Put {
                token,
                stored,
                depth,
                elapsed,
            } => {
                if let Some(Waiting::Put(reply)) = self.requests.remove(&token) {
                    self.observe(depth, elapsed, cx);
                    let _ = reply.send(PutOutcome {
                        stored,
                        depth,
                        elapsed,
                    });
                }
            }
            // Our announcements' answers: a NACK means the peer did not take our id, which it
            // counts; nothing to do here.
            Event::Reply { .. } | Event::TimedOut { .. } => {}
            Event::Disconnect { peer } => self.forget(peer, Some(CloseReason::Refused), cx),
            Event::Connect { contact } => self.connect(now, contact, cx),
        }
    }

    /// Copies the DHT's counters into the host's table, with this service's gauges.
    pub(super) fn sync_stats(&mut self, cx: &mut Context<'_>) {
        let stats = cx.stats();
        for entry in self.dht.stats().iter() {
            match entry.kind {
                StatKind::Counter => stats.set_counter(entry.name, entry.label, entry.value),
                StatKind::Gauge => stats.set(entry.name, entry.label, entry.value),
            }
        }
        let table = self.dht.table();
        let buckets = table.fill().iter().filter(|&&n| n > 0).count();
        stats.set("weft_overlay_contacts", None, table.len() as u64);
        stats.set("weft_overlay_buckets", None, buckets as u64);
        stats.set(
            "weft_overlay_records",
            None,
            self.dht.records().len() as u64,
        );
        stats.set("weft_overlay_channels", None, self.channels.len() as u64);
        if let Some(on_disk) = self.records_on_disk() {
            stats.set("weft_overlay_store_records", None, on_disk);
        }
    }

    pub(super) fn status(&self) -> DhtStatus {
        let table = self.dht.table();
        DhtStatus {
            node_id: self.dht.own().id,
            provisional: self.provisional,
            client: self.client() || self.dht.is_client(),
            k: self.dht.config().k,
            buckets: table
                .fill()
                .into_iter()
                .enumerate()
                .filter(|&(_, n)| n > 0)
                .collect(),
            contacts: table.len(),
            records: self.dht.records().len(),
            channels: self.channels.len(),
        }
    }
}
