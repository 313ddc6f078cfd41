//! The `herald` binary as an operator runs it: help, configuration sources, protected
//! mode, a clean exit on SIGTERM/SIGINT with clients connected, and SIGHUP reading the TLS
//! certificates again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// A running herald, the addresses it logged and every log line since.
struct Herald {
    child: Child,
    redis: String,
    http: String,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread that reads the log, until herald closes its stdout.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Herald {
    /// Every line herald logged, once it has exited (waits for the reader to finish).
    fn whole_log(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.log.lock().unwrap().clone()
    }
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Herald {
    let mut cmd = Command::new(BIN);
    // The test decides every setting: nothing inherited from the environment it runs in.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HERALD_")) {
        cmd.env_remove(k);
    }
    cmd.args(["--log-format", "json"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("herald starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut redis, mut http) = (String::new(), String::new());
    while redis.is_empty() || http.is_empty() {
        let line = lines.next().expect("herald logs its addresses").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        let f = &v["fields"];
        if let Some(a) = f["redis_addr"].as_str() {
            redis = a.to_string();
        }
        if let Some(a) = f["http_addr"].as_str() {
            http = a.to_string();
        }
    }
    // Keep draining the log so herald never blocks on a full pipe.
    let log = Arc::new(Mutex::new(Vec::new()));
    let kept = log.clone();
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    Herald {
        child,
        redis,
        http,
        log,
        reader: Some(reader),
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn ping(redis: &str) -> String {
    let mut s = TcpStream::connect(redis).unwrap();
    s.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn help_names_every_source_of_settings() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--redis-bind",
        "HERALD_REDIS_BIND",
        "--http-bind",
        "--config",
        "--requirepass",
        "--log-format",
        "--allowed-origins",
        "--auth-endpoint",
    ] {
        assert!(help.contains(needle), "--help mentions {needle}");
    }
}

#[test]
fn protected_mode_refuses_an_open_public_resp_port() {
    let out = Command::new(BIN)
        .args(["--redis-bind", "0.0.0.0:0", "--http-bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--requirepass") && err.contains("--protected-mode no"),
        "{err}"
    );
}

#[test]
fn environment_and_toml_file_configure_it() {
    let dir = std::env::temp_dir().join(format!("herald-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "http_bind = \"127.0.0.1:0\"\nrequirepass = \"from-file\"\n",
    )
    .unwrap();
    let mut h = spawn(
        &["--config", file.to_str().unwrap()],
        &[("HERALD_REDIS_BIND", "127.0.0.1:0")],
    );
    assert!(h.redis.starts_with("127.0.0.1:"));
    assert_eq!(ping(&h.redis), "-NOAUTH Authentication required.\r\n");
    signal(&h.child, "TERM");
    assert_eq!(wait_exit(&mut h.child, Duration::from_secs(5)), Some(0));
}

/// A raw WebSocket client: the upgrade request with RFC 6455's example key; the 101
/// must carry the RFC's accept value.
fn websocket(http: &str, path: &str) -> TcpStream {
    let mut ws = TcpStream::connect(http).unwrap();
    ws.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        ws,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    ws
}

/// One unmasked server frame: (opcode, payload).
fn server_frame(ws: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    ws.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            ws.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            ws.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    ws.read_exact(&mut payload).unwrap();
    (h[0] & 0x0f, payload)
}

/// One whole HTTP/1.1 response with a Content-Length: (head, body).
fn http_response(c: &mut TcpStream) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|n| n.trim().parse::<usize>().unwrap())
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    (head, body)
}

/// How long the test waits for what it expects from the process.
const WAIT: Duration = Duration::from_secs(10);

/// AUTH with `pass`, then `CONFIG GET maxclients`; returns the value.
fn maxclients_after_auth(redis: &str, pass: &str) -> String {
    let mut s = TcpStream::connect(redis).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "AUTH {pass}\r\nCONFIG GET maxclients\r\n").unwrap();
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    // +OK, then *2, $10, maxclients, $<n>, <value>: six lines.
    while reply.iter().filter(|&&c| c == b'\n').count() < 6 {
        if s.read_exact(&mut b).is_err() {
            panic!("AUTH {pass}: {:?}", String::from_utf8_lossy(&reply));
        }
        reply.push(b[0]);
    }
    let reply = String::from_utf8(reply).unwrap();
    let lines: Vec<&str> = reply.split("\r\n").collect();
    assert_eq!(
        lines[..5],
        ["+OK", "*2", "$10", "maxclients", "$2"],
        "{reply}"
    );
    lines[5].to_string()
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file() {
    let dir = std::env::temp_dir().join(format!("herald-precedence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "redis_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n\
         requirepass = \"from-file\"\nmaxclients = 11\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let env = [
        ("HERALD_REQUIREPASS", "from-env"),
        ("HERALD_MAXCLIENTS", "22"),
    ];
    for (args, env, pass, maxclients) in [
        (
            &[
                "--config",
                file,
                "--requirepass",
                "from-flag",
                "--maxclients",
                "33",
            ][..],
            &env[..],
            "from-flag",
            "33",
        ),
        (&["--config", file][..], &env[..], "from-env", "22"),
        (&["--config", file][..], &[][..], "from-file", "11"),
    ] {
        let mut h = spawn(args, env);
        assert_eq!(
            maxclients_after_auth(&h.redis, pass),
            maxclients,
            "{args:?} {env:?}"
        );
        signal(&h.child, "TERM");
        assert_eq!(wait_exit(&mut h.child, Duration::from_secs(10)), Some(0));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_and_sigint_say_goodbye_to_every_client_then_exit_zero() {
    for sig in ["TERM", "INT"] {
        // herald::resp at debug: each RESP connection's end, with its reason.
        let mut h = spawn(
            &[
                "--redis-bind",
                "127.0.0.1:0",
                "--http-bind",
                "127.0.0.1:0",
                "--log",
                "info,herald::resp=debug",
            ],
            &[],
        );
        assert_eq!(ping(&h.redis), "+PONG\r\n");
        // A subscriber, a Pusher WebSocket and an idle HTTP keep-alive connection stay
        // open across the signal.
        let mut sub = TcpStream::connect(&h.redis).unwrap();
        sub.set_read_timeout(Some(WAIT)).unwrap();
        sub.write_all(b"SUBSCRIBE news\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = sub.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"*3\r\n$9\r\nsubscribe"));
        let mut pusher = websocket(&h.http, "/app/herald-key?protocol=7");
        let (op, hello) = server_frame(&mut pusher);
        assert_eq!(op, 1);
        assert!(String::from_utf8_lossy(&hello).contains("pusher:connection_established"));
        let mut web = TcpStream::connect(&h.http).unwrap();
        web.set_read_timeout(Some(WAIT)).unwrap();
        web.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, _) = http_response(&mut web);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // A subscriber that reads nothing, owed more than the kernel buffers hold:
        // herald gives it seconds to take its last replies, so the process is still
        // running while the others get their goodbye. What they see comes from herald,
        // not from the kernel closing the sockets of a process that exited.
        let mut slow = TcpStream::connect(&h.redis).unwrap();
        slow.set_read_timeout(Some(WAIT)).unwrap();
        slow.write_all(b"SUBSCRIBE slow\r\n").unwrap();
        let n = slow.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"*3\r\n$9\r\nsubscribe"));
        let mut publisher = TcpStream::connect(&h.redis).unwrap();
        publisher.set_read_timeout(Some(WAIT)).unwrap();
        let payload = vec![b'x'; 1024 * 1024];
        let mut publish = format!(
            "*3\r\n$7\r\nPUBLISH\r\n$4\r\nslow\r\n${}\r\n",
            payload.len()
        )
        .into_bytes();
        publish.extend_from_slice(&payload);
        publish.extend_from_slice(b"\r\n");
        for _ in 0..24 {
            publisher.write_all(&publish).unwrap();
            let mut reply = [0u8; 4];
            publisher.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b":1\r\n");
        }

        signal(&h.child, sig);
        // Pusher's goodbye: pusher:error 4200, then a close frame with code 4200.
        let (op, bye) = server_frame(&mut pusher);
        let bye = String::from_utf8_lossy(&bye).into_owned();
        assert!(
            op == 1 && bye.contains("pusher:error") && bye.contains("4200"),
            "{op} {bye}"
        );
        let (op, close) = server_frame(&mut pusher);
        assert_eq!(op, 8);
        assert_eq!(close[..2], 4200u16.to_be_bytes());
        // The subscriber and the idle HTTP connection: closed (a read timeout fails).
        assert_eq!(
            sub.read(&mut buf).unwrap(),
            0,
            "SIG{sig}: subscriber closed"
        );
        assert_eq!(
            web.read(&mut buf).unwrap(),
            0,
            "SIG{sig}: HTTP connection closed"
        );
        assert!(
            h.child.try_wait().unwrap().is_none(),
            "SIG{sig}: the goodbyes came before the process exited"
        );
        assert_eq!(
            wait_exit(&mut h.child, Duration::from_secs(15)),
            Some(0),
            "SIG{sig}: exit 0 within the grace period"
        );
        drop(slow);
        // The subscriber's connection ended in herald's shutdown, not with the process.
        let sub_addr = format!("\"{}\"", sub.local_addr().unwrap());
        let log = h.whole_log();
        assert!(
            log.iter()
                .any(|l| l.contains("RESP connection closed: server shutdown")
                    && l.contains(&sub_addr)),
            "SIG{sig}: {log:#?}"
        );
    }
}

#[test]
fn http_clients_that_hang_up_mid_request_are_counted_not_logged_as_errors() {
    let mut h = spawn(
        &["--redis-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"],
        &[],
    );
    for _ in 0..3 {
        let mut half = TcpStream::connect(&h.http).unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    }
    let metric = || {
        let mut web = TcpStream::connect(&h.http).unwrap();
        web.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        web.read_to_string(&mut body).unwrap();
        let line = body
            .lines()
            .find(|l| l.starts_with("herald_http_connection_errors_total "))
            .expect("the metric is there")
            .to_string();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let end = Instant::now() + Duration::from_secs(5);
    while metric() < 3 {
        assert!(Instant::now() < end, "three hang-ups counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&h.child, "TERM");
    assert_eq!(wait_exit(&mut h.child, Duration::from_secs(6)), Some(0));
    let log = h.whole_log();
    assert!(log.iter().any(|l| l.contains("bye")), "{log:?}");
    assert!(
        !log.iter().any(|l| l.contains("connection error")),
        "{log:?}"
    );
}

#[test]
fn sighup_reads_the_certificates_again_and_herald_goes_on() {
    let dir = std::env::temp_dir().join(format!("herald-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let mut h = spawn(
        &[
            "--redis-bind",
            "127.0.0.1:0",
            "--http-bind",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    signal(&h.child, "HUP");
    let end = Instant::now() + Duration::from_secs(10);
    let reloaded = || {
        h.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("HTTP TLS certificate") && l.contains("reloaded"))
    };
    while !reloaded() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reloaded(), "herald logs the reload");
    assert_eq!(ping(&h.redis), "+PONG\r\n", "SIGHUP does not stop herald");
    signal(&h.child, "TERM");
    assert_eq!(wait_exit(&mut h.child, Duration::from_secs(10)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_says_whether_herald_would_start_and_exits() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--check-config")
            .args(args)
            .env_remove("HERALD_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["--redis-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("configuration OK\n"), "{out}");
    assert!(out.contains("HTTP 127.0.0.1:0 (plain)"), "{out}");

    let dir = std::env::temp_dir().join(format!("herald-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let one = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let (key, wrong) = (dir.join("key.pem"), dir.join("wrong.pem"));
    std::fs::write(&cert, one.cert.pem()).unwrap();
    std::fs::write(&key, one.key_pair.serialize_pem()).unwrap();
    std::fs::write(&wrong, other.key_pair.serialize_pem()).unwrap();
    let tls = |key: &std::path::Path| {
        run(&[
            "--redis-bind",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
    };
    let (code, out, _) = tls(&key);
    assert_eq!(code, Some(0));
    assert!(out.contains("(TLS)"), "{out}");
    let (code, _, err) = tls(&wrong);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not the certificate's"), "{err}");
    let (code, _, err) = run(&["--redis-bind", "0.0.0.0:0"]);
    assert_eq!(code, Some(2), "protected mode");
    assert!(err.contains("without a password"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
