//! Counters a healthy channel never moves, kept out of line (issue 12).

/// Counters that stay zero on a healthy channel (drops, duplicates, protocol errors): boxed on
/// the first that moves, so the many quiet channels hold a null pointer (issue 12).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Rare<T>(Option<Box<T>>);

impl<T: Copy + Default> Rare<T> {
    /// The counters, to change (made on first use).
    pub(crate) fn get(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }

    /// The counters' values (all zero before the first change).
    pub(crate) fn read(&self) -> T {
        self.0.as_deref().copied().unwrap_or_default()
    }
}
