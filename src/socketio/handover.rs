//! socket.io recovery sessions shared through the cluster (`--cluster`), so a client that
//! comes back to another node with its private id is recovered there.
//!
//! A node that keeps a session ([`super::recovery::detach`]) keeps it in its own store, as
//! a single node does (its window, its presence), and also on the backplane for the
//! window ([`share`]): its socket id, its channels with where each stood, its trail. A
//! client back on any node takes it from the backplane ([`take`]), which hands it out
//! once (`GETDEL`): the node it was kept on, finding it taken elsewhere, ends its own
//! copy. A session taken from another node's keeping gets this node's key for its socket
//! (keys are per node), and no presence membership here.
//!
//! The node it was kept on races its own sharing when the client is back very fast: the
//! copy is marked taken before the backplane is asked, and the sharing, once stored,
//! takes it back if so; the taker counts a copy missing from the backplane as taken
//! elsewhere only if it was stored before it asked.

use super::recovery::{Detached, Refused};
use super::Edge;
use crate::broker::Offset;
use crate::recovery::store::Taken;
use crate::recovery::trail::Trail;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// Where a kept session stands with the backplane.
#[derive(Default)]
pub struct Sharing {
    /// Its copy was stored on the backplane.
    stored: AtomicBool,
    /// It was taken on this node.
    taken: AtomicBool,
}

/// A session as kept on the backplane.
#[derive(Serialize, Deserialize)]
struct Shared {
    sid: String,
    channels: Vec<(String, Option<String>)>,
    trail: Vec<String>,
    capacity: usize,
}

fn key(pid: &str) -> String {
    format!("sio:{pid}")
}

fn encode(d: &Detached) -> Bytes {
    let shared = Shared {
        sid: d.sid.to_string(),
        channels: (d.channels.iter())
            .map(|(c, o)| (c.to_string(), o.map(|o| o.to_string())))
            .collect(),
        trail: d.trail.entries().map(Offset::to_string).collect(),
        capacity: d.trail.capacity(),
    };
    serde_json::to_vec(&shared).unwrap_or_default().into()
}

fn decode(blob: &[u8]) -> Option<Detached> {
    let shared: Shared = serde_json::from_slice(blob).ok()?;
    let channels = (shared.channels.into_iter())
        .map(|(c, o)| Some((c.into_boxed_str(), o.map(|o| o.parse()).transpose().ok()?)))
        .collect::<Option<Vec<_>>>()?;
    let trail = (shared.trail.iter())
        .map(|o| o.parse().ok())
        .collect::<Option<Vec<Offset>>>()?;
    Some(Detached {
        sid: shared.sid.into_boxed_str(),
        key: None,
        channels,
        trail: Trail::from_entries(shared.capacity, trail),
        sharing: Arc::default(),
    })
}

/// What a kept session shares with the cluster.
pub struct Copy {
    blob: Bytes,
    sharing: Arc<Sharing>,
}

impl Copy {
    pub fn of(d: &Detached) -> Copy {
        Copy {
            blob: encode(d),
            sharing: d.sharing.clone(),
        }
    }

    /// Keep it on the backplane for `window` too, if this node is part of a cluster.
    pub fn share(self, edge: &Edge, pid: &str, window: Duration) {
        if edge.state.broker.cluster().is_some() {
            share(edge, key(pid), self, window);
        }
    }
}

fn share(edge: &Edge, key: String, Copy { blob, sharing }: Copy, window: Duration) {
    let broker = edge.state.broker.clone();
    tokio::spawn(async move {
        let Some(cluster) = broker.cluster() else {
            return;
        };
        if cluster.keep(key.clone(), blob, window).await.is_ok() {
            sharing.stored.store(true, SeqCst);
            if sharing.taken.load(SeqCst) {
                let _ = cluster.take(key).await;
            }
        }
    });
}

/// The session kept under `pid`, from what this node's store found (`here`) and the
/// backplane: once, on one node.
pub async fn take(edge: &Edge, pid: &str, here: Taken<Detached>) -> Result<Detached, Refused> {
    let Some(cluster) = edge.state.broker.cluster() else {
        return match here {
            Taken::Kept(d) => Ok(d),
            Taken::WindowOver => Err(Refused::WindowOver),
            Taken::Unknown => Err(Refused::UnknownPid),
        };
    };
    match here {
        Taken::Kept(d) => {
            d.sharing.taken.store(true, SeqCst);
            let stored = d.sharing.stored.load(SeqCst);
            let elsewhere = match cluster.take(key(pid)).await {
                Ok(Some(_)) => false,
                Ok(None) | Err(_) => stored,
            };
            if elsewhere {
                super::recovery::end(edge, d);
                return Err(Refused::UnknownPid);
            }
            Ok(d)
        }
        Taken::WindowOver => Err(Refused::WindowOver),
        Taken::Unknown => match cluster.take(key(pid)).await {
            Ok(Some(blob)) => decode(&blob).ok_or_else(|| {
                cluster.malformed("a socket.io recovery session");
                Refused::UnknownPid
            }),
            Ok(None) | Err(_) => Err(Refused::UnknownPid),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_comes_back_whole_but_for_its_key() {
        let at = |s: &str| s.parse::<Offset>().unwrap();
        let mut trail = Trail::new(4);
        for o in ["a-1", "b-7", "a-2"] {
            trail.record(at(o));
        }
        let d = Detached {
            sid: "sid".into(),
            key: Some(3),
            channels: vec![("orders.1".into(), Some(at("a-2"))), ("x".into(), None)],
            trail,
            sharing: Arc::default(),
        };
        let back = decode(&encode(&d)).unwrap();
        assert_eq!(back.sid, d.sid);
        assert_eq!(back.key, None, "keys are per node");
        assert_eq!(back.channels, d.channels);
        assert_eq!(back.trail.capacity(), 4);
        assert!(back.trail.entries().eq(d.trail.entries()));
        assert!(decode(b"{").is_none());
        assert!(
            decode(br#"{"sid":"s","channels":[["c","zz"]],"trail":[],"capacity":1}"#).is_none()
        );
    }
}
