//! `diagnose record KIND ID`: each center's version of one record and an
//! explanation of every difference — not yet received (and how far behind),
//! filtered by an export policy (whose, and what it allows), lease lapsed
//! here, tombstoned, superseded by a newer claim, unreachable.
//!
//! [`local`] reads one center's view; [`explain`] is pure and turns the
//! views of all centers into verdicts. Must never change state.

use super::{ask_peers, Asked, DiagnoseError, RFI_RECORD};
use crate::center::Center;
use crate::peer::mesh::Mesh;
use regmesh_core::{Hlc, Record, Visibility};
use regmesh_proto::policy::ExportPolicy;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// The version of the record one center holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub origin: String,
    pub version: Hlc,
    /// The origin's sequence number of this write.
    pub seq: u64,
    pub deleted: bool,
    pub visibility: String,
    /// The visibilities of its parts (an agent's capabilities).
    pub parts: Vec<String>,
    pub expires_at: Option<String>,
    /// Another center's record whose lease ran out here without word from
    /// its origin.
    pub stale: bool,
}

impl Held {
    /// The order merge uses (version, origin, tombstone over live).
    fn rank(&self) -> (Hlc, &str, bool) {
        (self.version, &self.origin, self.deleted)
    }
}

/// Whether this center sends the version it holds to one of its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub peer: String,
    pub allowed: bool,
    /// The export policy to that peer: kinds (empty: all) and groups.
    pub kinds: Vec<String>,
    pub groups: Vec<String>,
}

/// One center's view of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CenterRecord {
    pub center: String,
    /// Its DRiP node state (active, sync, inactive).
    pub state: String,
    /// None: it holds no version (not even a tombstone).
    pub record: Option<Held>,
    /// Its watermarks: per origin, every seq up to this is here or covered.
    pub watermarks: BTreeMap<String, u64>,
    /// For the version it holds, per peer, whether its policy sends it.
    pub exports: Vec<Export>,
}

/// What a center's copy is, compared with the newest version seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It holds the newest live version.
    Current,
    /// It holds the newest version, a tombstone, or no copy with its
    /// watermark past the deletion.
    Tombstoned,
    /// It holds the newest version, but the lease ran out here while the
    /// origin still holds it live.
    LeaseLapsed,
    /// It holds an older version (a newer write or claim replaced it).
    Superseded,
    /// It lacks the newest version and its watermark is below it.
    NotYetReceived,
    /// The centers that would send it the newest version may not.
    Filtered,
    /// It lacks the newest version although its watermark covers it.
    Missing,
    /// No center holds any version.
    Absent,
    /// It did not answer.
    Unreachable,
}

/// One center's verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub center: String,
    pub verdict: Verdict,
    pub why: String,
    /// Its view, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<CenterRecord>,
}

/// The answer of `GET /v1/diagnose/record/{kind}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordReport {
    pub kind: String,
    pub id: String,
    /// Who asked (its own view is among the findings).
    pub asked_by: String,
    /// The newest version any center holds.
    pub newest: Option<Held>,
    /// True when every center that answered holds the newest version
    /// without a lapsed lease.
    pub agree: bool,
    pub findings: Vec<Finding>,
}

/// This center's view of `kind/id`.
pub fn local(center: &Center, mesh: Option<&Mesh>, kind: &str, id: &str) -> Result<CenterRecord, DiagnoseError> {
    let k = center
        .kinds()
        .get(kind)
        .ok_or_else(|| DiagnoseError::UnknownKind(kind.into()))?;
    regmesh_core::validate_record_id(id).map_err(|e| DiagnoseError::BadId(e.0))?;
    let rec = center.get_version(kind, id)?;
    let parts = match rec.as_ref().map(Record::body_value) {
        Some(Ok(b)) => k.part_visibilities(&b),
        Some(Err(_)) => vec![Visibility::Local],
        None => Vec::new(),
    };
    let exports = match (mesh, &rec) {
        (Some(m), Some(r)) => m
            .peers()
            .iter()
            .map(|p| Export {
                peer: p.cfg.id.clone(),
                allowed: ExportPolicy::new(p.cfg.kinds.iter().cloned(), p.cfg.groups.iter().cloned()).allows(r, &parts),
                kinds: p.cfg.kinds.clone(),
                groups: p.cfg.groups.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let (state, watermarks) = match mesh {
        Some(m) => (m.node_state().as_str().to_string(), m.marks().into_iter().collect()),
        None => (
            "active".to_string(),
            BTreeMap::from([(center.id().to_string(), center.own_seq())]),
        ),
    };
    Ok(CenterRecord {
        center: center.id().to_string(),
        state,
        record: rec.map(|r| Held {
            stale: center.is_stale(&r),
            expires_at: r.expires_at_ms.map(regmesh_core::time::rfc3339_ms),
            parts: parts.iter().map(ToString::to_string).collect(),
            visibility: r.visibility.to_string(),
            origin: r.origin,
            version: r.version,
            seq: r.seq,
            deleted: r.deleted,
        }),
        watermarks,
        exports,
    })
}

/// Asks every peer (and, through them, the centers only they reach) for
/// its view of `kind/id` and explains the differences.
pub async fn diagnose(
    center: &Center,
    mesh: Option<&Mesh>,
    kind: &str,
    id: &str,
) -> Result<RecordReport, DiagnoseError> {
    let mut asked = vec![Asked::Answered(local(center, mesh, kind, id)?)];
    if let Some(m) = mesh {
        asked.extend(ask_peers::<CenterRecord>(m, RFI_RECORD, json!({"kind": kind, "id": id})).await);
        // Centers whose keys we hold that no path reached.
        for c in center.known_centers() {
            if !asked.iter().any(|a| match a {
                Asked::Unreachable { center, .. } => *center == c,
                a => a.answer().is_some_and(|v| v.center == c),
            }) {
                asked.push(Asked::Unreachable {
                    center: c,
                    why: format!(
                        "not a direct peer of {}, and no peer reached it within {} relays",
                        center.id(),
                        super::relay::RELAY_HOPS_MAX
                    ),
                });
            }
        }
    }
    Ok(explain(kind, id, center.id(), asked))
}

/// Explains each center's copy against the newest version any holds.
pub fn explain(kind: &str, id: &str, asked_by: &str, asked: Vec<Asked<CenterRecord>>) -> RecordReport {
    let views: Vec<&CenterRecord> = asked.iter().filter_map(Asked::answer).collect();
    let newest = views
        .iter()
        .filter_map(|v| v.record.as_ref())
        .max_by(|a, b| a.rank().cmp(&b.rank()))
        .cloned();
    // How far the origin of the newest version has written: its own mark,
    // else the highest mark anyone holds for it.
    let origin_seq = newest.as_ref().map(|n| {
        views
            .iter()
            .find(|v| v.center == n.origin)
            .and_then(|v| v.watermarks.get(&n.origin).copied())
            .unwrap_or_else(|| {
                views
                    .iter()
                    .filter_map(|v| v.watermarks.get(&n.origin).copied())
                    .max()
                    .unwrap_or(n.seq)
            })
            .max(n.seq)
    });
    let origin_live = newest.as_ref().is_some_and(|n| {
        views
            .iter()
            .any(|v| v.center == n.origin && v.record.as_ref() == Some(n))
    });
    let mut findings = Vec::new();
    for a in &asked {
        let v = match a {
            Asked::Unreachable { center, why } => {
                findings.push(Finding {
                    center: center.clone(),
                    verdict: Verdict::Unreachable,
                    why: format!("did not answer: {why}"),
                    view: None,
                });
                continue;
            }
            Asked::Answered(v) | Asked::Relayed { answer: v, .. } => v,
        };
        let (verdict, mut why) = match &newest {
            None => (Verdict::Absent, "no center that answered holds any version".to_string()),
            Some(n) => judge(v, n, origin_seq.unwrap_or(n.seq), origin_live, &views),
        };
        if let Some(note) = a.reached_note(asked_by) {
            why = format!("{why} ({note})");
        }
        findings.push(Finding {
            center: v.center.clone(),
            verdict,
            why,
            view: Some(v.clone()),
        });
    }
    let agree = findings
        .iter()
        .all(|f| matches!(f.verdict, Verdict::Current | Verdict::Tombstoned | Verdict::Absent));
    RecordReport {
        kind: kind.into(),
        id: id.into(),
        asked_by: asked_by.into(),
        newest,
        agree,
        findings,
    }
}

/// One center's verdict against the newest version `n`.
fn judge(v: &CenterRecord, n: &Held, origin_seq: u64, origin_live: bool, views: &[&CenterRecord]) -> (Verdict, String) {
    let at = |h: &Held| format!("{}'s version {} (seq {})", h.origin, h.version, h.seq);
    if v.record.as_ref() == Some(n) || v.record.as_ref().is_some_and(|h| h.rank() == n.rank()) {
        let h = v.record.as_ref().expect("held");
        if n.deleted {
            return (
                Verdict::Tombstoned,
                format!("holds the tombstone: deleted at {}", at(n)),
            );
        }
        if h.stale && v.center != n.origin {
            let whose = if origin_live {
                format!("{} still holds it live", n.origin)
            } else {
                format!("{} did not answer, so its view is unknown", n.origin)
            };
            return (
                Verdict::LeaseLapsed,
                format!(
                    "holds {}, but its lease ran out here at {} without word from the origin; {whose}",
                    at(n),
                    h.expires_at.as_deref().unwrap_or("?")
                ),
            );
        }
        return (Verdict::Current, format!("holds the newest: {}", at(n)));
    }
    // It lacks the newest version: why?
    let mark = v.watermarks.get(&n.origin).copied().unwrap_or(0);
    let behind = origin_seq.saturating_sub(mark);
    let lacks = match &v.record {
        Some(h) if h.origin != n.origin => format!("holds {}, superseded by a newer claim: {}", at(h), at(n)),
        Some(h) => format!("holds {}, superseded by {}", at(h), at(n)),
        None if n.deleted => format!("holds no copy; the newest is a tombstone: deleted at {}", at(n)),
        None => format!("holds no copy of {}", at(n)),
    };
    if n.visibility == "local" || n.parts.iter().any(|p| p == "local") {
        return (
            Verdict::Filtered,
            format!(
                "{lacks}; its visibility is local to {}, which never exports it",
                n.origin
            ),
        );
    }
    // The centers that hold the newest version and have this one as a peer.
    let senders: Vec<(&str, &Export)> = views
        .iter()
        .filter(|s| s.record.as_ref().is_some_and(|h| h.rank() == n.rank()))
        .filter_map(|s| {
            s.exports
                .iter()
                .find(|e| e.peer == v.center)
                .map(|e| (s.center.as_str(), e))
        })
        .collect();
    if !senders.is_empty() && senders.iter().all(|(_, e)| !e.allowed) {
        let policies: Vec<String> = senders
            .iter()
            .map(|(s, e)| {
                format!(
                    "{s}'s export policy to {} (kinds {}, groups {})",
                    v.center,
                    list_or(&e.kinds, "all"),
                    list_or(&e.groups, "none")
                )
            })
            .collect();
        let parts = if n.parts.is_empty() {
            String::new()
        } else {
            format!(", parts {}", n.parts.join(" "))
        };
        return (
            Verdict::Filtered,
            format!(
                "{lacks}; filtered by {}: the record is visibility {}{parts}",
                policies.join(" and "),
                n.visibility
            ),
        );
    }
    if n.deleted && v.record.is_none() && mark >= n.seq {
        return (
            Verdict::Tombstoned,
            format!(
                "holds no copy and its watermark for {} ({mark}) is past the deletion",
                n.origin
            ),
        );
    }
    if mark < n.seq {
        let verdict = if v.record.is_some() {
            Verdict::Superseded
        } else {
            Verdict::NotYetReceived
        };
        return (
            verdict,
            format!(
                "{lacks}; not yet received: its watermark for {} is {mark}, {behind} record(s) behind {}'s {origin_seq}",
                n.origin, n.origin
            ),
        );
    }
    (
        Verdict::Missing,
        format!(
            "{lacks}, although its watermark for {} ({mark}) covers seq {}: dropped by a resync or refused on arrival",
            n.origin, n.seq
        ),
    )
}

fn list_or(v: &[String], empty: &str) -> String {
    if v.is_empty() {
        empty.to_string()
    } else {
        format!("[{}]", v.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(origin: &str, wall: u64, seq: u64, deleted: bool) -> Held {
        Held {
            origin: origin.into(),
            version: Hlc::new(wall, 0),
            seq,
            deleted,
            visibility: "public".into(),
            parts: vec![],
            expires_at: None,
            stale: false,
        }
    }

    fn view(
        center: &str,
        record: Option<Held>,
        marks: &[(&str, u64)],
        exports: &[(&str, bool)],
    ) -> Asked<CenterRecord> {
        Asked::Answered(CenterRecord {
            center: center.into(),
            state: "active".into(),
            record,
            watermarks: marks.iter().map(|(o, m)| (o.to_string(), *m)).collect(),
            exports: exports
                .iter()
                .map(|(p, a)| Export {
                    peer: p.to_string(),
                    allowed: *a,
                    kinds: if *a { vec![] } else { vec!["rd".into()] },
                    groups: vec![],
                })
                .collect(),
        })
    }

    fn verdicts(r: &RecordReport) -> Vec<(String, Verdict)> {
        r.findings.iter().map(|f| (f.center.clone(), f.verdict)).collect()
    }

    #[test]
    fn explains_behind_filtered_superseded_and_unreachable() {
        let n = held("c1", 100, 7, false);
        let r = explain(
            "agent",
            "a",
            "c1",
            vec![
                view("c1", Some(n.clone()), &[("c1", 9)], &[("c2", true), ("c3", false)]),
                view("c2", None, &[("c1", 4)], &[]),
                view("c3", None, &[("c1", 9)], &[]),
                view("c4", Some(held("c4", 50, 2, false)), &[("c1", 3)], &[]),
                Asked::Unreachable {
                    center: "c5".into(),
                    why: "cut".into(),
                },
            ],
        );
        use Verdict::*;
        let v = verdicts(&r);
        assert_eq!(
            v,
            [
                ("c1".into(), Current),
                ("c2".into(), NotYetReceived),
                ("c3".into(), Filtered),
                ("c4".into(), Superseded),
                ("c5".into(), Unreachable)
            ]
        );
        assert!(!r.agree);
        assert!(
            r.findings[1].why.contains("5 record(s) behind"),
            "{}",
            r.findings[1].why
        );
        assert!(
            r.findings[2].why.contains("c1's export policy to c3 (kinds [rd]"),
            "{}",
            r.findings[2].why
        );
        assert!(r.findings[3].why.contains("newer claim"), "{}", r.findings[3].why);
    }

    #[test]
    fn tombstones_and_lapsed_leases() {
        let t = held("c1", 100, 7, true);
        let r = explain(
            "agent",
            "a",
            "c2",
            vec![
                view("c1", Some(t.clone()), &[("c1", 7)], &[]),
                view("c2", None, &[("c1", 7)], &[]),
                view("c3", Some(held("c1", 90, 5, false)), &[("c1", 6)], &[]),
            ],
        );
        use Verdict::*;
        assert_eq!(
            verdicts(&r),
            [
                ("c1".into(), Tombstoned),
                ("c2".into(), Tombstoned),
                ("c3".into(), Superseded)
            ]
        );
        let live = held("c1", 100, 7, false);
        let mut stale = live.clone();
        stale.stale = true;
        let r = explain(
            "agent",
            "a",
            "c2",
            vec![
                view("c1", Some(live), &[("c1", 7)], &[]),
                view("c2", Some(stale), &[("c1", 7)], &[]),
            ],
        );
        assert_eq!(verdicts(&r)[1].1, LeaseLapsed);
        assert!(!r.agree);
    }
}
