//! Connection commands: PING ECHO HELLO AUTH SELECT QUIT RESET CLIENT COMMAND.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{COMMANDS, CmdError, CmdResult, Ctx, Outcome, Spec, int_arg, is, lookup, truncate};
use crate::server::frame::Frame;
use crate::server::keyspace::DATABASES;

/// The Redis version cask reports to clients that gate features on it.
pub const REDIS_VERSION: &str = "7.2.6";

/// PING [message]
pub fn ping(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let _ = ctx;
    match args {
        [] => Ok(Frame::Simple("PONG".into())),
        [msg] => Ok(Frame::Bulk(msg.clone())),
        _ => Err(CmdError::arity("ping")),
    }
}

/// ECHO message
pub fn echo(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    Ok(Frame::Bulk(args[0].clone()))
}

fn password_matches(expected: &str, given: &[u8]) -> bool {
    // Compare every byte so the time taken does not reveal the matching prefix.
    let e = expected.as_bytes();
    let mut diff = e.len() ^ given.len();
    for (i, b) in given.iter().enumerate() {
        diff |= usize::from(e.get(i).copied().unwrap_or(0) ^ b);
    }
    diff == 0
}

fn check_auth(ctx: &mut Ctx<'_>, user: Option<&[u8]>, pass: &[u8]) -> CmdResult<()> {
    let user_ok = user.is_none_or(|u| u == b"default");
    match ctx.shared.password() {
        None if user.is_none() => Err(CmdError::err(
            "AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        )),
        None if user_ok => {
            ctx.client.authenticated = true;
            Ok(())
        }
        Some(p) if user_ok && password_matches(&p, pass) => {
            ctx.client.authenticated = true;
            Ok(())
        }
        _ => Err(CmdError(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        )),
    }
}

/// AUTH [username] password
pub fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    match args {
        [pass] => check_auth(ctx, None, pass)?,
        [user, pass] => check_auth(ctx, Some(user), pass)?,
        _ => return Err(CmdError::syntax()),
    }
    Ok(Frame::ok())
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
pub fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let mut proto = ctx.client.proto;
    if let Some(v) = args.first() {
        let v = int_arg(v)
            .map_err(|_| CmdError::err("Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&v) {
            return Err(CmdError("NOPROTO unsupported protocol version".into()));
        }
        proto = v as u8;
    }
    let mut name = None;
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "AUTH") && more >= 2 {
            check_auth(ctx, Some(&args[i + 1]), &args[i + 2])?;
            i += 3;
        } else if is(&args[i], "SETNAME") && more >= 1 {
            validate_name(&args[i + 1])?;
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Err(CmdError::err(format!(
                "Syntax error in HELLO option '{}'",
                truncate(&args[i], 128)
            )));
        }
    }
    if !ctx.client.authenticated {
        return Err(CmdError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .into(),
        ));
    }
    if let Some(n) = name {
        set_names(ctx, |names| {
            names.name = String::from_utf8_lossy(&n).into_owned()
        });
    }
    ctx.client.proto = proto;
    ctx.client.handle.proto.store(proto, Ordering::Relaxed);
    let s = |t: &str| Frame::bulk(Bytes::copy_from_slice(t.as_bytes()));
    Ok(Frame::Map(vec![
        (s("server"), s("redis")),
        (s("version"), s(REDIS_VERSION)),
        (s("proto"), Frame::Integer(i64::from(proto))),
        (s("id"), Frame::Integer(ctx.client.handle.id as i64)),
        (s("mode"), s("standalone")),
        (s("role"), s("master")),
        (s("modules"), Frame::Array(vec![])),
    ]))
}

/// SELECT index
pub fn select(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = int_arg(&args[0])?;
    if db < 0 || db >= DATABASES as i64 {
        return Err(CmdError::err("DB index is out of range"));
    }
    ctx.client.db = db as u8;
    ctx.client.handle.db.store(db as u8, Ordering::Relaxed);
    Ok(Frame::ok())
}

/// QUIT
pub fn quit(_ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Outcome> {
    Ok(Outcome::Close(Frame::ok()))
}

/// RESET
pub fn reset(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    super::tx::reset_client(ctx.shared, ctx.client);
    super::pubsub::reset_client(ctx.shared, ctx.client);
    ctx.client.reply_off = false;
    ctx.client.reply_skip = 0;
    ctx.client.db = 0;
    ctx.client.proto = 2;
    ctx.client.authenticated = ctx.shared.password().is_none();
    ctx.client.handle.db.store(0, Ordering::Relaxed);
    ctx.client.handle.proto.store(2, Ordering::Relaxed);
    set_names(ctx, |n| n.name.clear());
    Ok(Frame::Simple("RESET".into()))
}

fn set_names(ctx: &Ctx<'_>, f: impl FnOnce(&mut crate::server::ClientNames)) {
    let mut names = ctx
        .client
        .handle
        .names
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    f(&mut names);
}

fn validate_name(name: &[u8]) -> CmdResult<()> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(CmdError::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

fn client_line(shared: &crate::server::Shared, h: &crate::server::ClientHandle) -> String {
    let names = h.names.lock().map(|n| n.clone()).unwrap_or_default();
    let age = h.created.elapsed().as_secs();
    let (sub, psub) = shared.pubsub.client_counts(h.id);
    let flags = if sub + psub > 0 { "P" } else { "N" };
    format!(
        "id={} addr={} laddr={} fd=0 name={} age={age} idle=0 flags={flags} db={} sub={sub} psub={psub} \
         ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 \
         omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} \
         lib-ver={}\n",
        h.id,
        h.addr,
        h.laddr,
        names.name,
        h.db.load(Ordering::Relaxed),
        COMMANDS
            .get(h.last_cmd.load(Ordering::Relaxed))
            .map_or("NULL", |c| c.name),
        h.proto.load(Ordering::Relaxed),
        names.lib_name,
        names.lib_ver,
    )
}

/// CLIENT subcommand ...
pub fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let sub = &args[0];
    let rest = &args[1..];
    let arity = |name: &str| CmdError::arity(&format!("client|{name}"));
    if is(sub, "ID") {
        if !rest.is_empty() {
            return Err(arity("id"));
        }
        Ok(Frame::Integer(ctx.client.handle.id as i64))
    } else if is(sub, "SETNAME") {
        let [name] = rest else {
            return Err(arity("setname"));
        };
        validate_name(name)?;
        let name = String::from_utf8_lossy(name).into_owned();
        set_names(ctx, |n| n.name = name);
        Ok(Frame::ok())
    } else if is(sub, "GETNAME") {
        if !rest.is_empty() {
            return Err(arity("getname"));
        }
        let name = ctx
            .client
            .handle
            .names
            .lock()
            .map(|n| n.name.clone())
            .unwrap_or_default();
        Ok(if name.is_empty() {
            Frame::Null
        } else {
            Frame::bulk(name)
        })
    } else if is(sub, "SETINFO") {
        let [attr, value] = rest else {
            return Err(arity("setinfo"));
        };
        if value.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            return Err(CmdError::err(format!(
                "{} cannot contain spaces, newlines or special characters.",
                truncate(attr, 64)
            )));
        }
        let value = String::from_utf8_lossy(value).into_owned();
        if is(attr, "LIB-NAME") {
            set_names(ctx, |n| n.lib_name = value);
        } else if is(attr, "LIB-VER") {
            set_names(ctx, |n| n.lib_ver = value);
        } else {
            return Err(CmdError::err(format!(
                "Unrecognized option '{}'",
                truncate(attr, 64)
            )));
        }
        Ok(Frame::ok())
    } else if is(sub, "INFO") {
        if !rest.is_empty() {
            return Err(arity("info"));
        }
        Ok(Frame::Verbatim(
            client_line(ctx.shared, &ctx.client.handle).into(),
        ))
    } else if is(sub, "LIST") {
        let mut ids: Option<Vec<u64>> = None;
        let mut i = 0;
        while i < rest.len() {
            if is(&rest[i], "TYPE") && i + 1 < rest.len() {
                if !is(&rest[i + 1], "normal") {
                    ids = Some(vec![]);
                }
                i += 2;
            } else if is(&rest[i], "ID") && i + 1 < rest.len() {
                let mut wanted = Vec::new();
                for a in &rest[i + 1..] {
                    let id = int_arg(a)
                        .ok()
                        .filter(|&v| v > 0)
                        .ok_or_else(|| CmdError::err("Invalid client ID"))?;
                    wanted.push(id as u64);
                }
                ids = Some(wanted);
                i = rest.len();
            } else {
                return Err(CmdError::syntax());
            }
        }
        let clients = ctx.shared.clients.lock().unwrap_or_else(|e| e.into_inner());
        let text: String = clients
            .values()
            .filter(|h| ids.as_ref().is_none_or(|ids| ids.contains(&h.id)))
            .map(|h| client_line(ctx.shared, h))
            .collect();
        Ok(Frame::Verbatim(text.into()))
    } else if is(sub, "KILL") {
        client_kill(ctx, rest)
    } else if is(sub, "UNBLOCK") {
        client_unblock(ctx, rest)
    } else if is(sub, "HELP") {
        let lines = [
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ID",
            "GETNAME",
            "SETNAME <name>",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "INFO",
            "LIST [TYPE normal] [ID id ...]",
            "REPLY <ON|OFF|SKIP>",
            "KILL <ip:port> | KILL <ID id|ADDR ip:port|LADDR ip:port|SKIPME yes|no> ...",
            "UNBLOCK <clientid> [TIMEOUT|ERROR]",
        ];
        Ok(Frame::Array(
            lines.iter().map(|l| Frame::Simple((*l).into())).collect(),
        ))
    } else if is(sub, "REPLY") {
        let [mode] = rest else {
            return Err(arity("reply"));
        };
        if is(mode, "ON") {
            ctx.client.reply_off = false;
            ctx.client.reply_skip = 0;
        } else if is(mode, "OFF") {
            ctx.client.reply_off = true;
        } else if is(mode, "SKIP") {
            // This reply and the next command's (the connection drops both).
            ctx.client.reply_skip = 2;
        } else {
            return Err(CmdError::syntax());
        }
        Ok(Frame::ok())
    } else if is(sub, "NO-EVICT") || is(sub, "NO-TOUCH") {
        Ok(Frame::ok())
    } else {
        Err(CmdError::unknown_subcommand(sub, "client"))
    }
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: ends another client's blocking command as if it timed
/// out, or with an `-UNBLOCKED` error. 1 if that client was blocked, 0 otherwise.
fn client_unblock(ctx: &mut Ctx<'_>, rest: &[Bytes]) -> CmdResult<Frame> {
    let (id, mode) = match rest {
        [id] => (id, crate::server::UNBLOCK_TIMEOUT),
        [id, how] if is(how, "TIMEOUT") => (id, crate::server::UNBLOCK_TIMEOUT),
        [id, how] if is(how, "ERROR") => (id, crate::server::UNBLOCK_ERROR),
        [_, _] => {
            return Err(CmdError::err(
                "CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ));
        }
        _ => return Err(CmdError::arity("client|unblock")),
    };
    let id = int_arg(id)?;
    let handle = ctx
        .shared
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(id as u64))
        .cloned();
    let Some(h) = handle.filter(|h| h.blocked.load(Ordering::Acquire)) else {
        return Ok(Frame::Integer(0));
    };
    h.unblock_mode.store(mode, Ordering::Release);
    h.unblock.notify_one();
    Ok(Frame::Integer(1))
}

fn client_kill(ctx: &mut Ctx<'_>, rest: &[Bytes]) -> CmdResult<Frame> {
    let me = ctx.client.handle.id;
    let clients: Vec<_> = ctx
        .shared
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    let kill = |h: &crate::server::ClientHandle| {
        h.killed.store(true, Ordering::Release);
        h.kill.notify_one();
    };
    if let [addr] = rest {
        // Legacy form: CLIENT KILL ip:port, which may kill the caller too.
        let addr = String::from_utf8_lossy(addr);
        let Some(h) = clients.iter().find(|h| h.addr.to_string() == addr) else {
            return Err(CmdError::err("No such client"));
        };
        kill(h);
        return Ok(Frame::ok());
    }
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(CmdError::syntax());
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut skipme = true;
    for pair in rest.chunks(2) {
        let (k, v) = (&pair[0], &pair[1]);
        if is(k, "ID") {
            let n = int_arg(v)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| CmdError::err("client-id should be greater than 0"))?;
            id = Some(n as u64);
        } else if is(k, "ADDR") {
            addr = Some(String::from_utf8_lossy(v).into_owned());
        } else if is(k, "LADDR") {
            laddr = Some(String::from_utf8_lossy(v).into_owned());
        } else if is(k, "SKIPME") {
            skipme = if is(v, "yes") {
                true
            } else if is(v, "no") {
                false
            } else {
                return Err(CmdError::syntax());
            };
        } else if is(k, "TYPE") || is(k, "USER") || is(k, "MAXAGE") {
            // Every cask client is a normal client of the default user.
        } else {
            return Err(CmdError::syntax());
        }
    }
    let mut killed = 0;
    for h in &clients {
        if id.is_some_and(|id| id != h.id)
            || addr.as_ref().is_some_and(|a| *a != h.addr.to_string())
            || laddr.as_ref().is_some_and(|a| *a != h.laddr.to_string())
            || (skipme && h.id == me)
        {
            continue;
        }
        kill(h);
        killed += 1;
    }
    Ok(Frame::Integer(killed))
}

fn command_info(spec: &Spec) -> Frame {
    let set =
        |items: &[&str]| Frame::Set(items.iter().map(|s| Frame::Simple((*s).into())).collect());
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(spec.arity),
        set(spec.flags),
        Frame::Integer(spec.first_key),
        Frame::Integer(spec.last_key),
        Frame::Integer(spec.step),
        set(&[]),
        set(&[]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
    ])
}

/// COMMAND [COUNT | INFO name... | DOCS [name...] | LIST | GETKEYS command args...]
pub fn command(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let Some(sub) = args.first() else {
        return Ok(Frame::Array(COMMANDS.iter().map(command_info).collect()));
    };
    let rest = &args[1..];
    if is(sub, "COUNT") {
        Ok(Frame::Integer(COMMANDS.len() as i64))
    } else if is(sub, "INFO") {
        if rest.is_empty() {
            return Ok(Frame::Array(COMMANDS.iter().map(command_info).collect()));
        }
        Ok(Frame::Array(
            rest.iter()
                .map(|n| lookup(n).map_or(Frame::NullArray, command_info))
                .collect(),
        ))
    } else if is(sub, "GETKEYS") {
        let Some(name) = rest.first() else {
            return Err(CmdError::arity("command|getkeys"));
        };
        let spec = lookup(name).ok_or_else(|| CmdError::err("Invalid command specified"))?;
        if !spec.arity_ok(rest.len()) {
            return Err(CmdError::err(
                "Invalid number of arguments specified for command",
            ));
        }
        let keys = spec.key_positions(rest)?;
        if keys.is_empty() {
            return Err(CmdError::err("The command has no key arguments"));
        }
        Ok(Frame::Array(
            keys.into_iter()
                .map(|i| Frame::Bulk(rest[i].clone()))
                .collect(),
        ))
    } else if is(sub, "DOCS") {
        // cask publishes no docs; clients fall back to their own hints.
        Ok(Frame::Map(vec![]))
    } else if is(sub, "LIST") {
        Ok(Frame::Array(
            COMMANDS.iter().map(|c| Frame::bulk(c.name)).collect(),
        ))
    } else if is(sub, "HELP") {
        Ok(Frame::Array(
            ["COMMAND [COUNT|INFO <name>...|DOCS|LIST|GETKEYS <command> <arg>...]"]
                .iter()
                .map(|l| Frame::Simple((*l).into()))
                .collect(),
        ))
    } else {
        Err(CmdError::unknown_subcommand(sub, "command"))
    }
}
