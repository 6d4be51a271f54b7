//! The dashboard at `/ui/`: three static files built into the binary (no
//! CDN, no build step). The page reads `/v1/status`, `/v1/peers`, `/metrics`,
//! `/v1/diagnose/mesh` and `/v1/watch` with the token the operator gives it,
//! so it sees exactly what that token may read.
//!
//! The files themselves hold no data and are served without a token (a
//! browser cannot send one when it opens a page). Must never embed state
//! or secrets into the assets, or load anything from another origin.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// The paths the dashboard serves (all without a token).
pub const UI_ROUTES: &[&str] = &["/ui", "/ui/", "/ui/app.js", "/ui/style.css"];

/// Whether `path` is one of the dashboard's files.
pub fn is_ui_path(path: &str) -> bool {
    UI_ROUTES.contains(&path)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // Only this center's own files and API; nothing from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}
