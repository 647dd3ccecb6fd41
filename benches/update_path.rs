//! The status-update path without HTTP: parsing, checking and applying Fusion's example
//! body (`tests/fixtures/seed-status-update.json`) to a registry, and reading runs back.
//!
//! Run with `cargo bench --bench update_path` (add `-- --quick` for a short run). Like
//! the service, it allocates with mimalloc.
//!
//! The code measured is the crate's internals, which a bench (a crate of its own) cannot
//! reach; `job_launcher_mock::bench`, a hidden module of the library, hands it out for
//! this file alone, so the figures are those of the very code the service runs, not of
//! the router around it.
//!
//! - `parse/seed`: `StatusUpdate::parse` of the example body alone; `parse/running`, of
//!   the `running` update that `long_history` applies (the same fields, re-serialized).
//! - `apply_new_run/parse_and_apply`, `apply_new_run/apply_only`: the body with a fresh
//!   `jobId` each time, so every update creates a run. The registry is recreated every
//!   10,000 runs, outside the timing, so it never evicts (as a fresh service does until
//!   `--max-runs`); `apply_only` parses outside the timing too.
//! - `long_history/parse_and_apply`: one run that already holds 1,000 history entries
//!   (`max_history` 1,000, so it stays full and each update drops the oldest), fed two
//!   alternating `running` updates that differ in one field, so none is a repeat.
//! - `read/run_view_json`: `registry.run(id)` serialized with serde_json, among 10,000 runs.
//! - `read/statuses_10k`, `read/statuses_10k_json`: Fusion's list of 10,000 runs, and the
//!   same serialized as `GET /job-launcher/launcher/status` does.

// A benchmark may panic on what it did not expect: that is how it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use job_launcher_mock::bench::{Registry, parse as parse_body};

// The service's allocator (src/main.rs), so that allocation costs are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: &str = include_str!("../tests/fixtures/seed-status-update.json");
const SEED_ID: &str = "\"jobId\": \"hhzitrwancwv\"";
/// Runs created per registry in the new-run benchmarks, and runs held by the read ones.
const RUNS: usize = 10_000;
const HISTORY: usize = 1000;

fn registry(max_runs: usize, max_history: usize) -> Registry {
    Registry::new(max_runs, max_history)
}

/// The example body with `jobId` set to `job_id`, otherwise byte for byte the same.
fn seed_with_id(job_id: &str) -> Vec<u8> {
    assert!(SEED.contains(SEED_ID), "the fixture's jobId moved");
    SEED.replacen(SEED_ID, &format!("\"jobId\": \"{job_id}\""), 1)
        .into_bytes()
}

/// Parses and applies `body`, which must be accepted; returns whether it was a repeat.
fn apply(registry: &Registry, body: &[u8]) -> bool {
    registry.apply(parse_body(body).unwrap()).unwrap()
}

/// A registry holding `n` distinct seed runs.
fn filled(n: usize) -> Registry {
    let registry = registry(n, HISTORY);
    for i in 0..n {
        apply(&registry, &seed_with_id(&format!("run{i:08}")));
    }
    registry
}

/// A `running` update of the example run (no `endTime`/`duration`, which only an ended
/// state may carry) whose `result.aggregated` is `aggregated`.
fn running_update(job_id: &str, aggregated: u64) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_str(SEED).unwrap();
    let object = body.as_object_mut().unwrap();
    object.insert("jobId".into(), job_id.into());
    object.insert("state".into(), "running".into());
    object.remove("endTime");
    object.remove("duration");
    let result = object["result"].as_object_mut().unwrap();
    result.insert("state".into(), "running".into());
    result.insert("aggregated".into(), aggregated.into());
    serde_json::to_vec_pretty(&body).unwrap()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(SEED.len() as u64));
    group.bench_function("seed", |b| {
        b.iter(|| parse_body(black_box(SEED.as_bytes())).unwrap())
    });
    let running = running_update("longhistory", 1);
    group.throughput(Throughput::Bytes(running.len() as u64));
    group.bench_function("running", |b| {
        b.iter(|| parse_body(black_box(&running)).unwrap())
    });
    group.finish();
}

/// Times `iters` new-run updates, `RUNS` to a fresh registry at a time; what is outside
/// `timed` (making bodies, the registry, dropping it) is not counted.
fn new_runs(iters: u64, parse_timed: bool) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    let mut next_id = 0u64;
    while left > 0 {
        let chunk = left.min(RUNS as u64);
        left -= chunk;
        let registry = registry(RUNS, HISTORY);
        let bodies: Vec<Vec<u8>> = (0..chunk)
            .map(|_| {
                next_id += 1;
                seed_with_id(&format!("new{next_id:09}"))
            })
            .collect();
        if parse_timed {
            let start = Instant::now();
            for body in &bodies {
                black_box(apply(&registry, body));
            }
            total += start.elapsed();
        } else {
            let parsed: Vec<_> = bodies
                .iter()
                .map(|body| parse_body(body).unwrap())
                .collect();
            let start = Instant::now();
            for update in parsed {
                black_box(registry.apply(update).unwrap());
            }
            total += start.elapsed();
        }
        drop(registry);
    }
    total
}

fn apply_new_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_new_run");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_and_apply", |b| {
        b.iter_custom(|iters| new_runs(iters, true))
    });
    group.bench_function("apply_only", |b| {
        b.iter_custom(|iters| new_runs(iters, false))
    });
    group.finish();
}

fn long_history(c: &mut Criterion) {
    let job_id = "longhistory";
    let registry = registry(RUNS, HISTORY);
    let bodies = [running_update(job_id, 1), running_update(job_id, 2)];
    let mut turn = 0usize;
    for _ in 0..HISTORY + 1 {
        assert!(!apply(&registry, &bodies[turn % 2]), "a repeat");
        turn += 1;
    }
    assert_eq!(registry.history_len(job_id), Some((HISTORY, 1)));

    let mut group = c.benchmark_group("long_history");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_and_apply", |b| {
        b.iter(|| {
            let repeat = apply(&registry, &bodies[turn % 2]);
            turn += 1;
            debug_assert!(!repeat);
            repeat
        })
    });
    group.bench_function("apply_only", |b| {
        b.iter_batched(
            || {
                turn += 1;
                parse_body(&bodies[turn % 2]).unwrap()
            },
            |update| registry.apply(update).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    assert_eq!(
        registry.history_len(job_id).map(|(len, _)| len),
        Some(HISTORY)
    );
}

fn read(c: &mut Criterion) {
    let registry = filled(RUNS);
    assert_eq!(registry.statuses().len(), RUNS);
    let one = format!("run{:08}", RUNS / 2);

    let mut group = c.benchmark_group("read");
    group.bench_function("run_view_json", |b| {
        b.iter(|| registry.run_json(black_box(&one)).unwrap())
    });
    group.sample_size(20);
    group.throughput(Throughput::Elements(RUNS as u64));
    group.bench_function("statuses_10k", |b| b.iter(|| registry.statuses()));
    group.bench_function("statuses_10k_json", |b| {
        b.iter(|| serde_json::to_vec(&registry.statuses()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, parse, apply_new_run, long_history, read);
criterion_main!(benches);
