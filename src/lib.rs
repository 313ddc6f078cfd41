//! herald: one binary for Laravel broadcasting.
//!
//! A Laravel app's `redis` broadcaster (or any Redis client) publishes over RESP; the
//! in-process broker matches channels and Redis glob patterns; WebSocket edges deliver
//! to browsers speaking socket.io (Laravel Echo's socket.io connector) or the Pusher
//! protocol (Echo's reverb/pusher connectors, pusher-js).
//!
//! The path of a publication: a RESP `PUBLISH laravel_database_orders.1 {...}` is read by
//! [`resp`], and [`laravel::Prefixes::publication`] turns it into one
//! [`broker::Publication`] of the default namespace's channel `orders.1` (the Pusher HTTP
//! API, Pusher client events and socket.io whispers make theirs the same way). The
//! [`broker::Broker`] delivers it to RESP subscribers of the published name, then, under
//! the stream's shard lock, numbers it with the stream's next [`broker::Offset`], keeps
//! it in the stream's history and hands it once to each WebSocket edge subscribed to
//! `orders.1`. Each edge decodes the envelope once, encodes its frame once, and pushes
//! clones of those bytes into its clients' [`outbox`]es; each connection's task writes
//! everything queued with one vectored write ([`net_write`]). `docs/architecture.md`
//! follows the same path file by file, with the locking rules.
//!
//! The module map:
//! - [`config`]: CLI flags, `HERALD_*` environment variables, the TOML file.
//! - [`server`]: binds the listeners, starts the edges, shuts down cleanly.
//! - [`state`]: the handles every part shares (config, broker, key prefixes, presence,
//!   shutdown signal, the connection tasks shutdown waits for).
//! - [`broker`]: every publication's one path: the `Broker` trait and its in-memory
//!   implementation, streams, offsets, history; with `--cluster`, the Redis broker in
//!   front of it joins several herald nodes; knows nothing of any protocol.
//! - [`outbox`]: each connection's bounded queue of encoded frames.
//! - [`net_write`]: writes everything queued on a connection in one vectored write.
//! - [`sharded`]: the sharded channel map every publication looks names up in.
//! - [`readmostly`]: lists every publication reads and only start-up changes.
//! - [`resp`]: the Redis protocol ingress and subscriber endpoint.
//! - [`laravel`]: Laravel's envelope, channel naming and presence identity conventions.
//! - [`presence`]: who is present on presence channels (both edges, Pusher's watchlists),
//!   in memory or, with `--cluster`, across nodes through Redis.
//! - [`auth_callback`]: asks the Laravel app to authorize private and presence channels.
//! - [`edge_policy`]: what both WebSocket edges allow: channel names, origins, how fast a
//!   connection subscribes, client events.
//! - [`token_bucket`]: a burst then a rate (subscriptions, auth requests per connection).
//! - [`auth_shield`]: what clients may make herald send the app (headers, rates, caps).
//! - [`app_http`]: the HTTP client to the Laravel app (auth endpoint, Pusher webhooks).
//! - [`socketio`]: the socket.io edge (Engine.IO 3/4, websocket and polling, Echo semantics).
//! - [`pusher`]: the Pusher protocol v7 edge and the Pusher HTTP API.
//! - [`ws`]: WebSocket upgrade and framing, lean enough for 10,000s of idle sockets.
//! - [`http`]: the warp routes that join the HTTP edges, health and metrics.
//! - [`dashboard`]: the live dashboard at `/dashboard` (`--dashboard-token`): figures,
//!   a chart of the last minutes, a debug console; its page embedded in the binary.
//! - [`http_server`]: the HTTP listener: connection caps, header and write deadlines.
//! - [`tls`]: TLS on both listeners (rustls): certificates loaded, and read again on SIGHUP.
//! - [`backoff`]: waiting before reconnecting to Redis (the cluster's connections).
//! - [`health`]: what `/healthz` reports: listeners not accepting (and later the backplane).
//! - [`metrics`]: process-wide counters.
//! - [`logging`]: tracing set-up (pretty or JSON).
//!
//! These docs are for the people who carry the code on: read them with
//! `cargo doc --document-private-items`, where the links to private items resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod app_http;
pub mod auth_callback;
pub mod auth_shield;
pub mod backoff;
pub mod broker;
pub mod config;
pub mod dashboard;
pub mod edge_policy;
pub mod health;
pub mod http;
pub mod http_server;
pub mod laravel;
pub mod logging;
pub mod metrics;
pub mod net_write;
pub mod outbox;
pub mod presence;
pub mod pusher;
pub mod readmostly;
pub mod recovery;
pub mod resp;
pub mod server;
pub mod sharded;
pub mod shutdown;
pub mod socketio;
pub mod state;
pub mod tls;
pub mod token_bucket;
pub mod ws;
