//! The RESP wire protocol over real TCP: request framing, pipelining, frames split at
//! every byte, and every malformed request answered with redis-server 7's exact error,
//! the offending connection closed and everyone else unaffected.

mod common;

use common::{cmd, Raw};

#[tokio::test]
async fn inline_and_multibulk_with_redis_quoting() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    c.roundtrip(b"ping\n", b"+PONG\r\n").await;
    c.roundtrip(
        b"ECHO \"a\\x41\\n\\r\\t\\b\\a\\\"\"\r\n",
        b"$8\r\naA\n\r\t\x08\x07\"\r\n",
    )
    .await;
    c.roundtrip(b"echo 'it\\'s'\r\n", b"$4\r\nit's\r\n").await;
    c.roundtrip(b"echo a\"b c\"\r\n", b"$4\r\nab c\r\n").await;
    c.roundtrip(cmd(&[b"ECHO", b"\r\n\0bin"]), b"$6\r\n\r\n\0bin\r\n")
        .await;
    // Empty lines, *0 and negative counts are skipped, as Redis does.
    c.roundtrip(b"\r\n\n  \r\n*0\r\n*-1\r\n*-5\r\nPING\r\n", b"+PONG\r\n")
        .await;
    // The two bytes after a bulk are skipped unread, as Redis does.
    c.roundtrip(b"*2\r\n$4\r\necho\r\n$2\r\nhixx", b"$2\r\nhi\r\n")
        .await;
}

#[tokio::test]
async fn pipelined_requests_answer_in_order() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..200 {
        let s = format!("m{i}");
        batch.extend(cmd(&[b"ECHO", s.as_bytes()]));
        expected.extend(common::bulk(s.as_bytes()));
        batch.extend(b"PING\r\n");
        expected.extend(b"+PONG\r\n");
    }
    c.roundtrip(&batch, &expected).await;
}

#[tokio::test]
async fn requests_split_at_every_byte() {
    let h = common::start().await;
    let request = [
        cmd(&[b"ECHO", b"hello world"]),
        b"ECHO \"x y\"\r\n".to_vec(),
        cmd(&[b"PUBLISH", b"nobody", b"payload"]),
    ]
    .concat();
    let reply = b"$11\r\nhello world\r\n$3\r\nx y\r\n:0\r\n";
    for cut in 1..request.len() {
        let mut c = Raw::connect(h.redis_addr).await;
        // A PING ahead of the first part, in the same write: its PONG shows herald has
        // read up to there, so the rest, sent after it, arrives in another read.
        c.send([b"PING\r\n", &request[..cut]].concat()).await;
        c.expect(b"+PONG\r\n").await;
        c.send(&request[cut..]).await;
        c.expect(reply).await;
    }
    // And one byte per write.
    let mut c = Raw::connect(h.redis_addr).await;
    for b in &request {
        c.send([*b]).await;
    }
    c.expect(reply).await;
}

/// Replies to what came before the bad request, then Redis's error, then close.
async fn rejected(input: &[u8], error: &str) {
    let h = common::start().await;
    let mut bystander = Raw::connect(h.redis_addr).await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.send(b"PING\r\n").await;
    c.send(input).await;
    c.expect(format!("+PONG\r\n-ERR Protocol error: {error}\r\n"))
        .await;
    c.expect_closed().await;
    bystander.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
}

#[tokio::test]
async fn invalid_multibulk_length() {
    rejected(b"*x\r\n", "invalid multibulk length").await;
    rejected(b"*01\r\n", "invalid multibulk length").await;
    rejected(b"*+1\r\n", "invalid multibulk length").await;
    rejected(b"*1048577\r\n", "invalid multibulk length").await;
    rejected(b"*99999999999999999999\r\n", "invalid multibulk length").await;
}

#[tokio::test]
async fn invalid_bulk_length() {
    rejected(b"*1\r\n$-1\r\n", "invalid bulk length").await;
    rejected(b"*1\r\n$x\r\n", "invalid bulk length").await;
    rejected(b"*1\r\n$+4\r\n", "invalid bulk length").await;
    rejected(b"*1\r\n$536870913\r\n", "invalid bulk length").await;
}

#[tokio::test]
async fn expected_dollar() {
    rejected(b"*1\r\nfoo\r\n", "expected '$', got 'f'").await;
    rejected(b"*2\r\n$4\r\necho\r\n:1\r\n", "expected '$', got ':'").await;
    // A CR cannot be echoed raw: Redis prints a space.
    rejected(b"*1\r\n\r\n", "expected '$', got ' '").await;
}

#[tokio::test]
async fn unbalanced_quotes() {
    rejected(b"echo \"abc\r\n", "unbalanced quotes in request").await;
    rejected(b"echo 'abc\r\n", "unbalanced quotes in request").await;
    rejected(b"echo \"a\"b\r\n", "unbalanced quotes in request").await;
    rejected(b"echo 'a'b\r\n", "unbalanced quotes in request").await;
}

#[tokio::test]
async fn too_big_requests() {
    rejected(&vec![b'a'; 65 * 1024], "too big inline request").await;
    let mut count = b"*".to_vec();
    count.extend(vec![b'1'; 65 * 1024]);
    rejected(&count, "too big mbulk count string").await;
    let mut len = b"*1\r\n$".to_vec();
    len.extend(vec![b'1'; 65 * 1024]);
    rejected(&len, "too big bulk count string").await;
}

#[tokio::test]
async fn limits_come_from_config() {
    let mut config = common::config();
    config.proto_max_bulk_len = 10;
    config.max_multibulk_len = 3;
    config.max_inline_len = 100;
    let h = common::start_with(config).await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(cmd(&[b"ECHO", b"0123456789"]), b"$10\r\n0123456789\r\n")
        .await;
    c.roundtrip(
        cmd(&[b"ECHO", b"0123456789a"]),
        b"-ERR Protocol error: invalid bulk length\r\n",
    )
    .await;
    c.expect_closed().await;
    common::refused(
        h.redis_addr,
        b"*4\r\n",
        b"-ERR Protocol error: invalid multibulk length\r\n",
    )
    .await;
    common::refused(
        h.redis_addr,
        vec![b'x'; 101],
        b"-ERR Protocol error: too big inline request\r\n",
    )
    .await;
}

#[tokio::test]
async fn unknown_command_and_wrong_arity_keep_the_connection() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(
        b"foo a b\r\n",
        b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
    )
    .await;
    c.roundtrip(
        b"foo\r\n",
        b"-ERR unknown command 'foo', with args beginning with: \r\n",
    )
    .await;
    c.roundtrip(
        b"echo\r\n",
        b"-ERR wrong number of arguments for 'echo' command\r\n",
    )
    .await;
    c.roundtrip(
        b"ping a b\r\n",
        b"-ERR wrong number of arguments for 'ping' command\r\n",
    )
    .await;
    c.roundtrip(
        b"client setname\r\n",
        b"-ERR wrong number of arguments for 'client|setname' command\r\n",
    )
    .await;
    c.roundtrip(
        b"client nope\r\n",
        b"-ERR unknown subcommand 'nope'. Try CLIENT HELP.\r\n",
    )
    .await;
    // Arguments are listed up to 128 bytes in all.
    let long = "y".repeat(200);
    let mut expected = b"-ERR unknown command 'foo', with args beginning with: '".to_vec();
    expected.extend(vec![b'y'; 128]);
    expected.extend(b"' \r\n");
    c.roundtrip(format!("foo {long} z\r\n"), expected).await;
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
}

#[tokio::test]
async fn keyspace_commands_explain_what_herald_is() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(
        b"GET key\r\n",
        b"-ERR herald is a pub/sub broker and stores no keys, so 'GET' is not supported. \
          Point only Laravel's broadcasting connection at herald (a separate 'broadcast' \
          connection in config/database.php) and keep cache, sessions and queues on a real Redis.\r\n",
    )
    .await;
    c.send(b"LPUSH q x\r\n").await;
    c.expect(b"-ERR herald is a pub/sub broker and stores no keys, so 'LPUSH'")
        .await;
}

#[tokio::test]
async fn quit_replies_then_closes() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.send(b"PING\r\nQUIT\r\nPING\r\n").await;
    c.expect(b"+PONG\r\n+OK\r\n").await;
    c.expect_closed().await;
}
