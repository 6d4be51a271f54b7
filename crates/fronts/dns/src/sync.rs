//! What the agent keeps in step for one zone, once every peer is
//! OPERATIONAL: this provider's contribution record (its nameservers, their
//! glue, and, when its HSYNC record says SIGN, the keys its primary signs
//! with), the union of every HSYNC member's newest contribution, and the
//! RRsets that union means at its primary and, as the leader, the parent:
//! - at every primary: the apex NS set, glue (A) for the nameservers
//!   inside the zone, and CSYNC (immediate; A, NS, AAAA) asking the parent
//!   to copy them (RFC 7477);
//! - at a signing primary also (RFC 8901 model 2, RFC 7344/8078): every
//!   signer's DNSKEYs, and CDS and CDNSKEY for every signer's KSK, the same
//!   set at every provider;
//! - at the parent: the delegation's NS set and its glue. DS stays the
//!   parent's to take from the published CDS.
//!
//! Must never: apply a union while a peer is not OPERATIONAL (the caller
//! checks `waiting`), take DNSKEYs from an identity whose HSYNC record is
//! not SIGN, or remove the keys the primary signs with.

use crate::dnssec::{cds_of, csync_rdata, dnskey_from_text, in_zone, is_sep, rdata_text};
use crate::kind::{record_id, Contribution, NsKind, NS_KIND};
use crate::messages::{self, Ctx};
use crate::state::{now_ms, Applied, PeerView};
use crate::update::{self, ns_rdata, Served, UpdateError, Want};
use crate::wire::{self, same_name};
use regmesh_core::Kind;
use regmesh_node::handle::{ListQuery, PeerState};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The union of the contributions of every identity in HSYNC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Union {
    pub ns: BTreeSet<String>,
    pub glue: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// DNSKEYs of the signing providers, text form.
    pub dnskey: BTreeSet<String>,
}

/// Writes this provider's contribution record if it differs from what is
/// wanted, and NOTIFYs every introduced agent at once. A signer's keys
/// are read from its primary first (kept as they were if it cannot be
/// read).
pub async fn own_contribution(ctx: &Ctx, zone: &str) {
    let (own, glue, signer) = match ctx.shared.lock().get(zone) {
        Some(z) => (z.own.clone(), z.own_glue.clone(), z.signer),
        None => return,
    };
    let keys = if signer {
        match update::signer_keys(&ctx.cfg.primary, zone, now_ms() / 1000).await {
            Ok(k) => {
                if let Some(z) = ctx.shared.lock().get_mut(zone) {
                    z.own_keys = k.clone();
                }
                k
            }
            Err(e) => {
                tracing::warn!(zone, error = %e, "reading the keys this provider signs with");
                ctx.shared
                    .lock()
                    .get(zone)
                    .map(|z| z.own_keys.clone())
                    .unwrap_or_default()
            }
        }
    } else {
        Vec::new()
    };
    let id = record_id(zone, ctx.node.center_id());
    let current: Option<Contribution> = ctx
        .node
        .get(NS_KIND, &id)
        .ok()
        .flatten()
        .filter(|r| !r.deleted)
        .and_then(|r| serde_json::from_str(&r.body).ok());
    let want = Contribution {
        zone: zone.to_string(),
        identity: ctx.cfg.identity.clone(),
        ns: own,
        serial_ms: now_ms(),
        glue,
        dnskey: keys,
    };
    let want = match want.checked() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(zone, error = %e, "this provider's contribution is refused by its own policy");
            return;
        }
    };
    let same = |c: &Contribution| {
        c.ns == want.ns && c.glue == want.glue && c.dnskey == want.dnskey && same_name(&c.identity, &want.identity)
    };
    let c = match current {
        Some(c) if same(&c) => c,
        _ => {
            let Ok(p) = NsKind.prepare(&id, serde_json::to_value(&want).expect("serializes")) else {
                return;
            };
            if let Err(e) = ctx.node.put(NS_KIND, &id, p, None).await {
                tracing::warn!(zone, error = %e, "writing this provider's contribution");
                return;
            }
            messages::broadcast(ctx, zone, messages::NS, json!({"zone": zone, "contribution": want}));
            want
        }
    };
    if let Some(z) = ctx.shared.lock().get_mut(zone) {
        z.contributions.insert(ctx.cfg.identity.clone(), c);
    }
}

/// The union of the contributions of every identity in HSYNC (`signers`:
/// those whose record says SIGN, lower case), or why it must not be
/// applied now.
pub fn union_of(
    ctx: &Ctx,
    zone: &str,
    ids: &[String],
    signers: &BTreeSet<String>,
    views: &BTreeMap<String, PeerView>,
) -> (Union, Option<String>) {
    let mut waiting = None;
    let mut by_center: BTreeMap<String, Contribution> = BTreeMap::new();
    let q = ListQuery {
        filters: vec![("zone", zone)],
        cursor: None,
        limit: None,
    };
    if let Ok(page) = ctx.node.list(NS_KIND, &q) {
        for r in page.records {
            if let Ok(c) = serde_json::from_str::<Contribution>(&r.body) {
                by_center.insert(r.origin.clone(), c);
            }
        }
    }
    let mut zones = ctx.shared.lock();
    let Some(z) = zones.get_mut(zone) else {
        return (Union::default(), Some("zone gone".into()));
    };
    let mut union = Union::default();
    let mut add = |id: &str, c: &Contribution| {
        union.ns.extend(c.ns.iter().cloned());
        for (n, a) in &c.glue {
            union.glue.entry(n.clone()).or_default().extend(a.iter().copied());
        }
        if signers.contains(&id.to_ascii_lowercase()) {
            union.dnskey.extend(c.dnskey.iter().cloned());
        }
    };
    for id in ids {
        if same_name(id, &ctx.cfg.identity) {
            if let Some(c) = z.contributions.get(id) {
                add(id, c);
            }
            continue;
        }
        let v = views.get(id);
        if waiting.is_none() && v.is_none_or(|v| v.state != PeerState::Operational) {
            let state = v.map_or(PeerState::Needed, |v| v.state).as_str();
            waiting = Some(format!("{id} is {state}, not OPERATIONAL"));
        }
        let from_record = v
            .and_then(|v| v.center.as_ref())
            .and_then(|c| by_center.get(c))
            .filter(|c| same_name(&c.identity, id))
            .cloned();
        let best = match (from_record, z.notified.get(id).cloned()) {
            (Some(a), Some(b)) => Some(if b.serial_ms > a.serial_ms { b } else { a }),
            (a, b) => a.or(b),
        };
        match best {
            Some(c) => {
                add(id, &c);
                z.contributions.insert(id.clone(), c);
            }
            None => {
                z.contributions.remove(id);
                if waiting.is_none() {
                    waiting = Some(format!("no contribution from {id} yet"));
                }
            }
        }
    }
    z.contributions.retain(|i, _| ids.contains(i));
    z.union = union.ns.iter().cloned().collect();
    z.union_glue = union
        .glue
        .iter()
        .map(|(n, a)| (n.clone(), a.iter().copied().collect()))
        .collect();
    z.union_dnskey = union.dnskey.iter().cloned().collect();
    (union, waiting)
}

fn want(owner: &str, rtype: u16, rdata: impl IntoIterator<Item = Vec<u8>>) -> Want {
    Want {
        owner: owner.to_string(),
        rtype,
        rdata: rdata.into_iter().collect(),
    }
}

/// Glue RRsets: the union's, and an empty one (delete) for each name
/// inside the zone that `applied` still lists but the union does not.
fn glue_wants(zone: &str, union: &Union, applied: &Applied) -> Vec<Want> {
    let mut out: Vec<Want> = union
        .glue
        .iter()
        .filter(|(n, _)| union.ns.contains(*n))
        .map(|(n, a)| want(n, wire::TYPE_A, a.iter().map(|ip| ip.octets().to_vec())))
        .collect();
    for n in &applied.ns {
        if in_zone(n, zone) && !union.ns.contains(n) {
            out.push(want(n, wire::TYPE_A, []));
        }
    }
    out
}

/// The RRsets the union means at this provider's primary.
pub fn primary_wants(zone: &str, union: &Union, signer: bool, own_keys: &[String], applied: &Applied) -> Vec<Want> {
    let mut w = vec![want(zone, wire::TYPE_NS, union.ns.iter().map(|n| ns_rdata(n)))];
    w.extend(glue_wants(zone, union, applied));
    w.push(want(zone, wire::TYPE_CSYNC, [csync_rdata()]));
    if signer && !union.dnskey.is_empty() {
        let keys: BTreeSet<Vec<u8>> = union
            .dnskey
            .iter()
            .chain(own_keys)
            .filter_map(|k| dnskey_from_text(k).ok())
            .collect();
        let ksks: Vec<Vec<u8>> = keys.iter().filter(|k| is_sep(k)).cloned().collect();
        w.push(want(zone, wire::TYPE_CDS, ksks.iter().filter_map(|k| cds_of(zone, k))));
        w.push(want(zone, wire::TYPE_CDNSKEY, ksks));
        w.push(want(zone, wire::TYPE_DNSKEY, keys));
    }
    w
}

/// The RRsets the union means at the parent: the delegation and its glue.
pub fn parent_wants(zone: &str, union: &Union, applied: &Applied) -> Vec<Want> {
    let mut w = vec![want(zone, wire::TYPE_NS, union.ns.iter().map(|n| ns_rdata(n)))];
    w.extend(glue_wants(zone, union, applied));
    w
}

/// Applies the union at the primary and, as the leader, at the parent.
pub async fn apply_all(ctx: &Ctx, zone: &str, union: &Union) {
    let now_s = now_ms() / 1000;
    let (signer, own_keys, leader, at_primary, at_parent) = match ctx.shared.lock().get(zone) {
        Some(z) => (
            z.signer,
            z.own_keys.clone(),
            z.leader.clone(),
            z.primary.clone(),
            z.parent.clone().unwrap_or_default(),
        ),
        None => return,
    };
    let wants = primary_wants(zone, union, signer, &own_keys, &at_primary);
    let r = update::apply(&ctx.cfg.primary, zone, &wants, ctx.cfg.ns_ttl_s, now_s).await;
    record(ctx, zone, false, &wants, r);
    if let (Some(parent), Some(l)) = (&ctx.cfg.parent, leader) {
        if same_name(&l, &ctx.cfg.identity) {
            let pz = parent_zone(zone);
            let wants = parent_wants(zone, union, &at_parent);
            let r = update::apply(parent, &pz, &wants, ctx.cfg.ns_ttl_s, now_s).await;
            record(ctx, zone, true, &wants, r);
        }
    }
}

fn record(ctx: &Ctx, zone: &str, parent: bool, wants: &[Want], r: Result<(Served, bool), UpdateError>) {
    let mut zones = ctx.shared.lock();
    let Some(z) = zones.get_mut(zone) else { return };
    let slot = if parent {
        z.parent.get_or_insert_with(Applied::default)
    } else {
        &mut z.primary
    };
    match r {
        Ok((served, sent)) => {
            let mut records = BTreeMap::new();
            let mut ns = Vec::new();
            for (w, s) in wants.iter().zip(served) {
                let texts: Vec<String> = s.iter().map(|r| rdata_text(w.rtype, r)).collect();
                if w.rtype == wire::TYPE_NS && same_name(&w.owner, zone) {
                    ns = texts;
                } else if !texts.is_empty() {
                    records.insert(format!("{} {}", w.owner, type_name(w.rtype)), texts);
                }
            }
            if sent {
                tracing::info!(zone, parent, ns = ?ns, "NS set and its records updated");
                slot.updated_ms = Some(now_ms());
            }
            slot.ns = ns;
            slot.records = records;
            slot.error = None;
        }
        Err(e) => slot.error = Some(e.to_string()),
    }
}

fn type_name(t: u16) -> &'static str {
    match t {
        wire::TYPE_A => "A",
        wire::TYPE_NS => "NS",
        wire::TYPE_DNSKEY => "DNSKEY",
        wire::TYPE_CDS => "CDS",
        wire::TYPE_CDNSKEY => "CDNSKEY",
        wire::TYPE_CSYNC => "CSYNC",
        _ => "OTHER",
    }
}

/// The zone one label up (`example.lab.` → `lab.`).
pub fn parent_zone(zone: &str) -> String {
    match zone.trim_end_matches('.').split_once('.') {
        Some((_, p)) => format!("{p}."),
        None => ".".into(),
    }
}
