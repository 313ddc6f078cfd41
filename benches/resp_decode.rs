//! RESP request decoding: a pipelined batch of PUBLISH commands (what Laravel and
//! redis-benchmark -P 16 send) and inline commands (what telnet and redis-cli's
//! scripts send), through the same decoder the sessions use.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use herald::resp::codec::{Limits, RequestDecoder};
use tokio_util::codec::Decoder;

fn limits() -> Limits {
    Limits {
        max_bulk_len: 512 * 1024 * 1024,
        max_multibulk_len: 1024 * 1024,
        max_inline_len: 64 * 1024,
    }
}

fn decode_all(input: &BytesMut) -> usize {
    let mut buf = input.clone();
    let mut d = RequestDecoder::new(limits(), true);
    let mut n = 0;
    while let Some(args) = d.decode(&mut buf).expect("valid input") {
        n += args.len();
    }
    n
}

fn bench(c: &mut Criterion) {
    let payload = br#"{"event":"App\\Events\\OrderShipped","data":{"order":{"id":42,"status":"shipped"}},"socket":null}"#;
    let mut publishes = BytesMut::new();
    for i in 0..16 {
        let channel = format!("laravel_database_private-orders.{i}");
        publishes.extend_from_slice(
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
                channel.len(),
                payload.len()
            )
            .as_bytes(),
        );
        publishes.extend_from_slice(payload);
        publishes.extend_from_slice(b"\r\n");
    }
    let mut group = c.benchmark_group("resp_decode");
    group.throughput(Throughput::Elements(16));
    group.bench_function("pipelined_publish_x16", |b| {
        b.iter_batched(|| &publishes, decode_all, BatchSize::SmallInput)
    });

    let mut inline = BytesMut::new();
    for i in 0..16 {
        inline.extend_from_slice(format!("PUBLISH news \"hello \\x41 world {i}\"\r\n").as_bytes());
    }
    group.bench_function("inline_publish_x16", |b| {
        b.iter_batched(|| &inline, decode_all, BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
