//! Real clients against herald: the `redis` crate (publish, subscribe, patterns,
//! RESP2 with a password and RESP3) and Debian's `redis-cli` (commands, and
//! SUBSCRIBE/PSUBSCRIBE receiving what another client publishes).

mod common;

use common::Raw;
use futures_util::StreamExt;
use herald::config::User;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn publish(url: &str, channel: &str, payload: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut con)
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_crate_publishes_and_subscribes_with_patterns() {
    let mut config = common::config();
    config.users = vec![User {
        name: "default".into(),
        password: "pw".into(),
    }];
    let h = common::start_with(config).await;
    let url = format!("redis://:pw@{}/2", h.redis_addr);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("orders.*").await.unwrap();
    pubsub.subscribe("news").await.unwrap();
    let mut messages = pubsub.on_message();
    assert_eq!(publish(&url, "orders.1", "shipped").await, 1);
    assert_eq!(publish(&url, "news", "hello").await, 1);
    assert_eq!(publish(&url, "other", "nobody").await, 0);
    let m = tokio::time::timeout(common::WAIT, messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.get_channel_name(), "orders.1");
    assert_eq!(m.get_pattern::<String>().unwrap(), "orders.*");
    assert_eq!(m.get_payload::<String>().unwrap(), "shipped");
    let m = tokio::time::timeout(common::WAIT, messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.get_channel_name(), "news");
    assert_eq!(m.get_payload::<String>().unwrap(), "hello");
    // A wrong password is refused with Redis's error.
    let bad = redis::Client::open(format!("redis://:nope@{}/", h.redis_addr)).unwrap();
    let err = bad.get_multiplexed_async_connection().await.unwrap_err();
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
}

#[tokio::test]
async fn redis_crate_resp3_push_messages() {
    let h = common::start().await;
    let url = format!("redis://{}/?protocol=resp3", h.redis_addr);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("c*").await.unwrap();
    let mut messages = pubsub.on_message();
    assert_eq!(publish(&url, "chat", "hi").await, 1);
    let m = tokio::time::timeout(common::WAIT, messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.get_channel_name(), "chat");
    assert_eq!(m.get_payload::<String>().unwrap(), "hi");
}

async fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .await
        .expect("redis-cli is installed (apt: redis-tools)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn redis_cli_commands() {
    let h = common::start().await;
    let port = h.redis_addr.port();
    assert_eq!(redis_cli(port, &["PING"]).await, "PONG\n");
    assert_eq!(
        redis_cli(port, &["ECHO", "hello world"]).await,
        "hello world\n"
    );
    assert_eq!(redis_cli(port, &["PUBLISH", "ch", "x"]).await, "0\n");
    assert_eq!(redis_cli(port, &["DBSIZE"]).await, "0\n");
    assert_eq!(
        redis_cli(port, &["CONFIG", "GET", "appendonly"]).await,
        "appendonly\nno\n"
    );
    assert_eq!(redis_cli(port, &["PUBSUB", "NUMPAT"]).await, "0\n");
    assert!(redis_cli(port, &["INFO", "server"])
        .await
        .contains("redis_version:7.2.0"));
    assert_eq!(
        redis_cli(port, &["foo", "bar"]).await,
        "ERR unknown command 'foo', with args beginning with: 'bar' \n\n"
    );
    // Without arguments redis-cli sends COMMAND DOCS first (seen with MONITOR on
    // redis-server 7), then the lines from stdin; it must accept our answer.
    let mut child = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"PING\nECHO hi\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(common::WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PONG\nhi\n");
}

/// Start `redis-cli <args>` and return its stdout lines once it is subscribed.
async fn redis_cli_subscriber(
    port: u16,
    args: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

async fn next_lines(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    n: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let line = tokio::time::timeout(common::WAIT, lines.next_line())
            .await
            .expect("redis-cli printed in time")
            .unwrap()
            .expect("redis-cli still running");
        out.push(line);
    }
    out
}

#[tokio::test]
async fn redis_cli_subscribe_and_psubscribe_receive_publications() {
    let h = common::start().await;
    let port = h.redis_addr.port();
    let (_sub, mut sub_lines) = redis_cli_subscriber(port, &["SUBSCRIBE", "news"]).await;
    assert_eq!(
        next_lines(&mut sub_lines, 3).await,
        ["subscribe", "news", "1"]
    );
    let (_psub, mut psub_lines) = redis_cli_subscriber(port, &["PSUBSCRIBE", "n*"]).await;
    assert_eq!(
        next_lines(&mut psub_lines, 3).await,
        ["psubscribe", "n*", "1"]
    );
    let mut p = Raw::connect(h.redis_addr).await;
    p.roundtrip(b"PUBLISH news \"hello there\"\r\n", b":2\r\n")
        .await;
    assert_eq!(
        next_lines(&mut sub_lines, 3).await,
        ["message", "news", "hello there"]
    );
    assert_eq!(
        next_lines(&mut psub_lines, 4).await,
        ["pmessage", "n*", "news", "hello there"]
    );
    // redis-cli as the publisher too.
    assert_eq!(redis_cli(port, &["PUBLISH", "nope", "x"]).await, "1\n");
    assert_eq!(
        next_lines(&mut psub_lines, 4).await,
        ["pmessage", "n*", "nope", "x"]
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}
