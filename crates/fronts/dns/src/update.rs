//! Applying an NS set to a server with RFC 2136 UPDATE signed with TSIG:
//! read the NS set it serves at `owner` (the zone apex at a primary, the
//! delegation at the parent), then one UPDATE that adds what is missing
//! before it deletes what is extra (so the set is never empty), then read
//! it back. Every request is TSIG-signed and every answer's TSIG checked
//! ([`crate::net::exchange_signed`]): an answer that is not validly signed
//! is an error, never taken as the server's word.
//!
//! Must never: send an unsigned UPDATE, send one when the set already
//! matches, or trust an answer whose TSIG does not verify.

use crate::config::Server;
use crate::net::{exchange_signed, new_id, NetError};
use crate::wire::{self, Change};
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// An update failed. The server's set may or may not have changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{addr} answered rcode {rcode} to the UPDATE of {zone}")]
    Refused { addr: SocketAddr, zone: String, rcode: u8 },
}

/// The NS set `server` serves at `owner` (answer or referral), lower
/// case; the query is signed and the answer's TSIG checked.
pub async fn served_ns(server: &Server, owner: &str, now_s: u64) -> Result<BTreeSet<String>, NetError> {
    let addr = server.addr;
    let q = wire::query(new_id(), owner, wire::TYPE_NS, false);
    let r = exchange_signed(addr, q, &server.key, now_s).await?;
    let mut out = BTreeSet::new();
    for rr in r.answers.iter().chain(&r.authority) {
        if rr.rtype == wire::TYPE_NS && wire::same_name(&rr.name, owner) {
            let n = wire::ns_target(&r.msg, rr).map_err(|e| NetError::Wire(e, addr))?;
            out.insert(n.to_ascii_lowercase());
        }
    }
    Ok(out)
}

/// Makes `server` serve exactly `want` as NS of `owner` in `zone`. Returns
/// the set read back and whether an UPDATE was sent.
pub async fn apply(
    server: &Server,
    zone: &str,
    owner: &str,
    want: &BTreeSet<String>,
    ttl: u32,
    now_s: u64,
) -> Result<(BTreeSet<String>, bool), UpdateError> {
    let have = served_ns(server, owner, now_s).await?;
    if &have == want || want.is_empty() {
        return Ok((have, false));
    }
    let rdata = |n: &str| {
        let mut w = Vec::new();
        wire::name_wire(n, &mut w);
        w
    };
    let mut changes: Vec<Change> = want
        .difference(&have)
        .map(|n| Change {
            add: true,
            name: owner.to_string(),
            rtype: wire::TYPE_NS,
            ttl,
            rdata: rdata(n),
        })
        .collect();
    changes.extend(have.difference(want).map(|n| Change {
        add: false,
        name: owner.to_string(),
        rtype: wire::TYPE_NS,
        ttl: 0,
        rdata: rdata(n),
    }));
    let m = wire::update(new_id(), zone, &changes);
    let r = exchange_signed(server.addr, m, &server.key, now_s).await?;
    if r.rcode != 0 {
        return Err(UpdateError::Refused {
            addr: server.addr,
            zone: zone.to_string(),
            rcode: r.rcode,
        });
    }
    Ok((served_ns(server, owner, now_s).await?, true))
}
