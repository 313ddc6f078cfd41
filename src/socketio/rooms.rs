//! Channels and the sockets in them.
//!
//! A publication reaches a room through a read lock on one shard; each socket gets a
//! clone of bytes encoded once ([`Frames`]): the WebSocket frame for sockets on
//! WebSocket, the bare packet for sockets on long-polling (the polling response joins
//! them). Who is present on a presence channel is not kept here but in the shared
//! [`crate::presence`], which counts users rather than sockets.

use crate::outbox::Outbox;
use crate::sharded::Sharded;
use bytes::Bytes;
use parking_lot::Mutex;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One socket as publishers see it.
pub struct Socket {
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

impl Socket {
    pub fn new(key: u64, id: Box<str>, outbox: Arc<Outbox>, websocket: bool) -> Self {
        Socket {
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

#[derive(Default)]
struct Room {
    /// The sockets in the room, by key.
    members: HashMap<u64, Arc<Socket>>,
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

impl Rooms {
    /// Put `socket` in `channel`; false if it already was.
    pub fn join(&self, channel: &str, socket: &Arc<Socket>) -> bool {
        let mut shard = self.map.write(channel);
        shard
            .entry(channel.into())
            .or_default()
            .members
            .insert(socket.key, socket.clone())
            .is_none()
    }

    /// Take socket `key` out of `channel`; false if it was not in it.
    pub fn leave(&self, channel: &str, key: u64) -> bool {
        let mut shard = self.map.write(channel);
        let Some(room) = shard.get_mut(channel) else {
            return false;
        };
        let left = room.members.remove(&key).is_some();
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

    fn socket(key: u64, ws: bool) -> Arc<Socket> {
        Arc::new(Socket::new(
            key,
            format!("s{key}").into(),
            Arc::new(Outbox::new(OutboxLimits::default())),
            ws,
        ))
    }

    fn taken(m: &Socket) -> Vec<Bytes> {
        let mut v = Vec::new();
        m.outbox.take_now(&mut v).unwrap();
        v
    }

    #[test]
    fn one_encoding_per_form_shared_by_all() {
        let rooms = Rooms::default();
        let (a, b, c, d) = (
            socket(1, true),
            socket(2, true),
            socket(3, false),
            socket(4, true),
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
    fn leaving_empties_the_room() {
        let rooms = Rooms::default();
        let (a, b) = (socket(1, true), socket(2, true));
        rooms.join("r", &a);
        rooms.join("r", &b);
        rooms.leave("r", 1);
        assert!(!rooms.is_member("r", 1));
        assert!(rooms.is_member("r", 2));
        rooms.leave("r", 2);
        rooms.leave("r", 2);
        assert!(rooms.map.is_empty());
    }

    #[test]
    fn switching_frames_what_is_queued() {
        let m = socket(1, false);
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
