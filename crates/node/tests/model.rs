//! Model-based test of a center: random puts, deletes and heartbeats against
//! a real `Center` (embedded store), checked after every step against a plain
//! map. Every filter query must give exactly what a scan of the model gives,
//! and after a restart everything must still agree.

use proptest::prelude::*;
use regmesh_core::Kind;
use regmesh_front_agent::AgentKind;
use regmesh_node::center::{Center, Outcome, WriteError, WriteOp};
use regmesh_node::Config;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Step {
    Put {
        id: u8,
        status: u8,
        caps: Vec<u8>,
        tags: Vec<u8>,
    },
    Delete {
        id: u8,
    },
    Beat {
        id: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..12, 0u8..3, proptest::collection::vec(0u8..4, 0..3), proptest::collection::vec(0u8..3, 0..3))
            .prop_map(|(id, status, caps, tags)| Step::Put { id, status, caps, tags }),
        1 => (0u8..12).prop_map(|id| Step::Delete { id }),
        1 => (0u8..12).prop_map(|id| Step::Beat { id }),
    ]
}

/// What the model keeps per live agent: status, capability names, tags.
#[derive(Debug, Clone, PartialEq)]
struct M {
    status: String,
    caps: Vec<String>,
    tags: Vec<String>,
}

const STATUS: [&str; 3] = ["online", "offline", "unknown"];

fn doc(status: u8, caps: &[u8], tags: &[u8]) -> (serde_json::Value, M) {
    let mut names: Vec<String> = caps.iter().map(|c| format!("cap{c}")).collect();
    names.dedup();
    names.sort();
    names.dedup();
    let tag_names: Vec<String> = tags.iter().map(|t| format!("t{t}")).collect();
    let capabilities: Vec<_> = names.iter().map(|n| json!({"name": n, "tags": tag_names})).collect();
    let v = json!({"addresses": ["2001:db8::1"], "status": STATUS[status as usize], "capabilities": capabilities});
    let mut tags_m: Vec<String> = if names.is_empty() { vec![] } else { tag_names };
    tags_m.sort();
    tags_m.dedup();
    (
        v,
        M {
            status: STATUS[status as usize].into(),
            caps: names,
            tags: tags_m,
        },
    )
}

fn check(center: &Center, model: &BTreeMap<String, M>) -> Result<(), TestCaseError> {
    let mut queries: Vec<Vec<(&str, String)>> = vec![vec![]];
    for s in STATUS {
        queries.push(vec![("status", s.to_string())]);
    }
    for c in 0..4 {
        queries.push(vec![("capability", format!("cap{c}"))]);
        for s in STATUS {
            queries.push(vec![("capability", format!("cap{c}")), ("status", s.to_string())]);
        }
    }
    for t in 0..3 {
        queries.push(vec![("tag", format!("t{t}")), ("origin", "c1".to_string())]);
    }
    for q in queries {
        let want: Vec<String> = model
            .iter()
            .filter(|(_, m)| {
                q.iter().all(|(f, v)| match *f {
                    "status" => &m.status == v,
                    "capability" => m.caps.contains(v),
                    "tag" => m.tags.contains(v),
                    "origin" => v == "c1",
                    _ => false,
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        // Page through in small pages to exercise cursors.
        let filters: Vec<(&str, &str)> = q.iter().map(|(f, v)| (*f, v.as_str())).collect();
        let mut got = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = center.list("agent", &filters, after.as_deref(), 3).unwrap();
            got.extend(page.iter().map(|r| r.id.clone()));
            if !more {
                break;
            }
            after = page.last().map(|r| r.id.clone());
        }
        prop_assert_eq!(&got, &want, "query {:?}", q);
    }
    for id in 0..12 {
        let id = format!("a{id:02}");
        let rec = center.get("agent", &id).unwrap();
        prop_assert_eq!(rec.is_some(), model.contains_key(&id), "get {}", id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn indexes_always_agree_with_records(steps in proptest::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::for_test("c1", dir.path());
        let center = Center::open_with(&cfg, regmesh_front_agent::kinds(), None).unwrap();
        let mut model: BTreeMap<String, M> = BTreeMap::new();
        for s in &steps {
            match s {
                Step::Put { id, status, caps, tags } => {
                    let id = format!("a{id:02}");
                    let (v, m) = doc(*status, caps, tags);
                    let p = AgentKind.prepare(&id, v).unwrap();
                    let out = rt.block_on(center.write("agent", &id, WriteOp::Put { prepared: p, if_version: None, above: None })).unwrap();
                    let created = matches!(out, Outcome::Created(_));
                    prop_assert_eq!(created, !model.contains_key(&id));
                    model.insert(id, m);
                }
                Step::Delete { id } => {
                    let id = format!("a{id:02}");
                    let r = rt.block_on(center.write("agent", &id, WriteOp::Delete { if_version: None }));
                    match model.remove(&id) {
                        Some(_) => prop_assert!(r.is_ok()),
                        None => prop_assert!(matches!(r, Err(WriteError::NotFound { .. })), "expected not found, got {:?}", r),
                    }
                }
                Step::Beat { id } => {
                    let id = format!("a{id:02}");
                    let r = rt.block_on(center.write("agent", &id, WriteOp::Heartbeat));
                    match model.get_mut(&id) {
                        Some(m) => {
                            prop_assert!(r.is_ok());
                            m.status = "online".into();
                        }
                        None => prop_assert!(matches!(r, Err(WriteError::NotFound { .. })), "expected not found, got {:?}", r),
                    }
                }
            }
            check(&center, &model)?;
        }
        center.close();
        let center = Center::open_with(&cfg, regmesh_front_agent::kinds(), None).unwrap();
        check(&center, &model)?;
        center.close();
    }
}
