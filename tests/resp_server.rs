//! Server and tooling commands (INFO, CONFIG, COMMAND, TIME, CLIENT LIST, FLUSHALL),
//! maxclients, and shutdown: stop accepting, finish the replies in flight, close.

mod common;

use common::{cmd, Raw};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;

/// Read one bulk or verbatim reply's text.
async fn read_text(c: &mut Raw) -> String {
    let mut header = Vec::new();
    let mut b = [0u8; 1];
    while !header.ends_with(b"\r\n") {
        c.stream.read_exact(&mut b).await.unwrap();
        header.push(b[0]);
    }
    assert!(header[0] == b'$' || header[0] == b'=', "{header:?}");
    let len: usize = std::str::from_utf8(&header[1..header.len() - 2])
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len + 2];
    c.stream.read_exact(&mut body).await.unwrap();
    body.truncate(len);
    String::from_utf8(body).unwrap()
}

#[tokio::test]
async fn info_reports_clients_and_pubsub() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    let mut s = Raw::connect(h.redis_addr).await;
    s.send(b"SUBSCRIBE a b\r\nPSUBSCRIBE p*\r\n").await;
    s.expect(
        [
            common::confirm("subscribe", b"a", 1),
            common::confirm("subscribe", b"b", 2),
            common::confirm("psubscribe", b"p*", 3),
        ]
        .concat(),
    )
    .await;
    c.roundtrip(b"PUBLISH a x\r\n", b":1\r\n").await;
    c.send(b"INFO\r\n").await;
    let info = read_text(&mut c).await;
    for line in [
        "# Server\r\n",
        "redis_version:7.2.0\r\n",
        "redis_mode:standalone\r\n",
        &format!("tcp_port:{}\r\n", h.redis_addr.port()),
        "\r\n# Clients\r\nconnected_clients:2\r\n",
        "maxclients:10000\r\n",
        "pubsub_clients:1\r\n",
        "\r\n# Stats\r\n",
        "pubsub_channels:2\r\n",
        "pubsub_patterns:1\r\n",
        "pubsubshard_channels:0\r\n",
        "total_published:1\r\n",
        "total_delivered:1\r\n",
        "\r\n# Keyspace\r\n",
    ] {
        assert!(info.contains(line), "INFO lacks {line:?}:\n{info}");
    }
    c.send(b"INFO clients\r\n").await;
    let clients = read_text(&mut c).await;
    assert!(clients.starts_with("# Clients\r\n"), "{clients}");
    assert!(!clients.contains("# Server"));
    c.send(b"INFO nothing\r\n").await;
    assert_eq!(read_text(&mut c).await, "");
    // RESP3: a verbatim string.
    c.hello3().await;
    c.send(b"INFO keyspace\r\n").await;
    c.expect(b"=16\r\ntxt:# Keyspace\r\n\r\n").await;
}

#[tokio::test]
async fn config_get_answers_what_tools_ask() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    // redis-benchmark asks these two.
    c.roundtrip(b"CONFIG GET save\r\n", b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n")
        .await;
    c.roundtrip(
        b"CONFIG GET appendonly\r\n",
        b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
    )
    .await;
    c.roundtrip(
        b"CONFIG GET maxclients\r\n",
        b"*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n",
    )
    .await;
    c.roundtrip(b"CONFIG GET nothing-like-this\r\n", b"*0\r\n")
        .await;
    c.roundtrip(
        b"CONFIG GET client-output-buffer-limit\r\n",
        b"*2\r\n$26\r\nclient-output-buffer-limit\r\n$51\r\nnormal 0 0 0 slave 0 0 0 pubsub 33554432 8388608 60\r\n",
    )
    .await;
    c.roundtrip(
        b"CONFIG SET maxclients 1\r\n",
        b"-ERR herald does not support CONFIG SET ('maxclients'): its settings are command-line flags, HERALD_* environment variables or the --config file (see herald --help), read at start\r\n",
    )
    .await;
    let port = h.redis_addr.port().to_string();
    c.roundtrip(
        b"CONFIG GET port\r\n",
        format!("*2\r\n$4\r\nport\r\n${}\r\n{port}\r\n", port.len()),
    )
    .await;
    c.send(b"CONFIG GET *\r\n").await;
    c.expect(b"*28\r\n$4\r\nsave\r\n").await;
}

#[tokio::test]
async fn command_table_time_and_no_keys() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(b"COMMAND COUNT\r\n", b":32\r\n").await;
    c.roundtrip(
        b"COMMAND INFO publish nope\r\n",
        b"*2\r\n*10\r\n$7\r\npublish\r\n:3\r\n*4\r\n+pubsub\r\n+loading\r\n+stale\r\n+fast\r\n:0\r\n:0\r\n:0\r\n*1\r\n+@pubsub\r\n*0\r\n*0\r\n*0\r\n$-1\r\n",
    )
    .await;
    c.roundtrip(
        b"COMMAND DOCS echo\r\n",
        b"*2\r\n$4\r\necho\r\n*6\r\n$7\r\nsummary\r\n$25\r\nReturns the given string.\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$10\r\nconnection\r\n",
    )
    .await;
    c.roundtrip(
        b"COMMAND LIST FILTERBY PATTERN *numsub\r\n",
        b"*2\r\n$13\r\npubsub|numsub\r\n$18\r\npubsub|shardnumsub\r\n",
    )
    .await;
    c.send(b"TIME\r\n").await;
    c.expect(b"*2\r\n").await;
    let secs = read_text(&mut c).await;
    let _micros = read_text(&mut c).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs.parse::<u64>().unwrap().abs_diff(now) <= 2);
    c.roundtrip(
        b"DBSIZE\r\nFLUSHALL\r\nFLUSHDB ASYNC\r\nFLUSHALL x\r\n",
        b":0\r\n+OK\r\n+OK\r\n-ERR syntax error\r\n",
    )
    .await;
    c.send(b"CLIENT HELP\r\n").await;
    c.expect(
        b"*21\r\n+CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+SETNAME\r\n",
    )
    .await;
}

#[tokio::test]
async fn client_list_shows_every_connection() {
    let h = common::start().await;
    let mut a = Raw::connect(h.redis_addr).await;
    let mut b = Raw::connect(h.redis_addr).await;
    b.roundtrip(
        b"CLIENT SETNAME bee\r\nSUBSCRIBE x\r\n",
        [b"+OK\r\n".to_vec(), common::confirm("subscribe", b"x", 1)].concat(),
    )
    .await;
    a.send(b"CLIENT LIST\r\n").await;
    let list = read_text(&mut a).await;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].contains(" name= ")
            && lines[0].contains(" flags=N ")
            && lines[0].contains(" cmd=client|list "),
        "{list}"
    );
    assert!(
        lines[1].contains(" name=bee ")
            && lines[1].contains(" flags=P ")
            && lines[1].contains(" sub=1 psub=0 ssub=0 "),
        "{list}"
    );
    a.send(b"CLIENT LIST TYPE pubsub\r\n").await;
    let pubsub = read_text(&mut a).await;
    assert_eq!(pubsub.lines().count(), 1);
    assert!(pubsub.contains("name=bee"));
    a.roundtrip(b"CLIENT LIST TYPE master\r\n", b"$0\r\n\r\n")
        .await;
    a.roundtrip(
        b"CLIENT LIST TYPE x\r\n",
        b"-ERR Unknown client type 'x'\r\n",
    )
    .await;
}

#[tokio::test]
async fn maxclients_refuses_with_redis_error() {
    let mut config = common::config();
    config.maxclients = 2;
    let h = common::start_with(config).await;
    let before = herald::metrics::RESP_REJECTED.get();
    let mut a = Raw::connect(h.redis_addr).await;
    let mut b = Raw::connect(h.redis_addr).await;
    a.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    b.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.expect(b"-ERR max number of clients reached\r\n").await;
    c.expect_closed().await;
    assert!(herald::metrics::RESP_REJECTED.get() > before);
    a.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    // A slot frees when a client leaves (once herald has read the hang-up: until then
    // a newcomer is still refused).
    drop(b);
    let addr = h.redis_addr;
    common::wait_until("a newcomer is served again", move || async move {
        let mut d = Raw::connect(addr).await;
        d.send(b"PING\r\n").await;
        let mut reply = [0u8; 7];
        tokio::time::timeout(common::WAIT, d.stream.read_exact(&mut reply))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            reply == *b"+PONG\r\n" || reply == *b"-ERR ma",
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
        reply == *b"+PONG\r\n"
    })
    .await;
}

#[tokio::test]
async fn shutdown_finishes_replies_then_closes() {
    let h = common::start().await;
    let addr = h.redis_addr;
    // A subscriber that has not read yet: 200 deliveries are owed to it.
    let mut s = Raw::connect(addr).await;
    s.roundtrip(b"SUBSCRIBE a\r\n", common::confirm("subscribe", b"a", 1))
        .await;
    let payload = vec![b'p'; 1024];
    let mut p = Raw::connect(addr).await;
    for _ in 0..200 {
        p.roundtrip(cmd(&[b"PUBLISH", b"a", &payload]), b":1\r\n")
            .await;
    }
    h.shutdown();
    // Every delivery already queued arrives whole, then the connection ends.
    s.expect(common::message(b"a", &payload).repeat(200)).await;
    s.expect_closed().await;
    p.expect_closed().await;
    tokio::time::timeout(Duration::from_secs(5), h.stopped())
        .await
        .expect("stopped within the grace period");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
