//! Channels and their member sockets, and presence by user.
//!
//! A publication reaches a room through a read lock on one shard; each member gets a
//! clone of bytes encoded once ([`Frames`]): the WebSocket frame for sockets on
//! WebSocket, the bare packet for sockets on long-polling (the polling response joins
//! them). Presence counts users, not sockets: a user with two tabs joins once and
//! leaves when the last tab does.

use crate::outbox::Outbox;
use crate::sharded::Sharded;
use bytes::Bytes;
use parking_lot::Mutex;
use std::cell::OnceCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One socket as publishers see it.
pub struct Member {
    pub key: u64,
    /// The Socket.IO socket id (what Echo sends as `X-Socket-ID`).
    pub id: Box<str>,
    pub outbox: Arc<Outbox>,
    /// Connected to the main namespace (receives `--socketio-broadcast-public` emits).
    pub connected: AtomicBool,
    /// True once the socket speaks WebSocket; the lock orders the switch against pushes.
    websocket: Mutex<bool>,
}

/// One outgoing Socket.IO packet, encoded once per transport form.
pub struct Frames {
    packet: Bytes,
    ws: OnceCell<Bytes>,
}

impl Frames {
    pub fn new(packet: Bytes) -> Self {
        Frames {
            packet,
            ws: OnceCell::new(),
        }
    }

    fn ws(&self) -> &Bytes {
        self.ws.get_or_init(|| crate::ws::frame::text(&self.packet))
    }
}

impl Member {
    pub fn new(key: u64, id: Box<str>, outbox: Arc<Outbox>, websocket: bool) -> Self {
        Member {
            key,
            id,
            outbox,
            connected: AtomicBool::new(false),
            websocket: Mutex::new(websocket),
        }
    }

    /// Queue a shared frame in this socket's transport form. False if the outbox closed.
    pub fn deliver(&self, f: &Frames) -> bool {
        let ws = self.websocket.lock();
        self.outbox.push(if *ws {
            f.ws().clone()
        } else {
            f.packet.clone()
        })
    }

    /// Queue a packet meant for this socket alone.
    pub fn send(&self, packet: Bytes) -> bool {
        self.deliver(&Frames::new(packet))
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The polling → WebSocket upgrade finished: frame what is still queued and
    /// send everything from now on as WebSocket frames.
    pub fn switch_to_websocket(&self) {
        let mut ws = self.websocket.lock();
        let mut queued = Vec::new();
        if self.outbox.take_now(&mut queued).is_ok() {
            let framed: Vec<Bytes> = queued.iter().map(|p| crate::ws::frame::text(p)).collect();
            self.outbox.push_all(&framed);
        }
        *ws = true;
    }
}

/// A presence channel's users.
#[derive(Default)]
struct Presence {
    /// presence key ([`crate::edge_policy::presence_key`]) → (member JSON `{"user_id","user_info"}`, sockets).
    users: HashMap<Box<str>, (Box<str>, u32)>,
    /// socket key → presence key
    by_socket: HashMap<u64, Box<str>>,
}

#[derive(Default)]
struct Room {
    members: HashMap<u64, Arc<Member>>,
    presence: Option<Presence>,
}

const SHARDS: usize = 32;

/// channel → room, sharded so publishes on several cores do not contend.
pub struct Rooms {
    map: Sharded<Box<str>, Room>,
}

impl Default for Rooms {
    fn default() -> Self {
        Rooms {
            map: Sharded::new(SHARDS),
        }
    }
}

/// What a presence join produced.
pub struct Joined {
    /// The member list (JSON array text) for `presence:subscribed`.
    pub members: String,
    /// This user's member JSON when this is the user's first socket (send `joining`).
    pub first: Option<Box<str>>,
}

impl Rooms {
    pub fn join(&self, channel: &str, m: &Arc<Member>) {
        let mut shard = self.map.write(channel);
        shard
            .entry(channel.into())
            .or_default()
            .members
            .insert(m.key, m.clone());
    }

    /// Join a presence channel as `user_id` with `member_json`.
    pub fn join_presence(
        &self,
        channel: &str,
        m: &Arc<Member>,
        user_id: &str,
        member_json: &str,
    ) -> Joined {
        let mut shard = self.map.write(channel);
        let room = shard.entry(channel.into()).or_default();
        room.members.insert(m.key, m.clone());
        let p = room.presence.get_or_insert_with(Presence::default);
        let mut first = None;
        if let Some(prev) = p.by_socket.insert(m.key, user_id.into()) {
            // Re-subscribing: forget the socket's previous identity first.
            Self::forget(p, &prev);
        }
        match p.users.entry(user_id.into()) {
            Entry::Occupied(mut e) => {
                let (json, n) = e.get_mut();
                *json = member_json.into();
                *n += 1;
            }
            Entry::Vacant(e) => {
                e.insert((member_json.into(), 1));
                first = Some(member_json.into());
            }
        }
        let mut members = String::from("[");
        for (i, (json, _)) in p.users.values().enumerate() {
            if i > 0 {
                members.push(',');
            }
            members.push_str(json);
        }
        members.push(']');
        Joined { members, first }
    }

    /// One fewer socket for `user_id`; the member JSON when it was the last.
    fn forget(p: &mut Presence, user_id: &str) -> Option<Box<str>> {
        let Entry::Occupied(mut e) = p.users.entry(user_id.into()) else {
            return None;
        };
        e.get_mut().1 -= 1;
        if e.get().1 == 0 {
            Some(e.remove().0)
        } else {
            None
        }
    }

    /// Leave a channel. For presence, the member JSON if this was the user's last socket.
    pub fn leave(&self, channel: &str, key: u64) -> Option<Box<str>> {
        let mut shard = self.map.write(channel);
        let room = shard.get_mut(channel)?;
        room.members.remove(&key);
        let left = room.presence.as_mut().and_then(|p| {
            let user = p.by_socket.remove(&key)?;
            Self::forget(p, &user)
        });
        if room.members.is_empty() {
            shard.remove(channel);
        }
        left
    }

    /// Send to every member but `except` (a socket id); returns how many got it.
    pub fn deliver(&self, channel: &str, except: Option<&str>, f: &Frames) -> usize {
        self.map.with(channel, |room| {
            let Some(room) = room else {
                return 0;
            };
            let mut n = 0;
            for m in room.members.values() {
                if except == Some(&*m.id) {
                    continue;
                }
                if m.deliver(f) {
                    n += 1;
                }
            }
            n
        })
    }

    pub fn is_member(&self, channel: &str, key: u64) -> bool {
        self.map
            .with(channel, |r| r.is_some_and(|r| r.members.contains_key(&key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxLimits;

    fn member(key: u64, ws: bool) -> Arc<Member> {
        Arc::new(Member::new(
            key,
            format!("s{key}").into(),
            Arc::new(Outbox::new(OutboxLimits::default())),
            ws,
        ))
    }

    fn taken(m: &Member) -> Vec<Bytes> {
        let mut v = Vec::new();
        m.outbox.take_now(&mut v).unwrap();
        v
    }

    #[test]
    fn one_encoding_per_form_shared_by_all() {
        let rooms = Rooms::default();
        let (a, b, c, d) = (
            member(1, true),
            member(2, true),
            member(3, false),
            member(4, true),
        );
        for m in [&a, &b, &c, &d] {
            rooms.join("orders.1", m);
        }
        let f = Frames::new(Bytes::from_static(b"42[\"E\",\"orders.1\",{}]"));
        assert_eq!(rooms.deliver("orders.1", Some("s4"), &f), 3);
        let (fa, fb, fc) = (taken(&a), taken(&b), taken(&c));
        assert_eq!(fa[0].as_ptr(), fb[0].as_ptr(), "one WebSocket frame shared");
        assert_eq!(&fa[0][..2], &[0x81, 21]);
        assert_eq!(&fc[0][..], b"42[\"E\",\"orders.1\",{}]");
        assert!(taken(&d).is_empty(), "toOthers excludes the sender");
    }

    #[test]
    fn presence_counts_users_once() {
        let rooms = Rooms::default();
        let (t1, t2, other) = (member(1, true), member(2, true), member(3, true));
        let j = rooms.join_presence("presence-room", &t1, "7", r#"{"user_id":7}"#);
        assert_eq!(j.first.as_deref(), Some(r#"{"user_id":7}"#));
        let j = rooms.join_presence("presence-room", &t2, "7", r#"{"user_id":7}"#);
        assert!(j.first.is_none());
        assert_eq!(j.members, r#"[{"user_id":7}]"#);
        let j = rooms.join_presence("presence-room", &other, "8", r#"{"user_id":8}"#);
        assert!(j.first.is_some());
        assert_eq!(rooms.leave("presence-room", 1), None);
        assert_eq!(
            rooms.leave("presence-room", 2).as_deref(),
            Some(r#"{"user_id":7}"#)
        );
        assert!(!rooms.is_member("presence-room", 1));
        assert!(rooms.is_member("presence-room", 3));
        rooms.leave("presence-room", 3);
        assert!(rooms.map.is_empty());
    }

    #[test]
    fn switching_frames_what_is_queued() {
        let m = member(1, false);
        m.send(Bytes::from_static(b"6"));
        m.switch_to_websocket();
        m.send(Bytes::from_static(b"2"));
        assert_eq!(
            taken(&m),
            vec![
                Bytes::from_static(b"\x81\x016"),
                Bytes::from_static(b"\x81\x012")
            ]
        );
    }
}
