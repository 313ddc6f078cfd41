//! TLS on herald's listeners (`--tls-cert`/`--tls-key`, `--redis-tls-cert`/`--redis-tls-key`),
//! with certificates made here by a test CA (rcgen) and real rustls clients:
//! - RESP over TLS: SUBSCRIBE and PUBLISH, byte for byte as over plain TCP; the real Laravel
//!   broadcaster through predis over `tls://` reaches a TLS subscriber;
//! - HTTP over TLS: `/healthz` over https with the CA trusted;
//! - a client that does not trust the CA, or is shown an expired certificate, is refused in
//!   the handshake, and herald counts it; a trusted client right after is served;
//! - a client that connects and never starts the handshake is cut at the header deadline;
//!   plain text on a TLS port gets no reply;
//! - reload (SIGHUP's path): new connections get the new certificate, the established one
//!   keeps working; a pair that does not load keeps the old one;
//! - a certificate without its key, or a key that is not the certificate's, stops herald at
//!   start with the reason.

mod common;

use common::{cmd, config, message, start_with, wait_until};
use herald::config::Config;
use herald::server::Running;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(10);

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A server certificate for 127.0.0.1 and localhost, and its key, both PEM; `expired`:
    /// valid only in 2020.
    fn leaf(&self, expired: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client that trusts this CA only.
    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// A directory of PEM files for one test, removed at its end.
struct Files(PathBuf);

impl Files {
    fn new(test: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("herald-tls-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Write a certificate and key pair as `server.pem` and `server.key`.
    fn pair(&self, (cert, key): (String, String)) -> (PathBuf, PathBuf) {
        (
            self.write("server.pem", &cert),
            self.write("server.key", &key),
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// herald with both ports on TLS with `pair`, and a short handshake deadline.
async fn start_tls((cert, key): &(PathBuf, PathBuf)) -> Running {
    start_with(Config {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
        redis_tls_cert: Some(cert.clone()),
        redis_tls_key: Some(key.clone()),
        http_header_timeout: Duration::from_millis(500),
        ..config()
    })
    .await
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(connector: &TlsConnector, addr: SocketAddr) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("the handshake ends in time")
}

/// Send `request`, read exactly `reply`.
async fn roundtrip(s: &mut Tls, request: &[u8], reply: &[u8]) {
    s.write_all(request).await.unwrap();
    expect(s, reply).await;
}

async fn expect(s: &mut Tls, expected: &[u8]) {
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .expect("the reply in time")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

fn handshake_failures() -> u64 {
    herald::metrics::TLS_HANDSHAKE_FAILURES.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp_over_tls_publishes_and_subscribes_byte_for_byte() {
    let files = Files::new("resp");
    let ca = Ca::new("herald test CA");
    let herald = start_tls(&files.pair(ca.leaf(false))).await;
    let tls = ca.connector();
    let mut sub = connect(&tls, herald.redis_addr).await.unwrap();
    roundtrip(
        &mut sub,
        &cmd(&[b"SUBSCRIBE", b"orders"]),
        b"*3\r\n$9\r\nsubscribe\r\n$6\r\norders\r\n:1\r\n",
    )
    .await;
    let mut publisher = connect(&tls, herald.redis_addr).await.unwrap();
    roundtrip(
        &mut publisher,
        &cmd(&[b"PUBLISH", b"orders", b"shipped"]),
        b":1\r\n",
    )
    .await;
    expect(&mut sub, &message(b"orders", b"shipped")).await;
    roundtrip(&mut publisher, b"PING\r\n", b"+PONG\r\n").await;
}

/// The real Laravel broadcaster (tests/php/broadcast.php) over `tls://` with `client`.
async fn laravel_broadcasts_over_tls(client: &str) {
    let files = Files::new(&format!("laravel-{client}"));
    let ca = Ca::new("herald test CA");
    let herald = start_tls(&files.pair(ca.leaf(false))).await;
    let ca_file = files.write("ca.pem", &ca.cert.pem());
    let mut sub = connect(&ca.connector(), herald.redis_addr).await.unwrap();
    roundtrip(
        &mut sub,
        &cmd(&[b"SUBSCRIBE", b"laravel_database_orders.1"]),
        b"*3\r\n$9\r\nsubscribe\r\n$25\r\nlaravel_database_orders.1\r\n:1\r\n",
    )
    .await;
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "php", "broadcast.php"]
        .iter()
        .collect();
    let port = herald.redis_addr.port().to_string();
    let out = tokio::process::Command::new("php")
        .arg(&script)
        .args(["--port", &port, "--client", client, "--channel", "orders.1"])
        .args(["--event", "OrderShipped", "--data", r#"{"id":1}"#])
        .arg("--tls-ca")
        .arg(&ca_file)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("php finished in time")
        .expect("php runs (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "{client}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect(
        &mut sub,
        &message(
            b"laravel_database_orders.1",
            br#"{"event":"OrderShipped","data":{"id":1},"socket":null}"#,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn laravel_broadcasts_through_predis_over_tls() {
    laravel_broadcasts_over_tls("predis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn laravel_broadcasts_through_phpredis_over_tls() {
    laravel_broadcasts_over_tls("phpredis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_http_port() {
    let files = Files::new("https");
    let ca = Ca::new("herald test CA");
    let herald = start_tls(&files.pair(ca.leaf(false))).await;
    let mut s = connect(&ca.connector(), herald.http_addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut got))
        .await
        .expect("the response in time")
        .unwrap();
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with(r#"{"status":"ok"}"#), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_certificate_is_refused_and_counted() {
    let files = Files::new("untrusted");
    let ca = Ca::new("herald test CA");
    let herald = start_tls(&files.pair(ca.leaf(false))).await;
    let before = handshake_failures();
    let stranger = Ca::new("another CA");
    for addr in [herald.redis_addr, herald.http_addr] {
        let e = connect(&stranger.connector(), addr).await.unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    }
    wait_until("herald to count both refused handshakes", || async {
        handshake_failures() >= before + 2
    })
    .await;
    let mut trusted = connect(&ca.connector(), herald.redis_addr).await.unwrap();
    roundtrip(&mut trusted, b"PING\r\n", b"+PONG\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_by_the_client() {
    let files = Files::new("expired");
    let ca = Ca::new("herald test CA");
    let herald = start_tls(&files.pair(ca.leaf(true))).await;
    let e = connect(&ca.connector(), herald.redis_addr)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("certificate expired"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_starts_the_handshake_is_cut_at_the_deadline() {
    let files = Files::new("silent");
    let ca = Ca::new("herald test CA");
    let herald = start_tls(&files.pair(ca.leaf(false))).await;
    for addr in [herald.redis_addr, herald.http_addr] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("herald closes the silent connection (500 ms deadline)");
        assert!(matches!(n, Ok(0) | Err(_)), "nothing but the close: {n:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_on_a_tls_port_gets_no_reply() {
    let files = Files::new("plain");
    let ca = Ca::new("herald test CA");
    let herald = start_tls(&files.pair(ca.leaf(false))).await;
    let mut tcp = TcpStream::connect(herald.redis_addr).await.unwrap();
    tcp.write_all(b"PING\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got))
        .await
        .expect("herald closes the connection");
    assert!(!got.windows(4).any(|w| w == b"PONG"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_gives_new_connections_the_new_certificate_and_keeps_the_old_ones() {
    let files = Files::new("reload");
    let first = Ca::new("first CA");
    let pair = files.pair(first.leaf(false));
    let herald = start_tls(&pair).await;
    let mut established = connect(&first.connector(), herald.redis_addr)
        .await
        .unwrap();
    roundtrip(&mut established, b"PING\r\n", b"+PONG\r\n").await;

    // A pair that does not load (a key of another certificate) keeps the old one.
    let second = Ca::new("second CA");
    let (_, stray_key) = second.leaf(false);
    files.write("server.key", &stray_key);
    let failures = herald::metrics::TLS_RELOAD_FAILURES.get();
    herald.reload(Ok((*herald.state.config()).clone()));
    assert!(herald::metrics::TLS_RELOAD_FAILURES.get() >= failures + 2);
    let mut still = connect(&first.connector(), herald.redis_addr)
        .await
        .unwrap();
    roundtrip(&mut still, b"PING\r\n", b"+PONG\r\n").await;

    files.pair(second.leaf(false));
    herald.reload(Ok((*herald.state.config()).clone()));
    for addr in [herald.redis_addr, herald.http_addr] {
        let e = connect(&first.connector(), addr).await.unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        connect(&second.connector(), addr).await.unwrap();
    }
    roundtrip(&mut established, b"PING\r\n", b"+PONG\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_its_key_or_with_another_key_stops_herald() {
    let files = Files::new("bad");
    let ca = Ca::new("herald test CA");
    let (cert, _) = files.pair(ca.leaf(false));
    let e = herald::server::start(Config {
        tls_cert: Some(cert.clone()),
        ..config()
    })
    .await
    .err()
    .expect("refused");
    assert!(
        e.to_string().contains("--tls-cert and its key go together"),
        "{e}"
    );
    let (_, other_key) = ca.leaf(false);
    let key = files.write("other.key", &other_key);
    let e = herald::server::start(Config {
        redis_tls_cert: Some(cert),
        redis_tls_key: Some(key),
        ..config()
    })
    .await
    .err()
    .expect("refused");
    assert!(e.to_string().contains("RESP TLS: the key in"), "{e}");
}
