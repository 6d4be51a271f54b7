//! The page a responder answers a pull with (PROTOCOL.md, "Anti-entropy"):
//! how many records it reads, which it carries, where it stops (its own
//! mark, the byte budget), through which seq it speaks, and, on a page
//! that stops at its mark, which keys it holds above that mark. Must never
//! carry a record above the responder's own mark, nor carry or name one
//! the puller's policy hides (the caller's `export` says which).

use super::{HELD_ABOVE_NAMES_MAX, PULL_PAGE_BYTES_MAX, PULL_PAGE_RECORDS_MAX};
use crate::policy::ExportPolicy;
use crate::sync as ae;
use crate::wire::pull::{KeyName, PolicyNames, PullPage};
use regmesh_core::Record;

/// Records a responder reads for a pull that asked `asked`.
pub fn page_limit(asked: usize) -> usize {
    asked.clamp(1, PULL_PAGE_RECORDS_MAX)
}

/// The page answering a pull after `after`. `read(after, n)`: the origin's
/// versions after `after` in seq order, at most `n`, as the store holds
/// them (called for the page with [`page_limit`] of what was asked,
/// `limit`, and, if the page stops at our mark, once more for what we hold
/// above it). `our_mark`: our mark of the origin. `export(r)`: the
/// record's wire form and its size in bytes if the puller's policy lets it
/// see `r`, `None` if withheld. `purged_through`: our purge mark of the
/// origin; `policy`: what we send the puller. A failed read fails the page.
pub fn serve_page<R, E>(
    after: u64,
    limit: usize,
    mut read: impl FnMut(u64, usize) -> Result<Vec<Record>, E>,
    our_mark: u64,
    mut export: impl FnMut(&Record) -> Option<(R, usize)>,
    purged_through: u64,
    policy: &ExportPolicy,
) -> Result<PullPage<R>, E> {
    let page_read = read(after, page_limit(limit))?;
    let mut more = page_read.len() >= page_limit(limit);
    let mut records = Vec::new();
    let mut bytes = 0usize;
    // The last seq this page speaks for (sent, or withheld by policy).
    let mut last = after;
    let mut at_mark = false;
    for r in &page_read {
        if !ae::page_carries(r.seq, our_mark) {
            more = false;
            at_mark = true;
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
    // What we hold above our mark the page cannot carry (a later deletion
    // may have passed us by), but a resync must not take its absence for a
    // deletion: name it, if the puller may see it.
    let (mut held_above, mut held_above_more) = (Vec::new(), false);
    if at_mark {
        let above = read(our_mark, HELD_ABOVE_NAMES_MAX + 1)?;
        held_above_more = above.len() > HELD_ABOVE_NAMES_MAX;
        for r in above.into_iter().take(HELD_ABOVE_NAMES_MAX) {
            if export(&r).is_some() {
                held_above.push(KeyName { kind: r.kind, id: r.id });
            }
        }
    }
    Ok(PullPage {
        records,
        covered_through: ae::page_covers(after, last, more, our_mark),
        more,
        purged_through,
        policy: Some(PolicyNames::from(policy)),
        held_above,
        held_above_more,
    })
}
