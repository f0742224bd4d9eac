//! Benchmarks of the session layer (filled in below).

fn main() {}
