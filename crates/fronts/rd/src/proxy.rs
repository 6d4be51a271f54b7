//! Lookup proxy (document 004 §4.3, §4.4.2): links of third-party RDs this
//! center is pointed at (`[fronts.rd] upstreams`), fetched from their
//! resource lookup when it notifies a change (`server/upstream.rs`) and
//! served in this center's resource lookups, with `provenance`
//! naming the upstream's lookup. When an upstream stops answering, its links
//! stay until the shortest remaining lifetime it last reported (its endpoint
//! lookup's `lt-remaining`, or `lt` when it gives none) runs out.
//!
//! Must never: hold more than [`PROXIED_LINKS_MAX`] links, or write records
//! (proxied links live in memory at this center only; other centers proxy
//! their own upstreams).

use crate::links::{self, Link};
use crate::matching::{value_matches, Query};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most proxied links over all upstreams.
pub const PROXIED_LINKS_MAX: usize = 100_000;
/// Most upstreams.
pub const UPSTREAMS_MAX: usize = 16;

/// One link of an upstream, as its resource lookup gave it (target and
/// anchor already resolved there).
#[derive(Debug, Clone)]
pub struct Proxied {
    pub link: Link,
    /// The upstream's resource lookup URI.
    pub provenance: String,
    /// When it stops being served if not refreshed.
    pub until: Instant,
}

/// The proxied links of every upstream.
#[derive(Default)]
pub struct Store {
    by_upstream: Mutex<Vec<(SocketAddr, Arc<Vec<Proxied>>)>>,
}

impl Store {
    /// Replaces `upstream`'s links.
    pub fn set(&self, upstream: SocketAddr, links: Vec<Proxied>) {
        let mut g = self.by_upstream.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|(u, _)| *u != upstream);
        g.push((upstream, Arc::new(links)));
    }

    /// The live links of every upstream.
    pub fn snapshot(&self, now: Instant) -> Vec<Arc<Vec<Proxied>>> {
        let g = self.by_upstream.lock().unwrap_or_else(|p| p.into_inner());
        g.iter()
            .filter(|(_, l)| l.first().is_some_and(|p| p.until > now))
            .map(|(_, l)| l.clone())
            .collect()
    }
}

/// The upstream address of `coap://IP[:port]` (IP literals only).
pub fn parse_upstream(uri: &str) -> Result<SocketAddr, String> {
    let rest = uri
        .strip_prefix("coap://")
        .ok_or_else(|| format!("upstream {uri:?} must be coap://IP[:port]"))?
        .trim_end_matches('/');
    if let Ok(a) = rest.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip = rest.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 5683))
        .map_err(|_| format!("upstream {uri:?} must name an IP literal host"))
}

/// Whether proxied link `p` matches every criterion of a resource lookup.
/// Registration parameters (ep, d, base, lt, et) are not known for proxied
/// links: a query naming one does not match them.
pub fn matches(q: &Query, p: &Proxied) -> bool {
    let anchor = p.link.values("anchor").next().unwrap_or("");
    q.criteria.iter().all(|(n, pat)| match n.as_str() {
        "ep" | "d" | "base" | "lt" | "et" => false,
        "href" => value_matches(pat, &p.link.href),
        "anchor" => value_matches(pat, anchor),
        "provenance" => value_matches(pat, &p.provenance),
        name => p.link.values(name).any(|v| {
            value_matches(pat, v)
                || (["rt", "if", "rel"].contains(&name) && v.split_ascii_whitespace().any(|w| value_matches(pat, w)))
        }),
    })
}

/// One result line for proxied link `p`.
pub fn write(out: &mut String, q: &Query, p: &Proxied) {
    out.push('<');
    out.push_str(&p.link.href);
    out.push('>');
    for (n, v) in p.link.attrs.iter().filter(|(n, _)| n != "provenance") {
        links::write_attr(out, n, v.as_deref());
    }
    if q.provenance {
        links::write_attr(out, "provenance", Some(&p.provenance));
    }
}

/// The shortest remaining lifetime (seconds) in an endpoint lookup result:
/// `lt-remaining` where given, else `lt`; None if it names no endpoint.
pub fn shortest_lifetime_s(ep_lookup: &str) -> Option<u64> {
    let parsed = links::parse(ep_lookup).ok()?;
    parsed
        .iter()
        .filter_map(|l| {
            l.values("lt-remaining")
                .next()
                .or_else(|| l.values("lt").next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::parse_query;
    use std::time::Duration;

    #[test]
    fn upstreams_matching_and_lifetimes() {
        assert_eq!(
            parse_upstream("coap://[::1]:56830").unwrap(),
            "[::1]:56830".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("coap://192.0.2.1").unwrap(),
            "192.0.2.1:5683".parse().unwrap()
        );
        assert!(parse_upstream("http://[::1]").is_err() && parse_upstream("coap://rd.example").is_err());
        let link = links::parse("<coap://[2001:db8::9]/t>;rt=\"temp x\";anchor=\"coap://[2001:db8::9]\"").unwrap();
        let p = Proxied {
            link: link[0].clone(),
            provenance: "coap://[::1]:56830/resource-lookup/".into(),
            until: Instant::now() + Duration::from_secs(5),
        };
        let q = |a: &[&str]| parse_query(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        assert!(matches(&q(&["rt=x"]), &p) && matches(&q(&["href=coap://[2001:db8::9]/*"]), &p));
        assert!(
            !matches(&q(&["ep=node1"]), &p),
            "registration parameters are unknown here"
        );
        let mut s = String::new();
        write(&mut s, &q(&["provenance"]), &p);
        assert!(
            s.ends_with(";provenance=\"coap://[::1]:56830/resource-lookup/\""),
            "{s}"
        );
        assert_eq!(
            shortest_lifetime_s("</a>;ep=\"x\";lt=90,</b>;ep=\"y\";lt=600;lt-remaining=30"),
            Some(30)
        );
        assert_eq!(shortest_lifetime_s(""), None);
        let store = Store::default();
        let u: SocketAddr = "[::1]:9".parse().unwrap();
        store.set(u, vec![p.clone()]);
        assert_eq!(store.snapshot(Instant::now()).len(), 1);
        assert!(
            store.snapshot(Instant::now() + Duration::from_secs(6)).is_empty(),
            "gone after its lifetime"
        );
    }
}
