//! The Pusher applications herald serves (Soketi and Reverb call them apps).
//!
//! Each app is its own world: its key and secret, its limits, its channels, its
//! connection count and its signed-in users (with their watchlists). Whether a user is
//! online (signed in on some connection) is the app's presence's to say, as for
//! presence channels ([`crate::presence::SIGNED_IN`]); the app keeps which connections
//! to tell. The first served app is the default one: its channels are the default
//! namespace's, which RESP (Laravel's redis-driver publications) and socket.io share;
//! each other app is a namespace of its own. Which configured apps are served is
//! [`crate::config::Config::pusher_apps`]'s rule.
//!
//! A reload (SIGHUP) applies the configuration file's apps without dropping anyone
//! ([`Apps::reload`]): a new app is served from then on; a removed one takes no new
//! connections or HTTP API requests, while its open connections stay; an app kept gets
//! its new key, secret, origins and limits for every request, connection and webhook
//! from then on. What an app's open state was built from (its webhook URLs, subscription
//! counts, cache TTL, recovery) needs a restart, and the log says so.

use super::channels::{Channels, Connection, COUNT_INTERVAL};
use super::protocol;
use super::resume::KeptMarks;
use super::webhooks::Webhooks;
use crate::broker::{Namespace, SubscriberId};
use crate::config::AppConfig;
use crate::edge_policy;
use crate::laravel::PresenceMember;
use crate::presence::{Heard, Listener, Presence, Scope, Told, SIGNED_IN};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

pub struct App {
    /// Its configuration as it is now: a reload replaces it (see the module doc).
    config: parking_lot::RwLock<Arc<AppConfig>>,
    /// Who signs its webhooks (rotated with its secret).
    signer: Arc<super::webhooks::Signer>,
    /// Whose channels these are: the default namespace for the default app, else the app's.
    pub namespace: Namespace,
    /// The app's id as a broker subscriber.
    pub subscriber_id: SubscriberId,
    pub channels: Channels,
    connections: AtomicUsize,
    /// What passed through it, for `/metrics` (`herald_pusher_app_…{app}`).
    pub counts: AppCounts,
    /// Signed-in users' connections and their watchers (`pusher:signin`).
    users: Mutex<Users>,
    /// With `recovery = true` and a recovery window: the connections that may be
    /// resumed (one store for all apps).
    pub kept_marks: Option<Arc<KeptMarks>>,
}

/// An app's counters.
#[derive(Default)]
pub struct AppCounts {
    /// Frames of publications queued for its connections.
    pub deliveries: crate::metrics::Counter,
    /// Events its backend published through the HTTP API (one per channel).
    pub api_events: crate::metrics::Counter,
    /// Client events its connections sent (relayed or not to anyone).
    pub client_events: crate::metrics::Counter,
}

/// Whom to tell about signed-in users; whether they are online is the presence's.
#[derive(Default)]
struct Users {
    /// A signed-in user's connections.
    conns: HashMap<Box<str>, Vec<Arc<Connection>>>,
    /// A user id and the connections whose watchlist names it.
    watchers: HashMap<Box<str>, Vec<Arc<Connection>>>,
}

/// The most user ids a watchlist may hold (Pusher's limit).
pub const MAX_WATCHLIST: usize = 100;

/// `pusher_internal:watchlist_events` with one event: `online` or `offline` for `ids`.
fn watchlist_event(name: &str, ids: &[&str]) -> Bytes {
    let data = serde_json::json!({ "events": [{ "name": name, "user_ids": ids }] });
    protocol::event("pusher_internal:watchlist_events", None, &data.to_string())
}

impl App {
    /// Starts the app's webhook senders, if it has webhooks (inside the runtime, then);
    /// they trust `ca_file` besides the public CAs. Its presence channels and signed-in
    /// users are its own namespace of `presence`.
    pub fn new(config: AppConfig, ca_file: Option<&Path>, presence: Arc<dyn Presence>) -> Self {
        let signer = super::webhooks::Signer::new(&config.key, &config.secret);
        let start = |ca| Webhooks::start(&config.webhooks, &signer, ca);
        let hooks = start(ca_file)
            .or_else(|e| {
                tracing::error!(app = %config.id, "webhooks: {e}; trusting the public CAs only");
                start(None)
            })
            .unwrap_or_else(|e| {
                tracing::error!(app = %config.id, "webhooks disabled: {e}");
                Webhooks::default()
            });
        let presence = Scope::new(presence, &format!("pusher:{}", config.id));
        App {
            channels: Channels::new(hooks, config.subscription_count, config.cache_ttl, presence),
            namespace: Namespace::App(config.id.as_str().into()),
            subscriber_id: crate::broker::next_subscriber_id(),
            config: parking_lot::RwLock::new(Arc::new(config)),
            signer,
            connections: AtomicUsize::new(0),
            counts: AppCounts::default(),
            users: Mutex::default(),
            kept_marks: None,
        }
    }

    /// The app's configuration now.
    pub fn config(&self) -> Arc<AppConfig> {
        self.config.read().clone()
    }

    /// Count a new connection; false when the app is at its connection quota.
    pub fn admit(&self) -> bool {
        let max = self.config().max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Its connections open now (on this node).
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn release(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether a browser `Origin` may connect: [`edge_policy::origin_allowed`] with the
    /// app's list.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        edge_policy::origin_allowed(&self.config().allowed_origins, origin)
    }

    /// `conn` signed in as `user`, watching `watchlist`: the user's watchers hear it come
    /// online on its first connection, and `conn` hears which of its watched users are
    /// online now (Pusher's watchlist events).
    pub fn sign_in(&self, user: &str, conn: &Arc<Connection>, watchlist: &[Box<str>]) {
        let presence = self.channels.presence();
        let turn = presence.turn(SIGNED_IN);
        let member = Arc::new(PresenceMember::signed_in(user));
        let first = turn.join(conn.id, member, 0).is_ok_and(|j| j.first);
        let watched: Vec<&str> = watchlist.iter().map(|w| &**w).collect();
        let online: Vec<&str> = watched
            .iter()
            .zip(presence.present(SIGNED_IN, &watched))
            .filter_map(|(w, on)| on.then_some(*w))
            .collect();
        let came_online = first.then(|| watchlist_event("online", &[user]));
        let online = (!online.is_empty()).then(|| watchlist_event("online", &online));
        {
            let mut users = self.users.lock();
            users
                .conns
                .entry(user.into())
                .or_default()
                .push(conn.clone());
            if let Some(frame) = &came_online {
                users.tell_watchers(user, frame);
            }
            for watched in watchlist {
                users
                    .watchers
                    .entry(watched.clone())
                    .or_default()
                    .push(conn.clone());
            }
        }
        if let Some(frame) = online {
            conn.outbox.push(frame);
        }
        drop(turn);
    }

    /// Undo [`sign_in`](Self::sign_in): after the user's last connection its watchers
    /// hear it go offline.
    pub fn sign_out(&self, user: &str, conn: &Connection, watchlist: &[Box<str>]) {
        let turn = self.channels.presence().turn(SIGNED_IN);
        let went_offline = turn
            .leave(conn.id)
            .map(|_| watchlist_event("offline", &[user]));
        let mut users = self.users.lock();
        if let Some(conns) = users.conns.get_mut(user) {
            conns.retain(|c| c.id != conn.id);
            if conns.is_empty() {
                users.conns.remove(user);
            }
        }
        if let Some(frame) = &went_offline {
            users.tell_watchers(user, frame);
        }
        for watched in watchlist {
            if let Some(w) = users.watchers.get_mut(watched) {
                w.retain(|c| c.id != conn.id);
                if w.is_empty() {
                    users.watchers.remove(watched);
                }
            }
        }
        drop(users);
        drop(turn);
    }

    /// The connections a user signed in on.
    pub fn connections_of(&self, user: &str) -> Vec<Arc<Connection>> {
        self.users
            .lock()
            .conns
            .get(user)
            .cloned()
            .unwrap_or_default()
    }
}

/// What other nodes change in the app's presence: its channels' members, and its
/// signed-in users (whom watchlists follow).
impl Listener for App {
    fn changed(&self, channel: &str, apply: &mut dyn FnMut() -> Vec<Heard>) {
        if channel != SIGNED_IN {
            return self.channels.remote_change(channel, apply);
        }
        let turn = self.channels.presence().turn(SIGNED_IN);
        let heard = apply();
        let users = self.users.lock();
        for h in heard {
            let (event, m) = match &h {
                Heard::Arrived(m) => ("online", m),
                Heard::Departed(m) => ("offline", m),
            };
            users.tell_watchers(&m.key, &watchlist_event(event, &[&m.key]));
        }
        drop(users);
        drop(turn);
    }

    fn tell_app(&self, channel: &str, told: Told) {
        if channel != SIGNED_IN {
            self.channels.tell_app(channel, told);
        }
    }

    fn counted(&self, channel: &str) {
        self.channels.remote_count(channel);
    }
}

/// Send an app's held-back subscription counts once per interval, for as long as the
/// app exists.
async fn flush_counts(app: Weak<App>) {
    let mut tick = tokio::time::interval(COUNT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match app.upgrade() {
            Some(app) => app.channels.flush_counts(),
            None => return,
        }
    }
}

impl Users {
    fn tell_watchers(&self, user: &str, frame: &Bytes) {
        if let Some(watchers) = self.watchers.get(user) {
            for w in watchers {
                w.outbox.push(frame.clone());
            }
        }
    }
}

/// All apps, found by key (WebSocket) or id (HTTP API).
pub struct Apps {
    /// The apps served now, the default one first; a reload replaces the list.
    apps: parking_lot::RwLock<Arc<[Arc<App>]>>,
    /// What new apps are made with.
    origins: parking_lot::RwLock<Vec<String>>,
    ca_file: Option<std::path::PathBuf>,
    presence: Arc<dyn Presence>,
    kept_marks: Option<Arc<KeptMarks>>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub updated: Vec<String>,
}

impl Apps {
    /// `origins` (the server-wide allowed origins) apply to apps that list none;
    /// `ca_file` is the private CA their webhook URLs may use; `presence` is shared by
    /// all (each app is its own namespace of it).
    pub fn new(
        configs: &[AppConfig],
        origins: &[String],
        ca_file: Option<&Path>,
        presence: Arc<dyn Presence>,
    ) -> Self {
        let kept_marks = configs.first().map(|c| {
            let limits = c.recovery_limits;
            KeptMarks::new(limits.window, limits.sessions)
        });
        let mut apps = Apps {
            apps: parking_lot::RwLock::new(Arc::from(Vec::new())),
            origins: parking_lot::RwLock::new(origins.to_vec()),
            ca_file: ca_file.map(Into::into),
            presence,
            kept_marks,
        };
        let made: Vec<Arc<App>> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| apps.make(c.clone(), i == 0))
            .collect();
        apps.apps = parking_lot::RwLock::new(made.into());
        apps
    }

    /// The store of resumable connections' marks (one for all apps), if any app may
    /// have recovery on.
    pub fn kept_marks(&self) -> Option<Arc<KeptMarks>> {
        self.kept_marks.clone()
    }

    /// An app, with its listeners and timers; `default`: the first app, in the default
    /// namespace.
    fn make(&self, mut c: AppConfig, default: bool) -> Arc<App> {
        if c.allowed_origins.is_empty() {
            c.allowed_origins = self.origins.read().clone();
        }
        let resumes = c.recovery && !c.recovery_limits.window.is_zero();
        let mut app = App::new(c, self.ca_file.as_deref(), self.presence.clone());
        if default {
            app.namespace = Namespace::Default;
        }
        app.kept_marks = self.kept_marks.clone().filter(|_| resumes);
        let app = Arc::new(app);
        let listener: Arc<dyn Listener> = app.clone();
        app.channels.presence().listen(Arc::downgrade(&listener));
        if app.config().subscription_count {
            tokio::spawn(flush_counts(Arc::downgrade(&app)));
        }
        app
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.apps
            .read()
            .iter()
            .find(|a| a.config().key == key)
            .cloned()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.apps
            .read()
            .iter()
            .find(|a| a.config().id == id)
            .cloned()
    }

    /// The apps served now.
    pub fn all(&self) -> Arc<[Arc<App>]> {
        self.apps.read().clone()
    }

    /// The first served app, in the default namespace: where RESP publications go.
    /// None when no app is served.
    pub fn default_app(&self) -> Option<Arc<App>> {
        self.apps.read().first().cloned()
    }

    /// Serve `configs` from now on (see the module doc); `made` is told of each app
    /// added (to hold its cache channels). The default app cannot change: a list whose
    /// first app is another one is refused.
    pub fn reload(
        &self,
        configs: &[AppConfig],
        origins: &[String],
        made: impl Fn(&Arc<App>),
    ) -> Result<Reloaded, String> {
        let now = self.all();
        let first = |ids: &mut dyn Iterator<Item = String>| ids.next();
        if first(&mut now.iter().map(|a| a.config().id.clone()))
            != first(&mut configs.iter().map(|c| c.id.clone()))
        {
            return Err("the first (default) app cannot change without a restart".into());
        }
        *self.origins.write() = origins.to_vec();
        let mut done = Reloaded::default();
        let mut next = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let Some(app) = now.iter().find(|a| a.config().id == c.id) else {
                let app = self.make(c.clone(), i == 0);
                made(&app);
                done.added.push(c.id.clone());
                next.push(app);
                continue;
            };
            let mut c = c.clone();
            if c.allowed_origins.is_empty() {
                c.allowed_origins = origins.to_vec();
            }
            let old = app.config();
            if *old != c {
                for (what, changed) in [
                    ("webhooks", old.webhooks != c.webhooks),
                    (
                        "subscription_count",
                        old.subscription_count != c.subscription_count,
                    ),
                    ("cache_ttl", old.cache_ttl != c.cache_ttl),
                    ("recovery", old.recovery != c.recovery),
                ] {
                    if changed {
                        tracing::warn!(app = %c.id, "{what} changed: takes effect after a restart");
                    }
                }
                app.signer.set(&c.key, &c.secret);
                *app.config.write() = Arc::new(c);
                done.updated.push(old.id.clone());
            }
            next.push(app.clone());
        }
        for a in now.iter() {
            let id = &a.config().id;
            if !configs.iter().any(|c| &c.id == id) {
                done.removed.push(id.clone());
            }
        }
        *self.apps.write() = next.into();
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::MemoryPresence;

    fn memory() -> Arc<dyn Presence> {
        Arc::new(MemoryPresence::default())
    }

    #[test]
    fn quota_and_origins() {
        let mut c = AppConfig::new("1", "k", "s");
        c.max_connections = 1;
        c.allowed_origins = vec!["app.test".into(), "https://b.test".into()];
        let app = App::new(c, None, memory());
        assert!(app.admit());
        assert!(!app.admit());
        app.release();
        assert!(app.admit());
        assert!(app.origin_allowed(Some("https://app.test:8443")));
        assert!(app.origin_allowed(Some("https://b.test")));
        assert!(!app.origin_allowed(Some("https://evil.test")));
        assert!(app.origin_allowed(None));
    }

    #[test]
    fn server_wide_origins_apply_to_apps_without_their_own() {
        let mut own = AppConfig::new("2", "k2", "s");
        own.allowed_origins = vec!["own.test".into()];
        let apps = Apps::new(
            &[AppConfig::new("1", "k1", "s"), own],
            &["site.test".into()],
            None,
            memory(),
        );
        assert!(apps
            .by_key("k1")
            .unwrap()
            .origin_allowed(Some("http://site.test")));
        assert!(!apps
            .by_key("k1")
            .unwrap()
            .origin_allowed(Some("http://own.test")));
        assert!(apps
            .by_id("2")
            .unwrap()
            .origin_allowed(Some("http://own.test")));
        assert!(!apps
            .by_id("2")
            .unwrap()
            .origin_allowed(Some("http://site.test")));
    }
}
