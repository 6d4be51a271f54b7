//! `GET /v1/openapi.json`: an OpenAPI 3.1 description of the client API,
//! built from code: the node's own routes described here (a test checks
//! that every route in [`crate::api::NODE_ROUTES`] has one), each front's
//! from its [`crate::Front::openapi_paths`].
//!
//! Must never: describe a route the node does not serve, or hide a
//! response a route can give (the catch-all `default` is the error body).

use serde_json::{json, Map, Value};

/// The JSON of an error answer (`error.rs`), for every route's `default`.
pub fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"}
            }
        }}
    })
}

/// A JSON answer with `schema`, and the error body for anything else.
pub fn json_responses(code: &str, description: &str, schema: Value) -> Value {
    json!({
        code: {"description": description, "content": {"application/json": {"schema": schema}}},
        "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    })
}

/// A GET operation answering `schema` as JSON.
pub fn get_json(summary: &str, params: Value, schema: Value) -> Value {
    json!({"get": {"summary": summary, "parameters": params, "responses": json_responses("200", "OK", schema)}})
}

/// A path parameter `name` (a string).
pub fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}})
}

/// The node's own routes (the dashboard's static files are not API).
fn node_paths() -> Map<String, Value> {
    let object = json!({"type": "object"});
    let mut p = Map::new();
    p.insert(
        "/v1/status".into(),
        get_json(
            "This center: id, key, record counts, last change, queue depth",
            json!([]),
            json!({"type": "object", "required": ["id", "records", "change"],
                   "properties": {"id": {"type": "string"}, "records": {"type": "object"}, "change": {"type": "integer"}}}),
        ),
    );
    p.insert(
        "/v1/peers".into(),
        get_json(
            "The mesh as this center sees it: state, peers, flood and anti-entropy counters",
            json!([]),
            json!({"type": "object", "required": ["id", "state", "peers"],
                   "properties": {"id": {"type": "string"}, "state": {"type": "string"}, "peers": {"type": "array"}}}),
        ),
    );
    p.insert(
        "/v1/diagnose/mesh".into(),
        get_json(
            "Centers, states, lag matrix, links and disagreeing digests, asked of every peer",
            json!([]),
            json!({"type": "object", "required": ["asked_by", "centers", "lag", "links", "disagreements"],
                   "properties": {"centers": {"type": "array"}, "lag": {"type": "object"},
                                  "links": {"type": "array"}, "disagreements": {"type": "array"}}}),
        ),
    );
    p.insert(
        "/v1/diagnose/record/{kind}/{id}".into(),
        get_json(
            "Every reachable center's version of one record, and why each differs",
            json!([path_param("kind"), path_param("id")]),
            json!({"type": "object", "required": ["kind", "id", "agree", "findings"],
                   "properties": {"agree": {"type": "boolean"}, "findings": {"type": "array"}}}),
        ),
    );
    p.insert(
        "/v1/watch".into(),
        json!({"get": {
            "summary": "Change events as server-sent events, from ?since= or Last-Event-ID",
            "parameters": [{"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
            "responses": {
                "200": {"description": "an endless event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        }}),
    );
    p.insert(
        "/metrics".into(),
        json!({"get": {"summary": "Prometheus text format", "responses": {
            "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }}}),
    );
    p.insert(
        "/healthz".into(),
        get_json("Liveness; needs no token", json!([]), object.clone()),
    );
    p.insert("/v1/openapi.json".into(), get_json("This document", json!([]), object));
    p
}

/// The whole document: the node's paths and every front's.
pub fn document(fronts: impl IntoIterator<Item = Map<String, Value>>) -> Value {
    let mut paths = node_paths();
    for f in fronts {
        paths.extend(f);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "regmesh client API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": {"Error": error_schema()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}, {}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_route_is_described() {
        let doc = document([]);
        for r in crate::api::NODE_ROUTES {
            if crate::ui::is_ui_path(r) {
                continue;
            }
            assert!(doc["paths"].get(*r).is_some(), "{r} is not in the OpenAPI document");
        }
        for (path, _) in doc["paths"].as_object().unwrap() {
            assert!(
                crate::api::NODE_ROUTES.contains(&path.as_str()),
                "{path} is described but not served"
            );
        }
    }
}
