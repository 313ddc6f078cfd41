//! Filling what a node did not hear of a channel it delivers: the publications Redis
//! numbered while this node's subscriber connection was down (Redis restarted its
//! connections, a network blip), or while the channel lingered here unsubscribed.
//!
//! Redis numbers every publication of a channel, so a node that receives `E-n` while its
//! stream of the channel stands at `E-m`, `m + 1 < n`, knows it missed `m+1..n-1`. Before
//! `E-n` is delivered, the task delivering it (the subscriber connection that carries the
//! channel, or the publisher delivering the node's own while that connection is down)
//! reads them from
//! the channel's history in Redis ([`super::history::since`]) and delivers them, in order,
//! each with its offset: the node's clients get what they missed exactly once and in
//! order, with no reconnect. The connection's other channels wait for that one round
//! trip (their messages queue in the connection meanwhile, in order). A gap the history no
//! longer covers is counted and logged, and `E-n` is delivered: the stream's ring restarts
//! there, so a recovery from before it is refused rather than answered short.
//!
//! A different epoch (Redis lost the channel's history) is no gap: nothing can fill it.
//!
//! A channel the node begins to hear ([`super::joins`]) is caught up the same way once
//! its `SUBSCRIBE` is acknowledged ([`catch_up`]): from where its stream stands to where
//! the history stands then, without waiting for a next publication to show the gap.

use super::super::{Broker, MemoryBroker, Namespace, Offset, Publication, ToResp};
use super::history::{self, Read};
use super::requests::Requests;

/// A publication that arrived after a gap, held until the gap is filled.
pub struct Gap {
    publication: Publication,
    /// Where the node's stream stood.
    after: Offset,
}

/// `p` if it comes after a gap in `local`'s stream of its channel.
pub fn after_gap(local: &MemoryBroker, p: Publication) -> Result<Gap, Publication> {
    let (Some(o), Some(at)) = (p.offset, local.position(&p.namespace, p.channel())) else {
        return Err(p);
    };
    if o.epoch == at.epoch && o.seq > at.seq + 1 {
        Ok(Gap {
            publication: p,
            after: at,
        })
    } else {
        Err(p)
    }
}

/// What filling a gap came to.
pub enum Filled {
    /// This many publications were delivered in the gap.
    Whole(u64),
    /// The history no longer covers it, or could not be read (why).
    Not(String),
}

/// Deliver what `gap` missed from Redis's history, then its publication.
pub async fn fill(local: &MemoryBroker, requests: &Requests, gap: Gap) -> Filled {
    let Gap { publication, after } = gap;
    let until = publication.offset.map_or(0, |o| o.seq);
    let read = async {
        let mut con = requests.connection().await?;
        let (ns, channel) = (&publication.namespace, publication.channel());
        let read = history::since(&mut con, ns, channel, after).await;
        read.inspect_err(|e| requests.failed(e))
    };
    let filled = filled(read.await, |missed| {
        let mut n = 0;
        for p in missed
            .into_iter()
            .take_while(|p| p.offset.is_some_and(|o| o.seq < until))
        {
            local.publish(p);
            n += 1;
        }
        n
    });
    local.publish(publication);
    filled
}

/// What a read of the history came to, `deliver` given what it found.
fn filled(read: redis::RedisResult<Read>, deliver: impl FnOnce(Vec<Publication>) -> u64) -> Filled {
    match read {
        Ok(Read::Found(Ok(missed))) => Filled::Whole(deliver(missed)),
        Ok(Read::Found(Err(_))) => Filled::Not("the history no longer covers it".into()),
        Ok(Read::Malformed) => Filled::Not("the history holds an entry herald cannot read".into()),
        Err(e) => Filled::Not(e.to_string()),
    }
}

/// `channel` of `namespace` was just subscribed to on Redis, its stream having begun
/// where the history `stood` ([`super::joins`]): deliver what the history holds after
/// where the stream stands now. What pub/sub brings of it too, the stream drops as a
/// copy (by its offset); RESP subscribers are not given these (what they get comes by
/// pub/sub, which a pattern of theirs brings: never twice).
pub async fn catch_up(
    local: &MemoryBroker,
    requests: &Requests,
    namespace: &Namespace,
    channel: &[u8],
    stood: Offset,
) -> Filled {
    let read = async {
        let Some(there) = requests.position(namespace, channel).await? else {
            return Ok(None);
        };
        let Some(at) = local.position(namespace, channel) else {
            return Ok(None);
        };
        let untouched = at == stood;
        let from = if at.epoch == there.epoch && at.seq < there.seq {
            at
        } else if at.epoch != there.epoch && untouched {
            // The history began (or began again) after the position was read: all of
            // its epoch came after.
            Offset {
                epoch: there.epoch,
                seq: 0,
            }
        } else {
            return Ok(None);
        };
        let mut con = requests.connection().await?;
        let read = history::since(&mut con, namespace, channel, from).await;
        read.inspect_err(|e| requests.failed(e)).map(Some)
    };
    match read.await {
        Ok(None) => Filled::Whole(0),
        Ok(Some(read)) => filled(Ok(read), |missed| {
            let mut n = 0;
            for mut p in missed {
                p.resp = ToResp::Hidden;
                local.publish(p);
                n += 1;
            }
            n
        }),
        Err(e) => Filled::Not(e.to_string()),
    }
}
