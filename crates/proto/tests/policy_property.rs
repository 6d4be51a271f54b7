//! Property: nothing outside a peer's policy is ever selected for it.
//! Whatever the records, parts and policies, every record `allows` passes has
//! an exported kind, and the peer may see its own and every part's visibility.

use proptest::prelude::*;
use regmesh_core::{Hlc, Record, Visibility};
use regmesh_proto::policy::ExportPolicy;

fn vis() -> impl Strategy<Value = Visibility> {
    prop_oneof![
        Just(Visibility::Public),
        Just(Visibility::Local),
        prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(|g| Visibility::Authorized(g.into())),
    ]
}

fn record() -> impl Strategy<Value = (Record, Vec<Visibility>)> {
    (
        prop_oneof![Just("agent"), Just("note"), Just("rd.registration")],
        vis(),
        proptest::collection::vec(vis(), 0..4),
    )
        .prop_map(|(kind, v, parts)| {
            (
                Record {
                    kind: kind.into(),
                    id: "x".into(),
                    origin: "c1".into(),
                    version: Hlc::new(1, 0),
                    seq: 1,
                    expires_at_ms: None,
                    visibility: v,
                    deleted: false,
                    body: "{}".into(),
                    sig: [0; 64],
                },
                parts,
            )
        })
}

fn policy() -> impl Strategy<Value = ExportPolicy> {
    (
        proptest::collection::btree_set(prop_oneof![Just("agent".to_string()), Just("note".to_string())], 0..3),
        proptest::collection::btree_set(prop_oneof![Just("a".to_string()), Just("b".to_string())], 0..3),
    )
        .prop_map(|(kinds, groups)| ExportPolicy { kinds, groups })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn nothing_outside_policy_is_exported(batch in proptest::collection::vec(record(), 0..20), p in policy()) {
        let sent: Vec<&(Record, Vec<Visibility>)> = batch.iter().filter(|(r, parts)| p.allows(r, parts)).collect();
        for (r, parts) in sent {
            prop_assert!(p.kinds.is_empty() || p.kinds.contains(&r.kind));
            for v in std::iter::once(&r.visibility).chain(parts.iter()) {
                match v {
                    Visibility::Local => prop_assert!(false, "local left the center"),
                    Visibility::Authorized(g) => prop_assert!(p.groups.contains(g), "group {} leaked", g),
                    Visibility::Public => {}
                }
            }
        }
    }
}
