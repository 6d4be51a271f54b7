//! The agent's loop, once per interval or when woken (a NOTIFY, an API
//! change): check the trust anchor; per zone read HSYNC, discover and
//! introduce each other identity, derive its lifecycle state from the
//! mesh's, keep this provider's contribution record current (NOTIFY on
//! change), and apply the union of contributions to the primary (and, as
//! the elected leader, to the parent) only while every peer of the zone is
//! OPERATIONAL; start an election when the zone has no leader.
//!
//! Must never: apply anything for a zone whose HSYNC does not list this
//! agent, or while a peer of the zone is not OPERATIONAL.

use crate::config::read_anchor;
use crate::discovery::{self, Refusal};
use crate::election::Phase;
use crate::kind::{record_id, Contribution, NsKind, NS_KIND};
use crate::messages::{self, Ctx};
use crate::state::{now_ms, Applied, PeerView, ZoneState};
use crate::wire::same_name;
use regmesh_core::Kind;
use regmesh_node::handle::{ListQuery, PeerState};
use regmesh_node::messages::PeerVerb;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Ticks between re-discoveries of an identity already KNOWN.
const REDISCOVER_TICKS: u64 = 5;
/// Invalid elections in a row after which the initiator stops retrying.
pub const ELECTION_ATTEMPTS_MAX: u32 = 5;
/// Intervals an election may wait for every vote; then this agent sends
/// ELECTION-INVALID (a vote was lost, e.g. sent before the voter was
/// introduced here).
const ELECTION_VOTING_INTERVALS: u64 = 3;

/// Runs the agent until the node closes.
pub async fn run(ctx: Ctx) {
    {
        let mut zones = ctx.shared.lock();
        for z in &ctx.cfg.zones {
            zones.entry(z.clone()).or_insert_with(|| ZoneState {
                own: ctx.cfg.contributions.get(z).cloned().unwrap_or_default(),
                ..ZoneState::default()
            });
        }
    }
    let mut closing = ctx.node.closing();
    let mut tick = 0u64;
    let mut attempts: BTreeMap<String, Attempts> = BTreeMap::new();
    loop {
        tick += 1;
        let anchor = check_anchor(&ctx).await;
        for zone in ctx.cfg.zones.clone() {
            if let Err(r) = &anchor {
                refuse(&ctx, &zone, r.to_string());
                continue;
            }
            zone_step(&ctx, &zone, tick, &mut attempts).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ctx.cfg.interval_ms)) => {}
            _ = ctx.shared.wake.notified() => {}
            _ = closing.changed() => return,
        }
    }
}

async fn check_anchor(ctx: &Ctx) -> Result<(), Refusal> {
    let file = ctx.cfg.trust_anchor.display().to_string();
    let text =
        std::fs::read_to_string(&ctx.cfg.trust_anchor).map_err(|e| Refusal::TrustAnchor(format!("{file} ({e})")))?;
    discovery::check_anchor(ctx.cfg.resolver, &read_anchor(&text), &file).await
}

fn refuse(ctx: &Ctx, zone: &str, why: String) {
    if let Some(z) = ctx.shared.lock().get_mut(zone) {
        if z.refused.as_deref() != Some(why.as_str()) {
            tracing::warn!(zone, reason = %why, "dns agent refuses the zone");
        }
        z.refused = Some(why);
        z.peers.clear();
        z.waiting = None;
    }
}

async fn zone_step(ctx: &Ctx, zone: &str, tick: u64, attempts: &mut BTreeMap<String, Attempts>) {
    let me = ctx.cfg.identity.clone();
    let hs = match discovery::hsync(ctx.cfg.resolver, zone).await {
        Ok(h) => h,
        Err(r) => return refuse(ctx, zone, format!("HSYNC: {r}")),
    };
    let ids: Vec<String> = hs.iter().filter(|h| h.state == 1).map(|h| h.identity.clone()).collect();
    if !ids.iter().any(|i| same_name(i, &me)) {
        return refuse(ctx, zone, Refusal::NotInHsync(me).to_string());
    }
    let others: Vec<String> = ids.iter().filter(|i| !same_name(i, &me)).cloned().collect();
    let mut views: BTreeMap<String, PeerView> = {
        let mut zones = ctx.shared.lock();
        let Some(z) = zones.get_mut(zone) else { return };
        z.refused = None;
        z.hsync = ids.clone();
        z.peers.retain(|i, _| others.contains(i));
        z.peers.clone()
    };
    let mesh: BTreeMap<String, PeerState> = ctx.node.peers().into_iter().map(|p| (p.id, p.state)).collect();
    for id in &others {
        let v = views.entry(id.clone()).or_default();
        if v.center.is_none() || v.reason.is_some() || tick >= v.discovered_tick + REDISCOVER_TICKS {
            v.discovered_tick = tick;
            match discovery::discover(ctx.cfg.resolver, id).await {
                Ok(f) => {
                    if v.center.as_deref() != Some(f.center.as_str()) {
                        v.introduced = false;
                    }
                    v.center = Some(f.center);
                    v.addr = Some(f.addr.to_string());
                    v.reason = None;
                }
                Err(Refusal::Unreachable(why)) if v.center.is_some() => v.reason = Some(why),
                Err(r) => {
                    *v = PeerView::new();
                    v.discovered_tick = tick;
                    v.reason = Some(r.to_string());
                    continue;
                }
            }
        }
        let center = v.center.clone().expect("discovered");
        if !mesh.contains_key(&center) {
            v.state = PeerState::Known;
            v.introduced = false;
            v.reason = Some(format!("center {center} is not a peer of this center's mesh"));
            continue;
        }
        if !v.introduced {
            // Store the binding first: the peer's HELLO to us may cross ours.
            set_view(ctx, zone, id, v);
            let ans = ctx
                .node
                .send(
                    &center,
                    PeerVerb::Rfi,
                    messages::HELLO,
                    json!({"zone": zone, "identity": me}),
                )
                .await;
            match ans {
                Ok(a) if a.accepted => {
                    let theirs = a.data.as_ref().and_then(|d| d["identity"].as_str()).unwrap_or("");
                    if same_name(theirs, id) {
                        v.introduced = true;
                        v.reason = None;
                    } else {
                        v.reason = Some(format!("HELLO answered as {theirs:?}, not {id}"));
                    }
                }
                Ok(a) => v.reason = Some(format!("HELLO rejected: {}", a.reason.unwrap_or_default())),
                Err(e) => v.reason = Some(format!("HELLO: {e}")),
            }
        }
        v.state = match (v.introduced, mesh.get(&center)) {
            (false, _) => PeerState::Known,
            (true, Some(s @ (PeerState::Operational | PeerState::Degraded | PeerState::Interrupted))) => *s,
            (true, _) => PeerState::Introduced,
        };
    }
    {
        let mut zones = ctx.shared.lock();
        if let Some(z) = zones.get_mut(zone) {
            z.peers = views.clone();
            // A leader that is not OPERATIONAL may have restarted and
            // forgotten it leads: elect again once all are back.
            let lost = z
                .leader
                .as_ref()
                .is_some_and(|l| !same_name(l, &me) && views.get(l).is_none_or(|v| v.state != PeerState::Operational));
            if lost {
                z.leader = None;
            }
        }
    }
    own_contribution(ctx, zone).await;
    let (union, waiting) = union_of(ctx, zone, &ids, &views);
    {
        let mut zones = ctx.shared.lock();
        if let Some(z) = zones.get_mut(zone) {
            z.union = union.iter().cloned().collect();
            z.waiting = waiting.clone();
        }
    }
    expire_election(ctx, zone);
    if waiting.is_none() {
        apply_all(ctx, zone, &union).await;
        maybe_elect(ctx, zone, &ids, attempts);
    }
}

fn set_view(ctx: &Ctx, zone: &str, id: &str, v: &PeerView) {
    if let Some(z) = ctx.shared.lock().get_mut(zone) {
        z.peers.insert(id.to_string(), v.clone());
    }
}

/// Writes this provider's contribution record if it differs from what is
/// wanted, and NOTIFYs every introduced agent at once.
async fn own_contribution(ctx: &Ctx, zone: &str) {
    let own = match ctx.shared.lock().get(zone) {
        Some(z) => z.own.clone(),
        None => return,
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
    };
    let Ok(want) = want.checked() else { return };
    let c = match current {
        Some(c) if c.ns == want.ns && same_name(&c.identity, &want.identity) => c,
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

/// The union of the contributions of every identity in HSYNC, or why it
/// must not be applied now.
fn union_of(
    ctx: &Ctx,
    zone: &str,
    ids: &[String],
    views: &BTreeMap<String, PeerView>,
) -> (BTreeSet<String>, Option<String>) {
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
        return (BTreeSet::new(), Some("zone gone".into()));
    };
    let mut union = BTreeSet::new();
    for id in ids {
        if same_name(id, &ctx.cfg.identity) {
            if let Some(c) = z.contributions.get(id) {
                union.extend(c.ns.iter().cloned());
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
                union.extend(c.ns.iter().cloned());
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
    (union, waiting)
}

async fn apply_all(ctx: &Ctx, zone: &str, union: &BTreeSet<String>) {
    let now_s = now_ms() / 1000;
    let r = crate::update::apply(&ctx.cfg.primary, zone, zone, union, ctx.cfg.ns_ttl_s, now_s).await;
    record(ctx, zone, false, r);
    let leader = ctx.shared.lock().get(zone).and_then(|z| z.leader.clone());
    if let (Some(parent), Some(l)) = (&ctx.cfg.parent, leader) {
        if same_name(&l, &ctx.cfg.identity) {
            let pz = parent_zone(zone);
            let r = crate::update::apply(parent, &pz, zone, union, ctx.cfg.ns_ttl_s, now_s).await;
            record(ctx, zone, true, r);
        }
    }
}

fn record(ctx: &Ctx, zone: &str, parent: bool, r: Result<(BTreeSet<String>, bool), crate::update::UpdateError>) {
    let mut zones = ctx.shared.lock();
    let Some(z) = zones.get_mut(zone) else { return };
    let slot = if parent {
        z.parent.get_or_insert_with(Applied::default)
    } else {
        &mut z.primary
    };
    match r {
        Ok((ns, sent)) => {
            if sent {
                tracing::info!(zone, parent, ns = ?ns, "NS set updated");
                slot.updated_ms = Some(now_ms());
            }
            slot.ns = ns.into_iter().collect();
            slot.error = None;
        }
        Err(e) => slot.error = Some(e.to_string()),
    }
}

/// Invalidates an election that has waited too long for a vote.
fn expire_election(ctx: &Ctx, zone: &str) {
    let limit_ms = ELECTION_VOTING_INTERVALS * ctx.cfg.interval_ms;
    let now = now_ms();
    let expired = {
        let mut zones = ctx.shared.lock();
        let Some(e) = zones.get_mut(zone).and_then(|z| z.election.as_mut()) else {
            return;
        };
        if e.phase != Phase::Voting || now <= e.started_ms + limit_ms {
            return;
        }
        let missing: Vec<String> = e
            .participants
            .iter()
            .filter(|p| !e.votes.contains_key(*p))
            .cloned()
            .collect();
        let s = e.invalidate(format!("no vote from {} within {limit_ms} ms", missing.join(", ")));
        (e.id.clone(), s)
    };
    messages::after(ctx, zone, &expired.0, expired.1);
}

/// The zone one label up (`example.lab.` → `lab.`).
pub fn parent_zone(zone: &str) -> String {
    match zone.trim_end_matches('.').split_once('.') {
        Some((_, p)) => format!("{p}."),
        None => ".".into(),
    }
}

/// Elections started by this agent for one zone.
#[derive(Debug, Default, Clone, Copy)]
struct Attempts {
    /// Invalid elections in a row.
    count: u32,
    last_start_ms: u64,
    /// Since when the zone has had no leader here.
    leaderless_since_ms: Option<u64>,
}

/// Starts an election when the zone has no leader: the first identity
/// (case-insensitive order) at once, any other after three intervals
/// without a leader (the first may not know the leader is gone, e.g. a
/// leader that restarted). After an invalid one only the first retries,
/// two intervals later, at most [`ELECTION_ATTEMPTS_MAX`] times in a row.
fn maybe_elect(ctx: &Ctx, zone: &str, ids: &[String], attempts: &mut BTreeMap<String, Attempts>) {
    let first = ids
        .iter()
        .min_by_key(|i| i.to_ascii_lowercase())
        .is_some_and(|f| same_name(f, &ctx.cfg.identity));
    let now = now_ms();
    let interval = ctx.cfg.interval_ms;
    let (leader_ok, phase, started) = match ctx.shared.lock().get(zone) {
        Some(z) => (
            z.leader.as_ref().is_some_and(|l| ids.iter().any(|i| same_name(i, l))),
            z.election.as_ref().map(|e| e.phase),
            z.election.as_ref().map(|e| e.started_ms).unwrap_or(0),
        ),
        None => return,
    };
    let a = attempts.entry(zone.to_string()).or_default();
    if leader_ok {
        *a = Attempts::default();
        return;
    }
    let since = *a.leaderless_since_ms.get_or_insert(now);
    let long = now > since + 3 * interval && now > a.last_start_ms + 3 * interval;
    let go = match phase {
        None | Some(Phase::Decided) => first || long,
        Some(Phase::Voting) => now > started + 5 * interval && (first || long),
        Some(Phase::Invalid) => first && a.count < ELECTION_ATTEMPTS_MAX && now > a.last_start_ms + 2 * interval,
    };
    if go {
        a.count += 1;
        a.last_start_ms = now;
        messages::start_election(ctx, zone);
    }
}
