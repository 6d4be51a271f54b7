//! Agent JSON as a client sends it: validation never panics, and what it
//! accepts is a fixed point (the normalized body, and the view a client
//! GETs, prepare to the same thing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmesh_core::codec::canonical_json;
use regmesh_core::{AgentKind, Hlc, Kind, Record};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let id = "did:web:example.com:a1";
    let Ok(p) = AgentKind.prepare(id, input) else { return };
    let mut again = p.body.clone();
    again["visibility"] = Value::String(p.visibility.to_string());
    assert_eq!(
        AgentKind.prepare(id, again).as_ref(),
        Ok(&p),
        "normalization is not idempotent"
    );
    let r = Record {
        kind: "agent".into(),
        id: id.into(),
        origin: "c1".into(),
        version: Hlc::new(1, 0),
        seq: 1,
        expires_at_ms: None,
        visibility: p.visibility.clone(),
        deleted: false,
        body: canonical_json(&p.body),
        sig: [0; 64],
    };
    let view = regmesh_core::kind::view(&r, false);
    assert_eq!(
        AgentKind.prepare(id, view).as_ref(),
        Ok(&p),
        "a PUT of the GET changed the body"
    );
    let _ = AgentKind.index_terms(&p.body);
    let _ = AgentKind.part_visibilities(&p.body);
});
