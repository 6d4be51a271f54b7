//! The client API (HTTP/JSON). The node's own routes (watch, status, peers,
//! metrics, health), the fronts' routes merged in (the agent registry's
//! `/v1/agents` is the agent front's), and around all of them auth, load
//! shedding and response counting. Handlers validate everything before
//! anything is queued, so a refused request changes nothing.

use crate::center::{Center, Event, EventType};
use crate::config::{Config, Scope, TokenConfig};
use crate::error::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use regmesh_core::kind::view;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

/// Shared state of the API.
#[derive(Clone)]
pub struct Api {
    pub center: Arc<Center>,
    mesh: Option<Arc<crate::peer::mesh::Mesh>>,
    tokens: Arc<Vec<TokenConfig>>,
    requests: Arc<Semaphore>,
    watchers: Arc<Semaphore>,
}

/// Paths the node serves itself; fronts' routes may not use them.
pub const NODE_ROUTES: &[&str] = &[
    "/v1/watch",
    "/v1/status",
    "/v1/peers",
    "/v1/diagnose/mesh",
    "/v1/diagnose/record/{kind}/{id}",
    "/metrics",
    "/healthz",
    "/v1/openapi.json",
    "/ui",
    "/ui/",
    "/ui/app.js",
    "/ui/style.css",
];

/// Builds the router for `center` under `cfg`, with the fronts' `routes`
/// merged in behind the same guard.
pub fn router(center: Arc<Center>, cfg: &Config, mesh: Option<Arc<crate::peer::mesh::Mesh>>, routes: Router) -> Router {
    let api = Api {
        center,
        mesh,
        tokens: Arc::new(cfg.api.tokens.clone()),
        requests: Arc::new(Semaphore::new(cfg.api.max_concurrent_requests)),
        watchers: Arc::new(Semaphore::new(cfg.api.max_watchers)),
    };
    Router::new()
        .route("/v1/watch", get(watch))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/diagnose/mesh", get(diagnose_mesh))
        .route("/v1/diagnose/record/{kind}/{id}", get(diagnose_record))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(api.clone())
        .merge(crate::ui::router())
        .merge(routes)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(middleware::from_fn_with_state(api, guard))
}

fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    if path == "/healthz" || crate::ui::is_ui_path(path) {
        return None;
    }
    match *method {
        Method::GET | Method::HEAD => Some(Scope::Read),
        _ => Some(Scope::Write),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Load shedding, authentication and response counting, in that order.
async fn guard(State(api): State<Api>, req: Request, next: Next) -> Response {
    let metrics = api.center.metrics().clone();
    let Ok(_permit) = api.requests.clone().try_acquire_owned() else {
        metrics.shed.fetch_add(1, Ordering::Relaxed);
        metrics.count_status(503);
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry shortly",
        )
        .into_response();
    };
    if !api.tokens.is_empty() {
        if let Some(need) = required_scope(req.method(), req.uri().path()) {
            if let Err(e) = authorize(&api.tokens, req.headers(), need) {
                metrics.count_status(e.status.as_u16());
                return e.into_response();
            }
        }
    }
    let resp = next.run(req).await;
    metrics.count_status(resp.status().as_u16());
    resp
}

fn authorize(tokens: &[TokenConfig], headers: &HeaderMap, need: Scope) -> Result<(), ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <token>"))?;
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("Authorization must be Bearer <token>"))?;
    let t = tokens
        .iter()
        .find(|t| constant_time_eq(t.token.as_bytes(), presented.as_bytes()))
        .ok_or_else(|| unauthorized("unknown token"))?;
    if t.scopes.contains(&need) || t.scopes.contains(&Scope::Admin) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {:?} lacks the {:?} scope", t.name, need).to_lowercase(),
        ))
    }
}

/// The mesh as this center sees it: its DRiP state and each peer's state,
/// announced interval, last beat and flood counters.
async fn peers(State(api): State<Api>) -> Json<Value> {
    match &api.mesh {
        Some(m) => Json(m.peers_json()),
        None => Json(json!({"id": api.center.id(), "state": "active", "peers": []})),
    }
}

/// Every reachable center's version of one record, and why each differs.
async fn diagnose_record(
    State(api): State<Api>,
    axum::extract::Path((kind, _)): axum::extract::Path<(String, String)>,
    crate::id_path::IdPath(id): crate::id_path::IdPath,
) -> Result<Json<crate::diagnose::record::RecordReport>, ApiError> {
    use crate::diagnose::DiagnoseError;
    crate::diagnose::record::diagnose(&api.center, api.mesh.as_deref(), &kind, &id)
        .await
        .map(Json)
        .map_err(|e| match e {
            DiagnoseError::UnknownKind(_) => ApiError::not_found(e.to_string()),
            DiagnoseError::BadId(_) => ApiError::bad("invalid_id", e.to_string()),
            DiagnoseError::Read(r) => r.into(),
        })
}

/// The centers, their states, the lag matrix and disagreeing links.
async fn diagnose_mesh(State(api): State<Api>) -> Json<crate::diagnose::mesh::MeshReport> {
    Json(crate::diagnose::mesh::diagnose(&api.center, api.mesh.as_deref()).await)
}

async fn status(State(api): State<Api>) -> Json<Value> {
    Json(api.center.status())
}

async fn metrics(State(api): State<Api>) -> Response {
    let text = api.center.metrics().render(&api.center.gauges());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchParams {
    since: Option<u64>,
}

/// JSON of one change event as sent on the watch stream.
pub fn event_json(ev: &Event) -> Value {
    let r = &ev.record;
    let mut v = json!({
        "change": ev.no,
        "type": ev.typ.as_str(),
        "kind": r.kind,
        "id": r.id,
        "origin": r.origin,
        "version": r.version.to_string(),
    });
    if let Some(reason) = ev.reason {
        v["reason"] = json!(match reason {
            crate::center::DeleteReason::Client => "client",
            crate::center::DeleteReason::Retention => "retention",
            crate::center::DeleteReason::Resync => "resync",
        });
    }
    if ev.typ != EventType::Delete {
        v["record"] = view(r, false);
    }
    v
}

fn sse_event(ev: &Event) -> axum::response::sse::Event {
    axum::response::sse::Event::default()
        .id(ev.no.to_string())
        .event(ev.typ.as_str())
        .data(event_json(ev).to_string())
}

/// Where a watch stream is: replaying the log, or following live events.
struct WatchState {
    center: Arc<Center>,
    rx: broadcast::Receiver<Arc<Event>>,
    closing: tokio::sync::watch::Receiver<bool>,
    sent: u64,
    replay: bool,
    buf: std::collections::VecDeque<Event>,
    _permit: WatcherPermit,
}

struct WatcherPermit {
    _slot: OwnedSemaphorePermit,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Drop for WatcherPermit {
    fn drop(&mut self) {
        self.metrics.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

const REPLAY_PAGE: usize = 256;

async fn watch(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Result<Query<WatchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad("bad_header", "Last-Event-ID must be a change number"))
        })
        .transpose()?;
    let since = q.since.or(last_event_id);
    let permit = api.watchers.clone().try_acquire_owned().map_err(|_| {
        api.center.metrics().shed.fetch_add(1, Ordering::Relaxed);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many open watch streams",
        )
    })?;
    // Subscribe before reading the head, so nothing falls between them.
    let rx = api.center.subscribe();
    let head = api.center.head();
    let sent = match since {
        None => head,
        Some(s) if s > head => {
            return Err(ApiError::bad(
                "bad_query",
                format!("since={s} is ahead of this center's last change {head}"),
            ))
        }
        Some(s) => {
            if s < head {
                let first = api.center.change_bounds()?.map_or(head + 1, |(f, _)| f);
                if s + 1 < first {
                    return Err(ApiError::new(
                        StatusCode::GONE,
                        "cursor_expired",
                        format!("changes after {s} are no longer kept; the oldest kept is {first}. Re-list, then watch from {head}"),
                    ));
                }
            }
            s
        }
    };
    api.center.metrics().watchers.fetch_add(1, Ordering::Relaxed);
    let state = WatchState {
        center: api.center.clone(),
        rx,
        closing: api.center.closing(),
        sent,
        replay: sent < head,
        buf: Default::default(),
        _permit: WatcherPermit {
            _slot: permit,
            metrics: api.center.metrics().clone(),
        },
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.buf.pop_front() {
                st.sent = ev.no;
                return Some((Ok::<_, std::convert::Infallible>(sse_event(&ev)), st));
            }
            if st.replay {
                match st.center.changes_after(st.sent, REPLAY_PAGE) {
                    Ok(evs) if !evs.is_empty() => {
                        st.buf.extend(evs);
                        continue;
                    }
                    Ok(_) => st.replay = false,
                    Err(e) => {
                        tracing::warn!("watch replay failed: {e}");
                        return None;
                    }
                }
            }
            if *st.closing.borrow() {
                return None;
            }
            // `biased`: a fixed order, so a simulated run replays.
            let received = tokio::select! {
                biased;
                r = st.rx.recv() => r,
                _ = st.closing.changed() => return None,
            };
            match received {
                Ok(ev) if ev.no <= st.sent => continue,
                Ok(ev) if ev.no == st.sent + 1 => st.buf.push_back((*ev).clone()),
                // A gap (lagged behind the live channel): read it from the log.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => st.replay = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
