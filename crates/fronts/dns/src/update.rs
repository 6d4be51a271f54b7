//! Keeping RRsets at a server with RFC 2136 UPDATE signed with TSIG: read
//! what it serves for each wanted RRset (the NS set at the zone apex of a
//! primary or at the delegation in the parent, glue, and at a signing
//! primary DNSKEY, CDS, CDNSKEY, CSYNC), then one UPDATE that adds what is
//! missing before it deletes what is extra (so no set is ever empty), then
//! read it back. Also reads which keys a signing primary signs with.
//!
//! Every request is TSIG-signed and every answer's TSIG checked
//! ([`crate::net::exchange_signed`]): an answer that is not validly signed
//! is an error, never taken as the server's word.
//!
//! Must never: send an unsigned UPDATE, send one when every set already
//! matches, leave an NS set empty, or trust an answer whose TSIG does not
//! verify.

use crate::config::Server;
use crate::dnssec::{dnskey_to_text, rrsig_signer};
use crate::net::{exchange_signed, new_id, NetError};
use crate::wire::{self, Change, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// An update failed. The server's sets may or may not have changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{addr} answered rcode {rcode} to the UPDATE of {zone}")]
    Refused { addr: SocketAddr, zone: String, rcode: u8 },
}

/// One RRset to keep at a server: its owner, type, and the RDATA wanted
/// (canonical form: NS targets lower case, uncompressed). An empty NS set
/// is never applied; an empty set of another type deletes that RRset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub owner: String,
    pub rtype: u16,
    pub rdata: BTreeSet<Vec<u8>>,
}

/// What a server serves, per wanted RRset (same order as the wants).
pub type Served = Vec<BTreeSet<Vec<u8>>>;

/// An NS target's RDATA in canonical form.
pub fn ns_rdata(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    wire::name_wire(&name.to_ascii_lowercase(), &mut w);
    w
}

async fn query(server: &Server, owner: &str, rtype: u16, now_s: u64) -> Result<Response, NetError> {
    let q = wire::query(new_id(), owner, rtype, false);
    exchange_signed(server.addr, q, &server.key, now_s).await
}

/// The `rtype` records at `owner` in `r` (answer, referral or glue).
fn records_of(r: &Response, owner: &str, rtype: u16, addr: SocketAddr) -> Result<BTreeSet<Vec<u8>>, NetError> {
    let mut out = BTreeSet::new();
    for rr in r.answers.iter().chain(&r.authority).chain(&r.additional) {
        if rr.rtype != rtype || !wire::same_name(&rr.name, owner) {
            continue;
        }
        if rtype == wire::TYPE_NS {
            let n = wire::ns_target(&r.msg, rr).map_err(|e| NetError::Wire(e, addr))?;
            out.insert(ns_rdata(&n));
        } else {
            out.insert(rr.rdata.clone());
        }
    }
    Ok(out)
}

/// What `server` serves for `owner`/`rtype`; the query is signed and the
/// answer's TSIG checked.
pub async fn served(server: &Server, owner: &str, rtype: u16, now_s: u64) -> Result<BTreeSet<Vec<u8>>, NetError> {
    records_of(&query(server, owner, rtype, now_s).await?, owner, rtype, server.addr)
}

/// The NS set `server` serves at `owner`, lower case.
pub async fn served_ns(server: &Server, owner: &str, now_s: u64) -> Result<BTreeSet<String>, NetError> {
    Ok(served(server, owner, wire::TYPE_NS, now_s)
        .await?
        .iter()
        .filter_map(|r| wire::read_name(r, 0).ok().map(|(n, _)| n))
        .collect())
}

async fn served_all(server: &Server, wants: &[Want], now_s: u64) -> Result<Served, NetError> {
    let mut out = Vec::with_capacity(wants.len());
    for w in wants {
        out.push(served(server, &w.owner, w.rtype, now_s).await?);
    }
    Ok(out)
}

/// Makes `server` serve exactly each of `wants` in `zone`. Returns what it
/// serves, read back, and whether an UPDATE was sent.
pub async fn apply(
    server: &Server,
    zone: &str,
    wants: &[Want],
    ttl: u32,
    now_s: u64,
) -> Result<(Served, bool), UpdateError> {
    let have = served_all(server, wants, now_s).await?;
    let mut adds = Vec::new();
    let mut deletes = Vec::new();
    for (w, h) in wants.iter().zip(&have) {
        if w.rtype == wire::TYPE_NS && w.rdata.is_empty() {
            continue;
        }
        let change = |add: bool, rdata: &Vec<u8>| Change {
            add,
            name: w.owner.clone(),
            rtype: w.rtype,
            ttl,
            rdata: rdata.clone(),
        };
        adds.extend(w.rdata.difference(h).map(|r| change(true, r)));
        deletes.extend(h.difference(&w.rdata).map(|r| change(false, r)));
    }
    if adds.is_empty() && deletes.is_empty() {
        return Ok((have, false));
    }
    adds.append(&mut deletes);
    let m = wire::update(new_id(), zone, &adds);
    let r = exchange_signed(server.addr, m, &server.key, now_s).await?;
    if r.rcode != 0 {
        return Err(UpdateError::Refused {
            addr: server.addr,
            zone: zone.to_string(),
            rcode: r.rcode,
        });
    }
    Ok((served_all(server, wants, now_s).await?, true))
}

/// The DNSKEYs a signing primary signs `zone` with (text form): those
/// whose key tag made an RRSIG over its DNSKEY or SOA RRset there. Keys
/// it only pre-publishes are not among them.
pub async fn signer_keys(server: &Server, zone: &str, now_s: u64) -> Result<Vec<String>, NetError> {
    let keys = query(server, zone, wire::TYPE_DNSKEY, now_s).await?;
    let soa = query(server, zone, wire::TYPE_SOA, now_s).await?;
    let tags: BTreeMap<u16, u16> = keys
        .answers
        .iter()
        .chain(&soa.answers)
        .filter(|rr| rr.rtype == wire::TYPE_RRSIG && wire::same_name(&rr.name, zone))
        .filter_map(|rr| rrsig_signer(&rr.rdata))
        .map(|(covered, tag)| (tag, covered))
        .collect();
    let mut own: Vec<String> = records_of(&keys, zone, wire::TYPE_DNSKEY, server.addr)?
        .iter()
        .filter(|k| tags.contains_key(&crate::dnssec::key_tag(k)))
        .map(|k| dnskey_to_text(k))
        .collect();
    own.sort();
    Ok(own)
}
