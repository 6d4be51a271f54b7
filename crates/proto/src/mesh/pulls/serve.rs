//! The page a responder answers a pull with (PROTOCOL.md, "Anti-entropy"):
//! how many records it reads, which it carries, where it stops (its own
//! mark, the byte budget) and through which seq it speaks. Must never carry
//! a record above the responder's own mark, nor one the puller's policy
//! hides (the caller's `export` says which).

use super::{PULL_PAGE_BYTES_MAX, PULL_PAGE_RECORDS_MAX};
use crate::policy::ExportPolicy;
use crate::sync as ae;
use crate::wire::pull::{PolicyNames, PullPage};
use regmesh_core::Record;

/// Records a responder reads for a pull that asked `asked`.
pub fn page_limit(asked: usize) -> usize {
    asked.clamp(1, PULL_PAGE_RECORDS_MAX)
}

/// The page answering a pull after `after`. `read`: the origin's versions
/// after `after` in seq order, at most [`page_limit`] of what was asked
/// (`limit`), as the store holds them. `our_mark`: our mark of the origin.
/// `export(r)`: the record's wire form and its size in bytes if the
/// puller's policy lets it see `r`, `None` if withheld. `purged_through`:
/// our purge mark of the origin; `policy`: what we send the puller.
pub fn serve_page<R>(
    after: u64,
    limit: usize,
    read: Vec<Record>,
    our_mark: u64,
    mut export: impl FnMut(&Record) -> Option<(R, usize)>,
    purged_through: u64,
    policy: &ExportPolicy,
) -> PullPage<R> {
    let mut more = read.len() >= page_limit(limit);
    let mut records = Vec::new();
    let mut bytes = 0usize;
    // The last seq this page speaks for (sent, or withheld by policy).
    let mut last = after;
    for r in &read {
        if !ae::page_carries(r.seq, our_mark) {
            more = false;
            break;
        }
        if bytes >= PULL_PAGE_BYTES_MAX {
            more = true;
            break;
        }
        if let Some((item, size)) = export(r) {
            bytes += size;
            records.push(item);
        }
        last = r.seq;
    }
    PullPage {
        records,
        covered_through: ae::page_covers(after, last, more, our_mark),
        more,
        purged_through,
        policy: Some(PolicyNames::from(policy)),
    }
}
