//! The RD's resources, as answers to one reassembled request: discovery,
//! registration, the registration resource (GET, update, removal) and the
//! two lookups. Returns a [`Reply`]; the server loop frames it (Block2,
//! Observe, dedup).
//!
//! Updates and removals of another center's registration go to the owner
//! through [`crate::forward`] (document 004 §6.2.2).
//! Registrations, updates and removals of a name bound to a DTLS identity
//! are checked against it first ([`crate::fcfr`]), here and at the owner.
//!
//! Must never: write a registration this center does not own, or store
//! anything from a request it answers with 4.xx.

use crate::coap::LINK_FORMAT;
use crate::fcfr;
use crate::kind::{check_name, record_id, Registration, RegistrationKind, LT_DEFAULT_S, REGISTRATION};
use crate::links::{self, write_attr};
use crate::lookup::{self, LookupKind};
use crate::matching::{self, parse_query};
use crate::proxy::Proxied;
use coap_lite::{RequestType, ResponseType};
use regmesh_core::Kind;
use regmesh_node::NodeHandle;
use std::net::SocketAddr;
use std::sync::Arc;

/// Max-Age of lookup results, seconds (≤ 60, document 004 §5.2).
pub const LOOKUP_MAX_AGE_S: u32 = 60;

/// What to answer, before framing.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: ResponseType,
    pub payload: Vec<u8>,
    pub content_format: Option<u16>,
    pub max_age_s: Option<u32>,
    pub location: Vec<String>,
}

impl Reply {
    pub fn new(code: ResponseType) -> Self {
        Reply {
            code,
            payload: Vec::new(),
            content_format: None,
            max_age_s: None,
            location: Vec::new(),
        }
    }
    /// An error with a diagnostic payload.
    pub fn diag(code: ResponseType, msg: impl std::fmt::Display) -> Self {
        Reply {
            payload: msg.to_string().into_bytes(),
            ..Reply::new(code)
        }
    }
    fn links(code: ResponseType, body: String) -> Self {
        Reply {
            payload: body.into_bytes(),
            content_format: Some(LINK_FORMAT),
            ..Reply::new(code)
        }
    }
}

/// One request, its Block1 payload already reassembled.
pub struct Request<'a> {
    pub method: RequestType,
    pub path: &'a [String],
    pub query: &'a [String],
    pub content_format: Option<u16>,
    pub payload: &'a [u8],
    pub peer: SocketAddr,
    /// The requester's DTLS PSK identity (coaps); None in the clear.
    pub identity: Option<&'a str>,
    /// Links of third-party RDs this center proxies (resource lookups).
    pub proxied: &'a [Arc<Vec<Proxied>>],
}

/// Which lookup a path names, if any.
pub fn lookup_of(path: &[String]) -> Option<LookupKind> {
    match path {
        [a, b] if a == "rd-lookup" && b == "ep" => Some(LookupKind::Endpoint),
        [a, b] if a == "rd-lookup" && b == "res" => Some(LookupKind::Resource),
        _ => None,
    }
}

/// Answers `req`.
pub async fn handle(node: &NodeHandle, req: &Request<'_>) -> Reply {
    use RequestType::*;
    let p: Vec<&str> = req.path.iter().map(String::as_str).collect();
    match (req.method, p.as_slice()) {
        (Get, [".well-known", "core"]) => discovery(req.query),
        (Post, ["rd"]) => register(node, req).await,
        (Get, ["rd", id]) => read_registration(node, id),
        (Post | Delete, ["rd", id]) => match live(node, id) {
            Err(r) => r,
            Ok((origin, reg)) => match fcfr::check(reg.auth.as_deref(), req.identity) {
                Err(r) => r,
                Ok(()) if origin != node.center_id() => crate::forward::forward(node, &origin, req, id).await,
                Ok(()) if req.method == Post => update(node, req, id).await,
                Ok(()) => remove(node, id).await,
            },
        },
        (Get, _) if lookup_of(req.path).is_some() => run_lookup(node, req),
        (_, [".well-known", "core" | "rd"] | ["rd"] | ["rd", _] | ["rd-lookup", "ep" | "res"]) => {
            Reply::diag(ResponseType::MethodNotAllowed, "method not allowed on this resource")
        }
        _ => Reply::diag(ResponseType::NotFound, "no such resource"),
    }
}

/// `GET /.well-known/core`, filtered by `rt` (and `href`).
fn discovery(query: &[String]) -> Reply {
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(e) => return Reply::diag(ResponseType::BadRequest, e),
    };
    let all = [
        ("/rd", "core.rd"),
        ("/rd-lookup/ep", "core.rd-lookup-ep"),
        ("/rd-lookup/res", "core.rd-lookup-res"),
    ];
    let mut out = Vec::new();
    for (href, rt) in all {
        let ok = q.criteria.iter().all(|(n, p)| match n.as_str() {
            "rt" => matching::value_matches(p, rt),
            "href" => matching::value_matches(p, href),
            "ct" => matching::value_matches(p, "40"),
            _ => false,
        });
        if ok {
            let mut s = format!("<{href}>");
            write_attr(&mut s, "rt", Some(rt));
            write_attr(&mut s, "ct", Some("40"));
            out.push(s);
        }
    }
    if out.is_empty() && !q.criteria.is_empty() {
        return Reply::new(ResponseType::NotFound);
    }
    Reply::links(ResponseType::Content, out.join(","))
}

/// The requester's address as a base URI: `coaps://` when it came over DTLS.
fn default_base(peer: SocketAddr, secure: bool) -> String {
    let scheme = if secure { "coaps" } else { "coap" };
    match peer {
        SocketAddr::V4(a) => format!("{scheme}://{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => format!("{scheme}://{}:{}", v4, a.port()),
            None => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
        },
    }
}

/// Registration parameters from the query: ep, d, lt, base, extra attributes.
struct Params {
    ep: Option<String>,
    d: Option<String>,
    lt: Option<u64>,
    base: Option<String>,
    extra: Vec<(String, Option<String>)>,
}

fn once(n: &str, given: bool) -> Result<(), String> {
    if given {
        Err(format!("{n} given twice"))
    } else {
        Ok(())
    }
}

fn params(query: &[String]) -> Result<Params, String> {
    let mut p = Params {
        ep: None,
        d: None,
        lt: None,
        base: None,
        extra: Vec::new(),
    };
    for a in query {
        let (n, v) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        match n {
            "ep" => {
                once(n, p.ep.is_some())?;
                p.ep = Some(v.ok_or("ep needs a value")?);
            }
            "d" => {
                once(n, p.d.is_some())?;
                p.d = Some(v.ok_or("d needs a value")?);
            }
            "lt" => {
                once(n, p.lt.is_some())?;
                let v = v.ok_or("lt needs a value")?;
                p.lt = Some(v.parse().map_err(|_| format!("lt {v:?} is not a number of seconds"))?);
            }
            "base" => {
                once(n, p.base.is_some())?;
                p.base = Some(v.ok_or("base needs a value")?);
            }
            "page" | "count" | "href" | "anchor" | "provenance" | "lt-remaining" => {
                return Err(format!("{n} is not a registration parameter"))
            }
            n => {
                let ok = !n.is_empty()
                    && n.len() <= 63
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c));
                if !ok
                    || v.as_deref()
                        .is_some_and(|v| v.len() > links::VALUE_BYTES_MAX || v.chars().any(char::is_control))
                {
                    return Err(format!("attribute {n:?} is malformed"));
                }
                p.extra.push((n.to_string(), v));
            }
        }
    }
    Ok(p)
}

fn check_link_payload(req: &Request<'_>) -> Result<Vec<links::Link>, Reply> {
    if req.content_format.is_some_and(|c| c != LINK_FORMAT) {
        return Err(Reply::diag(
            ResponseType::UnsupportedContentFormat,
            "registrations are link format (Content-Format 40)",
        ));
    }
    let text =
        std::str::from_utf8(req.payload).map_err(|_| Reply::diag(ResponseType::BadRequest, "payload is not UTF-8"))?;
    links::parse(text).map_err(|e| Reply::diag(ResponseType::BadRequest, e))
}

async fn store(node: &NodeHandle, id: &str, reg: Registration, code: ResponseType) -> Reply {
    let body = serde_json::to_value(&reg).expect("serializes");
    let prepared = match RegistrationKind.prepare(id, body) {
        Ok(p) => p,
        Err(e) => return Reply::diag(ResponseType::BadRequest, e),
    };
    match node.put(REGISTRATION, id, prepared, None).await {
        Ok(_) => {
            let mut r = Reply::new(code);
            if code == ResponseType::Created {
                r.location = vec!["rd".into(), id.into()];
            }
            r
        }
        Err(e) => Reply::diag(ResponseType::ServiceUnavailable, e),
    }
}

/// `POST /rd?ep=...`: creates or replaces the registration of (ep, d).
async fn register(node: &NodeHandle, req: &Request<'_>) -> Reply {
    let p = match params(req.query) {
        Ok(p) => p,
        Err(e) => return Reply::diag(ResponseType::BadRequest, e),
    };
    let Some(ep) = p.ep else {
        return Reply::diag(ResponseType::BadRequest, "ep is required");
    };
    let d = p.d.unwrap_or_default();
    for (f, v, empty) in [("ep", &ep, false), ("d", &d, true)] {
        if let Err(e) = check_name(f, v, empty) {
            return Reply::diag(ResponseType::BadRequest, e);
        }
    }
    let links = match check_link_payload(req) {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Err(r) = fcfr::may_register(node, &ep, &d, req.identity) {
        return r;
    }
    let reg = Registration {
        ep,
        d,
        base: p.base.unwrap_or_else(|| default_base(req.peer, req.identity.is_some())),
        lt: p.lt.unwrap_or(LT_DEFAULT_S),
        attrs: p.extra,
        links,
        expired: false,
        auth: req.identity.map(str::to_string),
    };
    let id = record_id(node.center_id(), &reg.ep, &reg.d);
    store(node, &id, reg, ResponseType::Created).await
}

/// A live registration by record id, with its origin.
fn live(node: &NodeHandle, id: &str) -> Result<(String, Registration), Reply> {
    if regmesh_core::validate_record_id(id).is_err() {
        return Err(Reply::diag(ResponseType::NotFound, "no such registration"));
    }
    match node.get(REGISTRATION, id) {
        Ok(Some(r)) => match lookup::entry(&r, lookup::now_ms()) {
            Some(e) => Ok((r.origin, e.reg)),
            None => Err(Reply::diag(ResponseType::NotFound, "no such registration")),
        },
        Ok(None) => Err(Reply::diag(ResponseType::NotFound, "no such registration")),
        Err(e) => Err(Reply::diag(ResponseType::InternalServerError, e)),
    }
}

pub(crate) fn own(node: &NodeHandle, id: &str) -> Result<Registration, Reply> {
    let (origin, reg) = live(node, id)?;
    if origin != node.center_id() {
        return Err(Reply::diag(
            ResponseType::Forbidden,
            format!("registration is owned by center {origin}, not by the center it was forwarded to"),
        ));
    }
    Ok(reg)
}

fn read_registration(node: &NodeHandle, id: &str) -> Reply {
    match live(node, id) {
        Ok((_, reg)) => {
            let lines: Vec<String> = reg
                .links
                .iter()
                .map(|l| {
                    let mut s = format!("<{}>", l.href);
                    for (n, v) in &l.attrs {
                        write_attr(&mut s, n, v.as_deref());
                    }
                    s
                })
                .collect();
            Reply::links(ResponseType::Content, lines.join(","))
        }
        Err(r) => r,
    }
}

/// `POST /rd/<id>?...`: renews the lifetime; new `lt`, `base` or extra
/// attributes replace the old ones.
pub(crate) async fn update(node: &NodeHandle, req: &Request<'_>, id: &str) -> Reply {
    let mut reg = match own(node, id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !req.payload.is_empty() {
        return Reply::diag(ResponseType::BadRequest, "a registration update has no payload");
    }
    let p = match params(req.query) {
        Ok(p) => p,
        Err(e) => return Reply::diag(ResponseType::BadRequest, e),
    };
    if p.ep.is_some() || p.d.is_some() {
        return Reply::diag(ResponseType::BadRequest, "ep and d cannot change in an update");
    }
    if p.lt.is_none() && p.base.is_none() && p.extra.is_empty() {
        return match node.heartbeat(REGISTRATION, id).await {
            Ok(_) => Reply::new(ResponseType::Changed),
            Err(e) => Reply::diag(ResponseType::ServiceUnavailable, e),
        };
    }
    if let Some(lt) = p.lt {
        reg.lt = lt;
    }
    if let Some(b) = p.base {
        reg.base = b;
    }
    for (n, v) in p.extra {
        reg.attrs.retain(|(m, _)| *m != n);
        reg.attrs.push((n, v));
    }
    store(node, id, reg, ResponseType::Changed).await
}

pub(crate) async fn remove(node: &NodeHandle, id: &str) -> Reply {
    if let Err(r) = own(node, id) {
        return r;
    }
    match node.delete(REGISTRATION, id, None).await {
        Ok(()) => Reply::new(ResponseType::Deleted),
        Err(e) => Reply::diag(ResponseType::ServiceUnavailable, e),
    }
}

/// The lookup's result (also used for Observe notifications).
pub fn lookup_reply(node: &NodeHandle, which: LookupKind, query: &[String], proxied: &[Arc<Vec<Proxied>>]) -> Reply {
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(e) => return Reply::diag(ResponseType::BadRequest, e),
    };
    if which == LookupKind::Resource && q.lt_remaining {
        return Reply::diag(ResponseType::BadRequest, "lt-remaining is for endpoint lookups");
    }
    match lookup::lookup(node, which, &q, proxied) {
        Ok(body) => Reply {
            max_age_s: Some(LOOKUP_MAX_AGE_S),
            ..Reply::links(ResponseType::Content, body)
        },
        Err(lookup::LookupError::TooMany) => Reply::diag(ResponseType::ServiceUnavailable, "lookup too broad"),
        Err(e) => Reply::diag(ResponseType::InternalServerError, e),
    }
}

fn run_lookup(node: &NodeHandle, req: &Request<'_>) -> Reply {
    match lookup_of(req.path) {
        Some(w) => lookup_reply(node, w, req.query, req.proxied),
        None => Reply::new(ResponseType::NotFound),
    }
}
