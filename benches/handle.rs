//! Slab insert, lookup and remove at 100k entries, and the wire index permutation.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_main};
use weft::handle::{Handle, Hashcode, IndexCipher, Slab};

const ENTRIES: usize = 100_000;

/// A slab of `ENTRIES` 64-byte objects, with their hashcodes.
fn filled() -> (Slab<[u64; 8]>, Vec<Hashcode>) {
    let mut slab = Slab::with_capacity(ENTRIES, ENTRIES).expect("limit in range");
    let codes = (0..ENTRIES as u64)
        .map(|i| slab.insert([i; 8]).expect("below the limit").1)
        .collect();
    (slab, codes)
}

/// The same hashcodes in a scattered order, so lookups do not simply stream through memory.
fn scattered(codes: &[Hashcode]) -> Vec<Hashcode> {
    let mut order: Vec<Hashcode> = codes.to_vec();
    // A fixed multiplicative shuffle: deterministic, and no RNG needed.
    order.sort_by_key(|c| c.0.wrapping_mul(0x9e37_79b9));
    order
}

fn slab(c: &mut Criterion) {
    let mut group = c.benchmark_group("slab_100k");
    group.throughput(Throughput::Elements(ENTRIES as u64));

    group.bench_function("insert", |b| {
        b.iter_batched_ref(
            || Slab::<[u64; 8]>::with_capacity(ENTRIES, ENTRIES).expect("limit in range"),
            |slab| {
                for i in 0..ENTRIES as u64 {
                    black_box(slab.insert([i; 8]).expect("below the limit"));
                }
            },
            BatchSize::LargeInput,
        );
    });

    let (full, codes) = filled();
    let order = scattered(&codes);

    group.bench_function("get_by_code", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for &code in &order {
                sum = sum.wrapping_add(full.get_by_code(code).map_or(0, |v| v[0]));
            }
            black_box(sum)
        });
    });

    group.bench_function("get_by_handle", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for code in &order {
                let handle = Handle(code.0 & ((1 << full.index_bits()) - 1));
                sum = sum.wrapping_add(full.get(handle).map_or(0, |v| v[0]));
            }
            black_box(sum)
        });
    });

    group.bench_function("remove_by_code", |b| {
        b.iter_batched_ref(
            filled,
            |(slab, _)| {
                for &code in &order {
                    black_box(slab.remove_by_code(code).expect("live"));
                }
            },
            BatchSize::LargeInput,
        );
    });

    // Steady state of a busy shard: take out the object in a scattered slot and refill the
    // lowest hole, which is that same slot.
    group.bench_function("remove_insert_churn", |b| {
        let (mut slab, _) = filled();
        b.iter(|| {
            for code in &order {
                let handle = Handle(code.0 & ((1 << slab.index_bits()) - 1));
                let value = slab.remove(handle).expect("live");
                black_box(slab.insert(value).expect("a hole"));
            }
        });
    });

    group.finish();
}

fn cipher(c: &mut Criterion) {
    let cipher = IndexCipher::new(&[7; 32]);
    let mut group = c.benchmark_group("index_cipher");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encrypt", |b| {
        let mut x = 0u32;
        b.iter(|| {
            x = x.wrapping_add(1);
            black_box(cipher.encrypt(black_box(x)))
        });
    });
    group.bench_function("decrypt", |b| {
        let mut x = 0u32;
        b.iter(|| {
            x = x.wrapping_add(1);
            black_box(cipher.decrypt(black_box(x)))
        });
    });
    group.finish();
}

// criterion_group! makes a public function that a macro call cannot document; a private
// module keeps it off the crate root, where missing_docs would ask for one.
mod group {
    criterion::criterion_group!(benches, super::slab, super::cipher);
}

criterion_main!(group::benches);
