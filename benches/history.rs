//! Micro-benchmarks of the history store: what one publication's append costs under the
//! stream's lock (a ring turning over, many rings in turn, a full budget that makes each
//! append evict), and what a recovery's read of 100 publications costs.
//!
//! Run: `cargo bench --bench history -- --warm-up-time 1 --measurement-time 3`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use herald::broker::history::{History, HistoryLimits, Ring};
use herald::broker::offset::{Epoch, Offset};
use std::time::Instant;

fn payload() -> Bytes {
    Bytes::from_static(
        br#"{"event":"App\\Events\\OrderShipped","data":{"id":1,"socket":null},"socket":null}"#,
    )
}

/// Push the next publication of `ring`.
fn push(ring: &mut Ring<Bytes>, value: Bytes, now: Instant) {
    let mut next = ring.latest();
    next.seq += 1;
    ring.push(next, value, now);
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("history_push");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();
    let p = payload();

    let history = History::new(HistoryLimits::default());
    let mut ring = history.ring(Epoch(1));
    group.bench_function("one_ring_turning_over", |b| {
        b.iter(|| push(&mut ring, black_box(p.clone()), now))
    });

    // 100 entries each: 1000 full rings fit in the default budget.
    let hundred = History::new(HistoryLimits {
        size: 100,
        ..HistoryLimits::default()
    });
    let mut rings: Vec<Ring<Bytes>> = (0..1000).map(|i| hundred.ring(Epoch(i))).collect();
    let mut i = 0;
    group.bench_function("1000_rings_in_turn", |b| {
        b.iter(|| {
            i = (i + 1) % rings.len();
            push(&mut rings[i], black_box(p.clone()), now)
        })
    });

    let small = History::new(HistoryLimits {
        memory: 64 * 1024,
        ..HistoryLimits::default()
    });
    let mut full = small.ring(Epoch(1));
    group.bench_function("full_budget_evicting", |b| {
        b.iter(|| push(&mut full, black_box(p.clone()), now))
    });
    group.finish();
    assert_eq!(hundred.evicted(), 0, "the 1000 rings fit");
    assert!(small.evicted() > 0, "the budget was full");
}

fn read(c: &mut Criterion) {
    let history = History::new(HistoryLimits::default());
    let mut ring = history.ring(Epoch(1));
    let now = Instant::now();
    for _ in 0..1000 {
        push(&mut ring, payload(), now);
    }
    let after = Offset {
        epoch: Epoch(1),
        seq: ring.latest().seq - 100,
    };
    let mut group = c.benchmark_group("history_since");
    group.throughput(Throughput::Elements(100));
    group.bench_function("100_of_1000_cloned", |b| {
        b.iter(|| {
            let got: Vec<Bytes> = ring
                .since(black_box(after), now)
                .unwrap()
                .map(|(_, v)| v.clone())
                .collect();
            got
        })
    });
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
