//! EVAL, EVALSHA and SCRIPT without Lua: herald recognises Laravel's broadcast script
//! and runs it natively.
//!
//! Laravel's `RedisBroadcaster` publishes one event to several channels with
//! `EVAL "for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend" 0 payload
//! channel...`. herald compares a script to that one ignoring whitespace that Lua
//! ignores and quote style, publishes `ARGV[1]` to each of `ARGV[2..]` and replies nil, as Redis does
//! for a script that returns nothing. Any other script is refused with an error saying
//! so; nothing is ever silently accepted.

use super::super::frame::Frame;
use super::super::session::Session;
use super::{integer, lower};
use bytes::Bytes;
use sha1::{Digest, Sha1};

/// Laravel's script, byte for byte as `broadcastMultipleChannelsScript()` returns it.
pub const LARAVEL_SCRIPT: &str =
    "for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend";
/// Its SHA1, which `EVALSHA` accepts even before `SCRIPT LOAD`.
pub const LARAVEL_SHA1: &str = "6f799f6e3f4ab9f8b891f6405d5fc1348a6a0595";

pub enum Cmd {
    Eval(Bytes, Vec<Bytes>),
    EvalSha(Bytes, Vec<Bytes>),
    Load(Bytes),
    Exists(Vec<Bytes>),
    Flush(Vec<Bytes>),
}

pub fn parse(name: &str, mut args: Vec<Bytes>) -> Cmd {
    match name {
        "eval" | "evalsha" => {
            // The arity check guarantees the first argument; removing it in place
            // spares a second vector.
            let first = args.remove(0);
            let rest = args;
            if name == "eval" {
                Cmd::Eval(first, rest)
            } else {
                Cmd::EvalSha(first, rest)
            }
        }
        "script|load" => Cmd::Load(args.swap_remove(1)),
        "script|exists" => Cmd::Exists(args.split_off(1)),
        "script|flush" => Cmd::Flush(args.split_off(1)),
        other => unreachable!("{other} is not a scripting command"),
    }
}

pub fn run(cmd: Cmd, s: &mut Session) {
    let reply = match cmd {
        Cmd::Eval(script, args) => match script_argv(&args) {
            Err(e) => e,
            Ok(_) if !is_laravel_script(&script) => not_supported(),
            Ok(argv) => broadcast(s, argv),
        },
        Cmd::EvalSha(sha, args) => match script_argv(&args) {
            Err(e) => e,
            Ok(argv) => {
                if sha.eq_ignore_ascii_case(LARAVEL_SHA1.as_bytes())
                    || s.server.scripts.lock().contains(&lower(&sha))
                {
                    broadcast(s, argv)
                } else {
                    Frame::Error("NOSCRIPT No matching script. Please use EVAL.".into())
                }
            }
        },
        Cmd::Load(script) => {
            if is_laravel_script(&script) {
                let sha = hex::encode(Sha1::digest(&script));
                s.server.scripts.lock().insert(sha.clone());
                Frame::text(sha)
            } else {
                not_supported()
            }
        }
        Cmd::Exists(shas) => {
            let known = s.server.scripts.lock();
            Frame::Array(
                shas.iter()
                    .map(|sha| {
                        let sha = lower(sha);
                        Frame::Integer((sha == LARAVEL_SHA1 || known.contains(&sha)) as i64)
                    })
                    .collect(),
            )
        }
        Cmd::Flush(mode) => match mode.as_slice() {
            [] => flush(s),
            [m] if matches!(lower(m).as_str(), "sync" | "async") => flush(s),
            _ => Frame::err("SCRIPT FLUSH only support SYNC|ASYNC option"),
        },
    };
    s.reply(reply);
}

fn flush(s: &mut Session) -> Frame {
    s.server.scripts.lock().clear();
    Frame::OK
}

fn not_supported() -> Frame {
    Frame::err(
        "herald runs no Lua: the only script it accepts is Laravel's broadcast script \
         (for i = 2, #ARGV do redis.call('publish', ARGV[i], ARGV[1]) end), which it runs \
         natively. Publish with PUBLISH instead.",
    )
}

/// `numkeys key... arg...` to ARGV, checked as Redis checks it (before the script).
fn script_argv(args: &[Bytes]) -> Result<&[Bytes], Frame> {
    let numkeys = integer(&args[0])?;
    if numkeys < 0 {
        return Err(Frame::err("Number of keys can't be negative"));
    }
    if numkeys as u64 > (args.len() - 1) as u64 {
        return Err(Frame::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    Ok(&args[1 + numkeys as usize..])
}

/// The call the script makes, as MONITOR shows it.
const PUBLISH: Bytes = Bytes::from_static(b"publish");

/// Laravel's script: publish `ARGV[1]` to each of `ARGV[2..]`.
fn broadcast(s: &mut Session, argv: &[Bytes]) -> Frame {
    if let Some((payload, channels)) = argv.split_first() {
        super::pubsub::publish_ordered(s);
        for channel in channels {
            if s.script_calls.is_some() {
                s.script_call(&[PUBLISH.clone(), channel.clone(), payload.clone()]);
            }
            let state = &s.server.state;
            let p = state.prefixes.publication(channel.clone(), payload.clone());
            state.broker.publish(p);
        }
    }
    Frame::Null
}

/// Laravel's script, whatever its whitespace and quote style.
pub fn is_laravel_script(script: &[u8]) -> bool {
    // What Laravel sends is the script byte for byte: that needs no normalising.
    script == LARAVEL_SCRIPT.as_bytes() || normalize(script) == normalize(LARAVEL_SCRIPT.as_bytes())
}

/// Drop whitespace except one space between two word characters (`for i`, `do redis`),
/// and read `"` as `'`: what is left is the script's meaning in Lua's terms.
fn normalize(script: &[u8]) -> Vec<u8> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::with_capacity(script.len());
    let mut gap = false;
    for &b in script {
        if b.is_ascii_whitespace() {
            gap = true;
            continue;
        }
        if gap && word(b) && out.last().is_some_and(|&l| word(l)) {
            out.push(b' ');
        }
        gap = false;
        out.push(if b == b'"' { b'\'' } else { b });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha1_is_laravels() {
        assert_eq!(hex::encode(Sha1::digest(LARAVEL_SCRIPT)), LARAVEL_SHA1);
    }

    #[test]
    fn recognises_other_whitespace_only() {
        assert!(is_laravel_script(LARAVEL_SCRIPT.as_bytes()));
        assert!(is_laravel_script(
            b"  for i = 2, #ARGV do\r\n\tredis.call(\"publish\", ARGV[i], ARGV[1])\n end\n"
        ));
        assert!(!is_laravel_script(
            b"for i = 2, #ARGV do redis.call('del', ARGV[i]) end"
        ));
        assert!(is_laravel_script(
            b"for i=2,#ARGV do redis.call('publish',ARGV[i],ARGV[1]) end"
        ));
        assert!(!is_laravel_script(
            b"for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[2])\nend"
        ));
        assert!(!is_laravel_script(
            b"fori = 2, #ARGV do redis.call('publish', ARGV[i], ARGV[1]) end"
        ));
        assert!(!is_laravel_script(b"return 1"));
    }
}
