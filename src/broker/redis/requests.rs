//! The node's connection for the commands whose answer it awaits, apart from the
//! publisher's pipeline (whose order is the cluster's) and the subscriber connections
//! (in pub/sub mode): history reads ([`super::history::since`]) and the recovery
//! sessions kept for any node to take ([`Requests::keep`], [`Requests::take`]).
//!
//! One multiplexed connection, made when first needed and again after it failed; no
//! lock is held while it is made or used.

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use std::time::Duration;

pub struct Requests {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    con: Mutex<Option<MultiplexedConnection>>,
}

/// Where a kept session lives.
fn kept_key(key: &str) -> String {
    format!("herald:kept:{key}")
}

impl Requests {
    pub fn new(client: redis::Client, timeout: Duration) -> Requests {
        Requests {
            client,
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout),
            con: Mutex::new(None),
        }
    }

    /// The connection, made if need be.
    pub async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(con) = self.con.lock().clone() {
            return Ok(con);
        }
        let con = (self.client)
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *self.con.lock() = Some(con.clone());
        Ok(con)
    }

    /// A command on the connection failed: the next one makes a new connection.
    pub fn failed(&self, error: &redis::RedisError) {
        if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
            self.con.lock().take();
        }
    }

    /// Keep `value` under `key` for `ttl`, replacing what was there.
    pub async fn keep(&self, key: &str, value: &[u8], ttl: Duration) -> redis::RedisResult<()> {
        let mut con = self.connection().await?;
        let ms = ttl.as_millis().max(1) as u64;
        let kept = redis::cmd("SET")
            .arg(kept_key(key))
            .arg(value)
            .arg("PX")
            .arg(ms)
            .exec_async(&mut con)
            .await;
        kept.inspect_err(|e| self.failed(e))
    }

    /// Take what is kept under `keys`, at once and once: no other node (nor this one)
    /// finds any of it after.
    pub async fn take(&self, keys: &[String]) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
        let mut con = self.connection().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in keys {
            pipe.cmd("GETDEL").arg(kept_key(key));
        }
        let taken = pipe.query_async(&mut con).await;
        taken.inspect_err(|e| self.failed(e))
    }

    /// Keep what is under `keys` for `ttl` from now.
    pub async fn prolong(&self, keys: &[String], ttl: Duration) -> redis::RedisResult<()> {
        let mut con = self.connection().await?;
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("PEXPIRE")
                .arg(kept_key(key))
                .arg(ttl.as_millis().max(1) as u64)
                .ignore();
        }
        let done = pipe.exec_async(&mut con).await;
        done.inspect_err(|e| self.failed(e))
    }

    /// Where the history of `channel` in `namespace` stands, or the cluster's origin at
    /// 0 if it has none (made now from `candidate` if the cluster has none): an offset
    /// taken here means the same on every node, also before anything was published, and
    /// Redis keeps nothing of a channel nobody published on.
    pub async fn stand(
        &self,
        namespace: &super::super::Namespace,
        channel: &[u8],
        candidate: super::super::Epoch,
    ) -> redis::RedisResult<Option<super::super::Offset>> {
        let mut con = self.connection().await?;
        let stood = super::history::stand(&mut con, namespace, channel, candidate).await;
        stood.inspect_err(|e| self.failed(e))
    }

    /// Where the history of `channel` in `namespace` stands: its epoch and last seq.
    pub async fn position(
        &self,
        namespace: &super::super::Namespace,
        channel: &[u8],
    ) -> redis::RedisResult<Option<super::super::Offset>> {
        let mut con = self.connection().await?;
        let [_, hash] = super::wire::history_keys(namespace, channel);
        let held: redis::RedisResult<(Option<String>, Option<u64>)> = redis::cmd("HMGET")
            .arg(&hash[..])
            .arg("e")
            .arg("s")
            .query_async(&mut con)
            .await;
        let (epoch, seq) = held.inspect_err(|e| self.failed(e))?;
        let epoch = epoch.and_then(|e| u64::from_str_radix(&e, 16).ok());
        Ok(epoch.map(|e| super::super::Offset {
            epoch: super::super::Epoch(e),
            seq: seq.unwrap_or(0),
        }))
    }
}
