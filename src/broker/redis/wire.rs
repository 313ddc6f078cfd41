//! What herald nodes say to each other through Redis: the pub/sub channel a publication
//! travels on, and the publication's bytes.
//!
//! A publication travels on its stream's channel, so a node that has clients on a
//! channel subscribes to exactly that: `herald:<c>:d:<channel>` in the default namespace
//! (RESP, socket.io and the default Pusher app), `herald:<c>:a<len>:<app id>:<channel>` in
//! another Pusher app's (the length keeps an app id with a `:` from reading as part of
//! the channel). `SPUBLISH` publications, which no stream sees, travel on
//! `herald:<c>:shard:<name>`. `<c>` is the subscriber connection (of [`CONNECTIONS`]) that
//! carries the channel, from a hash of the rest of the name, so a pattern is subscribed
//! once per connection with its `<c>` and brings each publication to a node once: the
//! number of connections is part of this layout, the same on every node.
//!
//! The message is the whole [`Publication`] (the name RESP sees, where its channel
//! starts, who sees it, who made it, the payload) behind the publishing node's id and
//! its count of publications: the pair tells two copies of one publication (a node
//! subscribed to two patterns that match it gets both, one after the other) from two
//! publications that happen to have the same bytes. A publication of a stream's channel
//! is published by the script that numbers it ([`super::history`]), which puts its
//! offset in front: [`NUMBERED`], `<offset> `, then the message as [`encode`] made it.
//!
//! A channel's history is kept under `herald:history:<rest>` (a Redis stream whose
//! entry ids are `0-<seq>`) and `herald:epoch:<rest>` (a hash: the epoch, the last seq,
//! and the last stamp each node had numbered), `<rest>` as in the channel's key.

use super::super::{Namespace, Offset, Origin, Publication, ToResp};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::hash::BuildHasher;

/// Subscriber connections per node: channels are spread over them by hash.
pub const CONNECTIONS: usize = 4;
const SHARD: &[u8] = b"shard:";
/// The message layout's version, its first byte.
const VERSION: u8 = 1;
/// The first byte of a message with its offset in front.
pub const NUMBERED: u8 = 2;

/// The connection that carries the channel whose name, past `herald:<c>:`, is `rest`.
fn connection_for(rest: &[u8]) -> usize {
    let hash = foldhash::fast::FixedState::with_seed(0x6865_7261_6c64).hash_one(rest);
    (hash % CONNECTIONS as u64) as usize
}

/// `herald:<c>:` and `rest`, `<c>` its connection.
fn carried(rest: &[u8]) -> Bytes {
    let mut key = BytesMut::from(format!("herald:{}:", connection_for(rest)).as_bytes());
    key.extend_from_slice(rest);
    key.freeze()
}

/// The connection a key made here is carried by.
pub fn connection_of(key: &[u8]) -> usize {
    key.get(b"herald:".len())
        .map_or(0, |d| (d.wrapping_sub(b'0') as usize) % CONNECTIONS)
}

/// The pub/sub channel of `channel` in `namespace`.
pub fn stream_key(namespace: &Namespace, channel: &[u8]) -> Bytes {
    let mut rest = namespace_prefix(namespace);
    rest.extend_from_slice(channel);
    carried(&rest)
}

/// The pub/sub pattern, on connection `c`, for the glob `pattern` over the channels of
/// `namespace`.
pub fn stream_pattern(c: usize, namespace: &Namespace, pattern: &[u8]) -> Bytes {
    let mut key = BytesMut::from(format!("herald:{c}:").as_bytes());
    for &b in namespace_prefix(namespace).iter() {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            key.put_u8(b'\\');
        }
        key.put_u8(b);
    }
    key.extend_from_slice(pattern);
    key.freeze()
}

/// The history stream and the epoch hash of `channel` in `namespace`.
pub fn history_keys(namespace: &Namespace, channel: &[u8]) -> [Bytes; 2] {
    let mut rest = namespace_prefix(namespace);
    rest.extend_from_slice(channel);
    ["herald:history:", "herald:epoch:"].map(|k| [k.as_bytes(), &rest[..]].concat().into())
}

/// The pub/sub channel of an `SPUBLISH` shard channel.
pub fn shard_key(name: &[u8]) -> Bytes {
    carried(&[SHARD, name].concat())
}

/// The pub/sub channel `p` travels on.
pub fn key_of(p: &Publication) -> Bytes {
    match p.resp {
        ToResp::Shard => shard_key(p.name()),
        _ => stream_key(&p.namespace, p.channel()),
    }
}

/// `d:` or `a<len>:<app id>:`.
fn namespace_prefix(namespace: &Namespace) -> BytesMut {
    match namespace {
        Namespace::Default => BytesMut::from(&b"d:"[..]),
        Namespace::App(id) => {
            let mut key = BytesMut::from(format!("a{}:", id.len()).as_bytes());
            key.extend_from_slice(id.as_bytes());
            key.put_u8(b':');
            key
        }
    }
}

/// Which publication a message carries: the node that published it and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub node: u64,
    pub seq: u64,
}

/// `p` as the message for the backplane, stamped.
pub fn encode(p: &Publication, stamp: Stamp) -> Bytes {
    let name = p.name();
    let app = match &p.namespace {
        Namespace::Default => &b""[..],
        Namespace::App(id) => id.as_bytes(),
    };
    let mut m = BytesMut::with_capacity(32 + name.len() + app.len() + p.payload.len());
    m.put_u8(VERSION);
    m.put_u64(stamp.node);
    m.put_u64(stamp.seq);
    m.put_u8(match p.resp {
        ToResp::Hidden => 0,
        ToResp::Channel => 1,
        ToResp::Shard => 2,
    });
    m.put_u8(match p.origin {
        Origin::Server => 0,
        Origin::Client => 1,
    });
    m.put_u8(matches!(p.namespace, Namespace::App(_)) as u8);
    m.put_u32(app.len() as u32);
    m.extend_from_slice(app);
    m.put_u32(p.channel_at);
    m.put_u32(name.len() as u32);
    m.extend_from_slice(name);
    m.extend_from_slice(&p.payload);
    m.freeze()
}

/// A message that is not one [`encode`] makes (another version, cut short).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// The stamp and the publication in a message, with its offset if it came numbered
/// (otherwise the receiving node's stream numbers it).
pub fn decode(message: Bytes) -> Result<(Stamp, Publication), Malformed> {
    if message.first() != Some(&NUMBERED) {
        return decode_plain(message);
    }
    let space = message.iter().take(48).position(|&b| b == b' ');
    let space = space.ok_or(Malformed)?;
    let offset = std::str::from_utf8(&message[1..space]).map_err(|_| Malformed)?;
    let offset: Offset = offset.parse().map_err(|_| Malformed)?;
    let (stamp, mut p) = decode_plain(message.slice(space + 1..))?;
    p.offset = Some(offset);
    Ok((stamp, p))
}

/// A message as [`encode`] made it.
pub fn decode_plain(message: Bytes) -> Result<(Stamp, Publication), Malformed> {
    let mut m = message;
    let take_u32 = |m: &mut Bytes| (m.remaining() >= 4).then(|| m.get_u32() as usize);
    if m.remaining() < 1 + 16 + 3 || m.get_u8() != VERSION {
        return Err(Malformed);
    }
    let stamp = Stamp {
        node: m.get_u64(),
        seq: m.get_u64(),
    };
    let resp = match m.get_u8() {
        0 => ToResp::Hidden,
        1 => ToResp::Channel,
        2 => ToResp::Shard,
        _ => return Err(Malformed),
    };
    let origin = match m.get_u8() {
        0 => Origin::Server,
        1 => Origin::Client,
        _ => return Err(Malformed),
    };
    let in_app = m.get_u8() == 1;
    let app_len = take_u32(&mut m).ok_or(Malformed)?;
    if m.remaining() < app_len {
        return Err(Malformed);
    }
    let app = m.split_to(app_len);
    let namespace = if in_app {
        Namespace::App(std::str::from_utf8(&app).map_err(|_| Malformed)?.into())
    } else {
        Namespace::Default
    };
    let channel_at = take_u32(&mut m).ok_or(Malformed)?;
    let name_len = take_u32(&mut m).ok_or(Malformed)?;
    if m.remaining() < name_len || channel_at > name_len {
        return Err(Malformed);
    }
    let name = m.split_to(name_len);
    Ok((
        stamp,
        Publication {
            namespace,
            name,
            channel_at: channel_at as u32,
            resp,
            origin,
            payload: m,
            offset: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_comes_back_whole_with_its_stamp() {
        let stamp = Stamp { node: 7, seq: 42 };
        let cases = [
            Publication::published_as(
                Bytes::from_static(b"laravel_database_orders.1"),
                17,
                Bytes::from_static(br#"{"event":"Paid","data":{},"socket":null}"#),
            ),
            Publication::new(
                Namespace::App("a:1".into()),
                Bytes::from_static(b"private-chat"),
                Bytes::from_static(b"{}"),
            )
            .from_client(),
            Publication::shard(Bytes::from_static(b"s1"), Bytes::new()),
        ];
        for p in cases {
            let (back_stamp, back) = decode(encode(&p, stamp)).unwrap();
            assert_eq!((back_stamp, &back), (stamp, &p));
            assert_eq!(back.channel(), p.channel());
        }
    }

    #[test]
    fn a_message_cut_short_or_of_another_version_is_malformed() {
        let p = Publication::published_as(
            Bytes::from_static(b"prefix_orders"),
            7,
            Bytes::from_static(b"x"),
        );
        let whole = encode(&p, Stamp { node: 1, seq: 1 });
        let payload_at = whole.len() - 1;
        for cut in 0..payload_at {
            assert_eq!(decode(whole.slice(..cut)), Err(Malformed), "cut at {cut}");
        }
        let mut other = whole.to_vec();
        other[0] = 2;
        assert_eq!(decode(other.into()), Err(Malformed));
    }

    #[test]
    fn a_numbered_message_carries_its_offset() {
        let p = Publication::new(
            Namespace::Default,
            Bytes::from_static(b"orders"),
            Bytes::from_static(b"{}"),
        );
        let stamp = Stamp { node: 1, seq: 2 };
        let mut m = vec![NUMBERED];
        m.extend_from_slice(b"1f-42 ");
        m.extend_from_slice(&encode(&p, stamp));
        let (back_stamp, back) = decode(m.clone().into()).unwrap();
        assert_eq!(back_stamp, stamp);
        assert_eq!(back.offset, Some("1f-42".parse().unwrap()));
        assert_eq!(back.payload, p.payload);
        for cut in [1, 3, 6, 7] {
            assert_eq!(decode(Bytes::from(m[..cut].to_vec())), Err(Malformed));
        }
        m[3] = b'x';
        assert_eq!(decode(m.into()), Err(Malformed), "not an offset");
    }

    #[test]
    fn keys_keep_namespaces_apart_and_patterns_escape_the_app_id() {
        let tail = |key: &Bytes| key[b"herald:0:".len()..].to_vec();
        let orders = stream_key(&Namespace::Default, b"orders");
        assert_eq!(tail(&orders), b"d:orders");
        let app = Namespace::App("x:y".into());
        assert_eq!(tail(&stream_key(&app, b"z")), b"a3:x:y:z");
        assert_eq!(
            &stream_pattern(2, &app, b"cache-*")[..],
            b"herald:2:a3:x:y:cache-*"
        );
        let globby = Namespace::App("a*[".into());
        let c = stream_key(&globby, b"c");
        let pattern = stream_pattern(connection_of(&c), &globby, b"*");
        assert_eq!(tail(&pattern), br"a3:a\*\[:*");
        assert!(crate::broker::glob::matches(&pattern, &c));
        let other = stream_key(&Namespace::App("abc".into()), b"c");
        assert!(!crate::broker::glob::matches(
            &stream_pattern(connection_of(&other), &globby, b"*"),
            &other
        ));
        assert_eq!(tail(&shard_key(b"s")), b"shard:s");
    }

    #[test]
    fn channels_are_spread_over_the_connections_and_a_key_says_which() {
        let mut per = [0; CONNECTIONS];
        for i in 0..400 {
            let key = stream_key(&Namespace::Default, format!("orders.{i}").as_bytes());
            let c = connection_of(&key);
            assert!(key.starts_with(format!("herald:{c}:").as_bytes()));
            per[c] += 1;
        }
        assert!(per.iter().all(|&n| n > 50), "spread: {per:?}");
    }
}
