//! The real Laravel redis broadcaster against herald.
//!
//! `tests/php/broadcast.php` boots Debian's php-laravel-framework (Laravel 8, whose
//! `RedisBroadcaster` sends the same EVAL script with the same `laravel_database_` prefix
//! as Laravel 9 to 11) and broadcasts through phpredis or predis, with a password and a
//! database number, exactly as an app does. Raw RESP subscribers connected to herald
//! must receive each channel's payload byte for byte, and nothing else.
//!
//! php, php-redis, php-predis and php-laravel-framework are required: when they are
//! missing these tests fail with the command that installs them (scripts/test.sh does).

use herald::config::{Config, User};
use herald::server::Running;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "broadcast-secret";
const APP_USER: &str = "laravel";
const APP_PASSWORD: &str = "app-secret";
const PREFIX: &str = "laravel_database_";
/// Long enough for php to boot Laravel on a busy CI machine.
const WAIT: Duration = Duration::from_secs(20);

async fn start_herald() -> Running {
    let config = Config {
        redis_bind: "127.0.0.1:0".parse().unwrap(),
        http_bind: "127.0.0.1:0".parse().unwrap(),
        users: vec![
            User {
                name: "default".into(),
                password: PASSWORD.into(),
            },
            User {
                name: APP_USER.into(),
                password: APP_PASSWORD.into(),
            },
        ],
        ..Config::default()
    };
    herald::server::start(config).await.expect("herald starts")
}

/// A RESP array of bulk strings, as Redis writes pub/sub messages.
fn resp_array(items: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        out.extend_from_slice(format!("${}\r\n", item.len()).as_bytes());
        out.extend_from_slice(item);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A subscription confirmation: `*3 $kind $name :count`.
fn confirmation(kind: &str, name: &str, count: usize) -> Vec<u8> {
    let mut out = resp_array(&[kind.as_bytes(), name.as_bytes()]);
    out[1] = b'3';
    out.extend_from_slice(format!(":{count}\r\n").as_bytes());
    out
}

/// A raw RESP connection, so what herald writes is compared byte for byte.
struct Conn(TcpStream);

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let mut conn = Conn(TcpStream::connect(addr).await.expect("connect to herald"));
        conn.send(&["AUTH", PASSWORD]).await;
        conn.expect(b"+OK\r\n").await;
        conn
    }

    async fn send(&mut self, args: &[&str]) {
        let items: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.0.write_all(&resp_array(&items)).await.unwrap();
    }

    /// Read exactly `expected.len()` bytes and compare them.
    async fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0; expected.len()];
        tokio::time::timeout(WAIT, self.0.read_exact(&mut got))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {:?}",
                    String::from_utf8_lossy(expected)
                )
            })
            .expect("read from herald");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// PING in subscribed mode answers `pong` in order, so reading it next proves that
    /// nothing else (a duplicate, a stray message) was delivered before it.
    async fn expect_nothing_more(&mut self) {
        self.send(&["PING"]).await;
        self.expect(&resp_array(&[b"pong", b""])).await;
    }
}

/// Connections subscribed to channels one by one, and to the prefix's pattern.
struct Subscribers {
    exact: Conn,
    pattern: Conn,
}

const PATTERN: &str = "laravel_database_*";

impl Subscribers {
    async fn open(addr: SocketAddr, channels: &[&str]) -> Subscribers {
        let mut exact = Conn::open(addr).await;
        let names: Vec<String> = channels.iter().map(|c| format!("{PREFIX}{c}")).collect();
        let mut args = vec!["SUBSCRIBE"];
        args.extend(names.iter().map(String::as_str));
        exact.send(&args).await;
        for (i, name) in names.iter().enumerate() {
            exact.expect(&confirmation("subscribe", name, i + 1)).await;
        }
        let mut pattern = Conn::open(addr).await;
        pattern.send(&["PSUBSCRIBE", PATTERN]).await;
        pattern
            .expect(&confirmation("psubscribe", PATTERN, 1))
            .await;
        Subscribers { exact, pattern }
    }

    /// Both connections receive `payload` on each channel, in order, and nothing else.
    async fn expect(&mut self, channels: &[&str], payload: &str) {
        for channel in channels {
            let name = format!("{PREFIX}{channel}");
            self.exact
                .expect(&resp_array(&[
                    b"message",
                    name.as_bytes(),
                    payload.as_bytes(),
                ]))
                .await;
            self.pattern
                .expect(&resp_array(&[
                    b"pmessage",
                    PATTERN.as_bytes(),
                    name.as_bytes(),
                    payload.as_bytes(),
                ]))
                .await;
        }
        self.exact.expect_nothing_more().await;
        self.pattern.expect_nothing_more().await;
    }
}

/// One run of tests/php/broadcast.php.
struct Broadcast<'a> {
    client: &'a str,
    channels: &'a [&'a str],
    event: &'a str,
    data: &'a str,
    extra: Vec<&'a str>,
}

impl Broadcast<'_> {
    fn new<'a>(
        client: &'a str,
        channels: &'a [&'a str],
        event: &'a str,
        data: &'a str,
    ) -> Broadcast<'a> {
        Broadcast {
            client,
            channels,
            event,
            data,
            extra: vec!["--password", PASSWORD, "--db", "3", "--prefix", PREFIX],
        }
    }

    /// Run php and return its exit status and stderr.
    async fn run(&self, addr: SocketAddr) -> (bool, String) {
        let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "php", "broadcast.php"]
            .iter()
            .collect();
        let port = addr.port().to_string();
        let mut cmd = tokio::process::Command::new("php");
        cmd.arg(&script)
            .args(["--host", "127.0.0.1", "--port", &port])
            .args(["--client", self.client])
            .args(["--event", self.event, "--data", self.data])
            .args(&self.extra);
        for channel in self.channels {
            cmd.args(["--channel", channel]);
        }
        let output = tokio::time::timeout(WAIT, cmd.output())
            .await
            .expect("php finished in time")
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run php ({e}): install the test dependencies with scripts/test.sh \
                     (apt-get install php-cli php-redis php-predis php-laravel-framework)"
                )
            });
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn succeeds(&self, addr: SocketAddr) {
        let (ok, stderr) = self.run(addr).await;
        assert!(ok, "php broadcast via {} failed: {stderr}", self.client);
    }
}

const CLIENTS: [&str; 2] = ["phpredis", "predis"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_channel_through_both_clients() {
    let herald = start_herald().await;
    let channels = ["orders.1"];
    let mut subs = Subscribers::open(herald.redis_addr, &channels).await;
    for client in CLIENTS {
        Broadcast::new(
            client,
            &channels,
            "OrderShipped",
            r#"{"id":1,"total":"9.50"}"#,
        )
        .succeeds(herald.redis_addr)
        .await;
        subs.expect(
            &channels,
            r#"{"event":"OrderShipped","data":{"id":1,"total":"9.50"},"socket":null}"#,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_channels_of_every_kind_through_both_clients() {
    let herald = start_herald().await;
    let channels = ["orders", "private-App.Models.User.7", "presence-room.42"];
    let mut subs = Subscribers::open(herald.redis_addr, &channels).await;
    for client in CLIENTS {
        Broadcast::new(
            client,
            &channels,
            r"App\Events\MessagePosted",
            r#"{"message":{"id":5,"body":"héllo / \"wörld\""},"user":{"id":7}}"#,
        )
        .succeeds(herald.redis_addr)
        .await;
        // PHP's json_encode escapes `\`, `/` and non-ASCII; herald must pass it untouched.
        subs.expect(
            &channels,
            r#"{"event":"App\\Events\\MessagePosted","data":{"message":{"id":5,"body":"h\u00e9llo \/ \"w\u00f6rld\""},"user":{"id":7}},"socket":null}"#,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_others_carries_the_socket_id() {
    let herald = start_herald().await;
    let channels = ["chat.1", "chat.2"];
    let mut subs = Subscribers::open(herald.redis_addr, &channels).await;
    for client in CLIENTS {
        let mut broadcast = Broadcast::new(client, &channels, "whisper", r#"{"text":"hi"}"#);
        broadcast.extra.extend(["--socket", "1234.5678"]);
        broadcast.succeeds(herald.redis_addr).await;
        // Laravel 8 copies `data` before pulling `socket` out, so it is in both places.
        subs.expect(
            &channels,
            r#"{"event":"whisper","data":{"text":"hi","socket":"1234.5678"},"socket":"1234.5678"}"#,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_broadcasts_over_one_connection_arrive_in_order() {
    let herald = start_herald().await;
    let channels = ["ticks"];
    let mut subs = Subscribers::open(herald.redis_addr, &channels).await;
    for client in CLIENTS {
        let mut broadcast = Broadcast::new(client, &channels, "Tick", r#"{"n":1}"#);
        broadcast.extra.extend(["--repeat", "50"]);
        broadcast.succeeds(herald.redis_addr).await;
        let message = resp_array(&[
            b"message",
            b"laravel_database_ticks",
            br#"{"event":"Tick","data":{"n":1},"socket":null}"#,
        ]);
        subs.exact.expect(&message.repeat(50)).await;
        subs.exact.expect_nothing_more().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predis_authenticates_as_a_named_user() {
    let herald = start_herald().await;
    let channels = ["orders.9"];
    let mut subs = Subscribers::open(herald.redis_addr, &channels).await;
    let mut broadcast = Broadcast::new("predis", &channels, "OrderShipped", r#"{"id":9}"#);
    broadcast.extra = vec![
        "--username",
        APP_USER,
        "--password",
        APP_PASSWORD,
        "--db",
        "3",
    ];
    broadcast.succeeds(herald.redis_addr).await;
    subs.expect(
        &channels,
        r#"{"event":"OrderShipped","data":{"id":9},"socket":null}"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_the_broadcast_and_delivers_nothing() {
    let herald = start_herald().await;
    let channels = ["orders.1"];
    let mut subs = Subscribers::open(herald.redis_addr, &channels).await;
    for client in CLIENTS {
        let mut broadcast = Broadcast::new(client, &channels, "OrderShipped", r#"{"id":1}"#);
        broadcast.extra = vec!["--password", "not-the-password", "--db", "3"];
        let (ok, stderr) = broadcast.run(herald.redis_addr).await;
        assert!(!ok, "{client} broadcast with a wrong password succeeded");
        assert!(
            stderr.contains("WRONGPASS"),
            "{client} should report Redis's WRONGPASS error, got: {stderr}"
        );
        subs.exact.expect_nothing_more().await;
        subs.pattern.expect_nothing_more().await;
    }
}
