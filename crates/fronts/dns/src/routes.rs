//! The client API: `GET /v1/dns/zones/{zone}` (the peers and their
//! lifecycle states, every contribution, the NS sets applied at the primary
//! and the parent, the last election) and `PUT /v1/dns/zones/{zone}/ns`
//! (this provider's contribution: `{"ns": [...], "glue": {name: [ipv4]}}`,
//! sent at once).
//!
//! Must never: change anything on a GET, or accept a contribution the
//! `dns.ns` kind would refuse.

use crate::kind::Contribution;
use crate::messages::Ctx;
use crate::state::now_ms;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The front's routes.
pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/v1/dns/zones/{zone}", get(zone))
        .route("/v1/dns/zones/{zone}/ns", put(set_ns))
        .with_state(ctx)
}

fn answer(status: StatusCode, v: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn zone_name(z: &str) -> Option<String> {
    crate::wire::check_name(z).ok()
}

async fn zone(State(ctx): State<Ctx>, Path(z): Path<String>) -> Response {
    let Some(z) = zone_name(&z) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "message": "not a zone name"}),
        );
    };
    let zones = ctx.shared.lock();
    match zones.get(&z) {
        None => answer(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": format!("this agent does not serve for {z}")}),
        ),
        Some(s) => {
            let mut v = serde_json::to_value(s).expect("zone state serializes");
            v["zone"] = json!(z);
            v["identity"] = json!(ctx.cfg.identity);
            answer(StatusCode::OK, v)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetNs {
    ns: Vec<String>,
    /// Addresses of the nameservers inside the zone.
    #[serde(default)]
    glue: std::collections::BTreeMap<String, Vec<std::net::Ipv4Addr>>,
}

async fn set_ns(
    State(ctx): State<Ctx>,
    Path(z): Path<String>,
    body: Result<Json<SetNs>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(z) = zone_name(&z) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "message": "not a zone name"}),
        );
    };
    let Ok(Json(b)) = body else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "message": "body: {\"ns\": [names], \"glue\": {name: [ipv4]}}"}),
        );
    };
    let c = Contribution {
        zone: z.clone(),
        identity: ctx.cfg.identity.clone(),
        ns: b.ns,
        serial_ms: now_ms(),
        glue: b.glue,
        dnskey: Vec::new(),
    };
    let c = match c.checked() {
        Ok(c) => c,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid", "message": e.to_string()}),
            )
        }
    };
    {
        let mut zones = ctx.shared.lock();
        let Some(s) = zones.get_mut(&z) else {
            return answer(
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": format!("this agent does not serve for {z}")}),
            );
        };
        s.own = c.ns.clone();
        s.own_glue = c.glue.clone();
    }
    ctx.shared.wake.notify_one();
    answer(StatusCode::OK, json!({"zone": z, "ns": c.ns, "glue": c.glue}))
}
