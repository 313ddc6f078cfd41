//! Where a publication stands in its channel's stream: an epoch and a sequence number.
//!
//! The broker numbers every publication of a channel (in its namespace) with the next
//! sequence number of that channel's stream, in the critical section that fixes the
//! order of delivery, so every subscriber sees one channel's publications in offset
//! order. The epoch names the history those numbers count: it changes whenever that
//! history is lost (a restart, a stream dropped and created anew), so a client holding
//! an offset of another epoch is told its gap cannot be filled instead of being given a
//! wrong one. This is centrifuge's `StreamPosition{Offset, Epoch}`.
//!
//! On the wire (socket.io's recovery offset, herald's Pusher resume) an offset is
//! `<epoch in hex>-<seq in decimal>`, e.g. `18c2f3a9d4e5b601-42`.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// One stream's identity: new whenever the history it numbers starts afresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u64);

/// A publication's position in its channel's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Offset {
    pub epoch: Epoch,
    /// 1 for the stream's first publication, then one more for each.
    pub seq: u64,
}

/// Epochs handed out by this process are a random base drawn at the first one, plus a
/// count: no other process's epochs (an earlier run of this one, another node of the
/// cluster, another process sharing this machine's ports) are the same but by a chance
/// of about one in 2^64 per epoch. Only their equality means anything: an offset of
/// another process's stream is then never mistaken for one of ours. In a cluster a
/// channel's epoch is made once in Redis, from the candidate of the node that first
/// publishes on it, so it is the same on every node; a node's own epochs number only what
/// it delivered while Redis could not (a client of another node is told its gap cannot
/// be filled, not given this node's numbering).
static BASE: OnceLock<u64> = OnceLock::new();
static COUNT: AtomicU64 = AtomicU64::new(0);

impl Epoch {
    /// An epoch no stream of this process or another has used.
    pub fn fresh() -> Epoch {
        let base = *BASE.get_or_init(rand::random::<u64>);
        Epoch(base.wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.epoch.0, self.seq)
    }
}

/// An offset string that is not `<hex>-<decimal>`.
#[derive(Debug, PartialEq, Eq)]
pub struct BadOffset;

impl FromStr for Offset {
    type Err = BadOffset;
    fn from_str(s: &str) -> Result<Offset, BadOffset> {
        let (epoch, seq) = s.split_once('-').ok_or(BadOffset)?;
        let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if epoch.is_empty() || epoch.len() > 16 || !epoch.bytes().all(hex) {
            return Err(BadOffset);
        }
        if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|c| c.is_ascii_digit()) {
            return Err(BadOffset);
        }
        Ok(Offset {
            epoch: Epoch(u64::from_str_radix(epoch, 16).map_err(|_| BadOffset)?),
            seq: seq.parse().map_err(|_| BadOffset)?,
        })
    }
}

/// Written as on the wire, for what is kept on the backplane.
impl serde::Serialize for Offset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Offset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Offset, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("not an offset"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes() {
        let o = Offset {
            epoch: Epoch(0x18c2_f3a9_d4e5_b601),
            seq: 42,
        };
        assert_eq!(o.to_string(), "18c2f3a9d4e5b601-42");
        assert_eq!("18c2f3a9d4e5b601-42".parse(), Ok(o));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "x-1",
            "1-x",
            "1-+1",
            "A-1",
            "1-1-1",
            "11111111111111111-1",
        ] {
            assert_eq!(bad.parse::<Offset>(), Err(BadOffset), "{bad:?}");
        }
    }

    #[test]
    fn serialized_as_on_the_wire() {
        let o = Offset {
            epoch: Epoch(0xab),
            seq: 7,
        };
        assert_eq!(serde_json::to_string(&o).unwrap(), r#""ab-7""#);
        assert_eq!(serde_json::from_str::<Offset>(r#""ab-7""#).unwrap(), o);
        assert!(serde_json::from_str::<Offset>(r#""ab""#).is_err());
    }

    #[test]
    fn fresh_epochs_differ() {
        let (a, b) = (Epoch::fresh(), Epoch::fresh());
        assert_ne!(a, b);
    }
}
