//! Pub/sub commands, byte-exact with Redis 7's `pubsub.c`.
//!
//! Each (un)subscription is confirmed with its own `subscribe`-style reply carrying
//! the connection's subscription count (channels + patterns; shard channels count on
//! their own); `UNSUBSCRIBE` with nothing to leave replies once with a null channel and
//! 0. A confirmation is handed to the outbox before the broker registers the
//! subscription, so no message can arrive ahead of it.

use super::super::frame::Frame;
use super::super::session::Session;
use crate::broker::{Publication, Subscriber};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

pub enum Cmd {
    Publish(Bytes, Bytes),
    SPublish(Bytes, Bytes),
    Subscribe(Kind, Vec<Bytes>),
    Unsubscribe(Kind, Vec<Bytes>),
    Channels(Kind, Vec<Bytes>),
    NumSub(Kind, Vec<Bytes>),
    NumPat,
}

pub fn parse(name: &str, mut args: Vec<Bytes>) -> Cmd {
    let mut pair = || {
        let msg = args.pop().unwrap_or_default();
        (args.pop().unwrap_or_default(), msg)
    };
    match name {
        "publish" => {
            let (c, m) = pair();
            Cmd::Publish(c, m)
        }
        "spublish" => {
            let (c, m) = pair();
            Cmd::SPublish(c, m)
        }
        "subscribe" => Cmd::Subscribe(Kind::Channel, args),
        "psubscribe" => Cmd::Subscribe(Kind::Pattern, args),
        "ssubscribe" => Cmd::Subscribe(Kind::Shard, args),
        "unsubscribe" => Cmd::Unsubscribe(Kind::Channel, args),
        "punsubscribe" => Cmd::Unsubscribe(Kind::Pattern, args),
        "sunsubscribe" => Cmd::Unsubscribe(Kind::Shard, args),
        "pubsub|channels" => Cmd::Channels(Kind::Channel, args.split_off(1)),
        "pubsub|shardchannels" => Cmd::Channels(Kind::Shard, args.split_off(1)),
        "pubsub|numsub" => Cmd::NumSub(Kind::Channel, args.split_off(1)),
        "pubsub|shardnumsub" => Cmd::NumSub(Kind::Shard, args.split_off(1)),
        "pubsub|numpat" => Cmd::NumPat,
        other => unreachable!("{other} is not a pub/sub command"),
    }
}

pub fn run(cmd: Cmd, s: &mut Session) {
    // The broker is borrowed, not its Arc cloned: a reference count that every
    // connection's thread touches per command is a contended cache line.
    match cmd {
        Cmd::Publish(channel, message) => {
            publish_ordered(s);
            let state = &s.server.state;
            let n = state
                .broker
                .publish(state.prefixes.publication(channel, message));
            s.reply(Frame::Integer(n as i64));
        }
        Cmd::SPublish(channel, message) => {
            publish_ordered(s);
            let n = s
                .server
                .state
                .broker
                .publish(Publication::shard(channel, message));
            s.reply(Frame::Integer(n as i64));
        }
        Cmd::Subscribe(kind, names) => {
            for name in names {
                subscribe(s, kind, name);
            }
        }
        Cmd::Unsubscribe(kind, names) => unsubscribe(s, kind, names),
        Cmd::Channels(kind, args) => {
            let broker = &s.server.state.broker;
            let reply = match args.as_slice() {
                [] | [_] => {
                    let pattern = args.first().map(|p| &p[..]);
                    let names = match kind {
                        Kind::Shard => broker.shard_channels(pattern),
                        _ => broker.channels(pattern),
                    };
                    Frame::Array(names.into_iter().map(Frame::Bulk).collect())
                }
                _ => Frame::err(format_args!(
                    "unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                    if kind == Kind::Shard {
                        "shardchannels"
                    } else {
                        "channels"
                    }
                )),
            };
            s.reply(reply);
        }
        Cmd::NumSub(kind, channels) => {
            let broker = &s.server.state.broker;
            let mut out = Vec::with_capacity(channels.len() * 2);
            for c in channels {
                let n = match kind {
                    Kind::Shard => broker.shard_numsub(&c),
                    _ => broker.numsub(&c),
                };
                out.push(Frame::Bulk(c));
                out.push(Frame::Integer(n as i64));
            }
            s.reply(Frame::Array(out));
        }
        Cmd::NumPat => {
            let n = s.server.state.broker.numpat();
            s.reply(Frame::Integer(n as i64));
        }
    }
}

/// If this connection receives what it publishes, its earlier replies must go first.
pub fn publish_ordered(s: &mut Session) {
    if s.subscriptions() > 0 {
        s.flush();
    }
}

fn set(s: &mut Session, kind: Kind) -> &mut HashSet<Bytes> {
    match kind {
        Kind::Channel => &mut s.channels,
        Kind::Pattern => &mut s.patterns,
        Kind::Shard => &mut s.shard_channels,
    }
}

/// The count Redis reports in (un)subscribe confirmations.
fn count(s: &Session, kind: Kind) -> i64 {
    match kind {
        Kind::Shard => s.shard_channels.len() as i64,
        _ => (s.channels.len() + s.patterns.len()) as i64,
    }
}

fn confirm(s: &mut Session, verb: &'static str, kind: Kind, name: Option<Bytes>) {
    let n = count(s, kind);
    s.reply(Frame::Push(vec![
        Frame::bulk(verb),
        name.map_or(Frame::Null, Frame::Bulk),
        Frame::Integer(n),
    ]));
}

fn subscribe(s: &mut Session, kind: Kind, name: Bytes) {
    let added = set(s, kind).insert(name.clone());
    let verb = match kind {
        Kind::Channel => "subscribe",
        Kind::Pattern => "psubscribe",
        Kind::Shard => "ssubscribe",
    };
    confirm(s, verb, kind, Some(name.clone()));
    s.sync_meta();
    if added {
        s.flush();
        let me: Arc<dyn Subscriber> = s.client.clone();
        let broker = &s.server.state.broker;
        match kind {
            Kind::Channel => broker.subscribe(name, me),
            Kind::Pattern => broker.psubscribe(name, me),
            Kind::Shard => broker.ssubscribe(name, me),
        };
    }
}

fn unsubscribe(s: &mut Session, kind: Kind, names: Vec<Bytes>) {
    let verb = match kind {
        Kind::Channel => "unsubscribe",
        Kind::Pattern => "punsubscribe",
        Kind::Shard => "sunsubscribe",
    };
    let names: Vec<Bytes> = if names.is_empty() {
        set(s, kind).iter().cloned().collect()
    } else {
        names
    };
    if names.is_empty() {
        confirm(s, verb, kind, None);
        return;
    }
    for name in names {
        if set(s, kind).remove(&name) {
            let broker = &s.server.state.broker;
            let id = s.client.id;
            match kind {
                Kind::Channel => broker.unsubscribe(&name, id),
                Kind::Pattern => broker.punsubscribe(&name, id),
                Kind::Shard => broker.sunsubscribe(&name, id),
            };
        }
        confirm(s, verb, kind, Some(name));
    }
    s.sync_meta();
}
