//! Connection state recovery, protocol-free: what an edge needs to give a client that
//! lost its connection exactly what it missed, no more, no less.
//!
//! herald numbers each channel's publications ([`crate::broker::Offset`]) and keeps the
//! latest of them ([`crate::broker::Broker::since`]), but a client may be in several
//! channels and report only one position: the offset of the last event it received
//! (socket.io's `offset`). Three small pieces turn that into one position per channel
//! and a replay with no gap and no duplicate:
//! - [`trail`]: a bounded record, per connection, of the offsets written to it, in the
//!   order written; it maps "the last event I received" to a position on every channel.
//! - [`gate`]: while a replay is read, the live frames of the recovering connection are
//!   held back; when it is written, the held frames it already covered are dropped.
//! - [`store`]: the detached sessions kept for the recovery window (in a cluster, also
//!   on Redis: `socketio/handover.rs`).
//!
//! The socket.io edge uses all three (`socketio/recovery.rs`); a Pusher resume can use
//! the gate and the store as they are.

pub mod gate;
pub mod store;
pub mod trail;
