//! The overlay's histograms (PROTOCOL.md §10): its lookups and its store's commits.

use super::Histogram;

/// Overlay lookups (gets and puts the application asked for): their depth, the longest chain
/// of dependent requests (PROTOCOL.md §10; ⌈log2 n⌉ bounds it in a network of n nodes).
pub const OVERLAY_LOOKUP_DEPTH: Histogram = Histogram {
    bucket: "weft_overlay_lookup_depth_bucket",
    label: "le",
    bounds: &[
        (1, "1"),
        (2, "2"),
        (3, "3"),
        (4, "4"),
        (6, "6"),
        (8, "8"),
        (12, "12"),
        (16, "16"),
        (u64::MAX, "+Inf"),
    ],
    le: None,
    sum: "weft_overlay_lookup_depth_sum",
    sum_divisor: 1.0,
};

/// Overlay lookups from the application's command to the answer, microseconds kept, seconds
/// exported: one loopback round trip to a lookup that waits out timeouts (10 s each at most).
pub const OVERLAY_LOOKUP_DURATION: Histogram = Histogram {
    bucket: "weft_overlay_lookup_duration_seconds_bucket",
    label: "le",
    bounds: &[
        (1_000, "0.001"),
        (5_000, "0.005"),
        (10_000, "0.01"),
        (25_000, "0.025"),
        (50_000, "0.05"),
        (100_000, "0.1"),
        (250_000, "0.25"),
        (500_000, "0.5"),
        (1_000_000, "1"),
        (2_500_000, "2.5"),
        (5_000_000, "5"),
        (10_000_000, "10"),
        (30_000_000, "30"),
        (u64::MAX, "+Inf"),
    ],
    le: None,
    sum: "weft_overlay_lookup_duration_seconds_sum",
    sum_divisor: 1e6,
};

/// Commits of the overlay's store (one write transaction and fsync per batch of inputs that
/// changed what survives a restart), microseconds kept, seconds exported: from a page-cache
/// fsync on tmpfs to a slow disk's.
pub const OVERLAY_STORE_COMMIT: Histogram = Histogram {
    bucket: "weft_overlay_store_commit_seconds_bucket",
    label: "le",
    bounds: &[
        (100, "0.0001"),
        (500, "0.0005"),
        (1_000, "0.001"),
        (2_500, "0.0025"),
        (5_000, "0.005"),
        (10_000, "0.01"),
        (25_000, "0.025"),
        (50_000, "0.05"),
        (100_000, "0.1"),
        (250_000, "0.25"),
        (1_000_000, "1"),
        (u64::MAX, "+Inf"),
    ],
    le: None,
    sum: "weft_overlay_store_commit_seconds_sum",
    sum_divisor: 1e6,
};
