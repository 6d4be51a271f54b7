//! The `agent.alias` kind: "agent id B is an alias of agent id A"
//! (document 000 §4.1.5's duplicate agents, resolved by an operator).
//!
//! The record's id is the alias id B; its body is `{"of": "A"}`. It is a
//! record of its own, not a field of B's agent record, so re-registering B
//! (a whole-body PUT by the agent's software) does not undo the operator's
//! decision. The front writes it only at B's origin (`alias.rs` checks), so
//! the ownership rule holds: only B's origin says what B means, and the
//! alias replicates, merges and is deleted like any record of that origin.
//!
//! Pure: no I/O, no clock. Must never: accept an alias of itself, or an id
//! that is not a valid record id.

use regmesh_core::kind::{Kind, Prepared, ValidationError, ASSIGNED_FIELDS};
use regmesh_core::Visibility;
use serde::Deserialize;
use serde_json::{json, Value};

/// Name of the kind in records.
pub const ALIAS: &str = "agent.alias";

/// The `agent.alias` kind.
pub struct AliasKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    of: String,
    visibility: Option<String>,
}

impl Kind for AliasKind {
    fn name(&self) -> &'static str {
        ALIAS
    }

    fn prepare(&self, id: &str, input: Value) -> Result<Prepared, ValidationError> {
        let Value::Object(mut obj) = input else {
            return Err(ValidationError::new("", "body must be a JSON object"));
        };
        for f in ASSIGNED_FIELDS {
            obj.remove(*f);
        }
        obj.remove("id");
        let inp: Input =
            serde_json::from_value(Value::Object(obj)).map_err(|e| ValidationError::new("", e.to_string()))?;
        regmesh_core::validate_record_id(id).map_err(|e| ValidationError::new("id", e.0))?;
        regmesh_core::validate_record_id(&inp.of).map_err(|e| ValidationError::new("of", e.0))?;
        if inp.of == id {
            return Err(ValidationError::new("of", "an agent cannot be an alias of itself"));
        }
        let visibility = match &inp.visibility {
            Some(v) => Visibility::parse(v).map_err(|e| ValidationError::new("visibility", e))?,
            None => Visibility::Public,
        };
        Ok(Prepared {
            body: json!({ "of": inp.of }),
            lease_s: None,
            visibility,
        })
    }

    fn index_fields(&self) -> &'static [&'static str] {
        &["of"]
    }

    fn index_terms(&self, body: &Value) -> Vec<(&'static str, String)> {
        body.get("of")
            .and_then(Value::as_str)
            .map(|of| vec![("of", of.to_string())])
            .unwrap_or_default()
    }

    fn on_lease_expired(&self, _body: &mut Value) {}

    fn on_heartbeat(&self, _body: &mut Value) {}

    fn is_expired_state(&self, _body: &Value) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepares_and_refuses() {
        let p = AliasKind.prepare("b", json!({"of": "a"})).unwrap();
        assert_eq!(p.body, json!({"of": "a"}));
        assert_eq!(AliasKind.index_terms(&p.body), vec![("of", "a".to_string())]);
        let p = AliasKind
            .prepare("b", json!({"of": "a", "visibility": "authorized:g"}))
            .unwrap();
        assert_eq!(p.visibility, Visibility::Authorized("g".into()));
        for (v, field) in [
            (json!({"of": "b"}), "of"),
            (json!({"of": "bad id"}), "of"),
            (json!({}), ""),
            (json!({"of": "a", "x": 1}), ""),
            (json!([1]), ""),
        ] {
            assert_eq!(AliasKind.prepare("b", v.clone()).unwrap_err().field, field, "{v}");
        }
    }
}
