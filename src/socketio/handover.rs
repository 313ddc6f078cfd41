//! socket.io recovery sessions shared through the cluster (`--cluster`), so a client that
//! comes back to another node with its private id is recovered there.
//!
//! A node that keeps a session ([`super::recovery::detach`]) keeps it in its own store, as
//! a single node does (its window, its presence), and also on the backplane for the
//! window ([`Copy::share`]): its socket id, its channels with where each stood, its trail, and
//! the member it is on each presence channel (as the channel's auth gave it). A client
//! back on any node takes it from the backplane ([`take`]), which hands it out once
//! (`GETDEL`): the node it was kept on, finding it taken elsewhere, ends its own copy. A
//! session taken from another node's keeping gets this node's key for its socket (keys
//! are per node) and joins presence here as the members it was, while the node that kept
//! it still holds them, so the cluster's count of the user never reaches zero: nobody
//! hears it leave or arrive. Once those joins are written, the taker hands the session
//! over ([`crate::presence::Presence::handed_over`], on the presence's Redis channel,
//! after its joins), and the node that kept it ends its copy, presence included
//! ([`super::recovery::taken_elsewhere`]), or closes its open session of it (a connection
//! half-open since). The records of open sessions carry the members too: when their node
//! died, the taker joins while the dead node's members are still in Redis, and when those
//! are taken out after `--cluster-node-ttl` the user, present on the taker, does not
//! leave. A client back after that has left and comes back, as the others hear it.
//!
//! The node it was kept on races its own sharing when the client is back very fast: the
//! copy is marked taken before the backplane is asked, and the sharing, once stored,
//! takes it back if so; the taker counts a copy missing from the backplane as taken
//! elsewhere only if it was stored before it asked.

use super::recovery::{Detached, Members, Recovery, Refused};
use super::Edge;
use crate::broker::{Cluster, Namespace, Offset};
use crate::laravel::PresenceMember;
use crate::recovery::store::Taken;
use crate::recovery::trail::Trail;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a kept session stands with the backplane.
#[derive(Default)]
pub struct Sharing {
    /// Its copy was stored on the backplane.
    stored: AtomicBool,
    /// It was taken on this node.
    taken: AtomicBool,
}

/// A session as kept on the backplane; an open one's has no trail.
#[derive(Serialize, Deserialize)]
struct Shared {
    sid: String,
    channels: Vec<(String, Option<String>)>,
    trail: Option<Vec<String>>,
    capacity: usize,
    /// Each presence channel's member (its `channel_data`), as the channel's auth gave it.
    #[serde(default)]
    members: Vec<(String, String)>,
}

/// Where a session kept at its close is.
fn kept_key(pid: &str) -> String {
    format!("sio:{pid}")
}

/// Where an open session's record is.
fn open_key(pid: &str) -> String {
    format!("sio:open:{pid}")
}

/// Both, the kept one first: a client takes whichever there is, and both go.
fn keys(pid: &str) -> Vec<String> {
    vec![kept_key(pid), open_key(pid)]
}

type Channels = Vec<(Box<str>, Option<Offset>)>;

fn encode(sid: &str, channels: &Channels, members: &Members, trail: Option<&Trail>) -> Bytes {
    let shared = Shared {
        sid: sid.to_string(),
        channels: (channels.iter())
            .map(|(c, o)| (c.to_string(), o.map(|o| o.to_string())))
            .collect(),
        trail: trail.map(|t| t.entries().map(Offset::to_string).collect()),
        capacity: trail.map_or(0, Trail::capacity),
        members: (members.iter())
            .map(|(c, m)| (c.to_string(), m.channel_data()))
            .collect(),
    };
    serde_json::to_vec(&shared).unwrap_or_default().into()
}

fn decode(blob: &[u8]) -> Option<Detached> {
    let shared: Shared = serde_json::from_slice(blob).ok()?;
    let channels = (shared.channels.into_iter())
        .map(|(c, o)| Some((c.into_boxed_str(), o.map(|o| o.parse()).transpose().ok()?)))
        .collect::<Option<Vec<_>>>()?;
    let trail = match shared.trail {
        Some(entries) => Some(Trail::from_entries(
            shared.capacity,
            (entries.iter().map(|o| o.parse().ok())).collect::<Option<Vec<Offset>>>()?,
        )),
        None => None,
    };
    let members = (shared.members.into_iter())
        .map(|(c, m)| {
            Some((
                c.into_boxed_str(),
                Arc::new(PresenceMember::from_channel_data(&m)?),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Detached {
        sid: shared.sid.into_boxed_str(),
        key: None,
        channels,
        members,
        trail,
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
            blob: encode(&d.sid, &d.channels, &d.members, d.trail.as_ref()),
            sharing: d.sharing.clone(),
        }
    }

    /// Keep it on the backplane for `window` too, if this node is part of a cluster.
    pub fn share(self, edge: &Edge, pid: &str, window: Duration) {
        if edge.state.broker.cluster().is_none() {
            return;
        }
        let broker = edge.state.broker.clone();
        let (key, Copy { blob, sharing }) = (kept_key(pid), self);
        tokio::spawn(async move {
            let Some(cluster) = broker.cluster() else {
                return;
            };
            if cluster.keep(key.clone(), blob, window).await.is_ok() {
                sharing.stored.store(true, SeqCst);
                if sharing.taken.load(SeqCst) {
                    let _ = cluster.take(vec![key]).await;
                }
            }
        });
    }
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
            let elsewhere = match cluster.take(keys(pid)).await {
                Ok(taken) => stored && taken.first().is_none_or(Option::is_none),
                Err(_) => stored,
            };
            if elsewhere {
                super::recovery::end(edge, d);
                return Err(Refused::UnknownPid);
            }
            Ok(d)
        }
        Taken::WindowOver => Err(Refused::WindowOver),
        Taken::Unknown => {
            let taken = cluster.take(keys(pid)).await.unwrap_or_default();
            let blob = taken.into_iter().flatten().next();
            let blob = blob.ok_or(Refused::UnknownPid)?;
            decode(&blob).ok_or_else(|| {
                cluster.malformed("a socket.io recovery session");
                Refused::UnknownPid
            })
        }
    }
}

/// A session kept here that another node took over ([`super::recovery::taken_elsewhere`]):
/// its copy on the backplane goes too, if the taker took the open session's record
/// instead (it came back before this node had stored the copy).
pub fn withdraw(edge: &Edge, pid: &str, d: &Detached) {
    d.sharing.taken.store(true, SeqCst);
    if !d.sharing.stored.load(SeqCst) {
        return; // The sharing takes it back once stored.
    }
    let (broker, key) = (edge.state.broker.clone(), kept_key(pid));
    tokio::spawn(async move {
        if let Some(cluster) = broker.cluster() {
            let _ = cluster.take(vec![key]).await;
        }
    });
}

/// A session ended for good (a clean disconnect, a close after which it is not kept):
/// no node may recover it.
pub fn forget(edge: &Edge, pid: &str) {
    if edge.state.broker.cluster().is_none() {
        return;
    }
    let (broker, keys) = (edge.state.broker.clone(), keys(pid));
    tokio::spawn(async move {
        if let Some(cluster) = broker.cluster() {
            let _ = cluster.take(keys).await;
        }
    });
}

/// The records of this node's open sessions as last written, by private id.
#[derive(Default)]
pub struct Open(Mutex<HashMap<Box<str>, Written>>);

struct Written {
    channels: Channels,
    members: Members,
    at: Instant,
}

/// The same members of the same channels (a member is its join's: rejoining is another).
fn same(a: &Members, b: &Members) -> bool {
    a.len() == b.len() && (a.iter().zip(b)).all(|((c, m), (d, n))| c == d && Arc::ptr_eq(m, n))
}

/// Write to the backplane the records of the open sessions whose channels changed (each
/// channel with where its room stood when the record first held it), keep the others'
/// for another window every half window, and forget the closed ones'. A node that dies
/// leaves them for the window: a client of it recovers on another node from its record,
/// where its one offset says where it stands ([`super::recovery`]).
pub async fn write_open(edge: &Edge, r: &Recovery) {
    let Some(cluster) = edge.state.broker.cluster() else {
        return;
    };
    let open: Vec<(Box<str>, Box<str>)> = (r.open.lock().iter())
        .map(|(pid, sid)| (pid.clone(), sid.clone()))
        .collect();
    let sessions: Vec<_> = (open.into_iter())
        .filter_map(|(pid, sid)| {
            let s = edge.sessions.get(&sid)?;
            let channels = s.lock().io.channels.clone();
            let members = super::echo::memberships(edge, s.socket.key(), &channels);
            s.socket
                .is_connected()
                .then(|| (pid, Box::<str>::from(s.socket.id()), channels, members))
        })
        .collect();
    let now = Instant::now();
    let (mut write, mut prolong) = (Vec::new(), Vec::new());
    {
        let mut written = r.written.0.lock();
        let still: HashSet<&str> = sessions.iter().map(|(pid, ..)| &**pid).collect();
        written.retain(|pid, _| still.contains(&**pid));
        for (pid, sid, channels, members) in sessions {
            let held = written.get_mut(&pid);
            let at = |c: &str| {
                let before = held
                    .as_ref()
                    .and_then(|w| w.channels.iter().find(|(h, _)| **h == *c));
                before.map_or_else(
                    || {
                        let stream = edge.stream_position(c);
                        edge.rooms.position(c).or(stream)
                    },
                    |(_, o)| *o,
                )
            };
            let channels: Channels = channels.iter().map(|c| (c.clone(), at(c))).collect();
            match held {
                Some(w) if w.channels == channels && same(&w.members, &members) => {
                    if now.saturating_duration_since(w.at) >= r.window / 2 {
                        w.at = now;
                        prolong.push(open_key(&pid));
                    }
                }
                _ => {
                    let w = Written {
                        channels: channels.clone(),
                        members: members.clone(),
                        at: now,
                    };
                    written.insert(pid.clone(), w);
                    write.push((open_key(&pid), sid, channels, members));
                }
            }
        }
    }
    let writes = (write.into_iter()).map(|(key, sid, channels, members)| async move {
        let channels = resolved(cluster, channels).await;
        let blob = encode(&sid, &channels, &members, None);
        let _ = cluster.keep(key, blob, r.window).await;
    });
    futures_util::future::join_all(writes).await;
    if !prolong.is_empty() {
        let _ = cluster.prolong(prolong, r.window).await;
    }
}

/// `channels` with each room that has had no delivery yet placed where the cluster's
/// history stands: its position here is of this node's epoch, unknown elsewhere.
async fn resolved(cluster: &dyn Cluster, mut channels: Channels) -> Channels {
    for (c, at) in channels.iter_mut() {
        let Some(here) = *at else {
            continue;
        };
        if here.seq > 0 {
            continue;
        }
        let channel = Bytes::copy_from_slice(c.as_bytes());
        if let Ok(Some(there)) = cluster.position(Namespace::Default, channel).await {
            if there.epoch != here.epoch {
                *at = Some(there);
            }
        }
    }
    channels
}

/// Where a session recovered from an open session's record (no trail) stands on each
/// channel, given the client's last offset, and whether the channel must have published
/// nothing since (the record says only where its room stood when the session joined it).
/// The channel `last` is of stands at `last`; every other stands where it joined, and
/// only if nothing was published there since can that be known to be all it missed.
pub fn open_positions(last: Offset, channels: &Channels) -> Option<Vec<(Offset, bool)>> {
    (channels.iter())
        .map(|(_, at)| {
            let joined = (*at)?;
            Some(if joined.epoch == last.epoch && last.seq >= joined.seq {
                (last, false)
            } else {
                (joined, true)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_comes_back_whole_but_for_its_key() {
        let at = |s: &str| s.parse::<Offset>().unwrap();
        let data = r#"{"user_id":7,"user_info":{"name":"Sev"}}"#;
        let sev = Arc::new(PresenceMember::from_channel_data(data).unwrap());
        let mut trail = Trail::new(4);
        for o in ["a-1", "b-7", "a-2"] {
            trail.record(at(o));
        }
        let d = Detached {
            sid: "sid".into(),
            key: Some(3),
            channels: vec![
                ("orders.1".into(), Some(at("a-2"))),
                ("x".into(), None),
                ("presence-room".into(), Some(at("c-1"))),
            ],
            members: vec![("presence-room".into(), sev)],
            trail: Some(trail),
            sharing: Arc::default(),
        };
        let back = decode(&Copy::of(&d).blob).unwrap();
        assert_eq!(back.sid, d.sid);
        assert_eq!(back.key, None, "keys are per node");
        assert_eq!(back.channels, d.channels);
        let [(channel, member)] = &back.members[..] else {
            panic!("one presence channel's member")
        };
        assert_eq!(
            (&**channel, member.channel_data()),
            ("presence-room", data.into())
        );
        assert_eq!(&*member.key, "7");
        let (trail, back_trail) = (d.trail.unwrap(), back.trail.unwrap());
        assert_eq!(back_trail.capacity(), 4);
        assert!(back_trail.entries().eq(trail.entries()));
        assert!(decode(b"{").is_none());
        let bad = br#"{"sid":"s","channels":[["c","zz"]],"trail":null,"capacity":0}"#;
        assert!(decode(bad).is_none(), "not an offset");
        let bad = br#"{"sid":"s","channels":[],"trail":null,"capacity":0,"members":[["p","{}"]]}"#;
        assert!(decode(bad).is_none(), "a member without a user id");
        let old = br#"{"sid":"s","channels":[["c",null]],"trail":null,"capacity":0}"#;
        assert!(
            decode(old).unwrap().members.is_empty(),
            "a record without members"
        );
        let open = decode(&encode("s", &back.channels, &back.members, None)).unwrap();
        assert!(open.trail.is_none(), "an open session's record");
        assert_eq!(open.members.len(), 1);
    }

    #[test]
    fn from_an_open_record_the_last_offsets_channel_stands_there_the_others_where_they_joined() {
        let at = |s: &str| s.parse::<Offset>().unwrap();
        let channels: Channels = vec![("a".into(), Some(at("a-2"))), ("b".into(), Some(at("b-7")))];
        assert_eq!(
            open_positions(at("a-5"), &channels),
            Some(vec![(at("a-5"), false), (at("b-7"), true)])
        );
        assert_eq!(
            open_positions(at("c-1"), &channels),
            Some(vec![(at("a-2"), true), (at("b-7"), true)]),
            "a mark: nothing received, every channel where it joined"
        );
        assert_eq!(open_positions(at("a-1"), &vec![("a".into(), None)]), None);
    }
}
