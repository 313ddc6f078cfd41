//! herald and a real redis-server 7.0, side by side: the same raw bytes go to both and
//! the replies must be the same bytes. Covers what Redis tooling and test harnesses
//! send that a broker may not think of: `CLIENT REPLY ON|OFF|SKIP` (with pub/sub
//! messages still delivered while replies are off), `FUNCTION` with no library loaded,
//! `DEBUG` refused, and the cleanup commands a harness runs between tests.
//!
//! Each test starts its own redis-server (installed by `scripts/install-test-deps.sh`)
//! on a free loopback port, with no persistence. A conversation ends with a marker
//! whose reply must come last: whatever was suppressed would have arrived before it.

mod common;

use common::{Deadline, Raw, WAIT};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use tokio::io::AsyncReadExt;

/// A redis-server child process, killed when dropped.
struct RedisServer {
    child: Child,
    addr: SocketAddr,
}

impl RedisServer {
    async fn start(extra: &[&str]) -> RedisServer {
        // A free port: the OS picks one, the listener is closed, redis-server takes it.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", dir.to_str().expect("a UTF-8 temp dir")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/install-test-deps.sh)");
        let server = RedisServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Deadline::new();
        while tokio::net::TcpStream::connect(server.addr).await.is_err() {
            deadline.retry("redis-server accepts connections").await;
        }
        server
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection to herald and one to redis-server, fed the same bytes.
struct Both {
    herald: Raw,
    redis: Raw,
}

impl Both {
    async fn connect(herald: SocketAddr, redis: SocketAddr) -> Both {
        Both {
            herald: Raw::connect(herald).await,
            redis: Raw::connect(redis).await,
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.herald.send(bytes.as_ref()).await;
        self.redis.send(bytes.as_ref()).await;
    }

    /// Everything each server sends until its bytes end with `end`; both must be
    /// identical. Returns redis-server's.
    async fn until(&mut self, end: &[u8]) -> Vec<u8> {
        let redis = read_until(&mut self.redis, |b| b.ends_with(end), "redis-server").await;
        let herald = read_until(&mut self.herald, |b| b.ends_with(end), "herald").await;
        assert_eq!(
            String::from_utf8_lossy(&herald),
            String::from_utf8_lossy(&redis),
            "herald (left) and redis-server (right) differ"
        );
        redis
    }

    /// Send `request`, then expect the same bytes from both, and that they are `reply`.
    async fn roundtrip(&mut self, request: impl AsRef<[u8]>, reply: impl AsRef<[u8]>) {
        self.send(request).await;
        let got = self.until(reply.as_ref()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(reply.as_ref())
        );
    }

    /// An `ECHO end` marker after requests whose replies are compared as they are.
    async fn compare_until_marker(&mut self) {
        self.send(b"ECHO end\r\n").await;
        self.until(b"$3\r\nend\r\n").await;
    }

    /// `HELLO 3` on both; the replies differ (version, id) and are not compared.
    async fn hello3(&mut self) {
        self.herald.hello3().await;
        self.redis.hello3().await;
    }
}

/// Read until what was read satisfies `done`.
async fn read_until(c: &mut Raw, done: impl Fn(&[u8]) -> bool, who: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !done(&got) {
        let n = tokio::time::timeout(WAIT, c.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{who}: timed out; got {:?}", String::from_utf8_lossy(&got)))
            .expect("read");
        assert!(
            n > 0,
            "{who} closed; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

/// A whole bulk string reply's text.
async fn read_bulk(c: &mut Raw) -> String {
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    while !header.ends_with(b"\r\n") {
        tokio::time::timeout(WAIT, c.stream.read_exact(&mut byte))
            .await
            .expect("a bulk string header in time")
            .expect("read");
        header.push(byte[0]);
    }
    let header = String::from_utf8_lossy(&header);
    let len: usize = header
        .strip_prefix('$')
        .and_then(|h| h.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("not a bulk string header: {header:?}"));
    let mut body = vec![0u8; len + 2];
    tokio::time::timeout(WAIT, c.stream.read_exact(&mut body))
        .await
        .expect("the bulk string in time")
        .expect("read");
    String::from_utf8_lossy(&body[..len]).into_owned()
}

/// herald with the defaults and a redis-server 7.0, both on free loopback ports.
async fn servers() -> (herald::server::Running, RedisServer) {
    (common::start().await, RedisServer::start(&[]).await)
}

#[tokio::test]
async fn reference_is_redis_7_0() {
    let redis = RedisServer::start(&[]).await;
    let mut c = Raw::connect(redis.addr).await;
    c.send(b"INFO server\r\n").await;
    let info = read_bulk(&mut c).await;
    assert!(
        info.contains("redis_version:7.0."),
        "these tests compare with redis-server 7.0: {info}"
    );
}

#[tokio::test]
async fn client_reply_on_off_skip() {
    let (h, redis) = servers().await;
    let mut c = Both::connect(h.redis_addr, redis.addr).await;
    c.roundtrip(
        b"CLIENT REPLY\r\nCLIENT REPLY foo\r\nCLIENT REPLY ON x\r\nclient reply on\r\n",
        [
            &b"-ERR wrong number of arguments for 'client|reply' command\r\n"[..],
            b"-ERR syntax error\r\n",
            b"-ERR wrong number of arguments for 'client|reply' command\r\n",
            b"+OK\r\n",
        ]
        .concat(),
    )
    .await;
    // OFF: nothing at all, errors included, until ON answers +OK; SKIP is ignored.
    c.roundtrip(
        b"CLIENT REPLY OFF\r\nPING\r\nFOO\r\nCLIENT REPLY foo\r\nECHO x\r\nCLIENT REPLY SKIP\r\n\
          PING\r\nCLIENT REPLY ON\r\nPING\r\n",
        b"+OK\r\n+PONG\r\n",
    )
    .await;
    // SKIP: the next request's reply only; a skipped SKIP still skips the one after;
    // ON ends a pending skip (and answers); SKIP then OFF is OFF.
    c.roundtrip(
        b"CLIENT REPLY SKIP\r\nPING\r\nECHO a\r\n\
          CLIENT REPLY SKIP\r\nCLIENT REPLY SKIP\r\nECHO b\r\nECHO c\r\n\
          CLIENT REPLY SKIP\r\nFOO\r\nECHO d\r\n\
          CLIENT REPLY SKIP\r\nCLIENT REPLY ON\r\n\
          CLIENT REPLY SKIP\r\nCLIENT REPLY OFF\r\nPING\r\nCLIENT REPLY ON\r\nPING\r\n",
        b"$1\r\na\r\n$1\r\nc\r\n$1\r\nd\r\n+OK\r\n+OK\r\n+PONG\r\n",
    )
    .await;
    // RESET ends OFF and answers, unless its own reply is skipped.
    c.roundtrip(
        b"CLIENT REPLY OFF\r\nRESET\r\nPING\r\nCLIENT REPLY SKIP\r\nRESET\r\nPING\r\n",
        b"+RESET\r\n+PONG\r\n+PONG\r\n",
    )
    .await;
    // RESP3: the same, HELLO's own reply suppressed too.
    c.hello3().await;
    c.roundtrip(
        b"CLIENT REPLY OFF\r\nHELLO 3\r\nECHO x\r\nCLIENT REPLY ON\r\nCLIENT REPLY SKIP\r\nPING\r\nPING\r\n",
        b"+OK\r\n+PONG\r\n",
    )
    .await;
}

/// QUIT, or a protocol error, under CLIENT REPLY OFF: no reply, and herald closes the
/// connection. Here herald parts from redis-server 7.0 on purpose: Redis marks the
/// client "close after reply", writes no reply, so never closes it, and ignores all
/// it sends from then on (`flags=c` in CLIENT LIST for good).
#[tokio::test]
async fn quit_and_protocol_errors_under_reply_off_close_silently() {
    let h = common::start().await;
    for request in [
        &b"CLIENT REPLY OFF\r\nQUIT\r\n"[..],
        b"CLIENT REPLY OFF\r\n*abc\r\n",
    ] {
        let mut c = Raw::connect(h.redis_addr).await;
        c.send(request).await;
        c.expect_closed().await;
    }
}

/// A RESP2 subscriber whose replies are OFF still gets its (un)subscribe
/// confirmations and every message, pmessage and smessage; its PING, and the
/// refusal of CLIENT REPLY in subscribed mode, stay silent.
#[tokio::test]
async fn publications_reach_a_subscriber_with_replies_off() {
    let (h, redis) = servers().await;
    let mut sub = Both::connect(h.redis_addr, redis.addr).await;
    let mut publisher = Both::connect(h.redis_addr, redis.addr).await;
    sub.roundtrip(
        b"CLIENT REPLY OFF\r\nSUBSCRIBE ch\r\nPSUBSCRIBE c*\r\nSSUBSCRIBE sh\r\n",
        [
            common::confirm("subscribe", b"ch", 1),
            common::confirm("psubscribe", b"c*", 2),
            common::confirm("ssubscribe", b"sh", 1),
        ]
        .concat(),
    )
    .await;
    publisher
        .roundtrip(b"PUBLISH ch one\r\nSPUBLISH sh two\r\n", b":2\r\n:1\r\n")
        .await;
    sub.roundtrip(
        b"PING\r\nCLIENT REPLY ON\r\nUNSUBSCRIBE ch\r\nPUNSUBSCRIBE\r\nSUNSUBSCRIBE\r\n\
          CLIENT REPLY ON\r\nPING\r\n",
        [
            common::message(b"ch", b"one"),
            common::pmessage(b"c*", b"ch", b"one"),
            b"*3\r\n$8\r\nsmessage\r\n$2\r\nsh\r\n$3\r\ntwo\r\n".to_vec(),
            common::confirm("unsubscribe", b"ch", 1),
            common::confirm("punsubscribe", b"c*", 0),
            common::confirm("sunsubscribe", b"sh", 0),
            b"+OK\r\n+PONG\r\n".to_vec(),
        ]
        .concat(),
    )
    .await;
}

/// The same in RESP3 (pushes), and SKIP in front of a SUBSCRIBE skips nothing.
#[tokio::test]
async fn resp3_pushes_are_not_replies() {
    let (h, redis) = servers().await;
    let mut sub = Both::connect(h.redis_addr, redis.addr).await;
    let mut publisher = Both::connect(h.redis_addr, redis.addr).await;
    sub.hello3().await;
    sub.roundtrip(
        b"CLIENT REPLY SKIP\r\nSUBSCRIBE a\r\nCLIENT REPLY OFF\r\nSUBSCRIBE b\r\n",
        b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
    )
    .await;
    publisher.roundtrip(b"PUBLISH b hi\r\n", b":1\r\n").await;
    sub.roundtrip(
        b"PING\r\nPUBSUB NUMSUB b\r\nCLIENT REPLY ON\r\nPING\r\n",
        b">3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$2\r\nhi\r\n+OK\r\n+PONG\r\n",
    )
    .await;
}

/// MONITOR under CLIENT REPLY OFF shows nothing until ON (Redis writes monitor lines
/// as replies). Lines carry times and ports, so each server is checked on its own.
#[tokio::test]
async fn monitor_is_silenced_by_reply_off() {
    let (h, redis) = servers().await;
    for addr in [h.redis_addr, redis.addr] {
        let mut monitor = Raw::connect(addr).await;
        let mut other = Raw::connect(addr).await;
        monitor.send(b"CLIENT REPLY OFF\r\nMONITOR\r\n").await;
        // MONITOR has run once CLIENT LIST shows it (flags=O).
        let deadline = Deadline::new();
        loop {
            other.send(b"CLIENT LIST\r\n").await;
            if read_bulk(&mut other).await.contains(" flags=O ") {
                break;
            }
            deadline.retry("MONITOR is on").await;
        }
        other
            .roundtrip(b"ECHO hidden\r\n", b"$6\r\nhidden\r\n")
            .await;
        monitor.send(b"CLIENT REPLY ON\r\n").await;
        // Redis shows the monitor its own CLIENT REPLY ON after the +OK; herald does
        // not (it decides whether to feed monitors before the command runs, and then
        // there was none): only what follows the +OK is compared.
        let contains =
            |needle: &'static [u8]| move |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        let mut seen = read_until(&mut monitor, contains(b"+OK\r\n"), "monitor").await;
        other.roundtrip(b"ECHO shown\r\n", b"$5\r\nshown\r\n").await;
        seen.extend(read_until(&mut monitor, contains(b"\"ECHO\" \"shown\"\r\n"), "monitor").await);
        let seen = String::from_utf8_lossy(&seen);
        assert!(!seen.contains("hidden"), "{addr}: {seen}");
    }
}

#[tokio::test]
async fn function_answers_as_redis_with_no_library() {
    let (h, redis) = servers().await;
    let mut c = Both::connect(h.redis_addr, redis.addr).await;
    let stats2: &[u8] =
        b"*4\r\n$14\r\nrunning_script\r\n$-1\r\n$7\r\nengines\r\n*2\r\n$3\r\nLUA\r\n\
        *4\r\n$15\r\nlibraries_count\r\n:0\r\n$15\r\nfunctions_count\r\n:0\r\n";
    let stats3: &[u8] = b"%2\r\n$14\r\nrunning_script\r\n_\r\n$7\r\nengines\r\n%1\r\n$3\r\nLUA\r\n\
        %2\r\n$15\r\nlibraries_count\r\n:0\r\n$15\r\nfunctions_count\r\n:0\r\n";
    let empty_dump: &[u8] = b"\n\x00]\x9b\\@\x0f\x7f\xa2\xda";
    let dump_reply = [&b"$10\r\n"[..], empty_dump, b"\r\n"].concat();
    // What a harness cleaning up between tests sends.
    c.roundtrip(
        b"FUNCTION FLUSH\r\nFUNCTION FLUSH ASYNC\r\nfunction flush sync\r\nFUNCTION LIST\r\n\
          FUNCTION STATS\r\n",
        [&b"+OK\r\n+OK\r\n+OK\r\n*0\r\n"[..], stats2].concat(),
    )
    .await;
    c.roundtrip(
        b"FUNCTION LIST WITHCODE\r\nFUNCTION LIST LIBRARYNAME x*\r\n\
          FUNCTION LIST libraryname x withcode\r\nFUNCTION DUMP\r\nFUNCTION KILL\r\n\
          SCRIPT KILL\r\nFUNCTION DELETE lib\r\nFCALL f 0\r\nFCALL_RO f 1 k\r\n",
        [
            &b"*0\r\n*0\r\n*0\r\n"[..],
            &dump_reply[..],
            b"-NOTBUSY No scripts in execution right now.\r\n",
            b"-NOTBUSY No scripts in execution right now.\r\n",
            b"-ERR Library not found\r\n",
            b"-ERR Function not found\r\n",
            b"-ERR Function not found\r\n",
        ]
        .concat(),
    )
    .await;
    // Wrong arguments: the same errors, in the same order of checks.
    c.send(
        b"FUNCTION\r\nFUNCTION nope\r\nFUNCTION FLUSH x\r\nfunction flush sync async\r\n\
          FUNCTION LIST LIBRARYNAME\r\nFUNCTION LIST foo\r\nFUNCTION LIST WITHCODE WITHCODE\r\n\
          FUNCTION LIST LIBRARYNAME a LIBRARYNAME b\r\nFUNCTION STATS x\r\nFUNCTION KILL x\r\n\
          FUNCTION DUMP x\r\nFUNCTION DELETE\r\nFUNCTION HELP x\r\nFCALL f\r\nSCRIPT KILL x\r\n",
    )
    .await;
    c.compare_until_marker().await;
    // LOAD: options and the library's metadata line, checked as Redis checks them.
    for code in [
        &b"x"[..],
        b"#!lua",
        b"#!lua\n",
        b"#!lua name=x",
        b"#!\nx",
        b"#! name=a\nx",
        b"#!js name=a\nx",
        b"#!lua name=a foo=b\nx",
        b"#!lua name=a NAME=b\nx",
        b"#!lua name=a-b\nx",
        b"#!lua name=\nx",
        b"#!lua \"name=a b\"\nx",
        b"#!lua \"name=a\n",
    ] {
        c.send(common::cmd(&[b"FUNCTION", b"LOAD", code])).await;
    }
    c.send(b"FUNCTION LOAD\r\nFUNCTION LOAD foo x\r\nFUNCTION LOAD replace foo x\r\n")
        .await;
    c.compare_until_marker().await;
    // RESTORE: the payload of no library (what DUMP gave) restores with any policy;
    // a bad version or checksum, or a bad policy, gets Redis's error.
    let bad_crc = [&empty_dump[..9], b"\0"].concat();
    let new_version = [&b"\x0b"[..], &empty_dump[1..]].concat();
    let cases: [&[&[u8]]; 9] = [
        &[empty_dump],
        &[empty_dump, b"FLUSH"],
        &[empty_dump, b"append"],
        &[empty_dump, b"Replace"],
        &[&bad_crc],
        &[&new_version],
        &[b"short"],
        &[empty_dump, b"bogus"],
        &[b"x", b"bogus", b"extra"],
    ];
    for args in cases {
        let mut request: Vec<&[u8]> = vec![b"FUNCTION", b"RESTORE"];
        request.extend(args);
        c.send(common::cmd(&request)).await;
    }
    c.compare_until_marker().await;
    c.hello3().await;
    c.roundtrip(
        b"FUNCTION STATS\r\nFUNCTION LIST\r\nFUNCTION DUMP\r\n",
        [stats3, b"*0\r\n", &dump_reply[..]].concat(),
    )
    .await;
}

/// What herald cannot do is refused, never accepted: a Lua library (LOAD, or the
/// RESTORE of a payload holding one, here a real 7.0 DUMP of one).
#[tokio::test]
async fn function_load_of_a_library_is_refused() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    let refusal: &[u8] = b"-ERR herald runs no Lua, so it cannot load function libraries (it \
        answers FUNCTION as a Redis with none loaded). Publish with PUBLISH instead.\r\n";
    let library: &[u8] = b"#!lua name=a\nredis.register_function('f', function() return 1 end)";
    c.roundtrip(common::cmd(&[b"FUNCTION", b"LOAD", library]), refusal)
        .await;
    let dump: &[u8] = b"\xf5@B#!lua name=a\nredis.register_function('f', function() return 1 \
        end)\n\x00\xe3\xd1\xb9\x83\x19\xf4\xe3\x84";
    c.roundtrip(common::cmd(&[b"FUNCTION", b"RESTORE", dump]), refusal)
        .await;
    c.roundtrip(b"FUNCTION LIST\r\n", b"*0\r\n").await;
}

const DEBUG_REFUSAL: &[u8] = b"-ERR DEBUG command not allowed. If the enable-debug-command \
    option is set to \"local\", you can run it from a local connection, otherwise you need to \
    set this option in the configuration file, and then restart the server.\r\n";

#[tokio::test]
async fn debug_is_refused_as_redis_7_refuses_it() {
    let (h, redis) = servers().await;
    let mut c = Both::connect(h.redis_addr, redis.addr).await;
    c.roundtrip(
        b"DEBUG\r\nDEBUG foo\r\ndebug help\r\nDEBUG SLEEP 0\r\nDEBUG SEGFAULT\r\n",
        [
            &b"-ERR wrong number of arguments for 'debug' command\r\n"[..],
            DEBUG_REFUSAL,
            DEBUG_REFUSAL,
            DEBUG_REFUSAL,
            DEBUG_REFUSAL,
        ]
        .concat(),
    )
    .await;
    // Refused before the subscribed-mode rule.
    c.roundtrip(
        b"SUBSCRIBE a\r\nDEBUG x\r\n",
        [
            common::confirm("subscribe", b"a", 1),
            DEBUG_REFUSAL.to_vec(),
        ]
        .concat(),
    )
    .await;
}

/// DEBUG is refused even before AUTH, the same text.
#[tokio::test]
async fn debug_is_refused_before_auth() {
    let mut config = common::config();
    config.users = vec![herald::config::User {
        name: "default".into(),
        password: "pw".into(),
    }];
    let h = common::start_with(config).await;
    let redis = RedisServer::start(&["--requirepass", "pw"]).await;
    let mut c = Both::connect(h.redis_addr, redis.addr).await;
    c.roundtrip(
        b"DEBUG x\r\nCLIENT REPLY OFF\r\nFUNCTION FLUSH\r\n",
        [
            DEBUG_REFUSAL,
            b"-NOAUTH Authentication required.\r\n",
            b"-NOAUTH Authentication required.\r\n",
        ]
        .concat(),
    )
    .await;
}

/// What a test harness sends between tests to clean up.
#[tokio::test]
async fn harness_cleanup_commands() {
    let (h, redis) = servers().await;
    let mut c = Both::connect(h.redis_addr, redis.addr).await;
    c.roundtrip(
        b"FLUSHALL\r\nFLUSHALL SYNC\r\nFLUSHDB ASYNC\r\nSCRIPT FLUSH\r\nSCRIPT FLUSH ASYNC\r\n\
          FUNCTION FLUSH\r\nCONFIG RESETSTAT\r\nSCRIPT KILL\r\nFUNCTION KILL\r\nSELECT 0\r\n\
          DBSIZE\r\n",
        [
            &b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n"[..],
            b"-NOTBUSY No scripts in execution right now.\r\n",
            b"-NOTBUSY No scripts in execution right now.\r\n",
            b"+OK\r\n:0\r\n",
        ]
        .concat(),
    )
    .await;
    c.roundtrip(
        b"CONFIG RESETSTAT x\r\nSCRIPT FLUSH x\r\nFLUSHALL x\r\n",
        [
            &b"-ERR wrong number of arguments for 'config|resetstat' command\r\n"[..],
            b"-ERR SCRIPT FLUSH only support SYNC|ASYNC option\r\n",
            b"-ERR syntax error\r\n",
        ]
        .concat(),
    )
    .await;
}
