//! WebSocket connections, finished by herald instead of warp's `ws()`.
//!
//! warp's `ws()` holds tungstenite's 128 KiB read buffer per connection (about 134 KiB
//! of RSS per idle socket, measured); a broadcast server lives on idle sockets. So warp
//! routes the request, [`upgrade()`] answers `101` itself, and [`frame`] speaks RFC 6455
//! over hyper's upgraded stream with a read buffer that grows only while a message is
//! arriving. Outgoing frames are encoded once per publication ([`frame::text`]) and the
//! same bytes are written to every subscriber; [`conn::drive`] writes everything a
//! connection has queued in one vectored write.

pub mod conn;
pub mod frame;
mod upgrade;

pub use conn::{drive, Flow, Handler, Waiting};
pub use frame::{Message, WsError};
pub use upgrade::{upgrade, Upgrade, WsStream};
