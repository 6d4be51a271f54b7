//! A peer that bends the rules: raw DRiP calls made with a real member's
//! certificate, key and token, from a host of their own on the simulated
//! network, so a scenario can send what no honest center would (a full
//! sync nobody asked for, a claim about another origin, a record its origin
//! signed that no writer of its kind would store, a token of one member on
//! another's certificate) and watch what the receiving center does with it.
//!
//! Must never: go through the node's own peer client (its requests are the
//! honest ones), or reach a center other than over the simulated network.

use crate::world::{identity, World, PEER_PORT};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The status and body of a rogue call, or why it got none.
pub type RogueAnswer = Result<(u16, String), String>;

/// One call.
#[derive(Default)]
pub struct RogueCall {
    /// Whose certificate and key it carries (and token, unless
    /// `token_issuer` names another member).
    pub as_center: String,
    /// Who issues and signs the token, if not `as_center`: a member's real
    /// token on another member's certificate.
    pub token_issuer: Option<String>,
    /// The center called.
    pub to: String,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// Token ids (`jti`) of rogue calls: each call's is new, so a center's
/// replay cache never refuses a second call (counted, not random, so runs
/// replay).
static JTI: AtomicU64 = AtomicU64::new(0);

impl World {
    /// Signs `r` as center `origin` would (its real key): a record no honest
    /// writer made can still carry a valid origin signature.
    pub fn sign_as(&self, origin: &str, r: &mut regmesh_core::Record) {
        let i = self.ids.iter().position(|c| c == origin).expect("a member");
        identity(i).sign_record(r);
    }

    /// Makes `call` over mutual TLS and runs the simulation until it is
    /// answered (at most a minute of simulated time).
    pub fn rogue_call(&mut self, call: RogueCall) -> RogueAnswer {
        assert!(self.ids.contains(&call.as_center), "a member's credentials");
        let issuer = call.token_issuer.clone().unwrap_or_else(|| call.as_center.clone());
        let j = self.ids.iter().position(|c| *c == issuer).expect("a member's key");
        let out: Rc<RefCell<Option<RogueAnswer>>> = Rc::default();
        let (cell, dir) = (out.clone(), self.dir.path().to_path_buf());
        self.spawn_client(async move {
            let r = send(dir, j, call).await;
            *cell.borrow_mut() = Some(r);
        });
        assert!(self.run_until(60_000, |_| out.borrow().is_some()), "a rogue call ends");
        let r = out.borrow_mut().take().expect("answered");
        r
    }
}

/// `call` made on its member's certificate with a token signed by the `j`th
/// member's key.
async fn send(dir: PathBuf, j: usize, call: RogueCall) -> RogueAnswer {
    use regmesh_node::peer::pki;
    let me = &call.as_center;
    let tls = pki::client_config(
        &dir.join(format!("{me}.crt")),
        &dir.join(format!("{me}.key")),
        &dir.join("ca.pem"),
        true,
    )
    .map_err(|e| e.to_string())?;
    let tcp = turmoil::net::TcpStream::connect((call.to.as_str(), PEER_PORT))
        .await
        .map_err(|e| e.to_string())?;
    let name = pki::server_name(&call.to).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let now_s = turmoil::since_epoch().map(|d| d.as_secs()).unwrap_or(0);
    let issuer = call.token_issuer.as_deref().unwrap_or(me);
    let mut jti = [0x5e; 16];
    jti[8..].copy_from_slice(&JTI.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let token = regmesh_core::jwt::issue(
        &identity(j),
        issuer,
        &call.to,
        now_s,
        regmesh_core::jwt::TTL_S_DEFAULT,
        jti,
    );
    let mut b = Request::builder()
        .method(call.method)
        .uri(call.path.as_str())
        .header("host", format!("{}:{PEER_PORT}", call.to))
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in &call.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    if call.body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b
        .body(Full::new(Bytes::from(call.body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
