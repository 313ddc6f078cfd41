//! The history store wired into the broker, configured through real flags: a socket.io
//! client subscribes, Laravel publishes over RESP, and the broker's `since` answers what
//! a client that stopped at an offset missed (no client recovers yet: that is issue 12).
//!
//! - `--history-size` bounds how far back `since` reaches: a gap one longer is TooOld,
//!   never a partial answer.
//! - A stream outlives its last subscriber: what is published while the only client is
//!   away is kept and numbered in the same epoch.
//! - `--history-ttl-seconds`: the sweep frees expired history (even of a stream with
//!   subscribers) and drops a stream nobody listened to for a TTL; one created again has
//!   a new epoch, and an offset of the old one is TooOld.
//!
//! Every wait polls with a deadline (`common::wait_until`); nothing sleeps and then asserts.

use herald::broker::{Namespace, Offset, TooOld};
use herald::config::Config;
use herald::server::Running;

mod common;
use common::{cmd, next_text, socketio_socket, wait_until, Raw, Ws};

/// herald started in-process from these command-line flags, on free loopback ports
/// (socket.io recovery off, as `common::config` has it: these tests read the broker's
/// history directly).
async fn start(flags: &[&str]) -> Running {
    let args = ["herald", "--redis-bind", "127.0.0.1:0"]
        .into_iter()
        .chain(["--http-bind", "127.0.0.1:0", "--recovery-window", "0"])
        .chain(flags.iter().copied());
    common::start_with(Config::from_args(args).expect("the flags parse")).await
}

/// Laravel's broadcast of event number `n`.
fn event(n: u64) -> String {
    format!(r#"{{"event":"App\\Events\\Paid","data":{{"n":{n}}},"socket":null}}"#)
}

/// `PUBLISH orders <event n>` for each `n`, each reaching `receivers`.
async fn publish(r: &Running, ns: impl IntoIterator<Item = u64>, receivers: usize) {
    let mut c = Raw::connect(r.redis_addr).await;
    for n in ns {
        c.roundtrip(
            cmd(&[b"PUBLISH", b"orders", event(n).as_bytes()]),
            format!(":{receivers}\r\n"),
        )
        .await;
    }
}

/// The socket.io frames of events `ns` on `orders`, in order.
async fn expect_events(ws: &mut Ws, ns: impl IntoIterator<Item = u64>) {
    for n in ns {
        assert_eq!(
            next_text(ws).await,
            format!(r#"42["App\\Events\\Paid","orders",{{"n":{n}}}]"#)
        );
    }
}

fn orders(r: &Running) -> Option<Offset> {
    r.state.broker.position(&Namespace::Default, b"orders")
}

/// What `since` gives after `seq` of `epoch`, as (seq, payload) pairs.
fn since(r: &Running, at: Offset, seq: u64) -> Result<Vec<(u64, String)>, TooOld> {
    let after = Offset { seq, ..at };
    let missed = r
        .state
        .broker
        .since(&Namespace::Default, b"orders", after)?;
    Ok(missed
        .into_iter()
        .map(|p| {
            let offset = p.offset.expect("numbered");
            assert_eq!(offset.epoch, at.epoch);
            assert_eq!(p.channel(), b"orders");
            (offset.seq, String::from_utf8(p.payload.to_vec()).unwrap())
        })
        .collect())
}

fn events(ns: impl IntoIterator<Item = u64>) -> Vec<(u64, String)> {
    ns.into_iter().map(|n| (n, event(n))).collect()
}

/// One row of /metrics.
async fn metric(r: &Running, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", r.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} on /metrics:\n{text}"));
    row.parse().unwrap()
}

#[tokio::test]
async fn history_size_bounds_the_gap_and_the_stream_outlives_its_subscriber() {
    let r = start(&["--history-size", "3"]).await;
    let (mut ws, _) = socketio_socket(r.http_addr, "orders").await;
    publish(&r, 1..=5, 1).await;
    expect_events(&mut ws, 1..=5).await;
    let at = orders(&r).expect("a stream for the channel the client is on");
    assert_eq!(at.seq, 5);
    assert_eq!(since(&r, at, 5), Ok(vec![]), "nothing missed");
    assert_eq!(since(&r, at, 3), Ok(events(4..=5)), "2 behind: both");
    assert_eq!(since(&r, at, 2), Ok(events(3..=5)), "3 behind: all 3 kept");
    assert_eq!(since(&r, at, 1), Err(TooOld), "4 behind: 2 is gone");
    assert_eq!(metric(&r, "herald_history_channels").await, 1);
    assert!(metric(&r, "herald_history_bytes").await > 3 * event(1).len() as u64);
    assert_eq!(metric(&r, "herald_history_evicted_total").await, 0);

    // The only client goes away (its connection drops); the app goes on publishing.
    ws.close(None).await.unwrap();
    wait_until("the edge has left the channel", || async {
        r.state.broker.interest().streams.is_empty()
    })
    .await;
    publish(&r, 6..=7, 0).await;
    let now = orders(&r).expect("the stream lingers");
    assert_eq!(
        (now.epoch, now.seq),
        (at.epoch, 7),
        "numbered in the same epoch"
    );
    assert_eq!(
        since(&r, at, 5),
        Ok(events(6..=7)),
        "what the client missed while away, exactly"
    );

    // Back within the linger: the same stream, still numbering.
    let (mut ws, _) = socketio_socket(r.http_addr, "orders").await;
    publish(&r, [8], 1).await;
    expect_events(&mut ws, [8]).await;
    assert_eq!(orders(&r), Some(Offset { seq: 8, ..at }));
    r.shutdown();
}

#[tokio::test]
async fn the_sweep_expires_history_and_drops_a_stream_nobody_listens_to() {
    let r = start(&["--history-ttl-seconds", "2"]).await;
    let (mut ws, _) = socketio_socket(r.http_addr, "orders").await;
    publish(&r, [1], 1).await;
    let first = orders(&r).unwrap();
    assert_eq!(since(&r, first, 0), Ok(events([1])), "kept for 2 s");
    expect_events(&mut ws, [1]).await;

    // Expired history is freed while the client stays; its stream stays too.
    wait_until("the sweep has freed the expired publication", || async {
        metric(&r, "herald_history_channels").await == 0
    })
    .await;
    assert_eq!(metric(&r, "herald_history_bytes").await, 0);
    assert_eq!(since(&r, first, 0), Err(TooOld), "1 expired");
    assert_eq!(since(&r, first, 1), Ok(vec![]), "nothing after it");

    // Nobody left: after a TTL the sweep drops the stream.
    ws.close(None).await.unwrap();
    wait_until("the sweep has dropped the stream", || async {
        orders(&r).is_none()
    })
    .await;

    // A new subscriber makes a new stream: a new epoch, the old offset is TooOld.
    let (mut ws, _) = socketio_socket(r.http_addr, "orders").await;
    publish(&r, [2], 1).await;
    expect_events(&mut ws, [2]).await;
    let again = orders(&r).unwrap();
    assert_ne!(again.epoch, first.epoch, "a new epoch");
    assert_eq!(again.seq, 1);
    assert_eq!(since(&r, first, 1), Err(TooOld), "the old epoch is gone");
    r.shutdown();
}
