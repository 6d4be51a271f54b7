//! The peer listener: HTTPS with mutual TLS, separate from the client API.
//!
//! Every connection's client certificate (if any) travels with its requests.
//! HELLO is the only route served without one. Every other route requires:
//! - a client certificate issued by the mesh CA for a configured peer: that
//!   peer is the sender;
//! - a token (`Authorization`, with or without `Bearer `) issued by that same
//!   center (`iss`), signed with its key, `aud` = this center, `iat` within
//!   the skew window, and a first use of its `jti`;
//! - `DRiP-Node-ID` naming the sender on calls about the sender itself
//!   (heartbeat, node state, `/state`, sync, pull, NOTIFY, RFI; required on
//!   the first four, optional on the others), and a path node id naming the
//!   sender wherever the route has one.
//!
//! On propagated calls (`/commit` updates, `/voting`, vote answers)
//! `DRiP-Node-ID` names the initiator (DRiP §5.3), which must be a known
//! center. Refused calls change nothing. It must never take an identity from
//! the token itself.

use super::encoding;
use super::mesh::{Mesh, ServePullError, SyncError};
use crate::center::now_ms;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use regmesh_proto::mesh::votes::VoteId;
use regmesh_proto::replay::ReplayError;
use regmesh_proto::version::RECORD_FORMAT_HEADER;
use regmesh_proto::wire::beat::Beat;
use regmesh_proto::wire::flood::{self as flood_wire, Answer, BodyError, Flood, FloodHead, Message, Verb};
use regmesh_proto::wire::hello::{Hello, HELLO_BYTES_MAX};
use regmesh_proto::wire::pull::{PullRequest, SyncAccepted, SyncRequestAccepted};
use regmesh_proto::wire::vote::{decode_answer, VoteRequest, VOTE_ANSWER_BYTES_MAX, VOTE_REQUEST_BYTES_MAX};
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The client certificate of the connection a request came on.
#[derive(Clone)]
pub struct PeerCert(pub Option<Arc<CertificateDer<'static>>>);

/// Deadline for receiving a peer request body.
pub const PEER_BODY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(mesh: Arc<Mesh>) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/node/{id}/{state}", post(node_state))
        .route("/heartbeat/node/{id}", post(heartbeat))
        .route("/commit", post(commit))
        .route("/mesh/v1/hello", post(hello))
        .route("/mesh/v1/pull", post(pull))
        .route("/mesh/v1/{message}", post(message))
        .route("/mesh/v1/blob/{typ}/{key}", get(blob))
        .route("/voting", post(voting))
        .route("/sync/node/{id}", post(sync_request).put(sync_request))
        // The draft spells the vote answer three ways; all are accepted.
        .route("/votingphase/node/{id}/response/{r}", post(vote_answer))
        .route("/voting/peernode/{id}/response/{r}", post(vote_answer))
        .route("/node/{id}/response/{r}", post(vote_answer))
        .fallback(|| async { ApiError::not_found("no such peer endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this peer endpoint",
            )
        })
        .with_state(mesh)
}

pub use super::accept::serve;

fn refuse(status: StatusCode, code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(status, code, msg)
}

/// What `DRiP-Node-ID` names on a route.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeHeader {
    /// The sender itself (heartbeat, node state, `/state`, sync, pull,
    /// NOTIFY, RFI): when present it must be the sender; `required` says
    /// whether it must be present.
    Sender { required: bool },
    /// The initiator of a propagated call (`/commit` updates, `/voting`, vote
    /// answers), which relays do not change (DRiP §5.3); checked by the
    /// route.
    Initiator,
}

/// Authenticates the sender of a peer call; returns its center id.
///
/// The sender is who the client certificate names, among the peers
/// (configured, or added at runtime and pinned). The token must be issued
/// by that same center (`iss`), signed with its key, for us, fresh and
/// unused. `DRiP-Node-ID` must name it too where the route speaks for the
/// sender ([`NodeHeader::Sender`]), and so must the path's node id
/// (`path_id`) where the route has one. Refusals change nothing (the
/// replay cache remembers only accepted tokens).
fn authenticate(
    mesh: &Mesh,
    headers: &HeaderMap,
    cert: &PeerCert,
    node_header: NodeHeader,
    path_id: Option<&str>,
) -> Result<String, ApiError> {
    let Some(cert) = &cert.0 else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "certificate_required",
            "this call needs a client certificate",
        ));
    };
    // Who the certificate names: the CA issued it for one center id, or it
    // matches the TLSA pin of a peer found from DNS (`pins.rs`).
    let Some(sender) = mesh
        .peers()
        .iter()
        .map(|p| p.cfg.id.as_str())
        .find(|id| mesh.trust().names(cert, id))
        .map(str::to_string)
    else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "not_a_peer",
            "the client certificate names no configured peer",
        ));
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(regmesh_core::jwt::from_authorization)
        .ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "token_required",
                "missing Authorization token",
            )
        })?;
    let claims = regmesh_core::jwt::verify(
        token,
        &sender,
        &mesh.me,
        |id| mesh.center.key_of(id),
        now_ms() / 1000,
        mesh.skew_s,
    )
    .map_err(|e| match e {
        regmesh_core::jwt::JwtError::IssuerMismatch { .. } => {
            refuse(StatusCode::FORBIDDEN, "issuer_mismatch", e.to_string())
        }
        e => refuse(StatusCode::UNAUTHORIZED, "bad_token", e.to_string()),
    })?;
    if let NodeHeader::Sender { required } = node_header {
        match header(headers, "drip-node-id") {
            Some(node) if node == sender => {}
            None if !required => {}
            node => {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "node_id_mismatch",
                    format!("DRiP-Node-ID {:?} is not the sender {sender:?}", node.unwrap_or("")),
                ))
            }
        }
    }
    if let Some(p) = path_id.filter(|p| *p != sender) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "node_id_mismatch",
            format!("node {p:?} in the path is not the sender {sender:?}"),
        ));
    }
    match mesh
        .replay
        .lock()
        .expect("replay lock")
        .admit(&claims.iss, &claims.jti, claims.exp, now_ms() / 1000)
    {
        Ok(()) => Ok(sender),
        Err(ReplayError::Replayed) => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "replayed_token",
            "this token was already used",
        )),
        Err(ReplayError::Full) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many recent tokens",
        )),
    }
}

/// Calls about the sender itself: `DRiP-Node-ID` is required and, like a
/// path node id, must name the sender.
const SENDER: NodeHeader = NodeHeader::Sender { required: true };
/// Calls where `DRiP-Node-ID` may be left out, but names the sender if sent.
const SENDER_IF_SENT: NodeHeader = NodeHeader::Sender { required: false };

async fn state(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&mesh, &headers, &cert, SENDER, None)?;
    Ok(Json(json!({"state": mesh.node_state().as_str()})).into_response())
}

/// `POST /node/:nodeid/active` and `/inactive` (DRiP §5.2.1–2): the sender
/// announces its own state.
async fn node_state(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    Path((id, state)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state != "active" && state != "inactive" {
        return Err(ApiError::not_found("no such peer endpoint"));
    }
    let sender = authenticate(&mesh, &headers, &cert, SENDER, Some(&id))?;
    mesh.announce(&sender, &state);
    Ok(StatusCode::OK.into_response())
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let raw = tokio::time::timeout(PEER_BODY_TIMEOUT, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            refuse(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "request body not received in time",
            )
        })?
        .map_err(|_| {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body exceeds {limit} bytes"),
            )
        })?;
    match header(headers, "content-encoding").map(str::trim) {
        None | Some("identity") => Ok(raw),
        Some(c) if c.eq_ignore_ascii_case(encoding::DEFLATE) => match encoding::inflate(&raw, limit) {
            Ok(b) => Ok(bytes::Bytes::from(b)),
            Err(e @ encoding::InflateError::TooLarge(_)) => {
                Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()))
            }
            Err(e) => Err(refuse(StatusCode::BAD_REQUEST, "malformed", e.to_string())),
        },
        Some(c) => Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("Content-Encoding {c:?} is not supported; use deflate or none"),
        )),
    }
}

/// A JSON answer, deflated when the caller accepts it and it is large.
fn json_answer(headers: &HeaderMap, body: Vec<u8>) -> Response {
    use axum::http::header;
    if body.len() >= encoding::COMPRESS_MIN && encoding::accepts_deflate(header(headers, "accept-encoding")) {
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_ENCODING, encoding::DEFLATE),
            ],
            encoding::deflate(&body),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Heartbeat body: a beat (`wire::beat`: `{"state": "...", "interval_ms":
/// N, ...}`), the bare state word of DRiP's example, or nothing. Without an
/// interval, the sender is judged by the default one
/// (`constants::BEAT_INTERVAL_DEFAULT_MS`).
async fn heartbeat(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = authenticate(&mesh, &headers, &cert, SENDER, Some(&id))?;
    let raw = read_body(&headers, body, 256 * 1024).await?;
    let beat = Beat::from_body(&raw).map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    // The answer is this center's own beat for the sender, so each side
    // learns the other's watermarks on every exchange.
    let answer = mesh
        .beat_received(&sender, beat)
        .ok_or_else(|| refuse(StatusCode::FORBIDDEN, "not_a_peer", "not a peer"))?;
    Ok(Json(answer).into_response())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `DRiP-Node-ID` (the initiator, a known center) and `DRiP-Node-Counter`
/// of a propagated call (`/commit`, `/voting`).
fn initiator_and_counter(mesh: &Mesh, headers: &HeaderMap) -> Result<(String, u64), ApiError> {
    let bad = |m: &str| refuse(StatusCode::BAD_REQUEST, "bad_header", m.to_string());
    let initiator = header(headers, "drip-node-id")
        .ok_or_else(|| bad("DRiP-Node-ID is required"))?
        .to_string();
    if initiator != mesh.me && mesh.center.key_of(&initiator).is_none() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "unknown_center",
            format!("initiator {initiator:?} is not a known center"),
        ));
    }
    let counter = header(headers, "drip-node-counter")
        .ok_or_else(|| bad("DRiP-Node-Counter is required"))?
        .parse()
        .map_err(|_| bad("DRiP-Node-Counter must be an unsigned integer"))?;
    if counter > regmesh_proto::dedup::COUNTER_MAX {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "counter_out_of_range",
            format!(
                "DRiP-Node-Counter above {}: counters wrap with DRiP-Node-Counter-reset",
                regmesh_proto::dedup::COUNTER_MAX
            ),
        ));
    }
    Ok((initiator, counter))
}

async fn commit(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = authenticate(&mesh, &headers, &cert, NodeHeader::Initiator, None)?;
    // Protocol version 2 names the records' format: refused whole, unread,
    // when it is not one we decode (or not a version we speak).
    mesh.record_format_of(header(&headers, RECORD_FORMAT_HEADER))
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "record_format", e.to_string()))?;
    let bad = |m: String| refuse(StatusCode::BAD_REQUEST, "bad_header", m);
    let (initiator, _) = initiator_and_counter(&mesh, &headers)?;
    flood_wire::flag("DRiP-Node-Counter-reset", header(&headers, flood_wire::COUNTER_RESET))
        .map_err(|e| bad(e.to_string()))?;
    let sync = match header(&headers, "drip-transaction-type").unwrap_or("update") {
        "update" => false,
        "sync" => true,
        t => return Err(bad(format!("DRiP-Transaction-Type {t:?} is not update or sync"))),
    };
    if sync {
        // A full sync (DRiP §5.6) from the sender itself, which we asked for
        // one: records of any origin, no dedup, no relay.
        if initiator != sender {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "node_id_mismatch",
                format!("a sync message's DRiP-Node-ID {initiator:?} must be its sender {sender:?}"),
            ));
        }
        let unsolicited = || {
            refuse(
                StatusCode::CONFLICT,
                "unsolicited_sync",
                format!(
                    "{} asked {sender:?} for no full sync (PUT /sync/node/{} comes first)",
                    mesh.me, mesh.me
                ),
            )
        };
        if mesh.admit_sync(&sender).is_err() {
            return Err(unsolicited());
        }
        let complete = match header(&headers, "drip-sync-complete").unwrap_or("false") {
            "true" => true,
            "false" => false,
            v => return Err(bad(format!("DRiP-Sync-Complete must be true or false, not {v:?}"))),
        };
        let raw = read_body(&headers, body, mesh.max_body_bytes).await?;
        let applied = match mesh.receive_sync(&sender, &raw, complete).await {
            Ok(n) => n,
            Err(SyncError::Unsolicited(_)) => return Err(unsolicited()),
            Err(SyncError::Malformed(e)) => return Err(refuse(StatusCode::BAD_REQUEST, "malformed", e)),
            Err(SyncError::Write(e)) => return Err(e.into()),
        };
        let answer = SyncAccepted {
            accepted: true,
            applied,
            complete,
        };
        return Ok(Json(answer).into_response());
    }
    let head = FloodHead::parse(|n| header(&headers, n)).map_err(|e| bad(e.to_string()))?;
    let raw = read_body(&headers, body, mesh.max_body_bytes).await?;
    // A copy seen before (another path's relay) is answered before its
    // records are decoded.
    if let Some(seen) = mesh.arrive(&sender, &head)? {
        return Ok(Json(seen).into_response());
    }
    let flood = Flood::decode(head, &raw).map_err(|e| match e {
        BodyError::WrongOrigin { .. } => refuse(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        e => refuse(StatusCode::BAD_REQUEST, "malformed", e.to_string()),
    })?;
    Ok(Json(mesh.receive(&sender, flood).await?).into_response())
}

/// HELLO (document 003): accepted without a client certificate, so a center
/// can introduce itself. Answers accepted (with the protocol version
/// chosen) or refused, with a reason and its code (403 not a peer, 409 no
/// protocol version in common, 400 an empty range).
async fn hello(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = read_body(&headers, body, HELLO_BYTES_MAX).await?;
    let hello: Hello =
        serde_json::from_slice(&raw).map_err(|e| refuse(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))?;
    let (status, answer) = mesh.answer_hello(&hello, cert.0.as_deref());
    if answer.accepted {
        // A peer introducing itself (again, say after a restart) may have
        // lost its view of our watermarks: the next beat carries the whole map.
        if let Some(peer) = mesh.peer(&hello.id) {
            mesh.hello_received(&peer);
        }
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    Ok((status, Json(answer)).into_response())
}

/// Anti-entropy pull (regmesh extension): `{"origin", "after", "limit"}` →
/// `{"records": [...], "covered_through": N, "more": bool}`.
async fn pull(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = authenticate(&mesh, &headers, &cert, SENDER_IF_SENT, None)?;
    let raw = read_body(&headers, body, 4096).await?;
    let req: PullRequest = serde_json::from_slice(&raw).map_err(|e| {
        let code = if e.is_data() { "invalid" } else { "malformed_json" };
        refuse(StatusCode::BAD_REQUEST, code, e.to_string())
    })?;
    let out = mesh.serve_pull(&sender, &req).map_err(|e| match e {
        ServePullError::NotAPeer(_) => refuse(StatusCode::FORBIDDEN, "not_a_peer", e.to_string()),
        ServePullError::Read(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()),
    })?;
    let mut answer = json_answer(&headers, out);
    if let Some((name, value)) = mesh.peer(&sender).and_then(|p| mesh.record_format_header(&p)) {
        answer
            .headers_mut()
            .insert(name, value.parse().expect("a number is a header value"));
    }
    Ok(answer)
}

/// Vote request (DRiP §5.5.1.1): answered 200 at once; the ballot follows on
/// the response endpoint once this node's subtree has voted.
async fn voting(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = authenticate(&mesh, &headers, &cert, NodeHeader::Initiator, None)?;
    let (initiator, counter) = initiator_and_counter(&mesh, &headers)?;
    // A vote is the first phase of an update (DRiP §5.5): the initiator
    // MUST say so (§5.3). The draft's own curl example leaves it out, so a
    // missing header is read as `update`; anything else is refused.
    match header(&headers, "drip-transaction-type") {
        None | Some("update") => {}
        Some(t) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "bad_header",
                format!("DRiP-Transaction-Type {t:?} on /voting: a vote is part of an update"),
            ))
        }
    }
    let reset = header(&headers, "drip-node-counter-reset") == Some("true");
    let raw = read_body(&headers, body, VOTE_REQUEST_BYTES_MAX).await?;
    let request =
        VoteRequest::decode(&raw).map_err(|e| refuse(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))?;
    if mesh.center.kinds().get(&request.kind).is_none() || regmesh_core::validate_record_id(&request.id).is_err() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid",
            "a vote needs a known kind and a valid id",
        ));
    }
    // A deadline too far ahead is malformed (400, nothing claimed); one
    // already passed is lateness, answered at once naming nobody.
    mesh.vote_request(sender, VoteId::new(&initiator, counter), reset, request)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

/// A vote answer (DRiP §5.5.1.2): `:id` is the answering node (the
/// authenticated sender), `:r` is yes or no; the vote is named by
/// `DRiP-Node-ID` (initiator) and `DRiP-Node-Counter`.
async fn vote_answer(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    Path((id, r)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = authenticate(&mesh, &headers, &cert, NodeHeader::Initiator, Some(&id))?;
    let bad = |m: String| refuse(StatusCode::BAD_REQUEST, "bad_header", m);
    let initiator = header(&headers, "drip-node-id")
        .ok_or_else(|| bad("DRiP-Node-ID is required".into()))?
        .to_string();
    let counter: u64 = header(&headers, "drip-node-counter")
        .ok_or_else(|| bad("DRiP-Node-Counter is required".into()))?
        .parse()
        .map_err(|_| bad("DRiP-Node-Counter must be an unsigned integer".into()))?;
    // An answer names the centers it speaks for: up to 4096 ids.
    let raw = read_body(&headers, body, VOTE_ANSWER_BYTES_MAX).await?;
    let answer =
        decode_answer(&sender, &r, &raw).map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    mesh.vote_answer(&sender, &VoteId::new(&initiator, counter), answer)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

/// Full sync request (DRiP §5.6.1, `PUT` or `POST /sync/node/:nodeid`): the
/// sender asks for everything it may see; it arrives as `sync` messages on
/// `/commit`, the last with `DRiP-Sync-Complete: true`.
async fn sync_request(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sender = authenticate(&mesh, &headers, &cert, SENDER, Some(&id))?;
    let peer = mesh
        .peer(&sender)
        .ok_or_else(|| refuse(StatusCode::FORBIDDEN, "not_a_peer", "not a peer"))?;
    mesh.full_sync_asked(&peer);
    Ok(Json(SyncRequestAccepted { accepted: true }).into_response())
}

async fn small_json(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let raw = read_body(headers, body, 64 * 1024).await?;
    serde_json::from_slice(&raw).map_err(|e| refuse(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))
}

/// NOTIFY and RFI (document 003), one route each: `/mesh/v1/notify`,
/// `/mesh/v1/rfi`. Answered `{"accepted": bool, "reason"?, "data"?}`.
async fn message(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = authenticate(&mesh, &headers, &cert, SENDER_IF_SENT, None)?;
    let Some(verb) = Verb::from_segment(&kind) else {
        return Err(ApiError::not_found("no such peer endpoint"));
    };
    let msg = small_json(&headers, body).await?;
    let answer = match Message::from_value(msg) {
        Ok(m) => mesh.message(&sender, verb, m).await,
        Err(e) => Answer::rejected(e.to_string()),
    };
    Ok(Json(answer).into_response())
}

#[derive(serde::Deserialize)]
struct BlobOffset {
    #[serde(default)]
    offset: u64,
}

/// `GET /mesh/v1/blob/{typ}/{key}?offset=`: part of a front's blob, raw
/// (the total as 8 bytes big endian, then the data); 404 with the reason
/// when the front has no such blob or refuses this peer.
async fn blob(
    State(mesh): State<Arc<Mesh>>,
    Extension(cert): Extension<PeerCert>,
    Path((typ, key)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<BlobOffset>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sender = authenticate(&mesh, &headers, &cert, SENDER_IF_SENT, None)?;
    match mesh.front_blob(&typ, &sender, &key, q.offset) {
        None => Err(ApiError::not_found("no front serves blobs of this type")),
        Some(Err(why)) => Err(ApiError::not_found(why)),
        Some(Ok(b)) => {
            let mut body = Vec::with_capacity(8 + b.data.len());
            body.extend_from_slice(&b.total.to_be_bytes());
            body.extend_from_slice(&b.data);
            Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
        }
    }
}
