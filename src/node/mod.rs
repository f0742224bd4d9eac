//! A runnable node: configuration, the data directory, metrics.
