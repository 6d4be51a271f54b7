//! The console's client API: `GET /v1/rpki/vrps` (rpki-client's JSON, or
//! Routinator's CSV with `?format=csv`) and `GET /v1/rpki/status` (every
//! repository and sync node). Read-only: answers from what the last cycle
//! published.
//!
//! Must never: run a cycle or a fetch, or answer before the first cycle
//! with an empty set as if it were a result (503 until then).

use crate::console::Shared;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use regmesh_node::NodeHandle;
use serde::Deserialize;

#[derive(Clone)]
struct Ctx {
    shared: Shared,
    node: NodeHandle,
}

/// The console's routes.
pub fn router(node: NodeHandle, shared: Shared) -> Router {
    Router::new()
        .route("/v1/rpki/vrps", get(vrps))
        .route("/v1/rpki/status", get(status))
        .with_state(Ctx { shared, node })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VrpQuery {
    format: Option<String>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": code, "message": message}).to_string(),
    )
        .into_response()
}

async fn vrps(
    State(ctx): State<Ctx>,
    q: Result<Query<VrpQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the only parameter is format=json|csv",
        );
    };
    let (set, aspas, at) = {
        let p = ctx.shared.published.read().expect("published lock");
        (p.vrps.clone(), p.aspas.clone(), p.last_cycle_ms)
    };
    let Some(at) = at else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the first validation cycle has not finished",
        );
    };
    match q.format.as_deref() {
        None | Some("json") => (
            [(header::CONTENT_TYPE, "application/json")],
            crate::vrps::to_json_with(&set, &aspas, at / 1000),
        )
            .into_response(),
        Some("csv") => ([(header::CONTENT_TYPE, "text/csv")], crate::vrps::to_csv(&set)).into_response(),
        Some(_) => error(StatusCode::BAD_REQUEST, "invalid", "format must be json or csv"),
    }
}

async fn status(State(ctx): State<Ctx>) -> Response {
    let body = {
        let p = ctx.shared.published.read().expect("published lock");
        serde_json::json!({
            "center": ctx.node.center_id(),
            "cycles": p.cycles,
            "last_cycle_ms": p.last_cycle_ms,
            "last_cycle_duration_ms": p.last_cycle_duration_ms,
            "vrps": p.vrps.len(),
            "aspas": p.aspas.len(),
            "publication_points": {"valid": p.pps_valid, "last_good": p.pps_last_good, "failed": p.pps_failed,
                                   "rsync_only": p.rsync_only},
            "trust_anchor_errors": p.ta_errors,
            "marked_sync_nodes": p.marked,
            "avoided_sync_nodes": p.avoided,
            "repositories": p.repos.values().collect::<Vec<_>>(),
        })
    };
    let mut body = body;
    body["sync_nodes"] = crate::sync::node_views(&ctx.node);
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
