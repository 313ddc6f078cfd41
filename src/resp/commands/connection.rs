//! Connection commands: PING, ECHO, AUTH, HELLO, SELECT, CLIENT ... (KILL and REPLY
//! included), QUIT, RESET.
//!
//! These are what clients send when they connect (predis 3: `HELLO 2 AUTH ... SETNAME`,
//! `CLIENT SETINFO`, `SELECT`; phpredis: `AUTH`, `SELECT`, `ECHO` liveness checks), so
//! their replies and errors follow Redis 7 byte for byte. Passwords are compared in
//! constant time.

use super::super::client::Client;
use super::super::frame::{Frame, Proto};
use super::super::session::Session;
use super::{integer, lower, wrong_arity};
use crate::outbox::Closed;
use bytes::Bytes;
use subtle::ConstantTimeEq;

/// The Redis version herald answers as: clients pick features by it.
pub const REDIS_VERSION: &str = "7.2.0";

pub enum Cmd {
    Ping(Vec<Bytes>),
    Echo(Bytes),
    Auth(Vec<Bytes>),
    Hello(Vec<Bytes>),
    Select(Bytes),
    SetName(Bytes),
    GetName,
    Id,
    SetInfo(Bytes, Bytes),
    List(Vec<Bytes>),
    Info,
    Kill(Vec<Bytes>),
    NoEvict(Bytes),
    Reply(Bytes),
    Quit,
    Reset,
}

pub fn parse(name: &str, mut args: Vec<Bytes>) -> Cmd {
    let mut take = |i: usize| std::mem::take(&mut args[i]);
    match name {
        "ping" => Cmd::Ping(args),
        "echo" => Cmd::Echo(take(0)),
        "auth" => Cmd::Auth(args),
        "hello" => Cmd::Hello(args),
        "select" => Cmd::Select(take(0)),
        "client|setname" => Cmd::SetName(take(1)),
        "client|getname" => Cmd::GetName,
        "client|id" => Cmd::Id,
        "client|setinfo" => Cmd::SetInfo(take(1), take(2)),
        "client|list" => Cmd::List(args.split_off(1)),
        "client|info" => Cmd::Info,
        "client|kill" => Cmd::Kill(args.split_off(1)),
        "client|no-evict" => Cmd::NoEvict(take(1)),
        "client|reply" => Cmd::Reply(take(1)),
        "quit" => Cmd::Quit,
        "reset" => Cmd::Reset,
        other => unreachable!("{other} is not a connection command"),
    }
}

pub fn run(cmd: Cmd, s: &mut Session) {
    let reply = match cmd {
        Cmd::Ping(args) => ping(s, args),
        Cmd::Echo(msg) => Frame::Bulk(msg),
        Cmd::Auth(args) => auth(s, args),
        Cmd::Hello(args) => hello(s, args),
        Cmd::Select(db) => select(s, &db),
        Cmd::SetName(name) => match valid_name(&name) {
            Ok(()) => {
                s.client.meta.lock().name = (!name.is_empty()).then_some(name);
                Frame::OK
            }
            Err(e) => e,
        },
        Cmd::GetName => s
            .client
            .meta
            .lock()
            .name
            .clone()
            .map_or(Frame::Null, Frame::Bulk),
        Cmd::Id => Frame::Integer(s.client.id as i64),
        Cmd::SetInfo(attr, value) => set_info(s, &attr, value),
        Cmd::List(filters) => client_list(s, &filters),
        Cmd::Info => Frame::Verbatim(format!("{}\n", s.client.info_line())),
        Cmd::Kill(args) => kill(s, &args),
        Cmd::NoEvict(mode) => match lower(&mode).as_str() {
            "on" | "off" => Frame::OK,
            _ => Frame::err("syntax error"),
        },
        Cmd::Reply(mode) => match lower(&mode).as_str() {
            "on" => {
                s.replies = Replies::On;
                if s.client.meta.lock().monitor {
                    s.server.monitors.add(s.client.clone());
                }
                Frame::OK
            }
            "off" => {
                s.replies = Replies::Off;
                // Redis writes a monitor's lines as replies: OFF silences them too.
                s.server.monitors.remove(s.client.id);
                return;
            }
            "skip" => {
                if s.replies != Replies::Off {
                    s.replies = Replies::SkipNext;
                }
                return;
            }
            _ => Frame::err("syntax error"),
        },
        Cmd::Quit => {
            s.closing = true;
            Frame::OK
        }
        Cmd::Reset => {
            reset(s);
            Frame::simple("RESET")
        }
    };
    s.reply(reply);
}

/// `CLIENT REPLY`'s state, as Redis's `CLIENT_REPLY_OFF`, `CLIENT_REPLY_SKIP_NEXT` and
/// `CLIENT_REPLY_SKIP` flags keep it: OFF silences every reply until ON; SKIP silences
/// the reply to the request after its own (and is ignored while OFF). What is silenced
/// is the replies only: pub/sub messages and (un)subscribe confirmations are pushes and
/// still go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replies {
    On,
    Off,
    /// Set by `CLIENT REPLY SKIP` while it runs.
    SkipNext,
    /// The request being executed is the one to skip.
    Skip,
}

impl Replies {
    /// Replies (errors included) to the request being executed are not written.
    pub fn suppressed(self) -> bool {
        matches!(self, Replies::Off | Replies::Skip)
    }

    /// The state for the next request, once one has been executed (or refused).
    pub fn after_request(self) -> Replies {
        match self {
            Replies::SkipNext => Replies::Skip,
            Replies::Skip => Replies::On,
            other => other,
        }
    }
}

fn ping(s: &Session, args: Vec<Bytes>) -> Frame {
    if args.len() > 1 {
        return wrong_arity("ping");
    }
    let msg = args.into_iter().next();
    if s.proto == Proto::Resp2 && s.subscriptions() > 0 {
        return Frame::Array(vec![
            Frame::bulk("pong"),
            Frame::Bulk(msg.unwrap_or_default()),
        ]);
    }
    msg.map_or(Frame::simple("PONG"), Frame::Bulk)
}

fn wrongpass() -> Frame {
    Frame::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
}

/// Check a user and password; Redis's rules: with no users configured, the `default`
/// user takes any password; otherwise the pair must match a configured user.
fn check(s: &Session, user: &[u8], pass: &[u8]) -> bool {
    let users = &s.server.state.config().users;
    if users.is_empty() {
        return user == b"default";
    }
    // Compare against every user so the time taken does not say which names exist.
    let mut ok = subtle::Choice::from(0);
    for u in users {
        let pair = u.name.as_bytes().ct_eq(user) & u.password.as_bytes().ct_eq(pass);
        ok |= pair;
    }
    ok.into()
}

fn login(s: &mut Session, user: &[u8], pass: &[u8]) -> bool {
    if !check(s, user, pass) {
        return false;
    }
    s.authenticated = true;
    s.client.meta.lock().user = String::from_utf8_lossy(user).into_owned();
    true
}

fn auth(s: &mut Session, args: Vec<Bytes>) -> Frame {
    let (user, pass) = match args.as_slice() {
        [pass] => {
            if !s
                .server
                .state
                .config()
                .users
                .iter()
                .any(|u| u.name == "default")
            {
                if s.server.state.config().users.is_empty() {
                    return Frame::err(
                        "AUTH <password> called without any password configured for the \
                         default user. Are you sure your configuration is correct?",
                    );
                }
                return wrongpass();
            }
            (&b"default"[..], &pass[..])
        }
        [user, pass] => (&user[..], &pass[..]),
        _ => return Frame::err("syntax error"),
    };
    if login(s, user, pass) {
        Frame::OK
    } else {
        wrongpass()
    }
}

fn hello(s: &mut Session, args: Vec<Bytes>) -> Frame {
    let mut proto = None;
    let mut rest = &args[..];
    if let Some((v, more)) = args.split_first() {
        match super::super::codec::string2ll(v) {
            Some(2) => proto = Some(Proto::Resp2),
            Some(3) => proto = Some(Proto::Resp3),
            Some(_) => return Frame::Error("NOPROTO unsupported protocol version".into()),
            None => return Frame::err("Protocol version is not an integer or out of range"),
        }
        rest = more;
    }
    let mut credentials = None;
    let mut name = None;
    let mut i = 0;
    while i < rest.len() {
        let more = rest.len() - 1 - i;
        match lower(&rest[i]).as_str() {
            "auth" if more >= 2 => {
                credentials = Some((rest[i + 1].clone(), rest[i + 2].clone()));
                i += 3;
            }
            "setname" if more >= 1 => {
                if let Err(e) = valid_name(&rest[i + 1]) {
                    return e;
                }
                name = Some(rest[i + 1].clone());
                i += 2;
            }
            _ => {
                return Frame::err(format_args!(
                    "Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&rest[i])
                ))
            }
        }
    }
    if let Some((user, pass)) = credentials {
        if !login(s, &user, &pass) {
            return wrongpass();
        }
    }
    if !s.authenticated {
        return Frame::Error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .into(),
        );
    }
    if let Some(name) = name {
        s.client.meta.lock().name = (!name.is_empty()).then_some(name);
    }
    if let Some(p) = proto {
        s.proto = p;
        s.client.set_proto(p);
    }
    Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (Frame::bulk("version"), Frame::bulk(REDIS_VERSION)),
        (Frame::bulk("proto"), Frame::Integer(s.proto as i64)),
        (Frame::bulk("id"), Frame::Integer(s.client.id as i64)),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk("master")),
        (Frame::bulk("modules"), Frame::Array(Vec::new())),
    ])
}

fn select(s: &mut Session, db: &[u8]) -> Frame {
    let db = match integer(db) {
        Ok(n) if i32::try_from(n).is_ok() => n,
        Ok(_) => {
            return Frame::err(
                "value is out of range, value must between -2147483648 and 2147483647",
            )
        }
        Err(e) => return e,
    };
    if !(0..16).contains(&db) {
        return Frame::err("DB index is out of range");
    }
    s.client.meta.lock().db = db;
    Frame::OK
}

/// Redis's rule for client names and library attributes: printable ASCII, no spaces.
fn printable(b: &[u8]) -> bool {
    b.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn valid_name(name: &[u8]) -> Result<(), Frame> {
    if printable(name) {
        Ok(())
    } else {
        Err(Frame::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

fn set_info(s: &mut Session, attr: &[u8], value: Bytes) -> Frame {
    let which = lower(attr);
    if which != "lib-name" && which != "lib-ver" {
        return Frame::err(format_args!(
            "Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        ));
    }
    if !printable(&value) {
        return Frame::err(format_args!(
            "{} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(attr)
        ));
    }
    let value = (!value.is_empty()).then_some(value);
    let mut m = s.client.meta.lock();
    if which == "lib-name" {
        m.lib_name = value;
    } else {
        m.lib_ver = value;
    }
    Frame::OK
}

/// A client type filter: Some(pubsub?); None for `master`/`replica`, which herald has
/// none of. Err is Redis's reply to an unknown type.
fn client_type(k: &[u8]) -> Result<Option<bool>, Frame> {
    match lower(k).as_str() {
        "normal" => Ok(Some(false)),
        "pubsub" => Ok(Some(true)),
        "master" | "replica" | "slave" => Ok(None),
        _ => Err(Frame::err(format_args!(
            "Unknown client type '{}'",
            String::from_utf8_lossy(k)
        ))),
    }
}

fn type_matches(kind: Option<Option<bool>>, c: &Client) -> bool {
    match kind {
        None => true,
        Some(None) => false,
        Some(Some(pubsub)) => c.is_pubsub() == pubsub,
    }
}

/// `CLIENT KILL ip:port` (the old form: OK, or an error if no client has that address)
/// or `CLIENT KILL <filter> <value> ...` with ID, TYPE, USER, ADDR, LADDR and SKIPME
/// (yes by default: the caller is spared), answering how many were killed. A killed
/// client's connection is closed; the caller, if it kills itself, once the reply is out.
fn kill(s: &mut Session, args: &[Bytes]) -> Frame {
    let all = s.server.clients.all();
    if let [addr] = args {
        return match all
            .iter()
            .find(|c| c.addr.to_string().as_bytes() == &addr[..])
        {
            None => Frame::err("No such client"),
            Some(c) => {
                end(s, c);
                Frame::OK
            }
        };
    }
    let (mut id, mut kind, mut user, mut addr, mut laddr) = (None, None, None, None, None);
    let mut skip_me = true;
    for pair in args.chunks(2) {
        let [filter, value] = pair else {
            return Frame::err("syntax error");
        };
        match lower(filter).as_str() {
            "id" => match integer(value) {
                Ok(n) if n > 0 => id = Some(n as u64),
                _ => return Frame::err("client-id should be greater than 0"),
            },
            "type" => match client_type(value) {
                Ok(k) => kind = Some(k),
                Err(e) => return e,
            },
            "user" => {
                let name = String::from_utf8_lossy(value).into_owned();
                let users = &s.server.state.config().users;
                if name != "default" && !users.iter().any(|u| u.name == name) {
                    return Frame::err(format_args!("No such user '{name}'"));
                }
                user = Some(name);
            }
            "addr" => addr = Some(value.clone()),
            "laddr" => laddr = Some(value.clone()),
            "skipme" => match lower(value).as_str() {
                "yes" => skip_me = true,
                "no" => skip_me = false,
                _ => return Frame::err("syntax error"),
            },
            _ => return Frame::err("syntax error"),
        }
    }
    let mut killed = 0;
    for c in &all {
        let matches = id.is_none_or(|id| c.id == id)
            && type_matches(kind, c)
            && user.as_ref().is_none_or(|u| c.meta.lock().user == *u)
            && addr
                .as_ref()
                .is_none_or(|a| c.addr.to_string().as_bytes() == &a[..])
            && laddr
                .as_ref()
                .is_none_or(|a| c.laddr.to_string().as_bytes() == &a[..]);
        if matches && !(skip_me && c.id == s.client.id) {
            end(s, c);
            killed += 1;
        }
    }
    Frame::Integer(killed)
}

/// Close `c`'s connection: another client at once, this one after its reply.
fn end(s: &mut Session, c: &Client) {
    if c.id == s.client.id {
        s.closing = true;
    } else {
        c.outbox.close(Closed::Server("killed by CLIENT KILL"));
        c.kicked.notify_one();
    }
}

/// `CLIENT LIST [TYPE normal|pubsub|master|replica] [ID id ...]`.
fn client_list(s: &Session, filters: &[Bytes]) -> Frame {
    let mut kind: Option<Option<bool>> = None;
    let mut ids: Option<Vec<u64>> = None;
    match filters {
        [] => {}
        [t, k] if lower(t) == "type" => match client_type(k) {
            Ok(k) => kind = Some(k),
            Err(e) => return e,
        },
        [i, rest @ ..] if lower(i) == "id" && !rest.is_empty() => {
            let mut v = Vec::new();
            for id in rest {
                match integer(id) {
                    Ok(n) if n > 0 => v.push(n as u64),
                    _ => return Frame::err("Invalid client ID"),
                }
            }
            ids = Some(v);
        }
        _ => return Frame::err("syntax error"),
    }
    let mut text = String::new();
    for c in s.server.clients.all() {
        if !type_matches(kind, &c) || ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        text.push_str(&c.info_line());
        text.push('\n');
    }
    Frame::Verbatim(text)
}

/// RESET: what a fresh connection would have (out of MONITOR mode and `CLIENT REPLY
/// OFF` too), except the connection itself. As in Redis, a RESET whose own reply is
/// skipped stays silent.
fn reset(s: &mut Session) {
    s.leave_all();
    if s.replies == Replies::Off {
        s.replies = Replies::On;
    }
    s.proto = Proto::Resp2;
    s.client.set_proto(Proto::Resp2);
    s.authenticated = !s.server.state.config().auth_required();
    s.server.monitors.remove(s.client.id);
    let mut m = s.client.meta.lock();
    m.name = None;
    m.db = 0;
    m.user = "default".into();
    m.monitor = false;
}
