//! Lookups against the node: picks the candidates through the kind's index
//! (an exact criterion on `ep`, `d`, `et`, `rt` or `if`, else a `*` prefix
//! criterion on one of them through its `_prefix` index), drops expired and
//! superseded registrations (handover: the newest of an (ep, d) wins), and
//! writes endpoint and resource lookup results.
//!
//! Must never: write; read more than [`CANDIDATES_MAX`] records per lookup.

use crate::kind::{Registration, PREFIXED, PREFIX_CHARS_MAX, REGISTRATION};
use crate::matching::{self, Entry, Query};
use crate::proxy::{self, Proxied};
use regmesh_core::Record;
use regmesh_node::handle::{HandleError, ListQuery};
use regmesh_node::NodeHandle;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most records one lookup reads.
pub const CANDIDATES_MAX: usize = 200_000;
/// Indexed fields a criterion may select candidates by.
const INDEXED: &[&str] = &["ep", "d", "et", "rt", "if"];

/// Which lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    Endpoint,
    Resource,
}

/// A lookup could not be answered. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Node(#[from] HandleError),
    /// More candidates than one lookup may read.
    #[error("more than {CANDIDATES_MAX} candidate registrations; narrow the query")]
    TooMany,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The registration of `r` as lookups see it, or None if it is not live.
pub fn entry(r: &Record, now_ms: u64) -> Option<Entry> {
    if r.deleted {
        return None;
    }
    let reg = Registration::from_body(&r.body)?;
    if reg.expired {
        return None;
    }
    let remaining_s = match r.expires_at_ms {
        Some(t) if t <= now_ms => return None,
        Some(t) => (t - now_ms) / 1000,
        None => reg.lt,
    };
    Some(Entry {
        path: format!("/rd/{}", r.id),
        reg,
        remaining_s,
    })
}

/// Whether registration `a` is newer than `b` (ids differ: LWW order on
/// version, then origin).
pub fn newer(a: &Record, b: &Record) -> bool {
    (a.version, &a.origin) > (b.version, &b.origin)
}

/// Whether `r` is the newest live registration of its (ep, d).
fn is_current(node: &NodeHandle, r: &Record, reg: &Registration, now_ms: u64) -> Result<bool, HandleError> {
    let key = Registration::epd(&reg.ep, &reg.d);
    let q = ListQuery {
        filters: vec![("epd", &key)],
        cursor: None,
        limit: Some(16.min(node.limits().list_limit_max)),
    };
    let page = node.list(REGISTRATION, &q)?;
    Ok(!page
        .records
        .iter()
        .any(|o| o.id != r.id && entry(o, now_ms).is_some() && newer(o, r)))
}

/// The index filter that narrows `q`'s candidates: an exact criterion if
/// there is one, else a prefix one (its first [`PREFIX_CHARS_MAX`]
/// characters); None: every registration is a candidate.
pub fn index_filter(q: &Query) -> Option<(&'static str, String)> {
    let plain = |v: &str| !v.contains(' ');
    let exact = q
        .criteria
        .iter()
        .find(|(n, v)| INDEXED.contains(&n.as_str()) && !v.ends_with('*') && plain(v));
    if let Some((n, v)) = exact {
        let f = INDEXED.iter().find(|f| **f == n.as_str())?;
        return Some((f, v.clone()));
    }
    q.criteria.iter().find_map(|(n, v)| {
        let stem = v.strip_suffix('*').filter(|s| !s.is_empty() && plain(s))?;
        let (_, field) = PREFIXED.iter().find(|(f, _)| *f == n.as_str())?;
        let end = stem.char_indices().nth(PREFIX_CHARS_MAX).map_or(stem.len(), |(i, _)| i);
        Some((*field, stem[..end].to_string()))
    })
}

/// Every live, current registration matching the query's indexable part.
fn candidates(node: &NodeHandle, q: &Query) -> Result<Vec<Entry>, LookupError> {
    let now = now_ms();
    let pick = index_filter(q);
    let filters: Vec<(&str, &str)> = pick.as_ref().map(|(n, v)| (*n, v.as_str())).into_iter().collect();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut read = 0usize;
    loop {
        let lq = ListQuery {
            filters: filters.clone(),
            cursor: cursor.as_deref(),
            limit: Some(node.limits().list_limit_max),
        };
        let page = node.list(REGISTRATION, &lq)?;
        read += page.records.len();
        if read > CANDIDATES_MAX {
            return Err(LookupError::TooMany);
        }
        for r in &page.records {
            if let Some(e) = entry(r, now) {
                if is_current(node, r, &e.reg, now)? {
                    out.push(e);
                }
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// The lookup's result as link format.
pub fn lookup(
    node: &NodeHandle,
    which: LookupKind,
    q: &Query,
    proxied: &[Arc<Vec<Proxied>>],
) -> Result<String, LookupError> {
    let entries = candidates(node, q)?;
    let mut lines: Vec<String> = Vec::new();
    match which {
        LookupKind::Endpoint => {
            for e in entries.iter().filter(|e| matching::endpoint_matches(q, e)) {
                let mut s = String::new();
                matching::write_endpoint(&mut s, q, e);
                lines.push(s);
            }
        }
        LookupKind::Resource => {
            for e in &entries {
                for l in matching::matching_links(q, e) {
                    let mut s = String::new();
                    matching::write_resource(&mut s, q, e, l);
                    lines.push(s);
                }
            }
            let now = std::time::Instant::now();
            for p in proxied
                .iter()
                .flat_map(|v| v.iter())
                .filter(|p| p.until > now && proxy::matches(q, p))
            {
                let mut s = String::new();
                proxy::write(&mut s, q, p);
                lines.push(s);
            }
        }
    }
    let (skip, take) = matching::window(q, lines.len());
    Ok(lines.into_iter().skip(skip).take(take).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::parse_query;

    fn filter(args: &[&str]) -> Option<(&'static str, String)> {
        let q = parse_query(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap();
        index_filter(&q)
    }

    #[test]
    fn prefix_criteria_use_the_prefix_index() {
        assert_eq!(filter(&["rt=temp*"]), Some(("rt_prefix", "temp".into())));
        assert_eq!(filter(&["ep=node*"]), Some(("ep_prefix", "node".into())));
        // An exact criterion narrows more and is preferred.
        assert_eq!(filter(&["rt=temp*", "if=sensor"]), Some(("if", "sensor".into())));
        // Longer stems use the longest indexed prefix; matching does the rest.
        assert_eq!(
            filter(&["rt=abcdefghijklmnopq*"]),
            Some(("rt_prefix", "abcdefghijkl".into()))
        );
        assert_eq!(filter(&["rt=*"]), None);
        assert_eq!(filter(&["href=/t*"]), None);
    }
}
