//! Which Redis pub/sub subscriptions a node needs, from what its broker holds, and how
//! they are spread over the node's subscriber connections.
//!
//! A node subscribes to the channels its edges have clients on, and to a pattern for each
//! stream pattern an edge holds (a Pusher app's cache channels; with
//! `--socketio-broadcast-public`, socket.io's every public channel). RESP subscribers
//! match names the publisher chose, prefix and all, so any RESP subscription (exact or
//! pattern) makes the node take every publication of the default namespace and match
//! them itself, as a single node does. A channel a pattern already brings is not
//! subscribed to on its own.
//!
//! Each channel's name says which connection carries it ([`wire`]), so one channel's
//! messages always come in order on one connection; a pattern is held on every
//! connection, each copy for that connection's channels, so each publication comes to
//! the node once.

use super::super::{glob, Interest, Namespace};
use super::wire::{self, connection_of, CONNECTIONS};
use bytes::Bytes;
use std::collections::BTreeSet;

/// What one connection subscribes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub channels: BTreeSet<Bytes>,
    pub patterns: BTreeSet<Bytes>,
}

impl Wanted {
    /// Whether one of its patterns brings the channel whose backplane key is `key`.
    pub fn brings(&self, key: &[u8]) -> bool {
        self.patterns.iter().any(|p| glob::matches(p, key))
    }
}

/// What each of the [`CONNECTIONS`] subscribes to for `interest`.
pub fn wanted(interest: &Interest) -> Vec<Wanted> {
    let mut globs: Vec<(&Namespace, &[u8])> = interest
        .stream_patterns
        .iter()
        .map(|(ns, pattern)| (ns, &pattern[..]))
        .collect();
    if !interest.channels.is_empty() || !interest.patterns.is_empty() {
        globs.push((&Namespace::Default, b"*"));
    }
    let mut out: Vec<Wanted> = (0..CONNECTIONS)
        .map(|c| Wanted {
            channels: BTreeSet::new(),
            patterns: globs
                .iter()
                .map(|(ns, glob)| wire::stream_pattern(c, ns, glob))
                .collect(),
        })
        .collect();
    let streams = interest
        .streams
        .iter()
        .map(|(ns, channel)| wire::stream_key(ns, channel));
    let shards = interest.shard_channels.iter().map(|n| wire::shard_key(n));
    for key in streams.chain(shards) {
        let on = &mut out[connection_of(&key)];
        if !on.brings(&key) {
            on.channels.insert(key);
        }
    }
    out
}

/// What changes `from` into `to`: (subscribe, unsubscribe, psubscribe, punsubscribe).
pub fn changes(from: &Wanted, to: &Wanted) -> [Vec<Bytes>; 4] {
    let diff = |a: &BTreeSet<Bytes>, b: &BTreeSet<Bytes>| a.difference(b).cloned().collect();
    [
        diff(&to.channels, &from.channels),
        diff(&from.channels, &to.channels),
        diff(&to.patterns, &from.patterns),
        diff(&from.patterns, &to.patterns),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn streams_are_spread_and_each_connection_holds_every_pattern_for_its_channels() {
        let app = Namespace::App("1".into());
        let interest = Interest {
            streams: (0..100)
                .map(|i| (Namespace::Default, b(&format!("orders.{i}"))))
                .chain([(app.clone(), b("cache-x")), (app.clone(), b("chat"))])
                .collect(),
            stream_patterns: vec![(app.clone(), b("cache-*"))],
            shard_channels: vec![b("s1")],
            ..Interest::default()
        };
        let w = wanted(&interest);
        let all: Vec<&Bytes> = w.iter().flat_map(|c| &c.channels).collect();
        assert_eq!(all.len(), 100 + 1 + 1, "cache-x comes with the pattern");
        assert!(w.iter().all(|c| c.channels.len() >= 10), "spread: {w:?}");
        for (i, c) in w.iter().enumerate() {
            assert!(c.channels.iter().all(|k| connection_of(k) == i));
            assert_eq!(
                c.patterns.iter().collect::<Vec<_>>(),
                [&b(&format!("herald:{i}:a1:1:cache-*"))]
            );
        }
        assert!(all.contains(&&wire::shard_key(b"s1")));
        assert!(all.contains(&&wire::stream_key(&app, b"chat")));
    }

    #[test]
    fn a_resp_subscriber_brings_the_whole_default_namespace() {
        for interest in [
            Interest {
                channels: vec![b("laravel_database_orders")],
                ..Interest::default()
            },
            Interest {
                patterns: vec![b("laravel_database_*")],
                ..Interest::default()
            },
        ] {
            let interest = Interest {
                streams: vec![(Namespace::Default, b("orders"))],
                ..interest
            };
            for (i, c) in wanted(&interest).iter().enumerate() {
                assert_eq!(
                    c.patterns.iter().collect::<Vec<_>>(),
                    [&b(&format!("herald:{i}:d:*"))]
                );
                assert!(c.channels.is_empty(), "covered by the pattern: {c:?}");
            }
        }
    }

    #[test]
    fn changes_subscribe_what_is_new_and_drop_what_went() {
        let from = Wanted {
            channels: [b("a"), b("b")].into(),
            patterns: [b("p*")].into(),
        };
        let to = Wanted {
            channels: [b("b"), b("c")].into(),
            patterns: [b("q*")].into(),
        };
        assert_eq!(
            changes(&from, &to),
            [vec![b("c")], vec![b("a")], vec![b("q*")], vec![b("p*")]]
        );
        assert!(changes(&to, &to).iter().all(Vec::is_empty));
    }
}
