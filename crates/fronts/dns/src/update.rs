//! Applying an NS set to a server with RFC 2136 UPDATE signed with TSIG:
//! read the NS set it serves at `owner` (the zone apex at a primary, the
//! delegation at the parent), then one UPDATE that adds what is missing
//! before it deletes what is extra (so the set is never empty), then read
//! it back.
//!
//! Must never: send an unsigned UPDATE, or send one when the set already
//! matches.

use crate::config::Server;
use crate::net::{exchange, new_id, NetError};
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

/// The NS set `addr` serves at `owner` (answer or referral), lower case.
pub async fn served_ns(addr: SocketAddr, owner: &str) -> Result<BTreeSet<String>, NetError> {
    let r = exchange(addr, &wire::query(new_id(), owner, wire::TYPE_NS, false)).await?;
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
    let have = served_ns(server.addr, owner).await?;
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
    let mut m = wire::update(new_id(), zone, &changes);
    wire::tsig_sign(&mut m, &server.key, now_s);
    let r = exchange(server.addr, &m).await?;
    if r.rcode != 0 {
        return Err(UpdateError::Refused {
            addr: server.addr,
            zone: zone.to_string(),
            rcode: r.rcode,
        });
    }
    Ok((served_ns(server.addr, owner).await?, true))
}
