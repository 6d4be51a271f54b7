//! The lab's repository servers: one loopback (or namespace-address)
//! HTTPS listener per repository with its own latency, per-connection
//! rate, gzip and unreachable switches, answering conditional GETs with
//! the SHA-256 of the body as ETag.
//!
//! Test support only: serves what the lab puts in `files`, nothing else.

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rpki::rrdp::Hash;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
/// How a repository server behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    /// Added before each answer.
    pub latency_ms: u64,
    /// Body bytes per second; 0: unlimited.
    pub rate_bps: u64,
    /// Answers with `Content-Encoding: gzip` (a body we never asked to be
    /// compressed).
    pub gzip: bool,
    /// Closes every new connection at once, before TLS: the host is
    /// unreachable.
    pub unreachable: bool,
}

/// A loopback HTTPS server for one repository.
#[derive(Clone)]
pub struct RepoServer {
    pub files: Arc<Mutex<BTreeMap<String, Bytes>>>,
    pub link: Arc<Mutex<Link>>,
    pub requests: Arc<AtomicU64>,
    pub port: u16,
}

/// A CA and a server certificate for `localhost`, 127.0.0.1 and any
/// extra name given.
pub struct Tls {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn tls() -> Tls {
    tls_for(&[])
}

pub fn tls_for(extra: &[&str]) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "regmesh rpki test CA");
    let ca_cert = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(extra.iter().map(|n| n.to_string()));
    let mut sp = CertificateParams::new(names).unwrap();
    sp.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = sp.signed_by(&key, &issuer).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let ca_der = rustls::pki_types::CertificateDer::from(ca_cert.der().to_vec());
    let pk = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der, ca_der], pk)
        .unwrap();
    Tls {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

impl RepoServer {
    /// Binds 127.0.0.1:0 (blocking bind, so the port is known at once).
    pub fn bind() -> (RepoServer, std::net::TcpListener) {
        RepoServer::bind_on("127.0.0.1".parse().unwrap())
    }

    /// Binds `ip` on a free port.
    pub fn bind_on(ip: IpAddr) -> (RepoServer, std::net::TcpListener) {
        let l = std::net::TcpListener::bind((ip, 0)).unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        (
            RepoServer {
                files: Default::default(),
                link: Default::default(),
                requests: Default::default(),
                port,
            },
            l,
        )
    }

    /// Serves until the runtime ends.
    pub fn serve(&self, l: std::net::TcpListener, tls: Arc<rustls::ServerConfig>) {
        let me = self.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::spawn(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            loop {
                let Ok((sock, _)) = l.accept().await else { return };
                if me.link.lock().unwrap().unreachable {
                    drop(sock);
                    continue;
                }
                let me = me.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(sock).await else { return };
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        let inm = req
                            .headers()
                            .get("if-none-match")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        async move { Ok::<_, std::convert::Infallible>(me.answer(req.uri().path(), inm).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
    }

    async fn answer(
        &self,
        path: &str,
        if_none_match: Option<String>,
    ) -> hyper::Response<http_body_util::StreamBody<BodyStream>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let link = *self.link.lock().unwrap();
        if link.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(link.latency_ms)).await;
        }
        let body = self.files.lock().unwrap().get(path).cloned();
        let (status, body) = match body {
            Some(b) => (200, b),
            None => (404, Bytes::from_static(b"not found")),
        };
        // Strong validator: the body's SHA-256.
        let etag = format!("\"{}\"", Hash::from_data(&body));
        if status == 200 && if_none_match.as_deref() == Some(etag.as_str()) {
            return hyper::Response::builder()
                .status(304)
                .header("etag", etag)
                .body(http_body_util::StreamBody::new(paced(Bytes::new(), 0)))
                .unwrap();
        }
        let len = body.len();
        let stream = paced(body, link.rate_bps);
        let mut b = hyper::Response::builder()
            .status(status)
            .header("content-length", len)
            .header("etag", etag);
        if link.gzip {
            b = b.header("content-encoding", "gzip");
        }
        b.body(http_body_util::StreamBody::new(stream)).unwrap()
    }
}

pub type BodyStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> + Send>,
>;

/// The body in 16 KiB frames, each after the time `rate_bps` allows.
fn paced(body: Bytes, rate_bps: u64) -> BodyStream {
    const CHUNK: usize = 16 * 1024;
    let chunks: Vec<Bytes> = (0..body.len().div_ceil(CHUNK))
        .map(|i| body.slice(i * CHUNK..((i + 1) * CHUNK).min(body.len())))
        .collect();
    Box::pin(futures_util::stream::unfold(
        chunks.into_iter(),
        move |mut it| async move {
            let c = it.next()?;
            if let Some(us) = (c.len() as u64 * 1_000_000).checked_div(rate_bps) {
                tokio::time::sleep(std::time::Duration::from_micros(us)).await;
            }
            Some((Ok(hyper::body::Frame::data(c)), it))
        },
    ))
}
