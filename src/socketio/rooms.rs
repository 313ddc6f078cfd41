//! Channels and the sockets in them.
//!
//! A publication reaches a room through a read lock on one shard; each socket gets a
//! clone of bytes encoded once ([`Frames`]): the WebSocket frame for sockets on
//! WebSocket, the bare packet for sockets on long-polling (the polling response joins
//! them). Who is present on a presence channel is not kept here but in the shared
//! [`crate::presence`], which counts users rather than sockets.
//!
//! For connection state recovery, each room remembers the offset of the last
//! publication delivered to it, and each socket the offsets written to it
//! ([`crate::recovery::trail`]); a recovering socket's live frames can be held back
//! while its replay is read ([`crate::recovery::gate`]).

use crate::broker::{Epoch, Offset};
use crate::outbox::Outbox;
use crate::recovery::gate::{Covered, Held};
use crate::recovery::trail::Trail;
use crate::sharded::Sharded;
use bytes::Bytes;
use parking_lot::Mutex;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One socket as publishers see it.
pub struct Socket {
    /// Its key in rooms and presence; a recovered session takes its old one back
    /// before it joins anything.
    key: AtomicU64,
    /// The Socket.IO socket id (what Echo sends as `X-Socket-ID`), set when the socket
    /// connects (a recovered session's is its old one).
    id: OnceLock<Box<str>>,
    pub outbox: Arc<Outbox>,
    /// Connected to the main namespace (receives `--socketio-broadcast-public` emits).
    pub connected: AtomicBool,
    /// How frames are written; the lock orders pushes, the transport switch, the trail
    /// and the hold.
    line: Mutex<Line>,
}

struct Line {
    /// True once the socket speaks WebSocket.
    websocket: bool,
    /// The offsets written, when the session can be recovered.
    trail: Option<Trail>,
    /// Frames held back while a replay is read.
    held: Option<Held<Bytes>>,
    /// After a replay, what it covered that may still arrive live (in a cluster).
    covered: Option<Covered>,
}

/// One outgoing Socket.IO packet, encoded once per transport form.
pub struct Frames {
    packet: Bytes,
    ws: OnceCell<Bytes>,
    /// The publication's offset, when the packet carries one.
    offset: Option<Offset>,
}

impl Frames {
    pub fn new(packet: Bytes) -> Self {
        Self::at(packet, None)
    }

    /// A publication's packet, with its offset (recorded in each socket's trail).
    pub fn at(packet: Bytes, offset: Option<Offset>) -> Self {
        Frames {
            packet,
            ws: OnceCell::new(),
            offset,
        }
    }

    fn ws(&self) -> &Bytes {
        self.ws.get_or_init(|| crate::ws::frame::text(&self.packet))
    }
}

impl Socket {
    pub fn new(key: u64, outbox: Arc<Outbox>, websocket: bool) -> Self {
        Socket {
            key: AtomicU64::new(key),
            id: OnceLock::new(),
            outbox,
            connected: AtomicBool::new(false),
            line: Mutex::new(Line {
                websocket,
                trail: None,
                held: None,
                covered: None,
            }),
        }
    }

    pub fn key(&self) -> u64 {
        self.key.load(Ordering::Relaxed)
    }

    /// The socket id; empty until set.
    pub fn id(&self) -> &str {
        self.id.get().map_or("", |id| id)
    }

    /// Name the socket (once); false if it already had a name.
    pub fn set_id(&self, id: Box<str>) -> bool {
        self.id.set(id).is_ok()
    }

    /// Take a recovered session's key, before the socket joins any room.
    pub fn rekey(&self, key: u64) {
        self.key.store(key, Ordering::Relaxed);
    }

    /// Queue a shared frame in this socket's transport form. False if the outbox closed.
    pub fn deliver(&self, f: &Frames) -> bool {
        let mut line = self.line.lock();
        let frame = line.form(f).clone();
        if let Some(held) = &mut line.held {
            held.hold(f.offset, frame);
            return true;
        }
        if let (Some(covered), Some(o)) = (&mut line.covered, f.offset) {
            if !covered.passes(o) {
                return true;
            }
            if covered.is_over() {
                line.covered = None;
            }
        }
        if let (Some(trail), Some(o)) = (&mut line.trail, f.offset) {
            trail.record(o);
        }
        self.outbox.push(frame)
    }

    /// Start recording what is written, from `trail` on (a recovered session's own).
    pub fn keep_trail(&self, trail: Trail) {
        self.line.lock().trail = Some(trail);
    }

    /// The trail, for the session to be kept; none is recorded from now on.
    pub fn take_trail(&self) -> Option<Trail> {
        self.line.lock().trail.take()
    }

    /// Queue `f` and record `mark` (a [`Trail::mark`]) with it, as one step.
    pub fn send_marked(&self, f: &Frames, mark: Offset) -> bool {
        let mut line = self.line.lock();
        if let Some(trail) = &mut line.trail {
            trail.record(mark);
        }
        let frame = line.form(f).clone();
        self.outbox.push(frame)
    }

    /// Hold back what is delivered from now on, until [`release`](Self::release).
    pub fn hold(&self) {
        self.line.lock().held = Some(Held::default());
    }

    /// Stop holding back, dropping what was held (a recovery that failed).
    pub fn unhold(&self) {
        self.line.lock().held = None;
    }

    /// Write `replay` then `then` (e.g. the CONNECT reply), then the held frames the
    /// replay did not cover (`replayed`: where it stopped on each channel), as one
    /// step, and deliver normally again. Returns how many held frames were dropped.
    pub fn release(&self, replay: &[Frames], then: &[Frames], replayed: &[Offset]) -> usize {
        let mut line = self.line.lock();
        let held = line.held.take().unwrap_or_default();
        let before = held.len();
        let mut out = Vec::with_capacity(replay.len() + then.len() + before);
        for f in replay.iter().chain(then) {
            out.push(line.form(f).clone());
            if let (Some(trail), Some(o)) = (&mut line.trail, f.offset) {
                trail.record(o);
            }
        }
        let mut kept = 0;
        for (offset, frame) in held.release(replayed) {
            if let (Some(trail), Some(o)) = (&mut line.trail, offset) {
                trail.record(o);
            }
            out.push(frame);
            kept += 1;
        }
        self.outbox.push_all(&out);
        line.covered = Covered::after(replayed);
        before - kept
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
        let mut line = self.line.lock();
        let mut queued = Vec::new();
        if self.outbox.take_now(&mut queued).is_ok() {
            let framed: Vec<Bytes> = queued.iter().map(|p| crate::ws::frame::text(p)).collect();
            self.outbox.push_all(&framed);
        }
        if let Some(held) = &mut line.held {
            held.map_frames(|p| crate::ws::frame::text(p));
        }
        line.websocket = true;
    }
}

impl Line {
    fn form<'f>(&self, f: &'f Frames) -> &'f Bytes {
        if self.websocket {
            f.ws()
        } else {
            &f.packet
        }
    }
}

#[derive(Default)]
struct Room {
    /// The sockets in the room, by key.
    members: HashMap<u64, Arc<Socket>>,
    /// The offset of the last publication delivered to the room (none yet: epoch 0).
    /// Written by deliveries (one channel's are serialized by the broker's stream lock)
    /// under the shard's read lock, read under its write lock: the two words are always
    /// read as one.
    last_epoch: AtomicU64,
    last_seq: AtomicU64,
}

impl Room {
    fn last(&self) -> Option<Offset> {
        match self.last_epoch.load(Ordering::Relaxed) {
            0 => None,
            epoch => Some(Offset {
                epoch: Epoch(epoch),
                seq: self.last_seq.load(Ordering::Relaxed),
            }),
        }
    }

    fn set_last(&self, o: Offset) {
        self.last_seq.store(o.seq, Ordering::Relaxed);
        self.last_epoch.store(o.epoch.0, Ordering::Relaxed);
    }
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
            .insert(socket.key(), socket.clone())
            .is_none()
    }

    /// Take socket `key` out of `channel`; false if it was not in it.
    pub fn leave(&self, channel: &str, key: u64) -> bool {
        self.detach(channel, key).0
    }

    /// [`leave`](Self::leave), also saying the room's last offset at that moment:
    /// nothing published after it reached the socket.
    pub fn detach(&self, channel: &str, key: u64) -> (bool, Option<Offset>) {
        let mut shard = self.map.write(channel);
        let Some(room) = shard.get_mut(channel) else {
            return (false, None);
        };
        let left = room.members.remove(&key).is_some();
        let last = room.last();
        if room.members.is_empty() {
            shard.remove(channel);
        }
        (left, last)
    }

    /// The offset of the room's last delivery. None if there is none (or no such room).
    pub fn position(&self, channel: &str) -> Option<Offset> {
        self.map.with(channel, |room| room.and_then(Room::last))
    }

    /// Send to every member but `except` (a socket id); returns how many got it.
    pub fn deliver(&self, channel: &str, except: Option<&str>, f: &Frames) -> usize {
        self.map.with(channel, |room| {
            let Some(room) = room else {
                return 0;
            };
            if let Some(o) = f.offset {
                room.set_last(o);
            }
            let mut n = 0;
            for m in room.members.values() {
                if except == Some(m.id()) {
                    continue;
                }
                if m.deliver(f) {
                    n += 1;
                }
            }
            n
        })
    }

    /// Every room and its number of sockets (a dashboard's listing; one shard locked
    /// at a time, for reading).
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for shard in self.map.shards() {
            out.extend(shard.iter().map(|(n, r)| (n.to_string(), r.members.len())));
        }
        out
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
        let s = Arc::new(Socket::new(
            key,
            Arc::new(Outbox::new(OutboxLimits::default())),
            ws,
        ));
        s.set_id(format!("s{key}").into());
        s
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
    fn a_recovering_socket_gets_its_replay_first_and_each_event_once() {
        use crate::broker::Epoch;
        let at = |seq| {
            Some(Offset {
                epoch: Epoch(7),
                seq,
            })
        };
        let frame = |seq: u64| Frames::at(Bytes::from(format!("e{seq}")), at(seq));
        let rooms = Rooms::default();
        let m = socket(1, false);
        m.keep_trail(Trail::new(8));
        m.hold();
        rooms.join("a", &m);
        // Live while the replay is read: 3 (the replay has it too), 4, and a presence frame.
        for f in [
            frame(3),
            Frames::new(Bytes::from_static(b"joining")),
            frame(4),
        ] {
            rooms.deliver("a", None, &f);
        }
        assert!(taken(&m).is_empty(), "held back");
        let dropped = m.release(
            &[frame(2), frame(3)],
            &[Frames::new(Bytes::from_static(b"40"))],
            &[at(3).unwrap()],
        );
        assert_eq!(dropped, 1);
        let got: Vec<Bytes> = taken(&m);
        let want: Vec<Bytes> = ["e2", "e3", "40", "joining", "e4"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        assert_eq!(got, want);
        rooms.deliver("a", None, &frame(5));
        assert_eq!(taken(&m), [Bytes::from_static(b"e5")], "live again");
        // Everything written is in the trail, in the order written.
        let trail = m.take_trail().unwrap();
        assert_eq!(
            trail.positions(at(4).unwrap(), &[at(5)]),
            Some(vec![at(4).unwrap()])
        );
        let (left, last) = rooms.detach("a", 1);
        assert!(left);
        assert_eq!(last, at(5), "the room's last offset when the socket left");
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
