//! One RESP connection as the rest of the server sees it: the broker's subscriber,
//! and a row in `CLIENT LIST`.
//!
//! The session task owns the connection; this shared part is what publishers touch
//! (the outbox, the protocol version that shapes deliveries) and what other clients
//! may read (`CLIENT LIST`, `INFO clients`).

use super::frame::{message_header, Proto, CRLF};
use crate::broker::{Subscriber, SubscriberId, Via};
use crate::outbox::Outbox;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// What `CLIENT LIST` shows that changes during the connection.
#[derive(Default, Clone)]
pub struct Meta {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub db: i64,
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    /// The last command's name (a table name, so rarely allocated).
    pub last_cmd: Cow<'static, str>,
    pub user: String,
    /// In MONITOR mode (`flags=O` in CLIENT LIST).
    pub monitor: bool,
}

pub struct Client {
    pub id: SubscriberId,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub fd: i32,
    pub created: Instant,
    pub outbox: Outbox,
    /// Woken when a publisher finds the outbox closed, so a session stuck writing to a
    /// slow reader drops it at once.
    pub kicked: Notify,
    proto: AtomicU8,
    pub last_active: Mutex<Instant>,
    pub meta: Mutex<Meta>,
}

impl Client {
    pub fn new(addr: SocketAddr, laddr: SocketAddr, fd: i32, outbox: Outbox) -> Self {
        Client {
            id: crate::broker::next_subscriber_id(),
            addr,
            laddr,
            fd,
            created: Instant::now(),
            outbox,
            kicked: Notify::new(),
            proto: AtomicU8::new(Proto::Resp2 as u8),
            last_active: Mutex::new(Instant::now()),
            meta: Mutex::new(Meta {
                user: "default".into(),
                ..Meta::default()
            }),
        }
    }

    pub fn proto(&self) -> Proto {
        match self.proto.load(Ordering::Relaxed) {
            3 => Proto::Resp3,
            _ => Proto::Resp2,
        }
    }

    pub fn set_proto(&self, p: Proto) {
        self.proto.store(p as u8, Ordering::Relaxed);
    }

    /// Redis's `CLIENT LIST` / `CLIENT INFO` line, without the newline.
    pub fn info_line(&self) -> String {
        let m = self.meta.lock().clone();
        let s = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let flags = if m.monitor {
            "O"
        } else if m.sub + m.psub + m.ssub > 0 {
            "P"
        } else {
            "N"
        };
        let omem = self.outbox.queued_bytes();
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={flags} db={} \
             sub={} psub={} ssub={} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 \
             rbs=0 rbp=0 obl=0 oll=0 omem={omem} tot-mem={omem} events=r cmd={} user={} \
             redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            s(&m.name),
            self.created.elapsed().as_secs(),
            self.last_active.lock().elapsed().as_secs(),
            m.db,
            m.sub,
            m.psub,
            m.ssub,
            if m.last_cmd.is_empty() {
                "NULL"
            } else {
                &m.last_cmd
            },
            m.user,
            self.proto() as u8,
            s(&m.lib_name),
            s(&m.lib_ver),
        )
    }

    pub fn is_pubsub(&self) -> bool {
        let m = self.meta.lock();
        m.sub + m.psub + m.ssub > 0
    }
}

impl Subscriber for Client {
    fn id(&self) -> SubscriberId {
        self.id
    }

    /// One shared `Bytes` per publication for a small payload; header, the publisher's
    /// payload itself (a `Bytes` clone) and CRLF for a large one.
    fn deliver(&self, via: Via<'_>, channel: &Bytes, payload: &Bytes) {
        let pushed = match encoded(self.proto(), via, channel, payload) {
            Encoded::Whole(frame) => self.outbox.push(frame),
            Encoded::Header(header) => self.outbox.push_all(&[header, payload.clone(), CRLF]),
        };
        if !pushed {
            self.kicked.notify_one();
        }
    }
}

/// Up to this size a payload is copied once per publication into one frame with its
/// header: every subscriber then queues and writes one `Bytes` instead of three. Past
/// it, the payload is shared rather than copied.
const WHOLE_FRAME_MAX: usize = 8 * 1024;

/// A delivery as encoded for its subscribers.
enum Encoded {
    /// Header, payload and CRLF in one frame.
    Whole(Bytes),
    /// The bytes before the payload; the caller sends the payload and CRLF after them.
    Header(Bytes),
}

/// The last delivery encoded on this thread, and what it was for.
struct LastDelivery {
    proto: Proto,
    pattern: Option<Bytes>,
    shard: bool,
    channel: Bytes,
    cached: Cached,
}

enum Cached {
    /// The whole frame of this payload. The payload is held so that its memory cannot be
    /// reused by another publication while cached: the same address and length then
    /// mean the same bytes.
    Whole { payload: Bytes, frame: Bytes },
    /// A header depends only on the payload's length, not on its content.
    Header { payload_len: usize, header: Bytes },
}

thread_local! {
    static LAST_DELIVERY: RefCell<Option<LastDelivery>> = const { RefCell::new(None) };
}

/// The broker hands one publication to its subscribers one after another on the
/// publisher's thread, so remembering the last delivery encoded there encodes it once
/// per publication (per protocol and pattern), not once per subscriber.
fn encoded(proto: Proto, via: Via<'_>, channel: &Bytes, payload: &Bytes) -> Encoded {
    let (pattern, shard) = match via {
        Via::Pattern(p) => (Some(p), false),
        Via::Channel => (None, false),
        Via::Shard => (None, true),
    };
    let whole = payload.len() <= WHOLE_FRAME_MAX;
    LAST_DELIVERY.with(|cell| {
        let mut last = cell.borrow_mut();
        if let Some(l) = last.as_ref() {
            if l.proto == proto
                && l.shard == shard
                && l.pattern.as_deref() == pattern
                && l.channel == channel
            {
                match &l.cached {
                    Cached::Whole { payload: p, frame }
                        if p.as_ptr() == payload.as_ptr() && p.len() == payload.len() =>
                    {
                        return Encoded::Whole(frame.clone());
                    }
                    Cached::Header {
                        payload_len,
                        header,
                    } if !whole && *payload_len == payload.len() => {
                        return Encoded::Header(header.clone());
                    }
                    _ => {}
                }
            }
        }
        let header = message_header(proto, via, channel, payload.len());
        let (cached, out) = if whole {
            let mut frame = BytesMut::with_capacity(header.len() + payload.len() + 2);
            frame.extend_from_slice(&header);
            frame.extend_from_slice(payload);
            frame.extend_from_slice(&CRLF);
            let frame = frame.freeze();
            let cached = Cached::Whole {
                payload: payload.clone(),
                frame: frame.clone(),
            };
            (cached, Encoded::Whole(frame))
        } else {
            let cached = Cached::Header {
                payload_len: payload.len(),
                header: header.clone(),
            };
            (cached, Encoded::Header(header))
        };
        *last = Some(LastDelivery {
            proto,
            pattern: pattern.map(Bytes::copy_from_slice),
            shard,
            // A copy: the channel may be a slice of some connection's read buffer.
            channel: Bytes::copy_from_slice(channel),
            cached,
        });
        out
    })
}

/// Every open RESP connection, for `CLIENT LIST`, `INFO` and maxclients.
#[derive(Default)]
pub struct Registry {
    clients: Mutex<HashMap<SubscriberId, Arc<Client>>>,
}

impl Registry {
    /// Register a client unless `max` are already connected.
    pub fn admit(&self, client: Arc<Client>, max: usize) -> bool {
        let mut all = self.clients.lock();
        if all.len() >= max {
            return false;
        }
        all.insert(client.id, client);
        true
    }

    pub fn remove(&self, id: SubscriberId) {
        self.clients.lock().remove(&id);
    }

    pub fn count(&self) -> usize {
        self.clients.lock().len()
    }

    /// All clients, oldest first.
    pub fn all(&self) -> Vec<Arc<Client>> {
        let mut v: Vec<_> = self.clients.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub fn pubsub_count(&self) -> usize {
        self.clients
            .lock()
            .values()
            .filter(|c| c.is_pubsub())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxLimits;

    fn client() -> Client {
        let a = "127.0.0.1:1".parse().unwrap();
        Client::new(a, a, -1, Outbox::new(OutboxLimits::default()))
    }

    fn frames(c: &Client) -> Vec<Bytes> {
        let mut v = Vec::new();
        c.outbox.take_now(&mut v).unwrap();
        v
    }

    #[test]
    fn one_frame_per_publication() {
        let (a, b, r3) = (client(), client(), client());
        r3.set_proto(Proto::Resp3);
        let channel = Bytes::from_static(b"news");
        let payload = Bytes::from(vec![b'7'; 100]);
        for c in [&a, &b, &r3] {
            c.deliver(Via::Channel, &channel, &payload);
        }
        let (fa, fb, f3) = (frames(&a), frames(&b), frames(&r3));
        assert_eq!(fa.len(), 1, "one frame");
        assert_eq!(fa[0].as_ptr(), fb[0].as_ptr(), "the same bytes for both");
        let mut want = b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$100\r\n".to_vec();
        want.extend_from_slice(&payload);
        want.extend_from_slice(b"\r\n");
        assert_eq!(&fa[0][..], &want[..]);
        assert_eq!(&f3[0][..2], b">3", "RESP3 gets its own frame");
        // A different channel, pattern or payload never reuses the frame, even with the
        // same length.
        a.deliver(Via::Pattern(b"n*"), &channel, &payload);
        a.deliver(Via::Channel, &Bytes::from_static(b"newz"), &payload);
        let other = Bytes::from(vec![b'8'; 100]);
        a.deliver(Via::Channel, &channel, &other);
        let f = frames(&a);
        assert!(f[0].starts_with(b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n"));
        assert!(f[1].starts_with(b"*3\r\n$7\r\nmessage\r\n$4\r\nnewz\r\n$100\r\n"));
        assert!(f[2].ends_with(b"88\r\n"));
    }

    #[test]
    fn a_large_payload_is_shared_not_copied() {
        let (a, b) = (client(), client());
        let channel = Bytes::from_static(b"news");
        let payload = Bytes::from(vec![7u8; WHOLE_FRAME_MAX + 1]);
        a.deliver(Via::Channel, &channel, &payload);
        b.deliver(Via::Channel, &channel, &payload);
        let (fa, fb) = (frames(&a), frames(&b));
        assert_eq!(fa[0].as_ptr(), fb[0].as_ptr(), "same header bytes");
        assert_eq!(fa[1].as_ptr(), payload.as_ptr(), "payload not copied");
        assert_eq!(fb[1].as_ptr(), payload.as_ptr());
        assert_eq!(
            &fa[0][..],
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$8193\r\n"
        );
        assert_eq!(&fa[2][..], b"\r\n");
    }
}
