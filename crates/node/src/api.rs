//! The client API (HTTP/JSON). Routes, auth, load shedding, body limits and
//! the watch stream. Handlers validate everything before anything is queued,
//! so a refused request changes nothing.

use crate::center::{Center, Event, EventType, Outcome, WriteOp};
use crate::config::{Config, Scope, TokenConfig};
use crate::error::ApiError;
use crate::id_path::IdPath;
use crate::peer::mesh::VoteOutcome;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use regmesh_core::agent::AGENT;
use regmesh_core::kind::{view, view_json};
use regmesh_core::{Hlc, Record};
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
    max_body_bytes: usize,
    body_timeout: Duration,
    list_limit_default: usize,
    list_limit_max: usize,
    requests: Arc<Semaphore>,
    watchers: Arc<Semaphore>,
}

/// Builds the router for `center` under `cfg`.
pub fn router(center: Arc<Center>, cfg: &Config, mesh: Option<Arc<crate::peer::mesh::Mesh>>) -> Router {
    let api = Api {
        center,
        mesh,
        tokens: Arc::new(cfg.api.tokens.clone()),
        max_body_bytes: cfg.api.max_body_bytes,
        body_timeout: Duration::from_millis(cfg.api.body_timeout_ms),
        list_limit_default: cfg.limits.list_limit_default,
        list_limit_max: cfg.limits.list_limit_max,
        requests: Arc::new(Semaphore::new(cfg.api.max_concurrent_requests)),
        watchers: Arc::new(Semaphore::new(cfg.api.max_watchers)),
    };
    Router::new()
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}", put(put_agent).get(get_agent).delete(delete_agent))
        .route("/v1/agents/{id}/heartbeat", post(heartbeat))
        .route("/v1/watch", get(watch))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api)
}

fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    if path == "/healthz" {
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

fn etag(r: &Record) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", r.version)).expect("version is ASCII")
}

fn if_match(headers: &HeaderMap) -> Result<Option<Hlc>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim().trim_matches('"');
    s.parse::<Hlc>()
        .map(Some)
        .map_err(|_| ApiError::bad("bad_header", "If-Match must be a version as returned in ETag"))
}

/// A response whose body is JSON text built by hand.
fn json_text(body: String) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
}

fn record_response(status: StatusCode, r: &Record, stale: bool) -> Response {
    let mut resp = (status, json_text(view_json(r, stale))).into_response();
    resp.headers_mut().insert(header::ETAG, etag(r));
    resp
}

/// Reads a JSON body: content type, size limit, syntax.
async fn json_body(headers: &HeaderMap, body: Body, limit: usize, deadline: Duration) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be application/json, not {ct:?}"),
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    {
        if n > limit {
            return Err(too_large());
        }
    }
    let bytes = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("request body not received within {} ms", deadline.as_millis()),
            )
        })?
        .map_err(|_| too_large())?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad("malformed_json", format!("body is not valid JSON: {e}")))
}

async fn put_agent(
    State(api): State<Api>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, body, api.max_body_bytes, api.body_timeout).await?;
    let kind = api.center.kinds().get(AGENT).expect("agent kind is built in").clone();
    let prepared = kind.prepare(&id, value).map_err(|e| {
        let mut err = ApiError::bad("invalid", e.to_string());
        err.field = Some(e.field);
        err
    })?;
    let if_version = if_match(&headers)?;
    // A new id is claimed across the mesh first (two-phase vote); updates by
    // the owner need no vote.
    let mut granted = None;
    if let Some(mesh) = &api.mesh {
        if api.center.get(AGENT, &id)?.is_none() {
            match mesh.vote_new(AGENT, &id).await {
                VoteOutcome::Granted(c) => granted = Some(c),
                VoteOutcome::Refused(why) => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "claimed",
                        format!("{id} cannot be created here: {why}"),
                    ))
                }
                VoteOutcome::Undecided(why) => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "vote_undecided",
                        format!("the mesh could not agree on creating {id}: {why}"),
                    ))
                }
            }
        }
    }
    let result = api
        .center
        .write(AGENT, &id, WriteOp::Put { prepared, if_version })
        .await;
    if let (Some(mesh), Some(c)) = (&api.mesh, granted) {
        mesh.release(AGENT, &id, c);
    }
    match result? {
        Outcome::Created(r) => {
            let mut resp = record_response(StatusCode::CREATED, &r, false);
            if let Ok(loc) = HeaderValue::from_str(&format!("/v1/agents/{id}")) {
                resp.headers_mut().insert(header::LOCATION, loc);
            }
            Ok(resp)
        }
        Outcome::Replaced(r) => Ok(record_response(StatusCode::OK, &r, false)),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected outcome {other:?}"),
        )),
    }
}

async fn get_agent(State(api): State<Api>, IdPath(id): IdPath) -> Result<Response, ApiError> {
    match api.center.get(AGENT, &id)? {
        Some(r) => Ok(record_response(StatusCode::OK, &r, api.center.is_stale(&r))),
        None => Err(ApiError::not_found(format!("agent {id} does not exist"))),
    }
}

async fn delete_agent(State(api): State<Api>, IdPath(id): IdPath, headers: HeaderMap) -> Result<Response, ApiError> {
    let if_version = if_match(&headers)?;
    api.center.write(AGENT, &id, WriteOp::Delete { if_version }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn heartbeat(State(api): State<Api>, IdPath(id): IdPath) -> Result<Response, ApiError> {
    match api.center.write(AGENT, &id, WriteOp::Heartbeat).await? {
        Outcome::Renewed(r) => Ok(record_response(StatusCode::OK, &r, false)),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected outcome {other:?}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    capability: Option<String>,
    tag: Option<String>,
    status: Option<String>,
    origin: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Cursor: `"c1."` + hex of the last id returned.
fn encode_cursor(id: &str) -> String {
    let mut s = String::from("c1.");
    for b in id.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn decode_cursor(c: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad("bad_cursor", "cursor is not one this center issued");
    let hex = c.strip_prefix("c1.").ok_or_else(bad)?;
    if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 2 * regmesh_core::id::RECORD_ID_BYTES_MAX {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let id = String::from_utf8(bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    regmesh_core::validate_record_id(&id).map_err(|_| bad())?;
    Ok(id)
}

async fn list_agents(
    State(api): State<Api>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(api.list_limit_default);
    if limit == 0 || limit > api.list_limit_max {
        return Err(ApiError::bad(
            "bad_query",
            format!("limit must be 1 to {}", api.list_limit_max),
        ));
    }
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut filters: Vec<(&str, &str)> = Vec::new();
    for (name, v) in [
        ("capability", &q.capability),
        ("tag", &q.tag),
        ("status", &q.status),
        ("origin", &q.origin),
    ] {
        if let Some(v) = v {
            filters.push((name, v.as_str()));
        }
    }
    let (records, more) = api.center.list(AGENT, &filters, after.as_deref(), limit)?;
    let next = if more {
        records.last().map(|r| encode_cursor(&r.id))
    } else {
        None
    };
    let mut out = String::with_capacity(records.iter().map(|r| r.body.len() + 256).sum::<usize>() + 64);
    out.push_str("{\"items\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&view_json(r, api.center.is_stale(r)));
    }
    out.push_str("],\"next_cursor\":");
    out.push_str(&serde_json::to_string(&next).expect("cursor serializes"));
    out.push('}');
    Ok(json_text(out).into_response())
}

/// The mesh as this center sees it: its DRiP state and each peer's state,
/// announced interval, last beat and flood counters.
async fn peers(State(api): State<Api>) -> Json<Value> {
    match &api.mesh {
        Some(m) => Json(m.peers_json()),
        None => Json(json!({"id": api.center.id(), "state": "active", "peers": []})),
    }
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
            let received = tokio::select! {
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
