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
use crate::messages::{self, Ctx};
use crate::state::{now_ms, PeerView, ZoneState};
use crate::sync;
use crate::wire::same_name;
use regmesh_node::handle::{AddPeerError, PeerState};
use regmesh_node::messages::PeerVerb;
use regmesh_node::peer::mesh::AddPeerError as MeshAddPeerError;
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
                own_glue: crate::config::glue_for(
                    &ctx.cfg.glue,
                    z,
                    ctx.cfg.contributions.get(z).map(Vec::as_slice).unwrap_or_default(),
                ),
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
    let signers: BTreeSet<String> = hs
        .iter()
        .filter(|h| h.state == 1 && h.sign == 1)
        .map(|h| h.identity.to_ascii_lowercase())
        .collect();
    let others: Vec<String> = ids.iter().filter(|i| !same_name(i, &me)).cloned().collect();
    let mut views: BTreeMap<String, PeerView> = {
        let mut zones = ctx.shared.lock();
        let Some(z) = zones.get_mut(zone) else { return };
        z.refused = None;
        z.hsync = ids.clone();
        z.signer = signers.contains(&me.to_ascii_lowercase());
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
                    v.record_key = f.record_key;
                    v.pin = Some(f.pin);
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
            if let Err(why) = join(ctx, &center, v) {
                v.reason = Some(why);
                continue;
            }
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
    sync::own_contribution(ctx, zone).await;
    let (union, waiting) = sync::union_of(ctx, zone, &ids, &signers, &views);
    if let Some(z) = ctx.shared.lock().get_mut(zone) {
        z.waiting = waiting.clone();
    }
    expire_election(ctx, zone);
    if waiting.is_none() {
        sync::apply_all(ctx, zone, &union).await;
        maybe_elect(ctx, zone, &ids, attempts);
    }
}

/// Makes `center`, found from DNS alone, a peer of this center's mesh:
/// trusted by the SPKI pin its validated TLSA gave and by the record key
/// in that certificate (no `[[peers]]`, no shared CA). The error is the
/// reason shown for the peer.
fn join(ctx: &Ctx, center: &str, v: &PeerView) -> Result<(), String> {
    let (Some(addr), Some(pin), Some(key)) = (&v.addr, v.pin, &v.record_key) else {
        return Err(format!(
            "center {center} is not a peer of this center's mesh, and its certificate has no Ed25519 record key"
        ));
    };
    match ctx.node.add_peer(center, &format!("https://{addr}"), pin, key) {
        Ok(()) => {
            tracing::info!(center, %addr, "dns agent: peer found from DNS joins the mesh");
            Ok(())
        }
        Err(AddPeerError::Refused(MeshAddPeerError::Duplicate(_))) => Ok(()),
        Err(e) => Err(format!("center {center} cannot join this center's mesh: {e}")),
    }
}

fn set_view(ctx: &Ctx, zone: &str, id: &str, v: &PeerView) {
    if let Some(z) = ctx.shared.lock().get_mut(zone) {
        z.peers.insert(id.to_string(), v.clone());
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
