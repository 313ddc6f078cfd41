//! CLIENT KILL (both forms) and CLIENT NO-EVICT, with Redis 7's replies and errors byte
//! for byte (checked against redis-server 7.0.15): a killed connection is closed, the
//! others go on.

mod common;

use common::{cmd, confirm, Raw};

/// `CLIENT ID` of a connection, as its integer reply.
async fn id_of(c: &mut Raw) -> String {
    c.send(b"CLIENT ID\r\n").await;
    let mut line = Vec::new();
    loop {
        let mut b = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut b)
            .await
            .unwrap();
        line.push(b[0]);
        if line.ends_with(b"\r\n") {
            break;
        }
    }
    let line = String::from_utf8(line).unwrap();
    line.trim_start_matches(':').trim_end().to_string()
}

#[tokio::test]
async fn errors_as_redis_words_them_and_the_connection_stays() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    for (request, reply) in [
        (
            &b"CLIENT KILL 1.2.3.4:5\r\n"[..],
            &b"-ERR No such client\r\n"[..],
        ),
        (
            b"CLIENT KILL ID abc\r\n",
            b"-ERR client-id should be greater than 0\r\n",
        ),
        (
            b"CLIENT KILL ID 0\r\n",
            b"-ERR client-id should be greater than 0\r\n",
        ),
        (b"CLIENT KILL ID 999\r\n", b":0\r\n"),
        (
            b"CLIENT KILL TYPE foo\r\n",
            b"-ERR Unknown client type 'foo'\r\n",
        ),
        (b"CLIENT KILL TYPE master\r\n", b":0\r\n"),
        (b"CLIENT KILL FOO bar\r\n", b"-ERR syntax error\r\n"),
        (b"CLIENT KILL ID 5 TYPE\r\n", b"-ERR syntax error\r\n"),
        (b"CLIENT KILL SKIPME maybe\r\n", b"-ERR syntax error\r\n"),
        (
            b"CLIENT KILL USER nobody\r\n",
            b"-ERR No such user 'nobody'\r\n",
        ),
        (b"CLIENT KILL ADDR 1.2.3.4:5\r\n", b":0\r\n"),
        (
            b"CLIENT KILL\r\n",
            b"-ERR wrong number of arguments for 'client|kill' command\r\n",
        ),
        (b"CLIENT NO-EVICT on\r\n", b"+OK\r\n"),
        (b"CLIENT NO-EVICT maybe\r\n", b"-ERR syntax error\r\n"),
    ] {
        c.roundtrip(request, reply).await;
    }
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
}

#[tokio::test]
async fn kill_by_id_closes_that_connection_only() {
    let h = common::start().await;
    let mut admin = Raw::connect(h.redis_addr).await;
    let mut victim = Raw::connect(h.redis_addr).await;
    let mut bystander = Raw::connect(h.redis_addr).await;
    let id = id_of(&mut victim).await;
    victim
        .roundtrip(
            cmd(&[b"SUBSCRIBE", b"orders"]),
            confirm("subscribe", b"orders", 1),
        )
        .await;
    admin
        .roundtrip(format!("CLIENT KILL ID {id}\r\n"), b":1\r\n")
        .await;
    victim.expect_closed().await;
    bystander.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    // Its subscription went with it.
    admin
        .roundtrip(cmd(&[b"PUBLISH", b"orders", b"x"]), b":0\r\n")
        .await;
}

#[tokio::test]
async fn kill_by_type_spares_the_caller_unless_skipme_no() {
    let h = common::start().await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut s = Raw::connect(h.redis_addr).await;
        s.roundtrip(cmd(&[b"PSUBSCRIBE", b"*"]), confirm("psubscribe", b"*", 1))
            .await;
        subs.push(s);
    }
    let mut admin = Raw::connect(h.redis_addr).await;
    admin
        .roundtrip(b"CLIENT KILL TYPE pubsub\r\n", b":3\r\n")
        .await;
    for s in &mut subs {
        s.expect_closed().await;
    }
    admin
        .roundtrip(b"CLIENT KILL TYPE normal\r\n", b":0\r\n")
        .await;
    admin
        .roundtrip(b"CLIENT KILL TYPE normal SKIPME no\r\n", b":1\r\n")
        .await;
    admin.expect_closed().await;
}

#[tokio::test]
async fn the_old_form_kills_by_address_and_may_kill_the_caller_after_its_reply() {
    let h = common::start().await;
    let mut admin = Raw::connect(h.redis_addr).await;
    let mut victim = Raw::connect(h.redis_addr).await;
    let victim_addr = victim.stream.local_addr().unwrap().to_string();
    admin
        .roundtrip(format!("CLIENT KILL {victim_addr}\r\n"), b"+OK\r\n")
        .await;
    victim.expect_closed().await;
    let me = admin.stream.local_addr().unwrap().to_string();
    admin
        .roundtrip(format!("CLIENT KILL ADDR {me} SKIPME yes\r\n"), b":0\r\n")
        .await;
    admin
        .roundtrip(format!("CLIENT KILL {me}\r\n"), b"+OK\r\n")
        .await;
    admin.expect_closed().await;
}
