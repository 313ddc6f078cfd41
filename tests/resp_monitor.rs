//! MONITOR, in the line format of redis-server 7.0.15 (checked side by side): each command
//! with its time, db and client address, Laravel's script followed by its `lua` publishes,
//! passwords redacted, refused and admin commands left out; and the real `redis-cli
//! monitor` reading it.

mod common;

use common::{cmd, Raw};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// One CRLF-terminated line from `c`.
async fn line(c: &mut Raw) -> String {
    let mut out = Vec::new();
    while !out.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), c.stream.read_exact(&mut b))
            .await
            .expect("a monitor line")
            .unwrap();
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

/// `line` with its time checked and replaced by `T`.
fn untimed(line: &str) -> String {
    let (time, rest) = line[1..].split_once(' ').unwrap();
    let (secs, micros) = time.split_once('.').unwrap();
    assert!(secs.parse::<u64>().unwrap() > 1_700_000_000, "{line}");
    assert_eq!(micros.len(), 6, "{line}");
    format!("+T {rest}")
}

async fn monitor(h: &herald::server::Running) -> Raw {
    let mut m = Raw::connect(h.redis_addr).await;
    m.roundtrip(b"MONITOR\r\n", b"+OK\r\n").await;
    m
}

#[tokio::test]
async fn commands_are_shown_as_redis_shows_them() {
    let h = common::start().await;
    let mut m = monitor(&h).await;
    let mut c = Raw::connect(h.redis_addr).await;
    let addr = c.stream.local_addr().unwrap();
    c.roundtrip(cmd(&[b"PUBLISH", b"orders", b"hi \"there\"\nx"]), b":0\r\n")
        .await;
    assert_eq!(
        untimed(&line(&mut m).await),
        format!("+T [0 {addr}] \"PUBLISH\" \"orders\" \"hi \\\"there\\\"\\nx\"\r\n")
    );
    // Refused before running (unknown, wrong arity) or administrative: not shown.
    c.send(b"NOSUCH\r\nPUBLISH\r\nCONFIG GET save\r\nCLIENT LIST\r\nSELECT 3\r\nAUTH pw\r\n")
        .await;
    assert_eq!(
        untimed(&line(&mut m).await),
        format!("+T [3 {addr}] \"SELECT\" \"3\"\r\n")
    );
    assert_eq!(
        untimed(&line(&mut m).await),
        format!("+T [3 {addr}] \"AUTH\" \"(redacted)\"\r\n")
    );
}

#[tokio::test]
async fn laravels_script_is_followed_by_its_publishes() {
    let h = common::start().await;
    let mut m = monitor(&h).await;
    let mut c = Raw::connect(h.redis_addr).await;
    let addr = c.stream.local_addr().unwrap();
    let script = b"for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend";
    c.roundtrip(
        cmd(&[b"eval", script, b"0", b"payload", b"ch1", b"ch2"]),
        b"$-1\r\n",
    )
    .await;
    assert_eq!(
        untimed(&line(&mut m).await),
        format!(
            "+T [0 {addr}] \"eval\" \"for i = 2, #ARGV do\\n  redis.call('publish', ARGV[i], ARGV[1])\\nend\" \"0\" \"payload\" \"ch1\" \"ch2\"\r\n"
        )
    );
    assert_eq!(
        untimed(&line(&mut m).await),
        "+T [0 lua] \"publish\" \"ch1\" \"payload\"\r\n"
    );
    assert_eq!(
        untimed(&line(&mut m).await),
        "+T [0 lua] \"publish\" \"ch2\" \"payload\"\r\n"
    );
}

#[tokio::test]
async fn client_list_flags_and_reset_leaves_monitor_mode() {
    let h = common::start().await;
    let mut m = monitor(&h).await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.send(b"CLIENT LIST\r\n").await;
    let mut list = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), c.stream.read(&mut list))
        .await
        .unwrap()
        .unwrap();
    let list = String::from_utf8_lossy(&list[..n]).into_owned();
    assert_eq!(list.matches("flags=O").count(), 1, "{list}");
    m.roundtrip(b"RESET\r\n", b"+RESET\r\n").await;
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    // Had m still been monitoring, c's PING would be queued for it before c's reply:
    // m's own PONG must come first.
    m.expect_nothing_queued().await;
}

#[tokio::test]
async fn redis_cli_monitor_reads_it() {
    let h = common::start().await;
    let mut child = tokio::process::Command::new("redis-cli")
        .args(["-p", &h.redis_addr.port().to_string(), "monitor"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli (Debian redis-tools) is installed");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(5), out.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("OK"));
    let mut c = Raw::connect(h.redis_addr).await;
    let addr = c.stream.local_addr().unwrap();
    c.roundtrip(cmd(&[b"publish", b"orders", b"hi"]), b":0\r\n")
        .await;
    let seen = tokio::time::timeout(Duration::from_secs(5), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (_, rest) = seen.split_once(' ').unwrap();
    assert_eq!(rest, format!("[0 {addr}] \"publish\" \"orders\" \"hi\""));
}
