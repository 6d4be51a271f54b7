//! Structured random agent JSON for the agent kind's parser: arbitrary or
//! mutated inputs (duplicate keys, oversized numbers, deep nesting, invalid
//! text). Properties, besides "never panics": normalization is idempotent,
//! and a client can PUT back what it got (the view) and get the same body.
//! `PROPTEST_CASES` overrides every count (`scripts/fuzz --minutes M`).

use proptest::prelude::*;
use regmesh_core::codec::canonical_json;
use regmesh_core::kind::view;
use regmesh_core::{Hlc, Kind, Record};
use regmesh_front_agent::AgentKind;
use serde_json::{json, Value};

#[path = "../../../core/tests/mutate/mod.rs"]
mod mutate;
use mutate::{apply, json_value, leaf, mutation, number, text};

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- agent JSON ------------------------------------------------------------

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items.to_vec())
}

const ADDRESSES: &[&str] = &[
    "2001:db8::1",
    "2001:DB8:0:0::1",
    "192.0.2.7",
    "::ffff:192.0.2.7",
    "::ffff:169.254.1.1",
    "fe80::1",
    "fe80::1%eth0",
    "169.254.1.1",
    "0.0.0.0",
    "::",
    "ff02::1",
    "255.255.255.255",
    "1.2.3",
    "01.02.03.04",
    "[2001:db8::1]",
    "2001:db8::1/64",
    "",
    "é",
];

const URLS: &[&str] = &[
    "https://a.example.com/a2a",
    "http://[2001:db8::1]:8080/x",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://user@169.254.0.1:80",
    "http://[::1",
    "https://",
    "://x",
    "1http://x",
    "h\u{0}ttp://x",
    "mailto:x@example.com",
    "http://x?y#z",
    "http://é.example/",
    "http://0.0.0.0/",
];

const WORDS: &[&str] = &[
    "translate",
    "a b",
    "",
    "x\u{7f}",
    "é",
    "a2a",
    "HTTP",
    "mcp+sse",
    "public",
    "local",
    "authorized:partners",
    "authorized:",
    "authorized:a b",
    "authorized:é",
    "online",
    "offline",
    "unknown",
    "sleepy",
];

/// A field name and a value for it: mostly the agent's own fields with
/// plausible values, sometimes anything.
fn agent_field() -> impl Strategy<Value = (String, Value)> {
    let word = || pick(WORDS).prop_map(|s| Value::String(s.to_string()));
    let cap = (
        word(),
        proptest::option::of(text(40)),
        proptest::collection::vec(word(), 0..4),
        proptest::option::of(word()),
    )
        .prop_map(|(name, desc, tags, vis)| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), name);
            if let Some(d) = desc {
                m.insert("description".into(), Value::String(d));
            }
            m.insert("tags".into(), Value::Array(tags));
            if let Some(v) = vis {
                m.insert("visibility".into(), v);
            }
            Value::Object(m)
        });
    let endpoint = (pick(URLS), word()).prop_map(|(u, p)| json!({"url": u, "protocol": p}));
    prop_oneof![
        4 => proptest::collection::vec(pick(ADDRESSES).prop_map(Value::from), 0..4)
            .prop_map(|a| ("addresses".to_string(), Value::Array(a))),
        3 => proptest::collection::vec(endpoint, 0..3).prop_map(|e| ("endpoints".to_string(), Value::Array(e))),
        2 => word().prop_map(|w| ("status".to_string(), w)),
        3 => proptest::collection::vec(cap, 0..4).prop_map(|c| ("capabilities".to_string(), Value::Array(c))),
        2 => json_value().prop_map(|v| ("metadata".to_string(), v)),
        2 => json_value().prop_map(|v| ("card".to_string(), v)),
        2 => prop_oneof![number(), Just(json!(30)), Just(json!("30"))].prop_map(|v| ("lease_s".to_string(), v)),
        2 => word().prop_map(|w| ("visibility".to_string(), w)),
        1 => pick(&["id", "origin", "version", "seq", "updated_at", "expires_at", "stale", "bogus"])
            .prop_flat_map(|k| leaf().prop_map(move |v| (k.to_string(), v))),
    ]
}

fn agent_input() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => proptest::collection::vec(agent_field(), 0..8).prop_map(|fs| {
            // Always one usable address, so validation goes past the first check.
            let mut m = serde_json::Map::new();
            m.insert("addresses".into(), json!(["2001:db8::1"]));
            for (k, v) in fs {
                m.insert(k, v);
            }
            Value::Object(m)
        }),
        1 => json_value(),
    ]
}

fn agent_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("did:web:example.com:a1".to_string()),
        1 => text(300),
    ]
}

/// The record a center would store for `prepared`.
fn stored(id: &str, prepared: &regmesh_core::Prepared) -> Record {
    Record {
        kind: "agent".into(),
        id: id.into(),
        origin: "c1".into(),
        version: Hlc::new(1_700_000_000_000, 1),
        seq: 1,
        expires_at_ms: prepared.lease_s.map(|l| 1_700_000_000_000 + l * 1000),
        visibility: prepared.visibility.clone(),
        deleted: false,
        body: canonical_json(&prepared.body),
        sig: [0; 64],
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Validation never panics; what it accepts is a fixed point: preparing
    /// the normalized body again, or the view a client GETs, gives the same.
    #[test]
    fn agent_normalization_is_idempotent(id in agent_id(), input in agent_input()) {
        let Ok(p) = AgentKind.prepare(&id, input) else { return Ok(()) };
        prop_assert!(p.body.is_object());
        let mut again = p.body.clone();
        again["visibility"] = Value::String(p.visibility.to_string());
        prop_assert_eq!(AgentKind.prepare(&id, again), Ok(p.clone()));

        let r = stored(&id, &p);
        let v = view(&r, false);
        prop_assert_eq!(AgentKind.prepare(&id, v), Ok(p.clone()), "PUT of the GET changed the body");

        // Canonical text is a fixed point too, and the body's own hooks run.
        let canon = canonical_json(&p.body);
        let reparsed: Value = serde_json::from_str(&canon).unwrap();
        prop_assert_eq!(canonical_json(&reparsed), canon);
        let _ = AgentKind.index_terms(&p.body);
        let _ = AgentKind.part_visibilities(&p.body);
        let mut b = p.body.clone();
        AgentKind.on_lease_expired(&mut b);
        prop_assert!(AgentKind.is_expired_state(&b));
        AgentKind.on_heartbeat(&mut b);
    }

    /// JSON text as a client sends it: arbitrary and mutated agent texts.
    #[test]
    fn agent_text_never_panics(
        input in agent_input(),
        muts in proptest::collection::vec(
            mutation(vec![br#"{"a":"#.to_vec(), br#"[[[["#.to_vec(), b"1e999".to_vec()]),
            0..3,
        ),
    ) {
        let text = apply(input.to_string().into_bytes(), &muts);
        if let Ok(v) = serde_json::from_slice::<Value>(&text) {
            let _ = AgentKind.prepare("did:web:example.com:a1", v);
        }
    }

    /// Hooks that read a body of any shape (a replica applies bodies its
    /// origin signed) never panic.
    #[test]
    fn body_hooks_take_any_json(v in json_value()) {
        let _ = AgentKind.index_terms(&v);
        let _ = AgentKind.part_visibilities(&v);
        let _ = AgentKind.is_expired_state(&v);
        if v.is_object() {
            let mut b = v.clone();
            AgentKind.on_lease_expired(&mut b);
            AgentKind.on_heartbeat(&mut b);
        }
    }
}

/// Nesting past serde_json's recursion limit is an error, not a stack
/// overflow, in the bodies the API and the peers parse.
#[test]
fn deep_nesting_is_refused() {
    for depth in [129usize, 10_000, 200_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(serde_json::from_str::<Value>(&arrays).is_err());
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(serde_json::from_str::<Value>(&objects).is_err());
    }
    let deep = (0..120).fold(json!(1), |acc, _| json!([acc]));
    let e = AgentKind
        .prepare("a1", json!({"addresses": ["2001:db8::1"], "metadata": {"x": deep}}))
        .unwrap_err();
    assert_eq!(e.field, "metadata");
}

/// A client's float survives a GET and a PUT back unchanged. serde_json's
/// default float parser is not correctly rounded: without its
/// `float_roundtrip` feature this number moved by one ulp on every
/// parse of the canonical text, so each re-PUT (and each lease expiry or
/// heartbeat that rewrites a body) changed metadata the client never touched.
#[test]
fn floats_survive_get_then_put() {
    let input = json!({"addresses": ["2001:db8::1"], "metadata": {"x": [1.1799762122641288e266]}});
    let p = AgentKind.prepare("a1", input).unwrap();
    let again = AgentKind.prepare("a1", view(&stored("a1", &p), false)).unwrap();
    assert_eq!(again, p);
    let text = canonical_json(&p.body);
    assert_eq!(canonical_json(&serde_json::from_str(&text).unwrap()), text);
}
