//! Plain counters that the sans-IO core keeps and the engine publishes (PROTOCOL.md §12: shards
//! count in local integers and publish to `metrics` about once a second).
//!
//! A leaf below every layer: the sans-IO core counts into it, the engine merges it, the node
//! exports it. Clippy's `arithmetic_side_effects` is denied here as in the layers that use it.
#![deny(clippy::arithmetic_side_effects)]

pub mod catalog;

/// Whether a statistic only grows or can go both ways.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StatKind {
    /// A monotonic count, published as a Prometheus counter.
    Counter,
    /// A level, published as a Prometheus gauge.
    Gauge,
}

/// One published statistic: a metric name, at most one label, and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatEntry {
    /// Full Prometheus metric name, e.g. `weft_packets_received_total`.
    pub name: &'static str,
    /// Optional `(key, value)` label; values are fixed strings, never peer ids or addresses.
    pub label: Option<(&'static str, &'static str)>,
    /// Counter or gauge.
    pub kind: StatKind,
    /// Current value.
    pub value: u64,
}

/// A statistic's place in one [`Stats`] table, from [`Stats::register`]: counting through it is
/// an index, not a search by name (PROTOCOL.md §12: per-packet counters stay cheap). Use a slot
/// only with the table that gave it (or a clone of it); one past a table's end is ignored.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StatSlot(usize);

/// A small table of labelled statistics. Entries are created on first use and then updated in
/// place, so after warm-up counting allocates nothing. Per-packet counters register once and
/// count through their [`StatSlot`].
#[derive(Debug, Default)]
pub struct Stats {
    entries: Vec<StatEntry>,
}

impl Clone for Stats {
    fn clone(&self) -> Self {
        Stats {
            entries: self.entries.clone(),
        }
    }

    /// Copies into the existing table: a shard's snapshot once a second allocates nothing.
    fn clone_from(&mut self, source: &Self) {
        self.entries.clone_from(&source.entries);
    }
}

impl Stats {
    /// An empty table with room for the usual set of reasons.
    pub fn new() -> Stats {
        Stats {
            entries: Vec::with_capacity(64),
        }
    }

    fn entry(
        &mut self,
        name: &'static str,
        label: Option<(&'static str, &'static str)>,
        kind: StatKind,
    ) -> &mut StatEntry {
        // Names are `&'static str` constants: the same pointer finds the entry in one pass of
        // pointer comparisons (the shards count by name every turn); only a name spelt in
        // another constant falls back to comparing the text. Entries are unique by text, so
        // both passes find the same one.
        let position = self
            .entries
            .iter()
            .position(|e| std::ptr::eq(e.name, name) && e.label == label)
            .or_else(|| {
                self.entries
                    .iter()
                    .position(|e| e.name == name && e.label == label)
            });
        let index = match position {
            Some(index) => index,
            None => {
                self.entries.push(StatEntry {
                    name,
                    label,
                    kind,
                    value: 0,
                });
                self.entries.len().saturating_sub(1)
            }
        };
        &mut self.entries[index]
    }

    /// Adds `by` to a counter.
    pub fn add(
        &mut self,
        name: &'static str,
        label: Option<(&'static str, &'static str)>,
        by: u64,
    ) {
        let entry = self.entry(name, label, StatKind::Counter);
        entry.value = entry.value.saturating_add(by);
    }

    /// Sets a gauge.
    pub fn set(
        &mut self,
        name: &'static str,
        label: Option<(&'static str, &'static str)>,
        value: u64,
    ) {
        self.entry(name, label, StatKind::Gauge).value = value;
    }

    /// The slot of a statistic, created (at 0) if it is new.
    pub fn register(
        &mut self,
        name: &'static str,
        label: Option<(&'static str, &'static str)>,
        kind: StatKind,
    ) -> StatSlot {
        self.entry(name, label, kind);
        let index = self
            .entries
            .iter()
            .position(|e| e.name == name && e.label == label)
            .unwrap_or(0);
        StatSlot(index)
    }

    /// Adds `by` to the counter in `slot`.
    #[inline]
    pub fn add_at(&mut self, slot: StatSlot, by: u64) {
        if let Some(entry) = self.entries.get_mut(slot.0) {
            entry.value = entry.value.saturating_add(by);
        }
    }

    /// Sets the gauge in `slot`.
    #[inline]
    pub fn set_at(&mut self, slot: StatSlot, value: u64) {
        if let Some(entry) = self.entries.get_mut(slot.0) {
            entry.value = value;
        }
    }

    /// The value in `slot`; 0 for a slot of another table.
    #[inline]
    pub fn get_at(&self, slot: StatSlot) -> u64 {
        self.entries.get(slot.0).map_or(0, |e| e.value)
    }

    /// The current value of a statistic, 0 if it was never touched.
    pub fn get(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        self.entries
            .iter()
            .find(|e| e.name == name && e.label == label)
            .map_or(0, |e| e.value)
    }

    /// Every statistic touched so far.
    pub fn iter(&self) -> impl Iterator<Item = &StatEntry> {
        self.entries.iter()
    }

    /// Sets a counter to `value`: for counts another party keeps, such as the kernel's running
    /// count of datagrams a socket's receive queue dropped (SO_RXQ_OVFL).
    pub fn set_counter(
        &mut self,
        name: &'static str,
        label: Option<(&'static str, &'static str)>,
        value: u64,
    ) {
        self.entry(name, label, StatKind::Counter).value = value;
    }

    /// Registers every bucket and the sum of `histogram` (at 0, so they are exported before
    /// the first observation) and returns the slots [`Stats::observe`] counts through.
    pub fn register_histogram(&mut self, histogram: &catalog::Histogram) -> HistogramSlots {
        HistogramSlots {
            buckets: histogram
                .bounds
                .iter()
                .map(|&(bound, le)| {
                    let slot = self.register(histogram.bucket, Some(("le", le)), StatKind::Counter);
                    (bound, slot)
                })
                .collect(),
            sum: self.register(histogram.sum, None, StatKind::Counter),
        }
    }

    /// Counts one observation of `value` (in the histogram's source unit) into the first bucket
    /// whose bound holds it; the exporter makes the buckets cumulative. No allocation: a few
    /// comparisons and two additions, cheap enough per packet.
    #[inline]
    pub fn observe(&mut self, histogram: &HistogramSlots, value: u64) {
        if let Some(&(_, slot)) = histogram.buckets.iter().find(|&&(bound, _)| value <= bound) {
            self.add_at(slot, 1);
        }
        self.add_at(histogram.sum, value);
    }
}

impl Stats {
    /// Adds `counts` (one per bucket, in the histogram's order; extra ones are ignored) and
    /// `sum` to a histogram: for observations another layer counted into a fixed array.
    pub fn add_to_histogram(&mut self, histogram: &HistogramSlots, counts: &[u64], sum: u64) {
        for (&(_, slot), &count) in histogram.buckets.iter().zip(counts) {
            if count > 0 {
                self.add_at(slot, count);
            }
        }
        self.add_at(histogram.sum, sum);
    }
}

/// The slots of one histogram in a [`Stats`] table, from [`Stats::register_histogram`]: one
/// counter per bucket (not cumulative) and the sum of the observed values.
#[derive(Clone, Debug)]
pub struct HistogramSlots {
    buckets: Vec<(u64, StatSlot)>,
    sum: StatSlot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_accumulate_per_label() {
        let mut stats = Stats::new();
        stats.add("weft_drops_total", Some(("reason", "a")), 2);
        stats.add("weft_drops_total", Some(("reason", "b")), 1);
        stats.add("weft_drops_total", Some(("reason", "a")), 3);
        assert_eq!(stats.get("weft_drops_total", Some(("reason", "a"))), 5);
        assert_eq!(stats.get("weft_drops_total", Some(("reason", "b"))), 1);
        assert_eq!(stats.get("weft_drops_total", None), 0);
        assert_eq!(stats.iter().count(), 2);
    }

    #[test]
    fn a_slot_counts_into_its_named_entry() {
        let mut stats = Stats::new();
        stats.add("weft_a_total", None, 1);
        let slot = stats.register("weft_b_total", Some(("k", "v")), StatKind::Counter);
        assert_eq!(
            stats.register("weft_a_total", None, StatKind::Counter),
            StatSlot(0)
        );
        stats.add_at(slot, 4);
        stats.add("weft_b_total", Some(("k", "v")), 1);
        assert_eq!(stats.get("weft_b_total", Some(("k", "v"))), 5);
        assert_eq!(stats.get_at(slot), 5);
        let gauge = stats.register("weft_g", None, StatKind::Gauge);
        stats.set_at(gauge, 9);
        assert_eq!(stats.get("weft_g", None), 9);
        let kinds: Vec<_> = stats.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [StatKind::Counter, StatKind::Counter, StatKind::Gauge]
        );
        // A slot past a table's end is ignored.
        let mut other = Stats::new();
        other.add_at(slot, 1);
        assert_eq!(other.get_at(slot), 0);
        assert_eq!(other.iter().count(), 0);
    }
}
