//! Server and tooling commands: INFO, COMMAND, CONFIG, TIME, DBSIZE, FLUSHALL/FLUSHDB
//! and the subcommands' HELP.
//!
//! Tools ask these on connect: redis-cli 7 reads `COMMAND DOCS` for its hints,
//! redis-benchmark reads `CONFIG GET save` and `appendonly`. Answers describe herald
//! truthfully in Redis's shapes: no keys, no persistence, its real limits.

use super::super::frame::Frame;
use super::super::session::Session;
use super::connection::Replies;
use super::{lower, Group, Spec, TABLE};
use crate::broker::glob;
use crate::metrics;
use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};

pub enum Cmd {
    Info(Vec<Bytes>),
    Command,
    Count,
    Docs(Vec<Bytes>),
    CommandInfo(Vec<Bytes>),
    List(Vec<Bytes>),
    ConfigGet(Vec<Bytes>),
    ConfigSet(Bytes),
    ResetStat,
    Time,
    Monitor,
    DbSize,
    Flush(Vec<Bytes>),
    Help(&'static Spec),
}

pub fn parse(name: &str, mut args: Vec<Bytes>) -> Cmd {
    match name {
        "info" => Cmd::Info(args),
        "command" => Cmd::Command,
        "command|count" => Cmd::Count,
        "command|docs" => Cmd::Docs(args.split_off(1)),
        "command|info" => Cmd::CommandInfo(args.split_off(1)),
        "command|list" => Cmd::List(args.split_off(1)),
        "config|get" => Cmd::ConfigGet(args.split_off(1)),
        "config|set" => Cmd::ConfigSet(args.swap_remove(1)),
        "config|resetstat" => Cmd::ResetStat,
        "time" => Cmd::Time,
        "monitor" => Cmd::Monitor,
        "dbsize" => Cmd::DbSize,
        "flushall" | "flushdb" => Cmd::Flush(args),
        other => unreachable!("{other} is not a server command"),
    }
}

pub fn run(cmd: Cmd, s: &mut Session) {
    let reply = match cmd {
        Cmd::Info(sections) => Frame::Verbatim(info(s, &sections)),
        Cmd::Command => Frame::Array(TABLE.iter().map(command_info).collect()),
        Cmd::Count => Frame::Integer(TABLE.len() as i64),
        Cmd::Docs(names) => docs(&names),
        Cmd::CommandInfo(names) => Frame::Array(
            names
                .iter()
                .map(|n| find(n).map_or(Frame::Null, command_info))
                .collect(),
        ),
        Cmd::List(filter) => command_list(&filter),
        Cmd::ConfigGet(patterns) => config_get(s, &patterns),
        Cmd::ConfigSet(param) => Frame::err(format_args!(
            "herald does not support CONFIG SET ('{}'): its settings are command-line flags, \
             HERALD_* environment variables or the --config file (see herald --help), read at start",
            String::from_utf8_lossy(&param)
        )),
        // A harness resets statistics between tests; herald's counters are also
        // /metrics counters, which must only grow, so they are left as they are.
        Cmd::ResetStat => Frame::OK,
        Cmd::Monitor => {
            // Under CLIENT REPLY OFF the lines start with CLIENT REPLY ON.
            if s.replies != Replies::Off {
                s.server.monitors.add(s.client.clone());
            }
            s.client.meta.lock().monitor = true;
            Frame::OK
        }
        Cmd::Time => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Frame::Array(vec![
                Frame::text(now.as_secs().to_string()),
                Frame::text(now.subsec_micros().to_string()),
            ])
        }
        Cmd::DbSize => Frame::Integer(0),
        Cmd::Flush(mode) => match mode.as_slice() {
            [] => Frame::OK,
            [m] if matches!(lower(m).as_str(), "sync" | "async") => Frame::OK,
            _ => Frame::err("syntax error"),
        },
        Cmd::Help(container) => help(container),
    };
    s.reply(reply);
}

fn find(name: &[u8]) -> Option<&'static Spec> {
    let name = lower(name);
    TABLE.iter().find(|s| s.name == name)
}

fn acl_category(g: Group) -> &'static str {
    match g {
        Group::Connection => "@connection",
        Group::Server => "@admin",
        Group::PubSub => "@pubsub",
        Group::Scripting | Group::Functions => "@scripting",
        Group::Keyspace => "@keyspace",
    }
}

/// Redis 7's 10-element command description.
fn command_info(spec: &'static Spec) -> Frame {
    Frame::Array(vec![
        Frame::text(spec.name),
        Frame::Integer(spec.arity as i64),
        Frame::Array(spec.flags.iter().map(|f| Frame::simple(*f)).collect()),
        Frame::Integer(0),
        Frame::Integer(0),
        Frame::Integer(0),
        Frame::Array(vec![Frame::simple(acl_category(spec.group))]),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(spec.subcommands.iter().map(command_info).collect()),
    ])
}

fn doc(spec: &'static Spec) -> Frame {
    let mut fields = vec![
        (Frame::text("summary"), Frame::text(spec.summary)),
        (Frame::text("since"), Frame::text(spec.since)),
        (Frame::text("group"), Frame::text(spec.group.name())),
    ];
    if !spec.subcommands.is_empty() {
        fields.push((
            Frame::text("subcommands"),
            Frame::Map(
                spec.subcommands
                    .iter()
                    .map(|sub| (Frame::text(sub.name), doc(sub)))
                    .collect(),
            ),
        ));
    }
    Frame::Map(fields)
}

fn docs(names: &[Bytes]) -> Frame {
    let specs: Vec<&'static Spec> = if names.is_empty() {
        TABLE.iter().collect()
    } else {
        names.iter().filter_map(|n| find(n)).collect()
    };
    Frame::Map(
        specs
            .into_iter()
            .map(|spec| (Frame::text(spec.name), doc(spec)))
            .collect(),
    )
}

/// `COMMAND LIST [FILTERBY MODULE m | ACLCAT c | PATTERN p]`: commands and
/// subcommands, as Redis 7 lists them.
fn command_list(filter: &[Bytes]) -> Frame {
    let keep: Box<dyn Fn(&Spec) -> bool> = match filter {
        [] => Box::new(|_| true),
        [by, kind, value] if lower(by) == "filterby" => {
            let value = value.clone();
            match lower(kind).as_str() {
                "module" => Box::new(|_| false),
                "aclcat" => {
                    let cat = format!("@{}", lower(&value));
                    Box::new(move |s| acl_category(s.group) == cat)
                }
                "pattern" => Box::new(move |s| glob::matches(&value, s.name.as_bytes())),
                _ => return Frame::err("syntax error"),
            }
        }
        _ => return Frame::err("syntax error"),
    };
    Frame::Array(
        TABLE
            .iter()
            .flat_map(|s| std::iter::once(s).chain(s.subcommands))
            .filter(|s| keep(s))
            .map(|s| Frame::text(s.name))
            .collect(),
    )
}

/// The parameters `CONFIG GET` answers, with herald's real values.
fn parameters(s: &Session) -> Vec<(&'static str, String)> {
    let c = s.server.state.config();
    let o = &c.outbox;
    vec![
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("databases", "16".into()),
        ("port", s.server.addr.port().to_string()),
        ("bind", s.server.addr.ip().to_string()),
        (
            "protected-mode",
            if c.protected_mode { "yes" } else { "no" }.into(),
        ),
        ("maxclients", c.maxclients.to_string()),
        ("proto-max-bulk-len", c.proto_max_bulk_len.to_string()),
        (
            "client-output-buffer-limit",
            format!(
                "normal 0 0 0 slave 0 0 0 pubsub {} {} {}",
                o.hard_bytes,
                o.soft_bytes,
                o.soft_window.as_secs()
            ),
        ),
        ("timeout", c.timeout.as_secs().to_string()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("notify-keyspace-events", String::new()),
        ("cluster-enabled", "no".into()),
    ]
}

fn config_get(s: &Session, patterns: &[Bytes]) -> Frame {
    let mut out = Vec::new();
    for (name, value) in parameters(s) {
        if patterns
            .iter()
            .any(|p| glob::matches(lower(p).as_bytes(), name.as_bytes()))
        {
            out.push((Frame::text(name), Frame::text(value)));
        }
    }
    Frame::Map(out)
}

fn help(container: &'static Spec) -> Frame {
    let upper = container.name.to_ascii_uppercase();
    let mut lines = vec![Frame::simple(format!(
        "{upper} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ))];
    for sub in container.subcommands {
        lines.push(Frame::simple(sub.short_name().to_ascii_uppercase()));
        lines.push(Frame::simple(format!("    {}", sub.summary)));
    }
    Frame::Array(lines)
}

/// INFO's text: `# Section` headers, `key:value` lines, CRLF, sections apart by a blank line.
fn info(s: &Session, wanted: &[Bytes]) -> String {
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(lower(w).as_str(), "all" | "everything" | "default"));
    let want = |name: &str| all || wanted.iter().any(|w| lower(w) == name);
    let state = &s.server.state;
    let up = state.started.elapsed().as_secs();
    let (channels, patterns, shards) = state.broker.sizes();
    let mut sections: Vec<String> = Vec::new();
    let mut section = |title: &str, rows: Vec<(&str, String)>| {
        let mut text = format!("# {title}\r\n");
        for (k, v) in rows {
            text.push_str(&format!("{k}:{v}\r\n"));
        }
        sections.push(text);
    };
    if want("server") {
        section(
            "Server",
            vec![
                ("redis_version", super::connection::REDIS_VERSION.into()),
                ("herald_version", env!("CARGO_PKG_VERSION").into()),
                ("redis_mode", "standalone".into()),
                ("os", std::env::consts::OS.into()),
                ("arch_bits", (usize::BITS).to_string()),
                ("process_id", std::process::id().to_string()),
                ("tcp_port", s.server.addr.port().to_string()),
                ("uptime_in_seconds", up.to_string()),
                ("uptime_in_days", (up / 86400).to_string()),
            ],
        );
    }
    if want("clients") {
        section(
            "Clients",
            vec![
                ("connected_clients", s.server.clients.count().to_string()),
                ("maxclients", state.config().maxclients.to_string()),
                (
                    "pubsub_clients",
                    s.server.clients.pubsub_count().to_string(),
                ),
            ],
        );
    }
    if want("stats") {
        let stats = state.broker.stats();
        section(
            "Stats",
            vec![
                (
                    "total_connections_received",
                    metrics::RESP_CONNECTIONS_TOTAL.get().to_string(),
                ),
                (
                    "total_commands_processed",
                    metrics::RESP_COMMANDS.get().to_string(),
                ),
                (
                    "rejected_connections",
                    metrics::RESP_REJECTED.get().to_string(),
                ),
                ("pubsub_channels", channels.to_string()),
                ("pubsub_patterns", patterns.to_string()),
                ("pubsubshard_channels", shards.to_string()),
                ("total_published", stats.published.get().to_string()),
                ("total_delivered", stats.delivered.get().to_string()),
                (
                    "slow_consumers_dropped",
                    metrics::SLOW_CONSUMERS_DROPPED.get().to_string(),
                ),
            ],
        );
    }
    if want("keyspace") {
        section("Keyspace", Vec::new());
    }
    sections.join("\r\n")
}
