//! The OpenAPI path items of `/v1/agents` (served in `/v1/openapi.json`
//! with the node's). Kept beside the routes they describe; must change
//! with them.

use regmesh_node::openapi::{json_responses, path_param};
use serde_json::{json, Map, Value};

/// An agent as the API answers it (document 000's fields, plus the record's).
fn agent_schema() -> Value {
    json!({"type": "object", "required": ["id", "origin", "version"],
           "properties": {"id": {"type": "string"}, "origin": {"type": "string"}, "version": {"type": "string"},
                          "stale": {"type": "boolean"}, "resolved_from": {"type": "string"},
                          "source": {"type": "string", "description": "scope=mesh: the center whose copy answered"},
                          "partial": {"type": "boolean", "description": "scope=mesh: parts the origin keeps from this center were cut out"},
                          "withheld_parts": {"type": "integer"}, "cached_age_ms": {"type": "integer"},
                          "mesh": {"type": "object", "description": "scope=mesh: asked, answered, not_answered, cached"}}})
}

/// An agent as a client sends it (the kind checks every field).
fn agent_input() -> Value {
    json!({"type": "object", "properties": {
        "addresses": {"type": "array", "items": {"type": "string"}},
        "capabilities": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "description": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}}, "visibility": {"type": "string"}}}},
        "status": {"type": "string", "enum": ["online", "offline", "unknown"]},
        "lease_s": {"type": "integer", "minimum": 0},
        "visibility": {"type": "string"}
    }})
}

/// `?scope=local|mesh`: this center's copy, or also every peer's.
fn scope() -> Value {
    json!({"name": "scope", "in": "query", "schema": {"type": "string", "enum": ["local", "mesh"]},
           "description": "mesh: also ask every peer (2 s deadline); the answer names who did not answer"})
}

pub fn paths() -> Map<String, Value> {
    let query = |name: &str, schema: Value| json!({"name": name, "in": "query", "schema": schema});
    let s = json!({"type": "string"});
    let mut p = Map::new();
    p.insert(
        "/v1/agents".into(),
        json!({"get": {
            "summary": "List agents matching every filter, in id order, one page at a time (scope=mesh: one merged page of at most 100)",
            "parameters": [query("capability", s.clone()), query("tag", s.clone()), query("status", s.clone()),
                           query("origin", s.clone()), query("limit", json!({"type": "integer", "minimum": 1})),
                           query("cursor", s), scope()],
            "responses": json_responses("200", "a page", json!({"type": "object", "required": ["items"],
                "properties": {"items": {"type": "array", "items": agent_schema()}}}))
        }}),
    );
    let id = json!([path_param("id")]);
    let mut put = json_responses("200", "replaced", agent_schema());
    put["201"] = json!({"description": "created", "content": {"application/json": {"schema": agent_schema()}}});
    p.insert(
        "/v1/agents/{id}".into(),
        json!({
            "put": {"summary": "Create or replace an agent (a new id is claimed across the mesh)",
                    "parameters": id,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": agent_input()}}},
                    "responses": put},
            "get": {"summary": "One agent (an alias answers its canonical agent); scope=mesh also asks every peer",
                    "parameters": [path_param("id"), scope()],
                    "responses": json_responses("200", "the agent", agent_schema())},
            "delete": {"summary": "Delete an agent (a tombstone)", "parameters": id,
                       "responses": {"204": {"description": "deleted"},
                                     "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
        }),
    );
    p.insert(
        "/v1/duplicates".into(),
        json!({"get": {"summary": "Agents under different ids sharing an endpoint, address or card, with the evidence",
                       "responses": json_responses("200", "the groups", json!({"type": "object",
                           "required": ["groups", "scanned", "complete"],
                           "properties": {"groups": {"type": "array"}, "scanned": {"type": "integer"},
                                          "complete": {"type": "boolean"}}}))}}),
    );
    let alias = json!({"type": "object", "required": ["id", "of", "origin", "version"],
        "properties": {"id": {"type": "string"}, "of": {"type": "string"}, "origin": {"type": "string"},
                       "version": {"type": "string"}, "counts": {"type": "boolean"}, "resolves_to": {"type": "string"}}});
    let mut alias_put = json_responses("200", "replaced", alias.clone());
    alias_put["201"] = json!({"description": "created", "content": {"application/json": {"schema": alias}}});
    p.insert(
        "/v1/agents/{id}/alias".into(),
        json!({
            "put": {"summary": "Mark agent {id} (owned by this center) an alias of another agent",
                    "parameters": id,
                    "requestBody": {"required": true, "content": {"application/json": {"schema":
                        {"type": "object", "required": ["of"], "properties": {"of": {"type": "string"}}}}}},
                    "responses": alias_put},
            "get": {"summary": "The alias of agent {id}, whether it counts here, and what {id} resolves to",
                    "parameters": id, "responses": json_responses("200", "the alias", alias)},
            "delete": {"summary": "Agent {id} stands for itself again (at the alias's origin)", "parameters": id,
                       "responses": {"204": {"description": "removed"},
                                     "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
        }),
    );
    p.insert(
        "/v1/agents/{id}/heartbeat".into(),
        json!({"post": {"summary": "Renew the lease and mark online", "parameters": id,
                        "responses": json_responses("200", "the agent", agent_schema())}}),
    );
    p
}
