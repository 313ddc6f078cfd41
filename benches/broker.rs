//! Micro-benchmarks of the pub/sub engine: Redis glob matching, and the fan-out of one
//! publication to 1, 100 and 10,000 in-process subscribers whose `deliver` queues the
//! shared payload into a bounded `Outbox`, as every real edge does.
//!
//! The `fan_out` rows publish as RESP's PUBLISH does, through `Arc<dyn Broker>` as the
//! server holds it (`channel_static/1`: the same through the concrete type, which
//! measures the indirect call; `channel_cache_patterns/1`: with the default Pusher
//! app's four cache-channel patterns held, as in the server); `stream/N` is one edge
//! subscriber with N connections on a stream, numbered publications and all.
//!
//! `server/1` and `server_private/1` are PUBLISH as the server runs it (its state, both
//! edges built, the prefix stripped) to one RESP subscriber, on a public and on a private
//! channel: the rows to compare across versions of the publication path.
//!
//! Run: `cargo bench --bench broker -- --warm-up-time 1 --measurement-time 3`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald::broker::{
    glob, next_subscriber_id, Broker, MemoryBroker, Namespace, Publication, StreamSubscriber,
    Subscriber, SubscriberId, Via,
};
use herald::outbox::{Outbox, OutboxLimits};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn glob_matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("glob");
    let channel = b"laravel_database_private-App.Models.User.12345";
    let cases: [(&str, &[u8], &[u8]); 6] = [
        ("literal", channel, channel),
        ("star_prefix", b"laravel_database_*", channel),
        ("star_miss", b"laravel_cache_*", channel),
        (
            "class_and_question",
            b"laravel_database_[a-z]rivate-App.Models.User.?????",
            channel,
        ),
        ("negated_class", b"*[^0-9]User.[0-9]*", channel),
        // Redis's skip-longer rule keeps this linear; a naive matcher is exponential.
        ("pathological", b"a*a*a*a*a*a*a*a*a*a*a*a*a*b", &[b'a'; 64]),
    ];
    for (name, pattern, subject) in cases {
        group.bench_function(name, |b| {
            b.iter(|| glob::matches(black_box(pattern), black_box(subject)))
        });
    }
    group.finish();
}

/// A subscriber that does what a RESP connection does on delivery: queue shared bytes,
/// never block.
struct Sink {
    id: SubscriberId,
    outbox: Outbox,
}

impl Sink {
    fn new() -> Arc<Sink> {
        Arc::new(Sink {
            id: next_subscriber_id(),
            outbox: Outbox::new(OutboxLimits::default()),
        })
    }
}

impl Subscriber for Sink {
    fn id(&self) -> SubscriberId {
        self.id
    }
    fn deliver(&self, _via: Via<'_>, _channel: &Bytes, payload: &Bytes) {
        self.outbox.push(payload.clone());
    }
}

/// What an edge does with a stream's publication: the same shared bytes into each of
/// its connections' outboxes.
struct Edge {
    id: SubscriberId,
    outboxes: Vec<Outbox>,
}

impl StreamSubscriber for Edge {
    fn id(&self) -> SubscriberId {
        self.id
    }
    fn deliver(&self, p: &Publication) -> usize {
        for outbox in &self.outboxes {
            outbox.push(p.payload.clone());
        }
        self.outboxes.len()
    }
}

/// Every outbox a row's subscribers fill.
fn outboxes<'a>(sinks: &'a [Arc<Sink>], edge: &'a Edge) -> impl Iterator<Item = &'a Outbox> {
    sinks.iter().map(|s| &s.outbox).chain(&edge.outboxes)
}

/// Publications timed back to back before the untimed drain of every outbox.
const BATCH: u64 = 32;

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    let payload = Bytes::from_static(
        br#"{"event":"App\\Events\\OrderShipped","data":{"id":1,"socket":null},"socket":null}"#,
    );
    let channel = Bytes::from_static(b"laravel_database_orders");
    for (kind, subscribers) in [
        ("channel", 1),
        ("channel_static", 1),
        ("channel_cache_patterns", 1),
        ("channel", 100),
        ("channel", 10_000),
        ("pattern", 100),
        ("stream", 1),
        ("stream", 1_000),
    ] {
        let memory = Arc::new(MemoryBroker::new());
        let broker: Arc<dyn Broker> = memory.clone();
        let to_stream = kind == "stream";
        let edge = Arc::new(Edge {
            id: next_subscriber_id(),
            outboxes: (0..if to_stream { subscribers } else { 0 })
                .map(|_| Outbox::new(OutboxLimits::default()))
                .collect(),
        });
        let sinks: Vec<Arc<Sink>> = (0..if to_stream { 0 } else { subscribers })
            .map(|_| Sink::new())
            .collect();
        if to_stream {
            broker.stream_subscribe(&Namespace::Default, &channel, edge.clone());
        }
        for sink in &sinks {
            match kind {
                "pattern" => {
                    broker.psubscribe(Bytes::from_static(b"laravel_database_*"), sink.clone());
                }
                _ => {
                    broker.subscribe(channel.clone(), sink.clone());
                }
            };
        }
        if kind == "channel_cache_patterns" {
            let app = Arc::new(Edge {
                id: next_subscriber_id(),
                outboxes: Vec::new(),
            });
            for prefix in [
                "cache-",
                "private-cache-",
                "private-encrypted-cache-",
                "presence-cache-",
            ] {
                let pattern = format!("{prefix}*");
                broker.stream_psubscribe(&Namespace::Default, pattern.as_bytes(), app.clone());
            }
        }
        let concrete = kind == "channel_static";
        let publication = || {
            let p = Publication::new(Namespace::Default, channel.clone(), payload.clone());
            if to_stream {
                p
            } else {
                p.seen_by_resp()
            }
        };
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::new(kind, subscribers), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut drained = Vec::new();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH);
                    let start = Instant::now();
                    for _ in 0..n {
                        let receivers = if concrete {
                            memory.publish(publication())
                        } else {
                            broker.publish(publication())
                        };
                        debug_assert_eq!(receivers, subscribers);
                        black_box(receivers);
                    }
                    spent += start.elapsed();
                    for outbox in outboxes(&sinks, &edge) {
                        outbox.take_now(&mut drained).expect("outbox open");
                        drained.clear();
                    }
                    left -= n;
                }
                spent
            })
        });
    }
    group.finish();
}

/// PUBLISH as the server runs it, minus the RESP session: the server's shared state with
/// both edges built (the default Pusher app holds its cache-channel patterns), the Redis
/// key prefix stripped, one RESP subscriber, no WebSocket client.
fn server(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = rt.enter();
    let config = herald::config::Config {
        redis_bind: "127.0.0.1:0".parse().unwrap(),
        http_bind: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let state = herald::state::Shared::new(config);
    let _edges = (
        herald::socketio::Edge::start(&state),
        herald::pusher::start(&state),
    );
    let payload = Bytes::from_static(
        br#"{"event":"App\\Events\\OrderShipped","data":{"id":1,"socket":null},"socket":null}"#,
    );
    for (row, name) in [
        ("server/1", &b"laravel_database_orders"[..]),
        (
            "server_private/1",
            &b"laravel_database_private-orders.1"[..],
        ),
    ] {
        let channel = Bytes::from_static(name);
        let sink = Sink::new();
        state.broker.subscribe(channel.clone(), sink.clone());
        c.bench_function(row, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut drained = Vec::new();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH);
                    let start = Instant::now();
                    for _ in 0..n {
                        let p = state.prefixes.publication(channel.clone(), payload.clone());
                        black_box(state.broker.publish(p));
                    }
                    spent += start.elapsed();
                    sink.outbox.take_now(&mut drained).expect("outbox open");
                    drained.clear();
                    left -= n;
                }
                spent
            })
        });
    }
}

criterion_group!(benches, glob_matching, fan_out, server);
criterion_main!(benches);
