//! Authentication and the handshakes real clients send, byte for byte: predis 3's
//! pipelined `HELLO 2 AUTH ... SETNAME` + `CLIENT SETINFO` + `SELECT`, phpredis's
//! `AUTH` / `SELECT` / `ECHO` liveness check, and Redis's limits on what a client may
//! send before it has authenticated.

mod common;

use common::{cmd, Raw};
use herald::config::User;

const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

async fn with_password() -> herald::server::Running {
    let mut config = common::config();
    config.users = vec![
        User {
            name: "default".into(),
            password: "s3cret".into(),
        },
        User {
            name: "app".into(),
            password: "apppw".into(),
        },
    ];
    common::start_with(config).await
}

/// The HELLO map after the id, identical for every connection.
const HELLO_TAIL: &[u8] =
    b"\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";

fn hello2(id: i64) -> Vec<u8> {
    let mut v = b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:".to_vec();
    v.extend(id.to_string().into_bytes());
    v.extend(HELLO_TAIL);
    v
}

async fn client_id(c: &mut Raw) -> i64 {
    c.send(b"CLIENT ID\r\n").await;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut b)
            .await
            .unwrap();
        line.push(b[0]);
    }
    std::str::from_utf8(&line[1..line.len() - 2])
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn everything_but_auth_hello_quit_needs_authentication() {
    let h = with_password().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(b"PING\r\n", NOAUTH).await;
    c.roundtrip(b"PUBLISH a b\r\n", NOAUTH).await;
    c.roundtrip(b"SUBSCRIBE a\r\n", NOAUTH).await;
    c.roundtrip(cmd(&[b"EVAL", b"x", b"0"]), NOAUTH).await;
    c.roundtrip(b"SELECT 0\r\n", NOAUTH).await;
    c.roundtrip(b"GET k\r\n", NOAUTH).await;
    // Unknown commands and arity errors come before authentication, as in Redis.
    c.roundtrip(
        b"nope\r\n",
        b"-ERR unknown command 'nope', with args beginning with: \r\n",
    )
    .await;
    c.roundtrip(
        b"echo\r\n",
        b"-ERR wrong number of arguments for 'echo' command\r\n",
    )
    .await;
    c.roundtrip(
        b"HELLO 3\r\n",
        b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n",
    )
    .await;
    c.roundtrip(b"AUTH wrong\r\n", WRONGPASS).await;
    c.roundtrip(b"AUTH default wrong\r\n", WRONGPASS).await;
    c.roundtrip(b"AUTH nobody s3cret\r\n", WRONGPASS).await;
    c.roundtrip(b"AUTH app s3cret\r\n", WRONGPASS).await;
    c.roundtrip(b"AUTH a b c\r\n", b"-ERR syntax error\r\n")
        .await;
    c.roundtrip(b"PING\r\n", NOAUTH).await;
    c.roundtrip(b"AUTH s3cret\r\n", b"+OK\r\n").await;
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    // A later failure does not undo the login (Redis keeps it too).
    c.roundtrip(b"AUTH wrong\r\n", WRONGPASS).await;
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    // RESET logs out.
    c.roundtrip(b"RESET\r\n", b"+RESET\r\n").await;
    c.roundtrip(b"PING\r\n", NOAUTH).await;
    c.roundtrip(b"AUTH app apppw\r\n", b"+OK\r\n").await;
    c.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    c.roundtrip(b"QUIT\r\n", b"+OK\r\n").await;
    c.expect_closed().await;
    let mut q = Raw::connect(h.redis_addr).await;
    q.roundtrip(b"QUIT\r\n", b"+OK\r\n").await;
    q.expect_closed().await;
}

#[tokio::test]
async fn unauthenticated_clients_may_only_send_small_requests() {
    let h = with_password().await;
    common::refused(
        h.redis_addr,
        b"*11\r\n",
        b"-ERR Protocol error: unauthenticated multibulk length\r\n",
    )
    .await;
    common::refused(
        h.redis_addr,
        b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",
        b"-ERR Protocol error: unauthenticated bulk length\r\n",
    )
    .await;
    // After AUTH the ordinary limits apply.
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(b"AUTH s3cret\r\n", b"+OK\r\n").await;
    let big = vec![b'z'; 20000];
    let mut reply = b"$20000\r\n".to_vec();
    reply.extend(&big);
    reply.extend(b"\r\n");
    c.roundtrip(cmd(&[b"ECHO", &big]), reply).await;
    let many: Vec<&[u8]> = std::iter::once(&b"SUBSCRIBE"[..])
        .chain(std::iter::repeat_n(&b"c"[..], 11))
        .collect();
    c.send(cmd(&many)).await;
    c.expect(common::confirm("subscribe", b"c", 1).repeat(11))
        .await;
}

#[tokio::test]
async fn no_password_configured() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(
        b"AUTH pw\r\n",
        b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
    )
    .await;
    // The default user takes any password when none is set, as in Redis.
    c.roundtrip(b"AUTH default whatever\r\n", b"+OK\r\n").await;
    c.roundtrip(b"AUTH someone pw\r\n", WRONGPASS).await;
    let id = client_id(&mut c).await;
    c.roundtrip(b"HELLO 2 AUTH default x\r\n", hello2(id)).await;
}

#[tokio::test]
async fn predis_3_handshake_pipelined_in_one_write() {
    let h = with_password().await;
    let mut c = Raw::connect(h.redis_addr).await;
    let handshake = [
        cmd(&[
            b"HELLO", b"2", b"AUTH", b"default", b"s3cret", b"SETNAME", b"predis",
        ]),
        cmd(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"predis"]),
        cmd(&[b"CLIENT", b"SETINFO", b"LIB-VER", b"3.0.1"]),
        cmd(&[b"SELECT", b"0"]),
    ]
    .concat();
    c.send(&handshake).await;
    // The id is in the reply; read up to it, then the rest is fixed.
    c.expect(b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:")
        .await;
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    let rest = [HELLO_TAIL, b"+OK\r\n+OK\r\n+OK\r\n"].concat();
    while !got.ends_with(&rest) {
        tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut b)
            .await
            .unwrap();
        got.push(b[0]);
        assert!(
            got.len() < 200,
            "unexpected reply {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let id: i64 = std::str::from_utf8(&got[..got.len() - rest.len()])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(client_id(&mut c).await, id);
    c.roundtrip(b"CLIENT GETNAME\r\n", b"$6\r\npredis\r\n")
        .await;
    c.send(b"CLIENT INFO\r\n").await;
    let mut info = vec![0u8; 512];
    let n = tokio::io::AsyncReadExt::read(&mut c.stream, &mut info)
        .await
        .unwrap();
    let info = String::from_utf8_lossy(&info[..n]);
    assert!(info.contains(&format!("id={id} ")), "{info}");
    assert!(info.contains(" name=predis "), "{info}");
    assert!(info.contains(" lib-name=predis lib-ver=3.0.1"), "{info}");
    assert!(info.contains(" user=default "), "{info}");
    // And the connection works: predis then publishes.
    c.roundtrip(cmd(&[b"PUBLISH", b"ch", b"x"]), b":0\r\n")
        .await;
}

#[tokio::test]
async fn phpredis_auth_select_and_echo_liveness() {
    let h = with_password().await;
    let mut c = Raw::connect(h.redis_addr).await;
    // phpredis: AUTH with the password, SELECT the database, then on a persistent
    // connection's reuse an ECHO of a random token that must come back unchanged.
    c.roundtrip(cmd(&[b"AUTH", b"s3cret"]), b"+OK\r\n").await;
    c.roundtrip(cmd(&[b"SELECT", b"3"]), b"+OK\r\n").await;
    let token: &[u8] = b"phpredis:1732580000:1a2b3c4d";
    c.roundtrip(cmd(&[b"ECHO", token]), common::bulk(token))
        .await;
    c.roundtrip(
        cmd(&[b"SELECT", b"16"]),
        b"-ERR DB index is out of range\r\n",
    )
    .await;
    c.roundtrip(
        cmd(&[b"SELECT", b"x"]),
        b"-ERR value is not an integer or out of range\r\n",
    )
    .await;
    c.roundtrip(
        cmd(&[b"SELECT", b"99999999999"]),
        b"-ERR value is out of range, value must between -2147483648 and 2147483647\r\n",
    )
    .await;
}

#[tokio::test]
async fn hello_options_and_errors() {
    let h = common::start().await;
    let mut c = Raw::connect(h.redis_addr).await;
    c.roundtrip(b"HELLO 4\r\n", b"-NOPROTO unsupported protocol version\r\n")
        .await;
    c.roundtrip(
        b"HELLO x\r\n",
        b"-ERR Protocol version is not an integer or out of range\r\n",
    )
    .await;
    c.roundtrip(
        b"HELLO 3 foo\r\n",
        b"-ERR Syntax error in HELLO option 'foo'\r\n",
    )
    .await;
    c.roundtrip(
        b"HELLO 2 SETNAME \"a b\"\r\n",
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    )
    .await;
    let id = client_id(&mut c).await;
    c.roundtrip(b"HELLO\r\n", hello2(id)).await;
    c.roundtrip(b"HELLO 2 SETNAME worker\r\n", hello2(id)).await;
    c.roundtrip(b"CLIENT GETNAME\r\n", b"$6\r\nworker\r\n")
        .await;
    c.roundtrip(b"CLIENT SETNAME ''\r\n", b"+OK\r\n").await;
    c.roundtrip(b"CLIENT GETNAME\r\n", b"$-1\r\n").await;
    c.roundtrip(
        b"CLIENT SETINFO color red\r\n",
        b"-ERR Unrecognized option 'color'\r\n",
    )
    .await;
    c.roundtrip(
        b"CLIENT SETINFO lib-name \"a b\"\r\n",
        b"-ERR lib-name cannot contain spaces, newlines or special characters.\r\n",
    )
    .await;
}
