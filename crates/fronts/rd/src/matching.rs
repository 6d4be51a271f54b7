//! RFC 9176 §7 lookup filtering, pure: a query's criteria (all must hold,
//! trailing `*` is a prefix match, relation-type-like attributes match any
//! of their space-separated values, `href` and `anchor` compare against the
//! resolved URIs), `page` and `count`, and the lookup results written as
//! link format with resolved targets.
//!
//! Must never: read the node or the clock (the caller passes "now").

use crate::kind::Registration;
use crate::links::{self, Link};

/// Attributes whose values are space-separated lists (any one may match).
const MULTI: &[&str] = &["rt", "if", "rel", "et"];
/// Registration-level parameters (besides extra attributes).
const REG_PARAMS: &[&str] = &["ep", "d", "base", "lt"];
/// Largest `count`.
pub const COUNT_MAX: usize = 10_000;

/// A lookup query could not be used. Nothing was read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// `page` came without `count`, or a number did not parse.
    #[error("{0}")]
    Paging(String),
    /// A query argument is malformed.
    #[error("{0}")]
    Malformed(String),
}

/// A parsed lookup query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Filters: (name, pattern).
    pub criteria: Vec<(String, String)>,
    pub page: Option<usize>,
    pub count: Option<usize>,
    /// `provenance` asked (resource lookup): show the attribute.
    pub provenance: bool,
    /// `lt-remaining` asked (endpoint lookup): show the attribute.
    pub lt_remaining: bool,
}

/// Parses Uri-Query arguments (`name=value` or `name`).
pub fn parse_query(args: &[String]) -> Result<Query, QueryError> {
    let mut q = Query::default();
    let num = |n: &str, v: &str| {
        v.parse::<usize>()
            .map_err(|_| QueryError::Paging(format!("{n} must be a non-negative integer")))
    };
    for a in args {
        let (n, v) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (a.as_str(), None),
        };
        if n.is_empty() || n.len() > 63 || a.chars().any(char::is_control) {
            return Err(QueryError::Malformed(format!("query argument {a:?} is malformed")));
        }
        match (n, v) {
            ("page", Some(v)) => q.page = Some(num("page", v)?),
            ("count", Some(v)) => {
                let c = num("count", v)?;
                if c > COUNT_MAX {
                    return Err(QueryError::Paging(format!("count must be at most {COUNT_MAX}")));
                }
                q.count = Some(c);
            }
            ("page" | "count", None) => return Err(QueryError::Paging(format!("{n} needs a value"))),
            ("provenance", v) => {
                q.provenance = true;
                if let Some(v) = v {
                    q.criteria.push((n.into(), v.into()));
                }
            }
            ("lt-remaining", None) => q.lt_remaining = true,
            (n, v) => q.criteria.push((n.to_string(), v.unwrap_or("").to_string())),
        }
    }
    if q.page.is_some() && q.count.is_none() {
        return Err(QueryError::Paging("page without count".into()));
    }
    Ok(q)
}

/// Whether `value` matches `pattern` (a trailing `*` matches any rest).
pub fn value_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == pattern,
    }
}

/// Whether attribute `name` with `value` matches `pattern`.
fn attr_matches(name: &str, pattern: &str, value: &str) -> bool {
    if MULTI.contains(&name) && !pattern.contains(' ') {
        value.split_ascii_whitespace().any(|w| value_matches(pattern, w)) || value_matches(pattern, value)
    } else {
        value_matches(pattern, value)
    }
}

/// A registration as lookups see it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path of its registration resource (`/rd/<id>`).
    pub path: String,
    pub reg: Registration,
    /// Seconds of lifetime left.
    pub remaining_s: u64,
}

fn is_reg_param(e: &Entry, name: &str) -> bool {
    REG_PARAMS.contains(&name) || e.reg.attrs.iter().any(|(n, _)| n == name)
}

fn reg_value_matches(e: &Entry, name: &str, pattern: &str) -> bool {
    match name {
        "ep" => value_matches(pattern, &e.reg.ep),
        "d" => value_matches(pattern, &e.reg.d),
        "base" => value_matches(pattern, &e.reg.base),
        "lt" => value_matches(pattern, &e.reg.lt.to_string()),
        _ => e
            .reg
            .attrs
            .iter()
            .filter(|(n, _)| n == name)
            .any(|(_, v)| attr_matches(name, pattern, v.as_deref().unwrap_or(""))),
    }
}

/// The resolved target and anchor of `link` in `e`.
pub fn resolved(e: &Entry, link: &Link) -> (String, String) {
    let target = links::resolve(&e.reg.base, &link.href);
    let anchor = match link.values("anchor").next() {
        Some(a) => links::resolve(&e.reg.base, a),
        None => links::origin_of(&e.reg.base).to_string(),
    };
    (target, anchor)
}

fn link_matches(e: &Entry, link: &Link, name: &str, pattern: &str) -> bool {
    match name {
        "href" => value_matches(pattern, &resolved(e, link).0),
        "anchor" => value_matches(pattern, &resolved(e, link).1),
        "provenance" => value_matches(pattern, &e.path),
        _ => link.values(name).any(|v| attr_matches(name, pattern, v)),
    }
}

/// Whether registration `e` matches every criterion of an endpoint lookup.
/// A criterion on a link attribute holds if any link matches it.
pub fn endpoint_matches(q: &Query, e: &Entry) -> bool {
    q.criteria.iter().all(|(n, p)| match n.as_str() {
        "href" => value_matches(p, &e.path),
        n if is_reg_param(e, n) => reg_value_matches(e, n, p),
        n => e.reg.links.iter().any(|l| link_matches(e, l, n, p)),
    })
}

/// The links of `e` matching every criterion of a resource lookup.
pub fn matching_links<'a>(q: &'a Query, e: &'a Entry) -> impl Iterator<Item = &'a Link> + 'a {
    let reg_ok = q
        .criteria
        .iter()
        .filter(|(n, _)| n != "href" && n != "anchor" && is_reg_param(e, n))
        .all(|(n, p)| reg_value_matches(e, n, p));
    e.reg.links.iter().filter(move |l| {
        reg_ok
            && q.criteria
                .iter()
                .filter(|(n, _)| n == "href" || n == "anchor" || !is_reg_param(e, n))
                .all(|(n, p)| link_matches(e, l, n, p))
    })
}

/// One endpoint lookup result line.
pub fn write_endpoint(out: &mut String, q: &Query, e: &Entry) {
    out.push('<');
    out.push_str(&e.path);
    out.push('>');
    links::write_attr(out, "ep", Some(&e.reg.ep));
    if !e.reg.d.is_empty() {
        links::write_attr(out, "d", Some(&e.reg.d));
    }
    links::write_attr(out, "base", Some(&e.reg.base));
    links::write_attr(out, "lt", Some(&e.reg.lt.to_string()));
    for (n, v) in &e.reg.attrs {
        links::write_attr(out, n, v.as_deref());
    }
    if q.lt_remaining {
        links::write_attr(out, "lt-remaining", Some(&e.remaining_s.to_string()));
    }
}

/// One resource lookup result line: the target resolved, anchor resolved.
pub fn write_resource(out: &mut String, q: &Query, e: &Entry, l: &Link) {
    let (target, anchor) = resolved(e, l);
    out.push('<');
    out.push_str(&target);
    out.push('>');
    for (n, v) in l.attrs.iter().filter(|(n, _)| n != "anchor") {
        links::write_attr(out, n, v.as_deref());
    }
    links::write_attr(out, "anchor", Some(&anchor));
    if q.provenance {
        links::write_attr(out, "provenance", Some(&e.path));
    }
}

/// The `page`/`count` window over `n` results: (skip, take).
pub fn window(q: &Query, n: usize) -> (usize, usize) {
    match q.count {
        None => (0, n),
        Some(c) => (q.page.unwrap_or(0).saturating_mul(c).min(n), c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ep: &str, base: &str, payload: &str) -> Entry {
        Entry {
            path: "/rd/r1".into(),
            reg: Registration {
                ep: ep.into(),
                d: "".into(),
                base: base.into(),
                lt: 600,
                attrs: vec![("et".into(), Some("oic.d.sensor".into()))],
                links: links::parse(payload).unwrap(),
                expired: false,
                auth: None,
            },
            remaining_s: 590,
        }
    }

    fn q(args: &[&str]) -> Query {
        parse_query(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn rfc9176_resource_lookup_example() {
        // RFC 9176 §7.4: GET /rd-lookup/res?rt=temperature
        let e = entry(
            "node1",
            "coap://[2001:db8:3::123]:61616",
            "</temp>;rt=\"temperature\",</light>;rt=\"light-lux\";if=\"sensor\"",
        );
        let query = q(&["rt=temperature"]);
        let found: Vec<_> = matching_links(&query, &e).collect();
        assert_eq!(found.len(), 1);
        let mut s = String::new();
        write_resource(&mut s, &query, &e, found[0]);
        assert_eq!(
            s,
            "<coap://[2001:db8:3::123]:61616/temp>;rt=\"temperature\";anchor=\"coap://[2001:db8:3::123]:61616\""
        );
    }

    #[test]
    fn matching_rules() {
        let e = entry(
            "node1",
            "coap://[2001:db8::1]",
            "</t>;rt=\"temperature-c oic.r.temp\";if=sensor,</x>;rt=light;anchor=\"/dev\"",
        );
        let n = |args: &[&str]| matching_links(&q(args), &e).count();
        assert_eq!(n(&["rt=oic.r.temp"]), 1, "any of the space-separated values");
        assert_eq!(n(&["rt=temp*"]), 1, "trailing * is a prefix");
        assert_eq!(n(&["rt=*"]), 2);
        assert_eq!(n(&["rt=light", "if=sensor"]), 0, "criteria AND");
        assert_eq!(
            n(&["href=coap://[2001:db8::1]/t"]),
            1,
            "href against the resolved target"
        );
        assert_eq!(n(&["href=/t"]), 0);
        assert_eq!(n(&["anchor=coap://[2001:db8::1]/dev"]), 1);
        assert_eq!(n(&["ep=node1"]), 2, "registration parameters apply to every link");
        assert_eq!(n(&["ep=node2"]), 0);
        assert_eq!(n(&["et=oic.d.sensor", "rt=light"]), 1);
        assert!(endpoint_matches(&q(&["rt=light"]), &e), "any link may satisfy it");
        assert!(!endpoint_matches(&q(&["rt=light", "ep=x"]), &e));
        assert!(endpoint_matches(&q(&["href=/rd/*"]), &e));
        assert!(parse_query(&["page=1".into()]).is_err());
        assert_eq!(window(&q(&["page=2", "count=3"]), 7), (6, 3));
        assert_eq!(window(&q(&["page=9", "count=3"]), 7), (7, 3));
        let mut s = String::new();
        write_endpoint(&mut s, &q(&["lt-remaining"]), &e);
        assert_eq!(
            s,
            "</rd/r1>;ep=\"node1\";base=\"coap://[2001:db8::1]\";lt=600;et=\"oic.d.sensor\";lt-remaining=590"
        );
    }
}
