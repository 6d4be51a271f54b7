//! A small HTTP/1.1 client for the client API, on hyper. Used by the CLI,
//! integration tests and benchmarks. One [`Conn`] is one keep-alive
//! connection; requests on it are sequential. Every call has a deadline.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Per-request deadline.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read into memory.
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {msg}")]
    Connect { addr: String, msg: String },
    #[error("request failed: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("server URL {0:?} must look like http://host:port")]
    BadUrl(String),
}

/// Where a center's API is and how to authenticate.
#[derive(Clone)]
pub struct Client {
    /// `host:port`.
    pub authority: String,
    pub token: Option<String>,
    /// How connections are opened (TCP unless [`Client::with_transport`]).
    transport: std::sync::Arc<dyn crate::transport::Transport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authority", &self.authority)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Client {
    /// From `http://host:port` (a trailing slash is fine; https is not spoken
    /// by the client API).
    pub fn new(url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let authority = url
            .strip_prefix("http://")
            .map(|s| s.trim_end_matches('/'))
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
        Ok(Client {
            authority: authority.to_string(),
            token,
            transport: crate::transport::tcp(),
        })
    }

    /// The same client, connecting over `transport` (the whole-node
    /// simulation's network).
    pub fn with_transport(mut self, transport: std::sync::Arc<dyn crate::transport::Transport>) -> Self {
        self.transport = transport;
        self
    }

    pub async fn connect(&self) -> Result<Conn, ClientError> {
        let err = |msg: String| ClientError::Connect {
            addr: self.authority.clone(),
            msg,
        };
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, self.transport.connect(&self.authority))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        let (send, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err(e.to_string()))?;
        crate::spawn::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            send,
            client: self.clone(),
        })
    }

    /// One request on a fresh connection.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        self.connect().await?.request(method, path, json).await
    }
}

/// One keep-alive connection.
pub struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    client: Client,
}

impl Conn {
    fn build(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Request<Full<Bytes>> {
        let mut b = self.builder(method, path);
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        b.body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request builds")
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        let body = json.map(|v| serde_json::to_vec(v).expect("json serializes"));
        self.send_raw(self.build(method, path, body)).await
    }

    /// Sends a prepared request and reads the whole response.
    pub async fn send_raw(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        let fut = async {
            self.send.ready().await.map_err(|e| ClientError::Http(e.to_string()))?;
            let resp = self
                .send
                .send_request(req)
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let limited = http_body_util::Limited::new(body, RESPONSE_BYTES_MAX);
            let body = limited
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT))?
    }

    /// Sends a request and returns the response with its body unread (for
    /// streams such as `/v1/watch`).
    pub async fn stream(&mut self, path: &str) -> Result<Response<Incoming>, ClientError> {
        let req = self.build(Method::GET, path, None);
        self.send.ready().await.map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::time::timeout(REQUEST_TIMEOUT, self.send.send_request(req))
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT))?
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// A request builder with this connection's host and token, for callers
    /// that need headers of their own.
    pub fn builder(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.client.authority);
        if let Some(t) = &self.client.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b
    }
}
