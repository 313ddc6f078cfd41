//! Pusher resume across nodes (`--cluster`): the marks of a recovery app's connections
//! ([`super::resume`]) are kept on the backplane too, so a client back on any node
//! resumes there, from the channel's history in Redis.
//!
//! - An open connection's marks are written (`pusher:open:<app>:<socket>`) within a
//!   second of a change, for the window, and renewed every half window ([`write_open`]):
//!   a client of a node that died without a word (SIGKILL) resumes elsewhere from where
//!   each of its subscriptions began (no count: the whole of each is read back).
//! - At an unclean close the marks, with what each subscription was sent, are kept
//!   (`pusher:<app>:<socket>`) for the window ([`share`]); a clean close or a refusal
//!   removes both ([`forget`]).
//! - `herald:resume` for a socket this node does not hold takes both at once (`GETDEL`),
//!   the closed connection's first ([`take`]): once, on one node. A node that holds the
//!   marks itself removes the copies as it takes them.
//!
//! A connection still open on another node when its client resumes here is not closed
//! there: that node ends it when it sees it die (its heartbeat), as it would anyway.

use super::resume::{KeptMarks, Mark, Reason};
use crate::broker::Broker;
use crate::shutdown::Shutdown;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One connection's marks, by channel.
pub type Channels = Vec<(Box<str>, Mark)>;

/// Where a closed connection's marks are kept.
fn kept_key(app: &str, socket: &str) -> String {
    format!("pusher:{app}:{socket}")
}

/// Where an open connection's marks are written.
fn open_key(app: &str, socket: &str) -> String {
    format!("pusher:open:{app}:{socket}")
}

/// Both, the closed connection's first: a resume takes whichever there is, and both go.
fn keys(app: &str, socket: &str) -> Vec<String> {
    vec![kept_key(app, socket), open_key(app, socket)]
}

fn encode(channels: &Channels) -> Bytes {
    serde_json::to_vec(channels).unwrap_or_default().into()
}

fn decode(blob: &[u8]) -> Option<Channels> {
    serde_json::from_slice(blob).ok()
}

/// The connection `socket` of app `app` closed uncleanly with `channels`: keep them on the
/// backplane for `window` too, if this node is part of a cluster.
pub fn share(
    broker: &Arc<dyn Broker>,
    app: &str,
    socket: &str,
    channels: &Channels,
    window: Duration,
) {
    if broker.cluster().is_none() {
        return;
    }
    let (broker, key, blob) = (broker.clone(), kept_key(app, socket), encode(channels));
    tokio::spawn(async move {
        if let Some(cluster) = broker.cluster() {
            let _ = cluster.keep(key, blob, window).await;
        }
    });
}

/// The connection `socket` of app `app` may not be resumed (a clean close, a refusal), or
/// was resumed on this node: no node may resume it from the backplane.
pub fn forget(broker: &Arc<dyn Broker>, app: &str, socket: &str) {
    if broker.cluster().is_none() {
        return;
    }
    let (broker, keys) = (broker.clone(), keys(app, socket));
    tokio::spawn(async move {
        if let Some(cluster) = broker.cluster() {
            let _ = cluster.take(keys).await;
        }
    });
}

/// The marks of connection `socket` of app `app`, taken from the backplane (once, on one
/// node): `window_over` if it holds none (or cannot be reached: the broker logs it).
pub async fn take(broker: &dyn Broker, app: &str, socket: &str) -> Result<Channels, Reason> {
    let cluster = broker.cluster().ok_or(Reason::WindowOver)?;
    let taken = cluster.take(keys(app, socket)).await.unwrap_or_default();
    let blob = taken.into_iter().flatten().next();
    let blob = blob.ok_or(Reason::WindowOver)?;
    decode(&blob).ok_or_else(|| {
        cluster.malformed("a Pusher connection's resume marks");
        Reason::WindowOver
    })
}

/// Write the open connections' marks on the backplane every second (those that changed;
/// the others renewed every half window) until shutdown. See the module doc.
pub async fn write_open(
    broker: Arc<dyn Broker>,
    kept: Arc<KeptMarks>,
    window: Duration,
    shutdown: Shutdown,
) {
    let Some(cluster) = broker.cluster() else {
        return;
    };
    let mut ticks = tokio::time::interval(Duration::from_secs(1).min(window / 2));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When each open connection's record was last written or renewed.
    let mut written: HashMap<Arc<str>, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let open = kept.open_connections();
        let now = Instant::now();
        let still: std::collections::HashSet<&Arc<str>> = open.iter().map(|(s, _)| s).collect();
        written.retain(|socket, _| still.contains(socket));
        let (mut writes, mut renew) = (Vec::new(), Vec::new());
        for (socket, marks) in &open {
            let key = open_key(&marks.app_id, socket);
            if let Some(channels) = marks.changes() {
                written.insert(socket.clone(), now);
                writes.push(cluster.keep(key, encode(&channels), window));
            } else if written
                .get_mut(socket)
                .filter(|at| now.saturating_duration_since(**at) >= window / 2)
                .map(|at| *at = now)
                .is_some()
            {
                renew.push(key);
            }
        }
        futures_util::future::join_all(writes).await;
        if !renew.is_empty() {
            let _ = cluster.prolong(renew, window).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Epoch, Offset};
    use crate::pusher::resume::Cached;

    #[test]
    fn marks_come_back_as_they_were_kept() {
        let at = |seq| Offset {
            epoch: Epoch(0xab),
            seq,
        };
        let socket: Arc<str> = "1.2".into();
        let mut counted = Mark::subscribed(Some(Cached::At(at(3))), at(3), &socket);
        counted.count(4, at(9));
        let resumed = super::super::resume::resumed_mark(&counted, false, at(10), &socket);
        let channels: Channels = vec![
            ("orders".into(), counted),
            (
                "private-x".into(),
                Mark::subscribed(Some(Cached::Unnumbered), at(0), &socket),
            ),
            ("presence-y".into(), resumed),
        ];
        assert_eq!(decode(&encode(&channels)), Some(channels));
        assert_eq!(decode(b"{"), None);
        assert_eq!(decode(br#"[["c",{"segments":[{"after":"zz"}]}]]"#), None);
    }
}
