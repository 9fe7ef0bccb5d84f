//! Pub/sub commands: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB.
//!
//! The registry and delivery live in `server/pubsub.rs`. Confirmations are one reply per
//! channel (`[subscribe, channel, count]`, a push frame in RESP3), as in Redis; while a
//! RESP2 connection has subscriptions, [`super::execute`] only lets the (P)(UN)SUBSCRIBE
//! commands, PING, QUIT and RESET through.

use bytes::Bytes;

use super::{CmdError, CmdResult, Ctx, Outcome, is};
use crate::server::Shared;
use crate::server::connection::ClientState;
use crate::server::frame::Frame;

fn confirm(kind: &'static str, name: Option<&Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::bulk(kind),
        name.map_or(Frame::Null, |n| Frame::Bulk(n.clone())),
        Frame::Integer(count as i64),
    ])
}

fn outbox(ctx: &Ctx<'_>) -> CmdResult<std::sync::Arc<crate::server::pubsub::Outbox>> {
    ctx.client
        .subs
        .outbox
        .clone()
        .ok_or_else(|| CmdError::err("this connection cannot receive pub/sub messages"))
}

/// SUBSCRIBE channel [channel ...]
pub fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    let out = outbox(ctx)?;
    let id = ctx.client.handle.id;
    let mut replies = Vec::with_capacity(args.len());
    for ch in args {
        if ctx.shared.pubsub.subscribe(id, &out, ch) {
            ctx.client.subs.channels.push(ch.clone());
        }
        replies.push(confirm("subscribe", Some(ch), ctx.client.subs.count()));
    }
    Ok(Outcome::Replies(replies))
}

/// PSUBSCRIBE pattern [pattern ...]
pub fn psubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    let out = outbox(ctx)?;
    let id = ctx.client.handle.id;
    let mut replies = Vec::with_capacity(args.len());
    for p in args {
        if ctx.shared.pubsub.psubscribe(id, &out, p) {
            ctx.client.subs.patterns.push(p.clone());
        }
        replies.push(confirm("psubscribe", Some(p), ctx.client.subs.count()));
    }
    Ok(Outcome::Replies(replies))
}

fn unsub(ctx: &mut Ctx<'_>, args: &[Bytes], patterns: bool) -> Vec<Frame> {
    let kind = if patterns {
        "punsubscribe"
    } else {
        "unsubscribe"
    };
    let names: Vec<Bytes> = if args.is_empty() {
        if patterns {
            ctx.client.subs.patterns.clone()
        } else {
            ctx.client.subs.channels.clone()
        }
    } else {
        args.to_vec()
    };
    if names.is_empty() {
        return vec![confirm(kind, None, ctx.client.subs.count())];
    }
    let id = ctx.client.handle.id;
    let mut replies = Vec::with_capacity(names.len());
    for n in &names {
        let list = if patterns {
            ctx.shared.pubsub.punsubscribe(id, n);
            &mut ctx.client.subs.patterns
        } else {
            ctx.shared.pubsub.unsubscribe(id, n);
            &mut ctx.client.subs.channels
        };
        list.retain(|c| c != n);
        replies.push(confirm(kind, Some(n), ctx.client.subs.count()));
    }
    replies
}

/// UNSUBSCRIBE [channel ...]
pub fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    Ok(Outcome::Replies(unsub(ctx, args, false)))
}

/// PUNSUBSCRIBE [pattern ...]
pub fn punsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    Ok(Outcome::Replies(unsub(ctx, args, true)))
}

/// Drops every subscription of the connection (RESET, connection close).
pub fn reset_client(shared: &Shared, client: &mut ClientState) {
    let id = client.handle.id;
    for ch in std::mem::take(&mut client.subs.channels) {
        shared.pubsub.unsubscribe(id, &ch);
    }
    for p in std::mem::take(&mut client.subs.patterns) {
        shared.pubsub.punsubscribe(id, &p);
    }
}

/// PUBLISH channel message
pub fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let n = ctx.shared.pubsub.publish(&args[0], &args[1]);
    Ok(Frame::Integer(n as i64))
}

/// PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | SHARDCHANNELS [pattern] |
/// SHARDNUMSUB [channel ...] | HELP
pub fn pubsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let sub = &args[0];
    let rest = &args[1..];
    let hub = &ctx.shared.pubsub;
    if is(sub, "CHANNELS") || is(sub, "SHARDCHANNELS") {
        if rest.len() > 1 {
            return Err(CmdError::arity(&format!(
                "pubsub|{}",
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            )));
        }
        if is(sub, "SHARDCHANNELS") {
            // cask has no sharded channels (SSUBSCRIBE is not implemented).
            return Ok(Frame::Array(vec![]));
        }
        let chans = hub.channels(rest.first().map(|p| &p[..]));
        Ok(Frame::Array(chans.into_iter().map(Frame::Bulk).collect()))
    } else if is(sub, "NUMSUB") || is(sub, "SHARDNUMSUB") {
        let shard = is(sub, "SHARDNUMSUB");
        let mut out = Vec::with_capacity(rest.len() * 2);
        for ch in rest {
            let n = if shard { 0 } else { hub.numsub(ch) };
            out.push(Frame::Bulk(ch.clone()));
            out.push(Frame::Integer(n as i64));
        }
        Ok(Frame::Array(out))
    } else if is(sub, "NUMPAT") {
        if !rest.is_empty() {
            return Err(CmdError::arity("pubsub|numpat"));
        }
        Ok(Frame::Integer(hub.numpat() as i64))
    } else if is(sub, "HELP") {
        let lines = [
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
            "HELP",
            "    Print this help.",
        ];
        Ok(Frame::Array(
            lines.iter().map(|l| Frame::Simple((*l).into())).collect(),
        ))
    } else {
        Err(CmdError::unknown_subcommand(sub, "pubsub"))
    }
}
