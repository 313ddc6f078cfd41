//! The commands herald answers: a table Redis-style (name, arity, flags, docs) and a
//! [`Command`] enum built from a request's arguments.
//!
//! [`from_args`] does what Redis's `processCommand` does before running anything: find
//! the command (or container subcommand) and check its arity, with Redis's exact
//! errors. The session then checks authentication and the RESP2 subscribed-mode rule,
//! and [`Command::run`] hands over to the group's file. Adding a command means one table
//! row, one enum arm in its group and its code there. The same table answers `COMMAND`,
//! `COMMAND COUNT`, `COMMAND DOCS` and the subcommands' `HELP`.

pub mod connection;
pub mod functions;
pub mod keyspace;
pub mod pubsub;
pub mod scripting;
pub mod server;

use super::frame::Frame;
use super::session::Session;
use bytes::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Connection,
    Server,
    PubSub,
    Scripting,
    /// FUNCTION, FCALL and the KILLs: Redis's scripting group, herald's `functions.rs`.
    Functions,
    Keyspace,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Connection => "connection",
            Group::Server => "server",
            Group::PubSub => "pubsub",
            Group::Scripting | Group::Functions => "scripting",
            Group::Keyspace => "keyspace",
        }
    }
}

/// One command or subcommand, as `COMMAND` describes it.
#[derive(Debug)]
pub struct Spec {
    /// Redis's full name: lowercase, `container|sub` for subcommands.
    pub name: &'static str,
    /// Redis arity: N exactly, or -N for at least N (the name counts).
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub group: Group,
    pub summary: &'static str,
    pub since: &'static str,
    pub subcommands: &'static [Spec],
}

impl Spec {
    /// May run before AUTH.
    pub fn no_auth(&self) -> bool {
        self.flags.contains(&"no_auth")
    }

    /// An administrative command: not shown to MONITOR, as in Redis.
    pub fn is_admin(&self) -> bool {
        self.flags.contains(&"admin")
    }

    /// May run on a RESP2 connection in subscribed mode.
    pub fn allowed_subscribed(&self) -> bool {
        matches!(
            self.name,
            "ping"
                | "subscribe"
                | "psubscribe"
                | "ssubscribe"
                | "unsubscribe"
                | "punsubscribe"
                | "sunsubscribe"
                | "quit"
                | "reset"
        )
    }

    /// Refused whatever its arguments, as Redis 7 refuses DEBUG with its default
    /// `enable-debug-command no`.
    fn protected(&self) -> bool {
        self.name == "debug"
    }

    fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// The name after the `|` for a subcommand.
    pub fn short_name(&self) -> &'static str {
        self.name.rsplit('|').next().unwrap_or(self.name)
    }
}

macro_rules! spec {
    ($name:literal, $arity:literal, $group:ident, [$($flag:literal),*], $since:literal, $summary:literal) => {
        spec!($name, $arity, $group, [$($flag),*], $since, $summary, [])
    };
    ($name:literal, $arity:literal, $group:ident, [$($flag:literal),*], $since:literal, $summary:literal, [$($sub:expr),*]) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: &[$($flag),*],
            group: Group::$group,
            summary: $summary,
            since: $since,
            subcommands: &[$($sub),*],
        }
    };
}

/// Every command herald knows (keyspace commands aside), in Redis's terms.
pub static TABLE: &[Spec] = &[
    spec!("ping", -1, Connection, ["fast"], "1.0.0", "Returns the server's liveliness response."),
    spec!("echo", 2, Connection, ["fast"], "1.0.0", "Returns the given string."),
    spec!("auth", -2, Connection, ["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], "1.0.0", "Authenticates the connection."),
    spec!("hello", -1, Connection, ["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], "6.0.0", "Handshakes with the Redis server."),
    spec!("select", 2, Connection, ["loading", "stale", "fast"], "1.0.0", "Changes the selected database (pub/sub ignores it, as in Redis)."),
    spec!("quit", -1, Connection, ["allow_busy", "noscript", "loading", "stale", "fast", "no_auth"], "1.0.0", "Closes the connection."),
    spec!("reset", 1, Connection, ["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], "6.2.0", "Resets the connection."),
    spec!("client", -2, Connection, [], "2.4.0", "A container for client connection commands.", [
        spec!("client|setname", 3, Connection, ["noscript", "loading", "stale"], "2.6.9", "Sets the connection name."),
        spec!("client|getname", 2, Connection, ["noscript", "loading", "stale"], "2.6.9", "Returns the name of the connection."),
        spec!("client|id", 2, Connection, ["noscript", "loading", "stale"], "5.0.0", "Returns the unique client ID of the connection."),
        spec!("client|setinfo", 4, Connection, ["noscript", "loading", "stale"], "7.2.0", "Sets information specific to the client or connection."),
        spec!("client|list", -2, Connection, ["admin", "noscript", "loading", "stale"], "2.4.0", "Lists open connections."),
        spec!("client|info", 2, Connection, ["noscript", "loading", "stale"], "6.2.0", "Returns information about the connection."),
        spec!("client|kill", -3, Connection, ["admin", "noscript", "loading", "stale"], "2.4.0", "Terminates open connections."),
        spec!("client|no-evict", 3, Connection, ["admin", "noscript", "loading", "stale"], "7.0.0", "Sets the client eviction mode of the connection (herald evicts no client for memory)."),
        spec!("client|reply", 3, Connection, ["noscript", "loading", "stale"], "3.2.0", "Instructs the server whether to reply to commands."),
        spec!("client|help", 2, Connection, ["loading", "stale"], "5.0.0", "Returns helpful text about the different subcommands.")
    ]),
    spec!("info", -1, Server, ["loading", "stale"], "1.0.0", "Returns information and statistics about the server."),
    spec!("command", -1, Server, ["loading", "stale"], "2.8.13", "Returns detailed information about all commands.", [
        spec!("command|count", 2, Server, ["loading", "stale"], "2.8.13", "Returns a count of commands."),
        spec!("command|docs", -2, Server, ["loading", "stale"], "7.0.0", "Returns documentary information about one, multiple or all commands."),
        spec!("command|info", -2, Server, ["loading", "stale"], "2.8.13", "Returns information about one, multiple or all commands."),
        spec!("command|list", -2, Server, ["loading", "stale"], "7.0.0", "Returns a list of command names."),
        spec!("command|help", 2, Server, ["loading", "stale"], "5.0.0", "Returns helpful text about the different subcommands.")
    ]),
    spec!("config", -2, Server, [], "2.0.0", "A container for server configuration commands.", [
        spec!("config|get", -3, Server, ["admin", "noscript", "loading", "stale"], "2.0.0", "Returns the effective values of configuration parameters."),
        spec!("config|set", -4, Server, ["admin", "noscript", "loading", "stale"], "2.0.0", "Sets configuration parameters in-flight (herald: refused; use its flags)."),
        spec!("config|resetstat", 2, Server, ["admin", "noscript", "loading", "stale"], "2.0.0", "Resets the server's statistics (herald: its counters feed /metrics and are never reset)."),
        spec!("config|help", 2, Server, ["loading", "stale"], "5.0.0", "Returns helpful text about the different subcommands.")
    ]),
    spec!("time", 1, Server, ["loading", "stale", "fast"], "2.6.0", "Returns the server time."),
    spec!("monitor", 1, Server, ["admin", "noscript", "loading", "stale"], "1.0.0", "Listens for all requests received by the server in real-time."),
    spec!("dbsize", 1, Server, ["readonly", "fast"], "1.0.0", "Returns the number of keys in the database (herald stores none)."),
    spec!("flushall", -1, Server, ["write"], "1.0.0", "Removes all keys from all databases (herald stores none)."),
    spec!("flushdb", -1, Server, ["write"], "1.0.0", "Remove all keys from the current database (herald stores none)."),
    spec!("debug", -2, Server, ["admin", "noscript", "loading", "stale"], "1.0.0", "A container for debugging commands (herald: refused, as Redis 7 refuses it by default)."),
    spec!("publish", 3, PubSub, ["pubsub", "loading", "stale", "fast"], "2.0.0", "Posts a message to a channel."),
    spec!("spublish", 3, PubSub, ["pubsub", "loading", "stale", "fast"], "7.0.0", "Post a message to a shard channel."),
    spec!("subscribe", -2, PubSub, ["pubsub", "noscript", "loading", "stale"], "2.0.0", "Listens for messages published to channels."),
    spec!("psubscribe", -2, PubSub, ["pubsub", "noscript", "loading", "stale"], "2.0.0", "Listens for messages published to channels that match one or more patterns."),
    spec!("ssubscribe", -2, PubSub, ["pubsub", "noscript", "loading", "stale"], "7.0.0", "Listens for messages published to shard channels."),
    spec!("unsubscribe", -1, PubSub, ["pubsub", "noscript", "loading", "stale"], "2.0.0", "Stops listening to messages posted to channels."),
    spec!("punsubscribe", -1, PubSub, ["pubsub", "noscript", "loading", "stale"], "2.0.0", "Stops listening to messages published to channels that match one or more patterns."),
    spec!("sunsubscribe", -1, PubSub, ["pubsub", "noscript", "loading", "stale"], "7.0.0", "Stops listening to messages posted to shard channels."),
    spec!("pubsub", -2, PubSub, [], "2.8.0", "A container for Pub/Sub commands.", [
        spec!("pubsub|channels", -2, PubSub, ["pubsub", "loading", "stale"], "2.8.0", "Returns the active channels."),
        spec!("pubsub|numsub", -2, PubSub, ["pubsub", "loading", "stale"], "2.8.0", "Returns a count of subscribers to channels."),
        spec!("pubsub|numpat", 2, PubSub, ["pubsub", "loading", "stale"], "2.8.0", "Returns a count of unique pattern subscriptions."),
        spec!("pubsub|shardchannels", -2, PubSub, ["pubsub", "loading", "stale"], "7.0.0", "Returns the active shard channels."),
        spec!("pubsub|shardnumsub", -2, PubSub, ["pubsub", "loading", "stale"], "7.0.0", "Returns the count of subscribers of shard channels."),
        spec!("pubsub|help", 2, PubSub, ["loading", "stale"], "6.2.0", "Returns helpful text about the different subcommands.")
    ]),
    spec!("eval", -3, Scripting, ["noscript", "stale", "skip_monitor", "no_mandatory_keys", "stale"], "2.6.0", "Executes a server-side Lua script (herald: only Laravel's broadcast script, natively)."),
    spec!("evalsha", -3, Scripting, ["noscript", "stale", "skip_monitor", "no_mandatory_keys", "stale"], "2.6.0", "Executes a server-side Lua script by SHA1 digest (herald: only Laravel's broadcast script)."),
    spec!("script", -2, Scripting, [], "2.6.0", "A container for Lua scripts management commands.", [
        spec!("script|load", 3, Scripting, ["noscript", "stale"], "2.6.0", "Loads a server-side Lua script to the script cache (herald: only Laravel's broadcast script)."),
        spec!("script|exists", -3, Scripting, ["noscript"], "2.6.0", "Determines whether server-side Lua scripts exist in the script cache."),
        spec!("script|flush", -2, Scripting, ["noscript"], "2.6.0", "Removes all server-side Lua scripts from the script cache."),
        spec!("script|kill", 2, Functions, ["noscript", "allow_busy"], "2.6.0", "Terminates a server-side Lua script during execution (herald never runs one)."),
        spec!("script|help", 2, Scripting, ["loading", "stale"], "5.0.0", "Returns helpful text about the different subcommands.")
    ]),
    spec!("fcall", -3, Functions, ["noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"], "7.0.0", "Invokes a function (herald loads none)."),
    spec!("fcall_ro", -3, Functions, ["readonly", "noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"], "7.0.0", "Invokes a read-only function (herald loads none)."),
    spec!("function", -2, Functions, [], "7.0.0", "A container for function commands.", [
        spec!("function|delete", 3, Functions, ["write", "noscript"], "7.0.0", "Deletes a library and its functions."),
        spec!("function|dump", 2, Functions, ["noscript"], "7.0.0", "Dumps all libraries into a serialized binary payload."),
        spec!("function|flush", -2, Functions, ["write", "noscript"], "7.0.0", "Deletes all libraries and functions."),
        spec!("function|kill", 2, Functions, ["noscript", "allow_busy"], "7.0.0", "Terminates a function during execution (herald never runs one)."),
        spec!("function|list", -2, Functions, ["noscript"], "7.0.0", "Returns information about all libraries."),
        spec!("function|load", -3, Functions, ["write", "denyoom", "noscript"], "7.0.0", "Creates a library (herald: refused, it runs no Lua)."),
        spec!("function|restore", -3, Functions, ["write", "denyoom", "noscript"], "7.0.0", "Restores all libraries from a payload (herald: only a payload with none)."),
        spec!("function|stats", 2, Functions, ["noscript", "allow_busy"], "7.0.0", "Returns information about a function during execution."),
        spec!("function|help", 2, Functions, ["loading", "stale"], "7.0.0", "Returns helpful text about the different subcommands.")
    ]),
];

/// The spec keyspace commands share: they all get the same explanation.
static KEYSPACE: Spec = spec!(
    "keyspace",
    -1,
    Keyspace,
    [],
    "1.0.0",
    "Key-value commands: herald is a pub/sub broker and stores no keys."
);

/// A request, recognised and arity-checked; arguments are validated when it runs, so
/// errors come in Redis's order (NOAUTH before bad values).
pub enum Command {
    Connection(connection::Cmd),
    Server(server::Cmd),
    PubSub(pubsub::Cmd),
    Scripting(scripting::Cmd),
    Functions(functions::Cmd),
    Keyspace(String),
}

impl Command {
    pub fn run(self, s: &mut Session) {
        match self {
            Command::Connection(c) => connection::run(c, s),
            Command::Server(c) => server::run(c, s),
            Command::PubSub(c) => pubsub::run(c, s),
            Command::Scripting(c) => scripting::run(c, s),
            Command::Functions(c) => functions::run(c, s),
            Command::Keyspace(name) => s.reply(keyspace::refusal(&name)),
        }
    }
}

/// Find the command (and subcommand) and check the arity, as Redis does before it
/// checks authentication. Err is the reply: Redis's unknown-command, unknown-subcommand
/// or wrong-arity error.
pub fn from_args(mut args: Vec<Bytes>) -> Result<(&'static Spec, Command), Frame> {
    // Table names are lowercase ASCII: comparing ignoring ASCII case is comparing the
    // lowercased name, without building it.
    let Some(mut spec) = TABLE
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(&args[0]))
    else {
        let name = lower(&args[0]);
        if keyspace::is_keyspace(&name) {
            return Ok((&KEYSPACE, Command::Keyspace(name)));
        }
        return Err(unknown_command(&args));
    };
    if !spec.subcommands.is_empty() && args.len() >= 2 {
        let sub = &args[1];
        spec = match spec
            .subcommands
            .iter()
            .find(|s| s.short_name().as_bytes().eq_ignore_ascii_case(sub))
        {
            Some(s) => s,
            None => {
                return Err(Frame::err(format_args!(
                    "unknown subcommand '{}'. Try {} HELP.",
                    truncate(sub, 128),
                    spec.name.to_ascii_uppercase()
                )))
            }
        };
    }
    if !spec.arity_ok(args.len()) {
        return Err(wrong_arity(spec.name));
    }
    if spec.protected() {
        return Err(protected_refusal(spec.name));
    }
    if spec.subcommands.is_empty() && spec.name.ends_with("|help") {
        return Ok((spec, Command::Server(server::Cmd::Help(parent(spec)))));
    }
    // Drop the name in place (a shift of a few pointers, no new vector).
    let name = args.remove(0);
    let argv = args;
    let cmd = match spec.group {
        Group::Connection => Command::Connection(connection::parse(spec.name, argv)),
        Group::Server => Command::Server(server::parse(spec.name, argv)),
        Group::PubSub => Command::PubSub(pubsub::parse(spec.name, argv)),
        Group::Scripting => Command::Scripting(scripting::parse(spec.name, argv)),
        Group::Functions => Command::Functions(functions::parse(spec.name, argv)),
        Group::Keyspace => Command::Keyspace(lower(&name)),
    };
    Ok((spec, cmd))
}

/// The container a subcommand belongs to.
fn parent(sub: &Spec) -> &'static Spec {
    let container = sub.name.split('|').next().unwrap_or_default();
    TABLE
        .iter()
        .find(|s| s.name == container)
        .expect("subcommands live in a container")
}

/// `-ERR wrong number of arguments for 'x' command`.
pub fn wrong_arity(name: &str) -> Frame {
    Frame::err(format_args!(
        "wrong number of arguments for '{name}' command"
    ))
}

/// Redis 7's refusal of DEBUG (and MODULE) when `enable-<name>-command` is `no`, its
/// default: before authentication and whatever the subcommand.
fn protected_refusal(name: &str) -> Frame {
    Frame::err(format_args!(
        "{} command not allowed. If the enable-{name}-command option is set to \"local\", you \
         can run it from a local connection, otherwise you need to set this option in the \
         configuration file, and then restart the server.",
        name.to_ascii_uppercase()
    ))
}

/// Redis's text: the name and the first arguments, each quoted and followed by a
/// space, the arguments cut at 128 bytes in all.
fn unknown_command(args: &[Bytes]) -> Frame {
    let mut listed = String::new();
    for a in &args[1..] {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push('\'');
        listed.push_str(&truncate(a, room));
        listed.push_str("' ");
    }
    Frame::err(format_args!(
        "unknown command '{}', with args beginning with: {listed}",
        truncate(&args[0], 128)
    ))
}

/// At most `max` bytes of an argument, as C's `%.*s` prints it (up to a NUL).
fn truncate(b: &[u8], max: usize) -> String {
    let b = &b[..b.len().min(max)];
    let b = b.split(|&c| c == 0).next().unwrap_or_default();
    String::from_utf8_lossy(b).into_owned()
}

/// An argument as a lowercase string, for matching option names.
pub fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

/// Redis's integer argument parse (`getLongLongFromObjectOrReply`).
pub fn integer(b: &[u8]) -> Result<i64, Frame> {
    super::codec::string2ll(b).ok_or_else(|| Frame::err("value is not an integer or out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn error(v: &[&str]) -> String {
        match from_args(args(v)) {
            Err(Frame::Error(e)) => e,
            _ => panic!("expected an error for {v:?}"),
        }
    }

    #[test]
    fn unknown_and_arity_errors() {
        assert_eq!(
            error(&["foo", "a", "b"]),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            error(&["foo"]),
            "ERR unknown command 'foo', with args beginning with: "
        );
        assert_eq!(
            error(&["echo"]),
            "ERR wrong number of arguments for 'echo' command"
        );
        assert_eq!(
            error(&["client", "setname"]),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            error(&["client"]),
            "ERR wrong number of arguments for 'client' command"
        );
        assert_eq!(
            error(&["client", "nope"]),
            "ERR unknown subcommand 'nope'. Try CLIENT HELP."
        );
        assert_eq!(
            error(&["debug", "help"]),
            "ERR DEBUG command not allowed. If the enable-debug-command option is set to \
             \"local\", you can run it from a local connection, otherwise you need to set this \
             option in the configuration file, and then restart the server."
        );
        assert_eq!(
            error(&["debug"]),
            "ERR wrong number of arguments for 'debug' command"
        );
        let long = "x".repeat(300);
        let e = error(&["foo", &long, "y"]);
        assert_eq!(e.matches('x').count(), 128);
        assert!(!e.contains('y'));
    }

    /// The shortest request that names `spec`, in any letter case: its words, then
    /// filler arguments up to its arity.
    fn request_for(spec: &Spec, upper: bool) -> Vec<String> {
        let mut words: Vec<String> = spec
            .name
            .split('|')
            .map(|w| {
                if upper {
                    w.to_ascii_uppercase()
                } else {
                    w.into()
                }
            })
            .collect();
        while (words.len() as i32) < spec.arity.abs() {
            words.push("0".into());
        }
        words
    }

    #[test]
    fn every_command_and_subcommand_is_reachable() {
        let specs = TABLE
            .iter()
            .flat_map(|s| std::iter::once(s).chain(s.subcommands));
        for spec in specs {
            // A container alone is an arity error when it requires a subcommand; a
            // protected command is refused (tested above).
            if (!spec.subcommands.is_empty() && spec.arity < -1) || spec.protected() {
                continue;
            }
            for upper in [false, true] {
                let words = request_for(spec, upper);
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                // Parsing runs the group's `parse`, which panics on a name it lacks.
                match from_args(args(&words)) {
                    Ok((found, _)) => assert_eq!(found.name, spec.name, "{words:?}"),
                    Err(_) => panic!("{words:?} does not reach {}", spec.name),
                }
            }
        }
    }
}
