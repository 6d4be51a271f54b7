//! The agent's peer messages (document 003 "Defined Message Types"), each
//! answered accepted or rejected with a reason under this agent's policy:
//! - RFI `dns.hello` {zone, identity}: accepted only if both identities
//!   are in the zone's HSYNC here and the sender's center is the one its
//!   validated TLSA binds to that identity; answers {identity};
//! - NOTIFY `dns.ns` {contribution}: a provider's complete contribution
//!   (nameservers, their glue inside the zone, a signer's DNSKEYs);
//! - RFI `dns.xfr` {zone}: the addresses to transfer the zone from
//!   (upstream) and to allow transfers to (downstream);
//! - NOTIFY `dns.election-start|vote|result|invalid`: see [`crate::election`].
//!
//! Must never: accept a message from a center not bound to an identity in
//! the zone's HSYNC, or a contribution outside its policy (names valid, at
//! most [`crate::config::NS_MAX`], glue for and only for nameservers inside
//! the zone, DNSKEYs well formed: [`Contribution::checked`]).

use crate::config::DnsConfig;
use crate::election::{Election, Phase, Send};
use crate::kind::Contribution;
use crate::state::{now_ms, Shared};
use regmesh_node::messages::{PeerAnswer, PeerMessage, PeerVerb};
use regmesh_node::NodeHandle;
use serde_json::{json, Value};
use std::sync::Arc;

pub const HELLO: &str = "dns.hello";
pub const NS: &str = "dns.ns";
pub const XFR: &str = "dns.xfr";
pub const E_START: &str = "dns.election-start";
pub const E_VOTE: &str = "dns.election-vote";
pub const E_RESULT: &str = "dns.election-result";
pub const E_INVALID: &str = "dns.election-invalid";

/// What the handlers and the loop share.
#[derive(Clone)]
pub struct Ctx {
    pub node: NodeHandle,
    pub cfg: Arc<DnsConfig>,
    pub shared: Shared,
}

fn str_field<'a>(m: &'a Value, f: &str) -> Result<&'a str, PeerAnswer> {
    m.get(f)
        .and_then(Value::as_str)
        .ok_or_else(|| PeerAnswer::rejected(format!("field {f:?} (a string) is missing")))
}

/// The zone named in `m`, if this agent serves for it, and the sender's
/// identity there (bound and introduced), for every message but HELLO.
fn sender(ctx: &Ctx, from: &str, m: &Value) -> Result<(String, String), PeerAnswer> {
    let zone = crate::wire::check_name(str_field(m, "zone")?).map_err(|e| PeerAnswer::rejected(e.to_string()))?;
    let zones = ctx.shared.lock();
    let z = zones
        .get(&zone)
        .ok_or_else(|| PeerAnswer::rejected(format!("this agent does not serve for {zone}")))?;
    let id = z
        .identity_of(from)
        .ok_or_else(|| PeerAnswer::rejected(format!("center {from} is not an introduced agent of {zone} here")))?;
    Ok((zone, id))
}

fn hello(ctx: &Ctx, from: &str, m: &Value) -> Result<PeerAnswer, PeerAnswer> {
    let zone = crate::wire::check_name(str_field(m, "zone")?).map_err(|e| PeerAnswer::rejected(e.to_string()))?;
    let claimed = str_field(m, "identity")?;
    let zones = ctx.shared.lock();
    let z = zones
        .get(&zone)
        .ok_or_else(|| PeerAnswer::rejected(format!("this agent does not serve for {zone}")))?;
    if let Some(r) = &z.refused {
        return Err(PeerAnswer::rejected(format!("{zone}: {r}")));
    }
    if !z.hsync.iter().any(|h| crate::wire::same_name(h, claimed)) {
        return Err(PeerAnswer::rejected(format!(
            "identity {claimed} is not in the HSYNC RRset of {zone}"
        )));
    }
    let bound = z
        .peers
        .iter()
        .find(|(i, _)| crate::wire::same_name(i, claimed))
        .and_then(|(_, v)| v.center.clone());
    match bound {
        Some(c) if c == from => Ok(PeerAnswer::with_data(json!({"identity": ctx.cfg.identity}))),
        Some(c) => Err(PeerAnswer::rejected(format!(
            "{claimed}'s validated TLSA names center {c}, not {from}"
        ))),
        None => Err(PeerAnswer::rejected(format!("{claimed} is not yet KNOWN here"))),
    }
}

fn notify_ns(ctx: &Ctx, from: &str, m: &Value) -> Result<PeerAnswer, PeerAnswer> {
    let (zone, id) = sender(ctx, from, m)?;
    let c: Contribution = serde_json::from_value(m.get("contribution").cloned().unwrap_or(Value::Null))
        .map_err(|e| PeerAnswer::rejected(format!("contribution: {e}")))?;
    let c = c.checked().map_err(|e| PeerAnswer::rejected(format!("policy: {e}")))?;
    if !crate::wire::same_name(&c.zone, &zone) || !crate::wire::same_name(&c.identity, &id) {
        return Err(PeerAnswer::rejected(format!(
            "policy: {from} may only contribute as {id} to {zone}"
        )));
    }
    let mut zones = ctx.shared.lock();
    if let Some(z) = zones.get_mut(&zone) {
        let newer = z.notified.get(&id).is_none_or(|o| o.serial_ms <= c.serial_ms);
        if newer {
            z.notified.insert(id, c);
        }
    }
    ctx.shared.wake.notify_one();
    Ok(PeerAnswer::accepted())
}

fn xfr(ctx: &Ctx, from: &str, m: &Value) -> Result<PeerAnswer, PeerAnswer> {
    let (zone, _) = sender(ctx, from, m)?;
    let a = ctx.cfg.primary.addr.ip().to_string();
    Ok(PeerAnswer::with_data(
        json!({"zone": zone, "upstream": [a], "downstream": [a]}),
    ))
}

/// Sends `typ` with `fields` to every introduced agent of `zone`, each in
/// its own task.
pub fn broadcast(ctx: &Ctx, zone: &str, typ: &'static str, fields: Value) {
    let centers = ctx
        .shared
        .lock()
        .get(zone)
        .map(|z| z.introduced_centers())
        .unwrap_or_default();
    for c in centers {
        let node = ctx.node.clone();
        let f = fields.clone();
        tokio::spawn(async move {
            match node.send(&c, PeerVerb::Notify, typ, f).await {
                Ok(a) if !a.accepted => tracing::info!(to = %c, typ, reason = ?a.reason, "dns message rejected"),
                Ok(_) => {}
                Err(e) => tracing::info!(to = %c, typ, error = %e, "dns message not delivered"),
            }
        });
    }
}

fn my_vote(ctx: &Ctx) -> u16 {
    ctx.cfg.vote.unwrap_or_else(|| {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).expect("the OS random source");
        u16::from_be_bytes(b)
    })
}

/// Sends what an election step asks for and keeps the leader current.
pub fn after(ctx: &Ctx, zone: &str, election: &str, s: Send) {
    {
        let mut zones = ctx.shared.lock();
        if let Some(z) = zones.get_mut(zone) {
            z.leader = match &z.election {
                Some(e) if e.phase == Phase::Decided => e.winner.clone(),
                _ => None,
            };
        }
    }
    match s {
        Send::Nothing => {}
        Send::Result(w) => broadcast(
            ctx,
            zone,
            E_RESULT,
            json!({"zone": zone, "election": election, "winner": w}),
        ),
        Send::Invalid(why) => broadcast(
            ctx,
            zone,
            E_INVALID,
            json!({"zone": zone, "election": election, "reason": why}),
        ),
    }
}

/// Joins election `id` (started by `initiator`) and votes in it.
fn join(ctx: &Ctx, zone: &str, id: &str, initiator: &str) {
    let vote = my_vote(ctx);
    let s = {
        let mut zones = ctx.shared.lock();
        let Some(z) = zones.get_mut(zone) else { return };
        if z.election
            .as_ref()
            .is_some_and(|e| e.id == id && e.votes.contains_key(&ctx.cfg.identity))
        {
            return;
        }
        if z.election.as_ref().is_none_or(|e| e.id != id) {
            z.election = Some(Election::new(id.into(), initiator.into(), z.hsync.clone(), now_ms()));
        }
        z.election.as_mut().expect("just set").vote(&ctx.cfg.identity, vote)
    };
    broadcast(ctx, zone, E_VOTE, json!({"zone": zone, "election": id, "vote": vote}));
    after(ctx, zone, id, s);
}

/// Starts an election for `zone` (ELECTION-START to all, then votes).
pub fn start_election(ctx: &Ctx, zone: &str) {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source");
    let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
    tracing::info!(zone, election = %id, "starting an election");
    broadcast(ctx, zone, E_START, json!({"zone": zone, "election": id}));
    join(ctx, zone, &id, &ctx.cfg.identity.clone());
}

fn election(ctx: &Ctx, typ: &str, from: &str, m: &Value) -> Result<PeerAnswer, PeerAnswer> {
    let (zone, who) = sender(ctx, from, m)?;
    let id = str_field(m, "election")?.to_string();
    if id.len() > 64 {
        return Err(PeerAnswer::rejected("election id: at most 64 bytes"));
    }
    match typ {
        E_START => join(ctx, &zone, &id, &who),
        E_VOTE => {
            let vote = m
                .get("vote")
                .and_then(Value::as_u64)
                .and_then(|v| u16::try_from(v).ok())
                .ok_or_else(|| PeerAnswer::rejected("vote: a u16"))?;
            let s = {
                let mut zones = ctx.shared.lock();
                let Some(z) = zones.get_mut(&zone) else {
                    return Err(PeerAnswer::rejected("zone gone"));
                };
                if z.election.as_ref().is_none_or(|e| e.id != id) {
                    // A vote before its START: the election begins here.
                    z.election = Some(Election::new(id.clone(), String::new(), z.hsync.clone(), now_ms()));
                }
                z.election.as_mut().expect("just set").vote(&who, vote)
            };
            after(ctx, &zone, &id, s);
        }
        E_RESULT => {
            let winner = str_field(m, "winner")?.to_string();
            let s = match ctx.shared.lock().get_mut(&zone).and_then(|z| z.election.as_mut()) {
                Some(e) if e.id == id => e.result(&who, &winner),
                _ => return Err(PeerAnswer::rejected(format!("no election {id} here"))),
            };
            after(ctx, &zone, &id, s);
        }
        _ => {
            let reason = m
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(256)
                .collect::<String>();
            if let Some(e) = ctx.shared.lock().get_mut(&zone).and_then(|z| z.election.as_mut()) {
                if e.id == id && e.phase != Phase::Invalid {
                    e.invalidate(format!("{who}: {reason}"));
                }
            }
            after(ctx, &zone, &id, Send::Nothing);
        }
    }
    Ok(PeerAnswer::accepted())
}

/// The message types this agent handles.
pub fn all(ctx: Ctx) -> Vec<PeerMessage> {
    let mut out = Vec::new();
    let c = ctx.clone();
    out.push(PeerMessage::new(PeerVerb::Rfi, HELLO, move |from: String, m: Value| {
        let r = hello(&c, &from, &m).unwrap_or_else(|e| e);
        async move { r }
    }));
    let c = ctx.clone();
    out.push(PeerMessage::new(PeerVerb::Notify, NS, move |from: String, m: Value| {
        let r = notify_ns(&c, &from, &m).unwrap_or_else(|e| e);
        async move { r }
    }));
    let c = ctx.clone();
    out.push(PeerMessage::new(PeerVerb::Rfi, XFR, move |from: String, m: Value| {
        let r = xfr(&c, &from, &m).unwrap_or_else(|e| e);
        async move { r }
    }));
    for typ in [E_START, E_VOTE, E_RESULT, E_INVALID] {
        let c = ctx.clone();
        out.push(PeerMessage::new(
            PeerVerb::Notify,
            typ,
            move |from: String, m: Value| {
                let r = election(&c, typ, &from, &m).unwrap_or_else(|e| e);
                async move { r }
            },
        ));
    }
    out
}
