//! Pub/sub over RESP, byte for byte as redis-server 7 answers: confirmations and
//! counts, deliveries in RESP2 and RESP3, the subscribed-mode rule, PUBSUB
//! introspection, Laravel's EVAL script, and a slow subscriber dropped without
//! hurting anyone else.

mod common;

use common::{bulk, cmd, confirm, message, pmessage, Raw};
use std::time::Duration;

#[tokio::test]
async fn subscribe_publish_unsubscribe_shapes() {
    let h = common::start().await;
    let mut sub = Raw::connect(h.redis_addr).await;
    let mut publisher = Raw::connect(h.redis_addr).await;
    sub.send(b"SUBSCRIBE a b\r\n").await;
    sub.expect([confirm("subscribe", b"a", 1), confirm("subscribe", b"b", 2)].concat())
        .await;
    sub.roundtrip(b"PSUBSCRIBE a*\r\n", confirm("psubscribe", b"a*", 3))
        .await;
    // Counted once per matching subscription: channel a and pattern a*.
    publisher.roundtrip(b"PUBLISH a hello\r\n", b":2\r\n").await;
    sub.expect([message(b"a", b"hello"), pmessage(b"a*", b"a", b"hello")].concat())
        .await;
    publisher.roundtrip(b"PUBLISH zz x\r\n", b":0\r\n").await;
    // Binary-safe payloads reach subscribers unchanged.
    publisher
        .roundtrip(cmd(&[b"PUBLISH", b"b", b"\r\n\0\xff"]), b":1\r\n")
        .await;
    sub.expect(message(b"b", b"\r\n\0\xff")).await;
    // Unsubscribing from a channel never subscribed still confirms.
    sub.roundtrip(b"UNSUBSCRIBE nope\r\n", confirm("unsubscribe", b"nope", 3))
        .await;
    sub.send(b"UNSUBSCRIBE\r\n").await;
    let mut both = [
        confirm("unsubscribe", b"a", 2),
        confirm("unsubscribe", b"b", 1),
    ];
    let mut got = vec![0u8; both[0].len() + both[1].len()];
    tokio::io::AsyncReadExt::read_exact(&mut sub.stream, &mut got)
        .await
        .unwrap();
    // The order of "all channels" is the set's; either order is Redis-valid.
    if got.starts_with(&confirm("unsubscribe", b"b", 2)) {
        both = [
            confirm("unsubscribe", b"b", 2),
            confirm("unsubscribe", b"a", 1),
        ];
    }
    assert_eq!(got, both.concat());
    sub.roundtrip(b"PUNSUBSCRIBE\r\n", confirm("punsubscribe", b"a*", 0))
        .await;
    // Nothing left: the null-channel reply.
    sub.roundtrip(
        b"UNSUBSCRIBE\r\n",
        b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
    )
    .await;
    sub.roundtrip(
        b"PUNSUBSCRIBE\r\n",
        b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n",
    )
    .await;
    sub.roundtrip(
        b"SUNSUBSCRIBE\r\n",
        b"*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n",
    )
    .await;
    // Out of subscribed mode, any command runs again.
    sub.roundtrip(b"ECHO x\r\n", b"$1\r\nx\r\n").await;
}

#[tokio::test]
async fn resp2_subscribed_mode_rule() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(b"SUBSCRIBE a\r\n", confirm("subscribe", b"a", 1))
        .await;
    c.roundtrip(
        b"ECHO x\r\n",
        b"-ERR Can't execute 'echo': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    c.roundtrip(
        b"CLIENT ID\r\n",
        b"-ERR Can't execute 'client|id': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    c.roundtrip(
        b"GET k\r\n",
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    c.roundtrip(b"PING\r\n", b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        .await;
    c.roundtrip(b"PING hi\r\n", b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n")
        .await;
    // Unknown commands and arity are checked first, as in Redis.
    c.roundtrip(
        b"nope\r\n",
        b"-ERR unknown command 'nope', with args beginning with: \r\n",
    )
    .await;
    c.roundtrip(b"RESET\r\n", b"+RESET\r\n").await;
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    let mut p = Raw::connect(h.redis_addr).await;
    p.roundtrip(b"PUBLISH a x\r\n", b":0\r\n").await;
}

#[tokio::test]
async fn resp3_pushes_after_hello_3() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.send(b"HELLO 3\r\n").await;
    c.expect(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:")
        .await;
    let mut rest = vec![0u8; 256];
    // Skip the id digits up to the rest of the map.
    let tail = b"\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
    let mut got = Vec::new();
    while !got.ends_with(tail) {
        let n = tokio::io::AsyncReadExt::read(&mut c.stream, &mut rest[..1])
            .await
            .unwrap();
        assert_eq!(n, 1);
        got.push(rest[0]);
    }
    c.roundtrip(
        b"SUBSCRIBE ch\r\n",
        b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
    )
    .await;
    c.roundtrip(
        b"PSUBSCRIBE c*\r\n",
        b">3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:2\r\n",
    )
    .await;
    // RESP3 has no subscribed-mode restriction.
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    c.roundtrip(b"ECHO e\r\n", b"$1\r\ne\r\n").await;
    let mut p = Raw::connect(h.redis_addr).await;
    p.roundtrip(b"PUBLISH ch data\r\n", b":2\r\n").await;
    c.expect(
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\ndata\r\n>4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$4\r\ndata\r\n",
    )
    .await;
    c.roundtrip(
        b"UNSUBSCRIBE ch\r\n",
        b">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:1\r\n",
    )
    .await;
    c.roundtrip(
        b"PUNSUBSCRIBE\r\n",
        b">3\r\n$12\r\npunsubscribe\r\n$2\r\nc*\r\n:0\r\n",
    )
    .await;
    c.roundtrip(
        b"UNSUBSCRIBE\r\n",
        b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n",
    )
    .await;
    c.roundtrip(b"CONFIG GET save\r\n", b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n")
        .await;
    c.roundtrip(b"CLIENT GETNAME\r\n", b"_\r\n").await;
}

#[tokio::test]
async fn shard_channels() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    let mut p = Raw::connect(h.redis_addr).await;
    c.roundtrip(b"SUBSCRIBE a\r\n", confirm("subscribe", b"a", 1))
        .await;
    // Shard subscriptions count on their own.
    c.roundtrip(b"SSUBSCRIBE s\r\n", confirm("ssubscribe", b"s", 1))
        .await;
    p.roundtrip(b"SPUBLISH s hi\r\n", b":1\r\n").await;
    c.expect(b"*3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$2\r\nhi\r\n")
        .await;
    // PUBLISH does not reach shard subscribers and SPUBLISH not channel ones.
    p.roundtrip(b"PUBLISH s x\r\n", b":0\r\n").await;
    p.roundtrip(b"SPUBLISH a x\r\n", b":0\r\n").await;
    p.roundtrip(b"PUBSUB SHARDCHANNELS\r\n", b"*1\r\n$1\r\ns\r\n")
        .await;
    p.roundtrip(
        b"PUBSUB SHARDNUMSUB s x\r\n",
        b"*4\r\n$1\r\ns\r\n:1\r\n$1\r\nx\r\n:0\r\n",
    )
    .await;
    c.roundtrip(b"SUNSUBSCRIBE s\r\n", confirm("sunsubscribe", b"s", 0))
        .await;
}

#[tokio::test]
async fn pubsub_introspection() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    let mut s1 = Raw::connect(h.redis_addr).await;
    let mut s2 = Raw::connect(h.redis_addr).await;
    s1.roundtrip(b"SUBSCRIBE news\r\n", confirm("subscribe", b"news", 1))
        .await;
    s2.send(b"SUBSCRIBE news\r\nPSUBSCRIBE n* x?\r\n").await;
    s2.expect(
        [
            confirm("subscribe", b"news", 1),
            confirm("psubscribe", b"n*", 2),
            confirm("psubscribe", b"x?", 3),
        ]
        .concat(),
    )
    .await;
    c.roundtrip(b"PUBSUB CHANNELS\r\n", b"*1\r\n$4\r\nnews\r\n")
        .await;
    c.roundtrip(b"PUBSUB CHANNELS n*\r\n", b"*1\r\n$4\r\nnews\r\n")
        .await;
    c.roundtrip(b"PUBSUB CHANNELS x*\r\n", b"*0\r\n").await;
    c.roundtrip(
        b"PUBSUB NUMSUB news other\r\n",
        b"*4\r\n$4\r\nnews\r\n:2\r\n$5\r\nother\r\n:0\r\n",
    )
    .await;
    c.roundtrip(b"PUBSUB NUMSUB\r\n", b"*0\r\n").await;
    c.roundtrip(b"PUBSUB NUMPAT\r\n", b":2\r\n").await;
    c.roundtrip(
        b"PUBSUB CHANNELS a b\r\n",
        b"-ERR unknown subcommand or wrong number of arguments for 'channels'. Try PUBSUB HELP.\r\n",
    )
    .await;
    c.roundtrip(b"PUBLISH news x\r\n", b":3\r\n").await;
    // A client that leaves takes its subscriptions with it (once herald has read the
    // hang-up: until then NUMPAT still says 2).
    drop(s2);
    let deadline = common::Deadline::new();
    while !numpat_is_zero(&mut c).await {
        deadline
            .retry("the leaving client's patterns are gone")
            .await;
    }
    c.roundtrip(b"PUBSUB NUMSUB news\r\n", b"*2\r\n$4\r\nnews\r\n:1\r\n")
        .await;
}

async fn numpat_is_zero(c: &mut Raw) -> bool {
    c.send(b"PUBSUB NUMPAT\r\n").await;
    let mut reply = [0u8; 4];
    tokio::time::timeout(
        common::WAIT,
        tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut reply),
    )
    .await
    .expect("PUBSUB NUMPAT answered")
    .unwrap();
    assert!(reply == *b":2\r\n" || reply == *b":0\r\n", "{reply:?}");
    reply == *b":0\r\n"
}

#[tokio::test]
async fn a_subscriber_receives_its_own_publication_after_the_reply_order() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.hello3().await;
    // Redis: subscribe confirmation, the PING's reply (a reply still queued when the
    // PUBLISH runs), then the message, then PUBLISH's count.
    c.send(b"SUBSCRIBE me\r\nPING\r\nPUBLISH me hi\r\n").await;
    c.expect(
        b">3\r\n$9\r\nsubscribe\r\n$2\r\nme\r\n:1\r\n+PONG\r\n>3\r\n$7\r\nmessage\r\n$2\r\nme\r\n$2\r\nhi\r\n:1\r\n",
    )
    .await;
}

const LARAVEL: &[u8] = b"for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend";
const LARAVEL_SHA1: &[u8] = b"6f799f6e3f4ab9f8b891f6405d5fc1348a6a0595";

#[tokio::test]
async fn laravel_broadcast_script() {
    let h = common::start().await;
    let mut sub = Raw::connect(h.redis_addr).await;
    let mut app = Raw::connect(h.redis_addr).await;
    sub.send(b"SUBSCRIBE laravel_database_private-orders.1 laravel_database_news\r\n")
        .await;
    sub.expect(
        [
            confirm("subscribe", b"laravel_database_private-orders.1", 1),
            confirm("subscribe", b"laravel_database_news", 2),
        ]
        .concat(),
    )
    .await;
    let payload: &[u8] = br#"{"event":"OrderShipped","data":{"id":1},"socket":null}"#;
    // Exactly what Laravel's RedisBroadcaster sends: EVAL script 0 payload channels...
    app.roundtrip(
        cmd(&[
            b"EVAL",
            LARAVEL,
            b"0",
            payload,
            b"laravel_database_private-orders.1",
            b"laravel_database_news",
        ]),
        b"$-1\r\n",
    )
    .await;
    sub.expect(
        [
            message(b"laravel_database_private-orders.1", payload),
            message(b"laravel_database_news", payload),
        ]
        .concat(),
    )
    .await;
    // By SHA1 directly, as predis tries first.
    app.roundtrip(
        cmd(&[
            b"EVALSHA",
            LARAVEL_SHA1,
            b"0",
            b"p2",
            b"laravel_database_news",
        ]),
        b"$-1\r\n",
    )
    .await;
    sub.expect(message(b"laravel_database_news", b"p2")).await;
    // The same script with other whitespace and quotes.
    let reformatted: &[u8] =
        b"  for i=2,#ARGV do\r\n\tredis.call(\"publish\", ARGV[i], ARGV[1])\nend\n";
    app.roundtrip(
        cmd(&[b"SCRIPT", b"LOAD", reformatted]),
        bulk(sha1_hex(reformatted).as_bytes()),
    )
    .await;
    app.roundtrip(
        cmd(&[
            b"EVALSHA",
            sha1_hex(reformatted).as_bytes(),
            b"0",
            b"p3",
            b"laravel_database_news",
        ]),
        b"$-1\r\n",
    )
    .await;
    sub.expect(message(b"laravel_database_news", b"p3")).await;
    app.roundtrip(
        cmd(&[
            b"SCRIPT",
            b"EXISTS",
            LARAVEL_SHA1,
            sha1_hex(reformatted).as_bytes(),
            b"ffff",
        ]),
        b"*3\r\n:1\r\n:1\r\n:0\r\n",
    )
    .await;
    app.roundtrip(b"SCRIPT FLUSH\r\n", b"+OK\r\n").await;
    app.roundtrip(
        cmd(&[b"EVALSHA", sha1_hex(reformatted).as_bytes(), b"0", b"p"]),
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    )
    .await;
    // Keys before ARGV are skipped; no channels means nothing is published.
    app.roundtrip(
        cmd(&[
            b"EVAL",
            LARAVEL,
            b"1",
            b"key",
            b"p4",
            b"laravel_database_news",
        ]),
        b"$-1\r\n",
    )
    .await;
    sub.expect(message(b"laravel_database_news", b"p4")).await;
    app.roundtrip(cmd(&[b"EVAL", LARAVEL, b"0"]), b"$-1\r\n")
        .await;
    // The marker, published after that EVAL: it must be the next thing the subscriber
    // gets.
    app.roundtrip(
        cmd(&[b"PUBLISH", b"laravel_database_news", b"marker"]),
        b":1\r\n",
    )
    .await;
    sub.expect_next(message(b"laravel_database_news", b"marker"))
        .await;
}

#[tokio::test]
async fn other_scripts_are_refused_clearly() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    let refusal = "-ERR herald runs no Lua: the only script it accepts is Laravel's broadcast script \
                   (for i = 2, #ARGV do redis.call('publish', ARGV[i], ARGV[1]) end), which it runs \
                   natively. Publish with PUBLISH instead.\r\n";
    c.roundtrip(cmd(&[b"EVAL", b"return 1", b"0"]), refusal)
        .await;
    c.roundtrip(
        cmd(&[b"SCRIPT", b"LOAD", b"return redis.call('get', KEYS[1])"]),
        refusal,
    )
    .await;
    c.roundtrip(
        cmd(&[b"EVAL", b"return 1", b"x"]),
        b"-ERR value is not an integer or out of range\r\n",
    )
    .await;
    c.roundtrip(
        cmd(&[b"EVAL", LARAVEL, b"-1"]),
        b"-ERR Number of keys can't be negative\r\n",
    )
    .await;
    c.roundtrip(
        cmd(&[b"EVAL", LARAVEL, b"2", b"a"]),
        b"-ERR Number of keys can't be greater than number of args\r\n",
    )
    .await;
    c.roundtrip(
        cmd(&[
            b"EVALSHA",
            b"0000000000000000000000000000000000000000",
            b"0",
        ]),
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    )
    .await;
}

fn sha1_hex(b: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(b))
}

#[tokio::test]
async fn slow_subscriber_is_dropped_others_are_not() {
    let mut config = common::config();
    config.outbox.hard_bytes = 64 * 1024;
    config.outbox.soft_bytes = 0;
    let h = common::start_with(config).await;
    let dropped_before = herald::metrics::SLOW_CONSUMERS_DROPPED.get();
    let mut slow = Raw::connect(h.redis_addr).await;
    slow.roundtrip(b"SUBSCRIBE feed\r\n", confirm("subscribe", b"feed", 1))
        .await;
    let mut fast = Raw::connect(h.redis_addr).await;
    fast.roundtrip(b"SUBSCRIBE feed\r\n", confirm("subscribe", b"feed", 1))
        .await;
    // The fast subscriber reads everything, concurrently.
    let payload = vec![b'x'; 32 * 1024];
    let rounds = 600;
    let expected_fast: Vec<u8> = message(b"feed", &payload).repeat(rounds);
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; expected_fast.len()];
        tokio::time::timeout(
            Duration::from_secs(60),
            tokio::io::AsyncReadExt::read_exact(&mut fast.stream, &mut got),
        )
        .await
        .expect("fast subscriber kept up")
        .unwrap();
        assert!(
            got == expected_fast,
            "fast subscriber got every message intact"
        );
        fast
    });
    let mut publisher = Raw::connect(h.redis_addr).await;
    let publish = cmd(&[b"PUBLISH", b"feed", &payload]);
    let mut receivers = Vec::new();
    for _ in 0..rounds {
        publisher.send(&publish).await;
        let mut reply = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut publisher.stream, &mut reply)
            .await
            .unwrap();
        receivers.push(reply);
    }
    let _fast = reader.await.unwrap();
    // The publisher never blocked or failed; the slow one was dropped at some point.
    assert!(receivers.iter().all(|r| r == b":2\r\n" || r == b":1\r\n"));
    assert_eq!(receivers.last().unwrap(), b":1\r\n");
    assert!(herald::metrics::SLOW_CONSUMERS_DROPPED.get() > dropped_before);
    publisher
        .roundtrip(b"PUBSUB NUMSUB feed\r\n", b"*2\r\n$4\r\nfeed\r\n:1\r\n")
        .await;
    // The slow subscriber's socket ends after whatever the kernel had buffered.
    let mut sink = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut slow.stream, &mut sink),
    )
    .await
    .expect("slow subscriber was disconnected")
    .ok();
}

#[tokio::test]
async fn large_payloads_arrive_intact() {
    let h = common::start().await;
    let mut sub = Raw::connect(h.redis_addr).await;
    sub.roundtrip(b"SUBSCRIBE big\r\n", confirm("subscribe", b"big", 1))
        .await;
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut p = Raw::connect(h.redis_addr).await;
    p.roundtrip(cmd(&[b"PUBLISH", b"big", &payload]), b":1\r\n")
        .await;
    sub.expect(message(b"big", &payload)).await;
}
