//! `diagnose mesh`: the centers and their states, a lag matrix (per center
//! and origin, how many of the origin's records it has not covered), every
//! link as each end sees it, and the links whose digests disagree with the
//! end that looks at fault.
//!
//! [`local`] reads one center's view; [`summarize`] is pure. Must never
//! change state.

use super::{ask_peers, Asked, RFI_MESH};
use crate::center::Center;
use crate::peer::mesh::Mesh;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// One link as one end sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    pub peer: String,
    /// The peer's lifecycle state here (OPERATIONAL, DEGRADED, ...).
    pub state: String,
    /// Whether the per-class digests last compared with it matched.
    pub digest_match: Option<bool>,
    /// Records this end knows the peer has not covered.
    pub records_behind: Option<u64>,
    pub last_heard: Option<String>,
    pub announced_interval_ms: Option<u64>,
}

/// One center's view of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshView {
    pub center: String,
    pub state: String,
    pub watermarks: BTreeMap<String, u64>,
    pub peers: Vec<LinkView>,
    /// Live records it holds per kind and origin (each capped at
    /// [`COUNT_MAX`]).
    #[serde(default)]
    pub records: BTreeMap<String, BTreeMap<String, usize>>,
}

/// The most records counted per kind and origin.
pub const COUNT_MAX: usize = 100_000;

/// A center as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CenterRow {
    pub center: String,
    /// Its own node state; None when it did not answer.
    pub state: Option<String>,
    pub answered: bool,
    /// Why it did not answer, or how it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A link whose two ends' digests disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    pub a: String,
    pub b: String,
    /// The end that looks at fault, if one does.
    pub fault: Option<String>,
    pub why: String,
}

/// The answer of `GET /v1/diagnose/mesh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshReport {
    pub asked_by: String,
    pub centers: Vec<CenterRow>,
    /// Per center that answered, per origin: records of the origin it has
    /// not covered (the origin's own mark minus its watermark).
    pub lag: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every link as its `from` end sees it.
    pub links: Vec<(String, LinkView)>,
    pub disagreements: Vec<Disagreement>,
    /// Per center that answered: live records per kind and origin.
    pub records: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>>,
}

/// This center's view of the mesh.
pub fn local(center: &Center, mesh: Option<&Mesh>) -> MeshView {
    let Some(m) = mesh else {
        return MeshView {
            center: center.id().into(),
            state: "active".into(),
            watermarks: BTreeMap::from([(center.id().to_string(), center.own_seq())]),
            peers: Vec::new(),
            records: center.live_by_origin(&[center.id().to_string()], COUNT_MAX),
        };
    };
    let doc = m.peers_json();
    let peers = doc["peers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| LinkView {
                    peer: p["id"].as_str().unwrap_or_default().into(),
                    state: p["state"].as_str().unwrap_or_default().into(),
                    digest_match: p["digest_match"].as_bool(),
                    records_behind: p["records_behind"].as_u64(),
                    last_heard: p["last_heard"].as_str().map(Into::into),
                    announced_interval_ms: p["announced_interval_ms"].as_u64(),
                })
                .collect()
        })
        .unwrap_or_default();
    let watermarks: BTreeMap<String, u64> = m.marks().into_iter().collect();
    let origins: Vec<String> = watermarks.keys().cloned().collect();
    MeshView {
        center: center.id().into(),
        state: m.node_state().as_str().into(),
        records: center.live_by_origin(&origins, COUNT_MAX),
        watermarks,
        peers,
    }
}

/// Asks every peer (and, through them, the centers only they reach) for
/// its view of the mesh and summarizes.
pub async fn diagnose(center: &Center, mesh: Option<&Mesh>) -> MeshReport {
    let mut asked = vec![Asked::Answered(local(center, mesh))];
    if let Some(m) = mesh {
        asked.extend(ask_peers::<MeshView>(m, RFI_MESH, json!({})).await);
    }
    summarize(center.id(), &center.known_centers(), asked)
}

/// The report from every center's answer; `known` are the centers whose
/// keys the asking center holds (some may not be its peers).
pub fn summarize(asked_by: &str, known: &[String], asked: Vec<Asked<MeshView>>) -> MeshReport {
    let views: Vec<&MeshView> = asked.iter().filter_map(Asked::answer).collect();
    let mut centers = Vec::new();
    let mut listed = BTreeSet::new();
    for a in &asked {
        let row = match a {
            Asked::Answered(v) | Asked::Relayed { answer: v, .. } => CenterRow {
                center: v.center.clone(),
                state: Some(v.state.clone()),
                answered: true,
                note: a.reached_note(asked_by),
            },
            Asked::Unreachable { center, why } => CenterRow {
                center: center.clone(),
                state: None,
                answered: false,
                note: Some(format!("did not answer: {why}")),
            },
        };
        listed.insert(row.center.clone());
        centers.push(row);
    }
    let seen_by_peers = views.iter().flat_map(|v| v.peers.iter().map(|p| p.peer.clone()));
    for c in known.iter().cloned().chain(seen_by_peers).collect::<BTreeSet<_>>() {
        if listed.insert(c.clone()) {
            let via: Vec<String> = views
                .iter()
                .filter_map(|v| {
                    v.peers
                        .iter()
                        .find(|p| p.peer == c)
                        .map(|p| format!("{} sees it {}", v.center, p.state))
                })
                .collect();
            centers.push(CenterRow {
                center: c,
                state: None,
                answered: false,
                note: Some(if via.is_empty() {
                    format!("not a peer of {asked_by}; no center that answered peers with it")
                } else {
                    format!("not a peer of {asked_by}; {}", via.join(", "))
                }),
            });
        }
    }
    // The origin's own mark is how far it has written; else the highest
    // mark any center holds for it.
    let origins: BTreeSet<&String> = views.iter().flat_map(|v| v.watermarks.keys()).collect();
    let head = |o: &str| -> u64 {
        views
            .iter()
            .find(|v| v.center == o)
            .and_then(|v| v.watermarks.get(o).copied())
            .or_else(|| views.iter().filter_map(|v| v.watermarks.get(o).copied()).max())
            .unwrap_or(0)
    };
    let lag: BTreeMap<String, BTreeMap<String, u64>> = views
        .iter()
        .map(|v| {
            let row = origins
                .iter()
                .map(|o| {
                    let mark = v.watermarks.get(*o).copied().unwrap_or(0);
                    (o.to_string(), head(o).saturating_sub(mark))
                })
                .collect();
            (v.center.clone(), row)
        })
        .collect();
    let links: Vec<(String, LinkView)> = views
        .iter()
        .flat_map(|v| v.peers.iter().map(|p| (v.center.clone(), p.clone())))
        .collect();
    let mut pairs = BTreeSet::new();
    for (from, l) in &links {
        if l.digest_match == Some(false) {
            let (a, b) = if *from < l.peer {
                (from.clone(), l.peer.clone())
            } else {
                (l.peer.clone(), from.clone())
            };
            pairs.insert((a, b));
        }
    }
    let total_lag = |c: &str| lag.get(c).map(|r| r.values().sum::<u64>());
    let disagreements = pairs
        .into_iter()
        .map(|(a, b)| {
            let (fault, why) = match (total_lag(&a), total_lag(&b)) {
                (Some(x), Some(y)) if x != y => {
                    let (f, n, other) = if x > y { (a.clone(), x, y) } else { (b.clone(), y, x) };
                    let why = format!("{f} is {n} record(s) behind the origins' marks, the other end {other}");
                    (Some(f), why)
                }
                (Some(_), Some(_)) => (
                    None,
                    "both ends hold the same watermarks: a record was refused or dropped at one end; digest repair pulls the difference".into(),
                ),
                (None, Some(_)) => (Some(a.clone()), format!("{a} did not answer")),
                (Some(_), None) => (Some(b.clone()), format!("{b} did not answer")),
                (None, None) => (None, "neither end answered".into()),
            };
            Disagreement { a, b, fault, why }
        })
        .collect();
    let records = views.iter().map(|v| (v.center.clone(), v.records.clone())).collect();
    MeshReport {
        asked_by: asked_by.into(),
        records,
        centers,
        lag,
        links,
        disagreements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(peer: &str, digest_match: Option<bool>) -> LinkView {
        LinkView {
            peer: peer.into(),
            state: "OPERATIONAL".into(),
            digest_match,
            records_behind: Some(0),
            last_heard: None,
            announced_interval_ms: Some(1000),
        }
    }

    fn view(c: &str, marks: &[(&str, u64)], peers: Vec<LinkView>) -> Asked<MeshView> {
        Asked::Answered(MeshView {
            center: c.into(),
            state: "active".into(),
            watermarks: marks.iter().map(|(o, m)| (o.to_string(), *m)).collect(),
            peers,
            records: BTreeMap::new(),
        })
    }

    #[test]
    fn lag_matrix_and_the_end_at_fault() {
        let r = summarize(
            "c1",
            &["c1".into(), "c2".into(), "c3".into(), "c4".into()],
            vec![
                view(
                    "c1",
                    &[("c1", 10), ("c2", 5)],
                    vec![link("c2", Some(false)), link("c3", None)],
                ),
                view("c2", &[("c1", 6), ("c2", 5)], vec![link("c1", Some(false))]),
                Asked::Unreachable {
                    center: "c3".into(),
                    why: "cut".into(),
                },
            ],
        );
        assert_eq!(r.lag["c2"]["c1"], 4);
        assert_eq!(r.lag["c1"]["c2"], 0);
        assert_eq!(r.disagreements.len(), 1, "one link, seen from both ends");
        assert_eq!(r.disagreements[0].fault.as_deref(), Some("c2"));
        let names: Vec<(&str, bool)> = r.centers.iter().map(|c| (c.center.as_str(), c.answered)).collect();
        assert_eq!(names, [("c1", true), ("c2", true), ("c3", false), ("c4", false)]);
        assert!(r.centers[3].note.as_deref().unwrap().contains("not a peer of c1"));
    }
}
