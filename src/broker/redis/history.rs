//! A channel's history in Redis, so that its offsets mean the same on every node and a
//! client recovers on any node: the script that numbers a publication, and the one that
//! reads what came after an offset.
//!
//! [`NUMBER`] runs once per publication of a stream's channel, in the publisher's
//! pipeline (`EVALSHA`; the publisher loads it on each connection): it takes the
//! channel's epoch (made once, from the publishing node's candidate, when the channel
//! has no history: Redis lost it, or it expired) and its next sequence number, appends
//! the message to the channel's stream (`XADD` with the id `0-<seq>`, `MAXLEN` the
//! node's `--history-size`), gives both keys the history TTL, and publishes the message
//! with its offset in front ([`wire::NUMBERED`]). One script, so the offset, the order
//! of the stream and the order every node receives are one. A batch sent again after a
//! lost reply must not be numbered twice: the hash keeps each node's last stamp, and a
//! stamp not past it is a copy (not appended, not published).
//!
//! Redis restarted since an epoch last numbered (the hash keeps the `run_id` it numbered
//! under): the epoch ends there, and the publication begins a new one, its sequence going
//! on. A Redis that comes back from a snapshot or an AOF holds its history and numbers
//! as they were when written, short of what it numbered after (redis-server's default
//! `save` snapshots a minute to an hour apart): numbering on in the old epoch would give
//! a new publication the offset of one the nodes already delivered, and they would drop
//! it as a copy. A new epoch never repeats an offset.
//!
//! [`READ`] answers `since` as the memory ring does: the publications after an offset,
//! all of them or none (another epoch, ahead of the stream, or the first one after it no
//! longer kept). Entries live while their stream does (each publication renews its TTL),
//! bounded by `MAXLEN`: a quiet channel's history goes whole, a busy one's by count.
//!
//! A client may stand on a channel before anything was published on it: [`stand`] then
//! gives the cluster's origin ([`ORIGIN_KEY`], one value for every channel, made once),
//! at 0, and writes nothing of the channel's (a stranger subscribing to made-up channels
//! makes no key). [`READ`] takes an offset `origin-0` for "before the channel's first
//! epoch" and answers it with the whole of the channel's epoch, as long as that epoch
//! still begins at 1 (its stream holds `0-1`) and the origin is the one the client was
//! given (Redis did not lose its data since). The epoch hash outlives its stream by the
//! recovery window ([`Numbering::epoch_ttl`](super::Numbering)): an epoch that began after the client
//! left is still known when it comes back, so a history that began, lapsed and began
//! again is not taken for one that began once.
//!
//! [`wire`]: super::wire

use super::super::{Epoch, Namespace, Offset, Publication, TooOld};
use super::wire::{self, Malformed, Stamp};
use bytes::Bytes;
use redis::Value;
use std::sync::LazyLock;

/// KEYS: the stream, the epoch hash. ARGV: the pub/sub channel, the message, MAXLEN, the
/// stream's TTL in ms, an epoch for a channel without one, the node, its stamp, the
/// epoch hash's TTL in ms, Redis's `run_id`. Returns the offset (epoch, seq), or nil for a
/// copy.
pub static NUMBER: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(NUMBER_CODE));

/// [`NUMBER`]'s code, for `SCRIPT LOAD`.
pub const NUMBER_CODE: &str = r"
local h = KEYS[2]
local got = redis.call('HMGET', h, ARGV[6], 'r')
if tonumber(ARGV[7]) <= tonumber(got[1] or '0') then return false end
if redis.call('HSETNX', h, 'e', ARGV[5]) == 1 or got[2] ~= ARGV[9] then
  redis.call('HSET', h, 'e', ARGV[5], 'r', ARGV[9])
  redis.call('DEL', KEYS[1])
end
local e = redis.call('HGET', h, 'e')
local s = redis.call('HINCRBY', h, 's', 1)
redis.call('HSET', h, ARGV[6], ARGV[7])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '0-' .. s, 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', h, ARGV[8])
redis.call('PUBLISH', ARGV[1], '\2' .. e .. '-' .. s .. ' ' .. ARGV[2])
return {e, s}
";

/// The key of the cluster's origin: the epoch every channel without history stands in,
/// at 0, until its first publication. Made once (no TTL); a Redis that lost its data
/// makes another, so offsets of the old one are refused.
pub const ORIGIN_KEY: &str = "herald:origin";

/// KEYS: the stream, the epoch hash, [`ORIGIN_KEY`]. ARGV: the offset's epoch and seq.
/// Returns the epoch read and the messages after the offset in it, oldest first, or nil
/// when they cannot all be given. An offset of the origin at 0 stood before the channel's
/// first epoch: it is read from the start of the channel's epoch.
pub static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local h = redis.call('HMGET', KEYS[2], 'e', 's')
local after = tonumber(ARGV[2])
if h[1] ~= ARGV[1] then
  if after ~= 0 or redis.call('GET', KEYS[3]) ~= ARGV[1] then return false end
  if not h[1] then return {ARGV[1], {}} end
end
local last = tonumber(h[2] or '0')
if after > last then return false end
if after == last then return {h[1], {}} end
local first = '0-' .. (after + 1)
local r = redis.call('XRANGE', KEYS[1], first, '+')
if #r == 0 or r[1][1] ~= first then return false end
local out = {}
for i, e in ipairs(r) do out[i] = e[2][2] end
return {h[1], out}
",
    )
});

/// Add to `pipe` the numbering of `p` (`message`, stamped `stamp`), published on `key`.
pub fn number(
    pipe: &mut redis::Pipeline,
    key: &[u8],
    p: &Publication,
    message: &[u8],
    stamp: Stamp,
    numbering: &super::Numbering,
    run_id: &str,
) {
    let limits = &numbering.limits;
    let [stream, epoch] = wire::history_keys(&p.namespace, p.channel());
    pipe.cmd("EVALSHA")
        .arg(NUMBER.get_hash())
        .arg(2)
        .arg(&stream[..])
        .arg(&epoch[..])
        .arg(key)
        .arg(message)
        .arg(limits.size)
        .arg(limits.ttl.as_millis().max(1) as u64)
        .arg(format!("{:x}", Epoch::fresh().0))
        .arg(format!("{:x}", stamp.node))
        .arg(stamp.seq)
        .arg(numbering.epoch_ttl.as_millis().max(1) as u64)
        .arg(run_id);
}

/// Redis's `run_id` in its `INFO server` reply: new at each start of the server.
pub fn run_id(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(str::trim)
}

/// The offset [`NUMBER`] returned; None for a copy (or a reply it does not make).
pub fn numbered(reply: &Value) -> Option<Offset> {
    let Value::Array(v) = reply else {
        return None;
    };
    let (Some(Value::BulkString(e)), Some(Value::Int(s))) = (v.first(), v.get(1)) else {
        return None;
    };
    let epoch = u64::from_str_radix(std::str::from_utf8(e).ok()?, 16).ok()?;
    Some(Offset {
        epoch: Epoch(epoch),
        seq: u64::try_from(*s).ok()?,
    })
}

/// Where the history of `channel` in `namespace` stands, or the cluster's origin at 0 if
/// it has none (made now from `candidate` if the cluster has none); writes nothing of the
/// channel's. Plain commands in one transaction, not a script: they go out at once, in
/// the connection's order, even to a Redis that lost its script cache (a script would
/// take a `NOSCRIPT` round trip first there, and come after what was sent behind it).
pub async fn stand(
    con: &mut redis::aio::MultiplexedConnection,
    namespace: &Namespace,
    channel: &[u8],
    candidate: Epoch,
) -> redis::RedisResult<Option<Offset>> {
    let [_, hash] = wire::history_keys(namespace, channel);
    let ((epoch, seq), origin): ((Option<String>, Option<u64>), Option<String>) = redis::pipe()
        .atomic()
        .cmd("HMGET")
        .arg(&hash[..])
        .arg("e")
        .arg("s")
        .cmd("SET")
        .arg(ORIGIN_KEY)
        .arg(format!("{:x}", candidate.0))
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(ORIGIN_KEY)
        .query_async(con)
        .await?;
    let (epoch, seq) = match epoch {
        Some(epoch) => (epoch, seq.unwrap_or(0)),
        None => match origin {
            Some(origin) => (origin, 0),
            None => return Ok(None),
        },
    };
    Ok(u64::from_str_radix(&epoch, 16).ok().map(|e| Offset {
        epoch: Epoch(e),
        seq,
    }))
}

/// What reading a channel's history found.
pub enum Read {
    Found(Result<Vec<Publication>, TooOld>),
    /// An entry herald cannot read: nothing is given (never some of them).
    Malformed,
}

/// The publications of `channel` in `namespace` after `offset`, from Redis.
pub async fn since(
    con: &mut redis::aio::MultiplexedConnection,
    namespace: &Namespace,
    channel: &[u8],
    offset: Offset,
) -> redis::RedisResult<Read> {
    let [stream, hash] = wire::history_keys(namespace, channel);
    let found: Option<(String, Vec<Vec<u8>>)> = READ
        .key(&stream[..])
        .key(&hash[..])
        .key(ORIGIN_KEY)
        .arg(format!("{:x}", offset.epoch.0))
        .arg(offset.seq)
        .invoke_async(con)
        .await?;
    let Some((epoch, messages)) = found else {
        return Ok(Read::Found(Err(TooOld)));
    };
    let Ok(epoch) = u64::from_str_radix(&epoch, 16).map(Epoch) else {
        return Ok(Read::Malformed);
    };
    let mut missed = Vec::with_capacity(messages.len());
    for (seq, m) in (offset.seq + 1..).zip(messages) {
        match wire::decode_plain(Bytes::from(m)) {
            Ok((_, mut p)) => {
                p.offset = Some(Offset { epoch, seq });
                missed.push(p);
            }
            Err(Malformed) => return Ok(Read::Malformed),
        }
    }
    Ok(Read::Found(Ok(missed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_id_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:89dada1910e3ebcee681f0ee973664571d924b64\r\ntcp_port:6379\r\n";
        assert_eq!(
            run_id(info),
            Some("89dada1910e3ebcee681f0ee973664571d924b64")
        );
        assert_eq!(run_id("# Server\r\nredis_version:7.0.15\r\n"), None);
    }
}
