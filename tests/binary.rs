//! The `herald` binary as an operator runs it: help, configuration sources, protected
//! mode, and a clean exit on SIGTERM/SIGINT with clients connected.

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
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Herald {
    let mut cmd = Command::new(BIN);
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
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    Herald {
        child,
        redis,
        http,
        log,
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

#[test]
fn sigterm_and_sigint_exit_zero_with_clients_connected() {
    for sig in ["TERM", "INT"] {
        let mut h = spawn(
            &["--redis-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"],
            &[],
        );
        assert_eq!(ping(&h.redis), "+PONG\r\n");
        // A subscriber and an idle HTTP keep-alive connection stay open across the signal.
        let mut sub = TcpStream::connect(&h.redis).unwrap();
        sub.write_all(b"SUBSCRIBE news\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = sub.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"*3\r\n$9\r\nsubscribe"));
        let mut web = TcpStream::connect(&h.http).unwrap();
        web.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let n = web.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        signal(&h.child, sig);
        assert_eq!(
            wait_exit(&mut h.child, Duration::from_secs(6)),
            Some(0),
            "SIG{sig}: exit 0 within the grace period"
        );
        // The subscriber was closed by the server, not left hanging.
        sub.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert!(matches!(sub.read(&mut buf), Ok(0) | Err(_)));
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
    let log = h.log.lock().unwrap();
    assert!(
        log.iter().any(|l| l.contains("bye")),
        "the log was read to the end"
    );
    assert!(
        !log.iter().any(|l| l.contains("connection error")),
        "{log:?}"
    );
}
