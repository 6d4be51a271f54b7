//! `/v1/agents`: create or replace (a new id is claimed across the mesh by
//! the node, because the kind says so), read, delete, heartbeat, and list
//! with the kind's filters and a cursor; `?scope=mesh` on a read or list
//! goes to `mesh_routes.rs`, and `/alias` to `alias.rs`. Every handler validates before it
//! asks the node for anything, so a refused request changes nothing; all
//! state goes through the [`NodeHandle`].

use crate::fetch_cache::FetchCache;
use crate::kind::AGENT;
use crate::mesh_routes::Scope;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use regmesh_core::kind::view_json;
use regmesh_node::center::Outcome;
use regmesh_node::error::ApiError;
use regmesh_node::handle::ListQuery;
use regmesh_node::http::{etag, if_match, json_body, json_text, record_response, RecordId};
use regmesh_node::NodeHandle;
use serde::Deserialize;
use std::sync::Arc;

/// The front's routes, with `node` as their state. (Method order matters:
/// it is the order of the `Allow` header in 405 answers.)
pub fn router(node: NodeHandle, cache: Arc<FetchCache>) -> Router {
    Router::new()
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}", put(put_agent).get(get_agent).delete(delete_agent))
        .route("/v1/agents/{id}/heartbeat", post(heartbeat))
        .route(
            "/v1/agents/{id}/alias",
            put(crate::alias::put)
                .get(crate::alias::get)
                .delete(crate::alias::delete),
        )
        .route("/v1/duplicates", get(crate::duplicates::list))
        .layer(Extension(cache))
        .with_state(node)
}

async fn put_agent(
    State(node): State<NodeHandle>,
    RecordId(id): RecordId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, body, node.limits()).await?;
    let kind = node.kind(AGENT).expect("the agent front registers its kind");
    let prepared = kind.prepare(&id, value).map_err(|e| {
        let mut err = ApiError::bad("invalid", e.to_string());
        err.field = Some(e.field);
        err
    })?;
    let if_version = if_match(&headers)?;
    match node.put(AGENT, &id, prepared, if_version).await? {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetParams {
    scope: Option<String>,
}

/// One agent; an alias answers its canonical agent, with `resolved_from`.
async fn get_agent(
    State(node): State<NodeHandle>,
    Extension(cache): Extension<Arc<FetchCache>>,
    RecordId(id): RecordId,
    q: Result<Query<GetParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    if Scope::parse(q.scope.as_deref())? == Scope::Mesh {
        return crate::mesh_routes::lookup(&node, &cache, &id).await;
    }
    let canonical = crate::alias::resolve(&node, &id)?;
    match node.get(AGENT, &canonical)? {
        Some(r) if canonical == id => Ok(record_response(StatusCode::OK, &r, node.is_stale(&r))),
        Some(r) => {
            let mut v = regmesh_core::kind::view(&r, node.is_stale(&r));
            v["resolved_from"] = serde_json::Value::String(id);
            let mut resp = axum::Json(v).into_response();
            resp.headers_mut().insert(header::ETAG, etag(&r));
            Ok(resp)
        }
        None => Err(ApiError::not_found(format!("agent {id} does not exist"))),
    }
}

async fn delete_agent(
    State(node): State<NodeHandle>,
    RecordId(id): RecordId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let if_version = if_match(&headers)?;
    node.delete(AGENT, &id, if_version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn heartbeat(State(node): State<NodeHandle>, RecordId(id): RecordId) -> Result<Response, ApiError> {
    let r = node.heartbeat(AGENT, &id).await?;
    Ok(record_response(StatusCode::OK, &r, false))
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
    scope: Option<String>,
}

async fn list_agents(
    State(node): State<NodeHandle>,
    Extension(cache): Extension<Arc<FetchCache>>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    if Scope::parse(q.scope.as_deref())? == Scope::Mesh {
        if q.cursor.is_some() {
            return Err(ApiError::bad(
                "bad_query",
                "scope=mesh answers one page; it takes no cursor",
            ));
        }
        let filters = [
            ("capability", &q.capability),
            ("tag", &q.tag),
            ("status", &q.status),
            ("origin", &q.origin),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect();
        return crate::mesh_routes::search(&node, &cache, filters, q.limit).await;
    }
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
    let page = node.list(
        AGENT,
        &ListQuery {
            filters,
            cursor: q.cursor.as_deref(),
            limit: q.limit,
        },
    )?;
    // An alias is not listed: its canonical agent answers for it.
    let aliases = crate::alias::any(&node)?;
    let mut out = String::with_capacity(page.records.iter().map(|r| r.body.len() + 256).sum::<usize>() + 64);
    out.push_str("{\"items\":[");
    let mut first = true;
    for r in &page.records {
        if aliases && crate::alias::resolve(&node, &r.id)? != r.id {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&view_json(r, node.is_stale(r)));
    }
    out.push_str("],\"next_cursor\":");
    out.push_str(&serde_json::to_string(&page.next_cursor).expect("cursor serializes"));
    out.push('}');
    Ok(json_text(out))
}
