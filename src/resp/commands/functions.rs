//! FUNCTION, FCALL and the script KILLs, answered as a Redis 7.0 with no function
//! library loaded and no script running.
//!
//! herald runs no Lua, so it never has a library or a running script. Test harnesses
//! and tools still send these to any "Redis" (`FUNCTION FLUSH` between tests,
//! `FUNCTION STATS` from dashboards), and an unknown-command error would abort them.
//! Everything that reads or clears the (empty) library set gets Redis's reply: FLUSH
//! `+OK`, LIST an empty array, STATS no running script and no library, DUMP the
//! payload of nothing, DELETE and FCALL "not found", KILL `NOTBUSY`. What would add a
//! library (LOAD, or RESTORE of a payload that holds one) is checked as Redis checks it,
//! with Redis's errors, then refused with an error that says why, never accepted.

use super::super::frame::Frame;
use super::super::session::Session;
use super::lower;
use crate::resp::codec::split_args;
use bytes::Bytes;

/// The RDB version of Redis 7.0, which `FUNCTION DUMP` writes and `RESTORE` accepts.
const RDB_VERSION: u16 = 10;
/// The RDB opcodes a function payload's entries start with.
const OPCODE_FUNCTION_PRE_GA: u8 = 246;
const OPCODE_FUNCTION: u8 = 245;

pub enum Cmd {
    Flush(Bytes, Vec<Bytes>),
    List(Vec<Bytes>),
    Stats,
    Load(Vec<Bytes>),
    Delete,
    Dump,
    Restore(Bytes, Vec<Bytes>),
    /// `FUNCTION KILL` and `SCRIPT KILL`.
    Kill,
    /// `FCALL` and `FCALL_RO`.
    Call,
}

pub fn parse(name: &str, mut args: Vec<Bytes>) -> Cmd {
    match name {
        // The subcommand as typed is kept for Redis's syntax error, which quotes it.
        "function|flush" => Cmd::Flush(args.remove(0), args),
        "function|list" => Cmd::List(args.split_off(1)),
        "function|stats" => Cmd::Stats,
        "function|load" => Cmd::Load(args.split_off(1)),
        "function|delete" => Cmd::Delete,
        "function|dump" => Cmd::Dump,
        "function|restore" => Cmd::Restore(args.remove(0), args),
        "function|kill" | "script|kill" => Cmd::Kill,
        "fcall" | "fcall_ro" => Cmd::Call,
        other => unreachable!("{other} is not a function command"),
    }
}

pub fn run(cmd: Cmd, s: &mut Session) {
    let reply = match cmd {
        Cmd::Flush(sub, mode) => match mode.as_slice() {
            [] => Frame::OK,
            [m] if matches!(lower(m).as_str(), "sync" | "async") => Frame::OK,
            [_] => Frame::err("FUNCTION FLUSH only supports SYNC|ASYNC option"),
            _ => syntax_error(&sub),
        },
        Cmd::List(options) => list(&options),
        Cmd::Stats => Frame::Map(vec![
            (Frame::text("running_script"), Frame::Null),
            (
                Frame::text("engines"),
                Frame::Map(vec![(
                    Frame::text("LUA"),
                    Frame::Map(vec![
                        (Frame::text("libraries_count"), Frame::Integer(0)),
                        (Frame::text("functions_count"), Frame::Integer(0)),
                    ]),
                )]),
            ),
        ]),
        Cmd::Load(args) => load(&args),
        Cmd::Delete => Frame::err("Library not found"),
        Cmd::Dump => Frame::Bulk(dump_payload(&[])),
        Cmd::Restore(sub, args) => restore(&sub, &args),
        Cmd::Kill => Frame::Error("NOTBUSY No scripts in execution right now.".into()),
        Cmd::Call => Frame::err("Function not found"),
    };
    s.reply(reply);
}

/// Redis's `addReplySubcommandSyntaxError`: the subcommand as typed.
fn syntax_error(sub: &[u8]) -> Frame {
    Frame::err(format_args!(
        "unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        String::from_utf8_lossy(sub)
    ))
}

/// `FUNCTION LIST [WITHCODE] [LIBRARYNAME pattern]`, each option at most once.
fn list(options: &[Bytes]) -> Frame {
    let (mut with_code, mut library_name) = (false, false);
    let mut i = 0;
    while i < options.len() {
        let option = lower(&options[i]);
        if !with_code && option == "withcode" {
            with_code = true;
        } else if !library_name && option == "libraryname" {
            if i + 1 >= options.len() {
                return Frame::err("library name argument was not given");
            }
            library_name = true;
            i += 1;
        } else {
            return Frame::err(format_args!(
                "Unknown argument {}",
                String::from_utf8_lossy(&options[i])
            ));
        }
        i += 1;
    }
    Frame::Array(Vec::new())
}

fn no_lua() -> Frame {
    Frame::err(
        "herald runs no Lua, so it cannot load function libraries (it answers FUNCTION as a \
         Redis with none loaded). Publish with PUBLISH instead.",
    )
}

/// `FUNCTION LOAD [REPLACE] code`: the options and the library's metadata line are
/// checked as Redis checks them, with its errors; a valid Lua library is refused.
fn load(args: &[Bytes]) -> Frame {
    let Some((code, options)) = args.split_last() else {
        return Frame::err("Function code is missing");
    };
    if let Some(other) = options.iter().find(|o| lower(o) != "replace") {
        return Frame::err(format_args!(
            "Unknown option given: {}",
            String::from_utf8_lossy(other)
        ));
    }
    match library_engine(code) {
        Err(e) => Frame::err(e),
        Ok(engine) if engine.eq_ignore_ascii_case(b"lua") => no_lua(),
        Ok(engine) => Frame::err(format_args!(
            "Engine '{}' not found",
            String::from_utf8_lossy(&engine)
        )),
    }
}

/// The engine a library's `#!<engine> name=<name>` first line names, or Redis's error
/// for a malformed line or name (Redis reads the code as a C string: up to a NUL).
fn library_engine(code: &[u8]) -> Result<Vec<u8>, String> {
    let code = code.split(|&b| b == 0).next().unwrap_or_default();
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let invalid = || "Invalid library metadata".to_string();
    let end = code.iter().position(|&b| b == b'\n').ok_or_else(invalid)?;
    let parts = split_args(&code[..end])
        .filter(|p| !p.is_empty())
        .ok_or_else(invalid)?;
    let mut name = None;
    for part in &parts[1..] {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(
                    "Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(&part[5..]);
        } else {
            return Err(format!(
                "Invalid metadata value given: {}",
                String::from_utf8_lossy(part)
            ));
        }
    }
    let name = name.ok_or("Library name was not given")?;
    if name.is_empty() || !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(
            "Library names can only contain letters, numbers, or underscores(_) and \
                    must be at least one character long"
                .into(),
        );
    }
    Ok(parts[0].get(2..).unwrap_or_default().to_vec())
}

/// `FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]`: the payload of no library (what
/// DUMP gives) restores to `+OK`; one holding a library is refused.
fn restore(sub: &[u8], args: &[Bytes]) -> Frame {
    let (payload, policy) = match args {
        [payload] => (payload, None),
        [payload, policy] => (payload, Some(policy)),
        _ => return syntax_error(sub),
    };
    if policy.is_some_and(|p| !matches!(lower(p).as_str(), "flush" | "append" | "replace")) {
        return Frame::err(
            "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
        );
    }
    let Some(libraries) = verified_body(payload) else {
        return Frame::err("DUMP payload version or checksum are wrong");
    };
    match libraries.first() {
        None => Frame::OK,
        Some(&OPCODE_FUNCTION) => no_lua(),
        Some(&OPCODE_FUNCTION_PRE_GA) => Frame::err("Pre-GA function format not supported"),
        Some(_) => Frame::err("given type is not a function"),
    }
}

/// A dump payload: the libraries, then the RDB version (2 bytes) and the CRC64 of
/// everything before the CRC (8 bytes), both little-endian.
fn dump_payload(libraries: &[u8]) -> Bytes {
    let mut p = libraries.to_vec();
    p.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(p)
}

/// The libraries part of a payload whose version and checksum are good (Redis's
/// `verifyDumpPayload`).
fn verified_body(payload: &[u8]) -> Option<&[u8]> {
    let body_len = payload.len().checked_sub(10)?;
    let (body, footer) = payload.split_at(body_len);
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    let crc = crc64(&payload[..body_len + 2]).to_le_bytes();
    (version <= RDB_VERSION && footer[2..] == crc).then_some(body)
}

/// Redis's CRC-64 (Jones polynomial, reflected, initial value 0), bit by bit: it only
/// ever checks a few bytes here.
fn crc64(data: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5; // 0xad93d23594c935a9 reflected
    let mut crc = 0u64;
    for &b in data {
        crc ^= b as u64;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_redis_crc64() {
        // The check value Redis's crc64.c tests against.
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn empty_dump_is_redis_7_0s() {
        // `FUNCTION DUMP` of a redis-server 7.0.15 with no library.
        let payload = dump_payload(&[]);
        assert_eq!(&payload[..], b"\n\x00]\x9b\\@\x0f\x7f\xa2\xda");
        assert_eq!(verified_body(&payload), Some(&[][..]));
        let mut bad = payload.to_vec();
        bad[9] ^= 1;
        assert_eq!(verified_body(&bad), None);
        assert_eq!(verified_body(b"short"), None);
    }

    #[test]
    fn library_metadata_as_redis_reads_it() {
        let engine = |code: &[u8]| library_engine(code).map(String::from_utf8);
        assert_eq!(engine(b"#!lua name=lib\nx"), Ok(Ok("lua".into())));
        assert_eq!(engine(b"#!js NAME=a_1\n"), Ok(Ok("js".into())));
        assert_eq!(engine(b"x"), Err("Missing library metadata".into()));
        assert_eq!(
            engine(b"#!lua name=a"),
            Err("Invalid library metadata".into())
        );
        assert_eq!(
            engine(b"#!lua \"name=a\n"),
            Err("Invalid library metadata".into())
        );
        assert_eq!(engine(b"#!lua\n"), Err("Library name was not given".into()));
        assert_eq!(
            engine(b"#!lua name=a x=1\n"),
            Err("Invalid metadata value given: x=1".into())
        );
        assert!(engine(b"#!lua name=a-b\n")
            .unwrap_err()
            .starts_with("Library names can only"));
    }
}
