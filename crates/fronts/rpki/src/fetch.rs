//! HTTPS GET for RRDP files and trust-anchor certificates: one request per
//! connection (hyper over rustls), with every limit a hostile repository
//! could push against: body size, total time, minimum transfer rate, no
//! redirects, no compression (we never ask for it and refuse any
//! `Content-Encoding`, so there is nothing to decompress and no bomb), and a
//! check of the URI's host (no `localhost`, IP literals or ports unless the
//! operator allowed local hosts). Conditional GET with `ETag` and
//! `Last-Modified`.
//!
//! Must never: follow a redirect, read past a limit, or trust a root the
//! operator did not give (system bundle plus `ca_certs`).

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::header;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where Debian keeps the system's roots.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Longest URI we fetch, bytes.
pub const URI_BYTES_MAX: usize = 2048;

/// The limits of one GET.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_bytes_max: u64,
    pub total_ms: u64,
    /// Below this average rate, after `rate_grace_ms`, the transfer is cut.
    pub rate_min_bps: u64,
    pub rate_grace_ms: u64,
    pub connect_ms: u64,
}

impl Limits {
    /// For notification files: small and quick.
    pub const NOTIFICATION: Limits = Limits {
        body_bytes_max: 4 << 20,
        total_ms: 60_000,
        rate_min_bps: 1024,
        rate_grace_ms: 10_000,
        connect_ms: 10_000,
    };
    /// For snapshots and deltas.
    pub const BULK: Limits = Limits {
        body_bytes_max: 1 << 30,
        total_ms: 15 * 60_000,
        rate_min_bps: 8 * 1024,
        rate_grace_ms: 15_000,
        connect_ms: 10_000,
    };
}

/// A GET failed. Nothing was kept from it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URI is not one we fetch (scheme, host rules, length).
    #[error("refused URI {uri}: {why}")]
    Uri { uri: String, why: String },
    /// Connecting, TLS or HTTP failed.
    #[error("{uri}: {why}")]
    Transport { uri: String, why: String },
    /// The server answered something other than 200 (or 304 when asked).
    #[error("{uri}: HTTP {status}")]
    Status { uri: String, status: u16 },
    /// A limit was hit (size, time, rate, encoding, redirect).
    #[error("{uri}: {why}")]
    Limit { uri: String, why: String },
}

/// What a conditional GET carries from the last answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A GET's answer.
#[derive(Debug)]
pub enum Fetched {
    Body {
        bytes: Bytes,
        validators: Validators,
        elapsed_ms: u64,
    },
    NotModified,
}

/// The HTTPS client: a TLS config and the host rule.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    allow_local_hosts: bool,
}

/// The roots could not be loaded. Nothing started.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct RootsError {
    pub path: String,
    pub why: String,
}

impl Client {
    /// With the system roots (when the bundle exists) and every PEM file in
    /// `ca_certs`.
    pub fn new(ca_certs: &[impl AsRef<Path>], allow_local_hosts: bool) -> Result<Client, RootsError> {
        let mut roots = rustls::RootCertStore::empty();
        let mut files: Vec<(&Path, bool)> = vec![(Path::new(SYSTEM_ROOTS), false)];
        files.extend(ca_certs.iter().map(|p| (p.as_ref(), true)));
        for (path, required) in files {
            let err = |why: String| RootsError {
                path: path.display().to_string(),
                why,
            };
            let text = match std::fs::read(path) {
                Ok(t) => t,
                Err(_) if !required => continue,
                Err(e) => return Err(err(e.to_string())),
            };
            let mut n = 0;
            for c in CertificateDer::pem_slice_iter(&text) {
                let c = c.map_err(|e| err(format!("bad PEM: {e}")))?;
                if roots.add(c).is_ok() {
                    n += 1;
                }
            }
            if n == 0 && required {
                return Err(err("holds no usable certificate".into()));
            }
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| RootsError {
                path: "-".into(),
                why: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            allow_local_hosts,
        })
    }

    /// Whether local hosts are allowed in URIs.
    pub fn allows_local_hosts(&self) -> bool {
        self.allow_local_hosts
    }

    /// Checks a URI against the host rule; returns (host, port, path).
    pub fn check_uri(&self, uri: &str) -> Result<(String, u16, String), FetchError> {
        check_uri(uri, self.allow_local_hosts)
    }

    /// GETs `uri` within `limits`, conditionally when `validators` has any.
    pub async fn get(&self, uri: &str, validators: Option<&Validators>, limits: Limits) -> Result<Fetched, FetchError> {
        let (host, port, path) = self.check_uri(uri)?;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(limits.total_ms);
        let t = |why: String| FetchError::Transport { uri: uri.into(), why };
        let lim = |why: String| FetchError::Limit { uri: uri.into(), why };
        let addr = format!("{}:{port}", host.trim_start_matches('[').trim_end_matches(']'));
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .map_err(|e| t(e.to_string()))?;
            let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
                .map_err(|e| t(e.to_string()))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| t(format!("TLS: {e}")))?;
            hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| t(e.to_string()))
        };
        let (mut send, conn) = tokio::time::timeout(Duration::from_millis(limits.connect_ms), connect)
            .await
            .map_err(|_| lim(format!("no connection within {} ms", limits.connect_ms)))??;
        let driver = tokio::spawn(conn);
        let _abort = AbortOnDrop(driver);
        let mut req = hyper::Request::get(path)
            .header(
                header::HOST,
                if port == 443 {
                    host.clone()
                } else {
                    format!("{host}:{port}")
                },
            )
            .header(header::USER_AGENT, concat!("regmesh-rpki/", env!("CARGO_PKG_VERSION")))
            .header(header::ACCEPT_ENCODING, "identity");
        if let Some(v) = validators {
            if let Some(e) = &v.etag {
                req = req.header(header::IF_NONE_MATCH, e);
            }
            if let Some(m) = &v.last_modified {
                req = req.header(header::IF_MODIFIED_SINCE, m);
            }
        }
        let req = req
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| t(e.to_string()))?;
        let resp = tokio::time::timeout_at(deadline.into(), send.send_request(req))
            .await
            .map_err(|_| lim(format!("no answer within {} ms", limits.total_ms)))?
            .map_err(|e| t(e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 304 && validators.is_some() {
            return Ok(Fetched::NotModified);
        }
        if (300..400).contains(&status) {
            return Err(lim(format!("HTTP {status}: redirects are not followed")));
        }
        if status != 200 {
            return Err(FetchError::Status {
                uri: uri.into(),
                status,
            });
        }
        if let Some(enc) = resp.headers().get(header::CONTENT_ENCODING) {
            if enc.as_bytes() != b"identity" {
                return Err(lim(format!("Content-Encoding {enc:?} refused (no decompression)")));
            }
        }
        let header_str = |h| {
            resp.headers()
                .get(h)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let got = Validators {
            etag: header_str(header::ETAG),
            last_modified: header_str(header::LAST_MODIFIED),
        };
        if let Some(len) = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            if len > limits.body_bytes_max {
                return Err(lim(format!("body of {len} bytes, more than {}", limits.body_bytes_max)));
            }
        }
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        loop {
            let frame = tokio::time::timeout_at(deadline.into(), body.frame())
                .await
                .map_err(|_| lim(format!("transfer longer than {} ms", limits.total_ms)))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| t(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() as u64 + data.len() as u64 > limits.body_bytes_max {
                    return Err(lim(format!("body longer than {} bytes", limits.body_bytes_max)));
                }
                buf.extend_from_slice(&data);
            }
            let ms = started.elapsed().as_millis() as u64;
            if ms > limits.rate_grace_ms && (buf.len() as u64) * 1000 / ms.max(1) < limits.rate_min_bps {
                return Err(lim(format!(
                    "rate below {} B/s ({} bytes in {ms} ms)",
                    limits.rate_min_bps,
                    buf.len()
                )));
            }
        }
        Ok(Fetched::Body {
            bytes: buf.freeze(),
            validators: got,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Splits an `https://` URI into (host, port, path) and applies the host
/// rule: without `allow_local`, no `localhost`, no IP literal, no port.
pub fn check_uri(uri: &str, allow_local: bool) -> Result<(String, u16, String), FetchError> {
    let bad = |why: &str| FetchError::Uri {
        uri: uri.chars().take(200).collect(),
        why: why.into(),
    };
    if uri.len() > URI_BYTES_MAX {
        return Err(bad("too long"));
    }
    if uri.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err(bad("control, space or non-ASCII character"));
    }
    let rest = uri.strip_prefix("https://").ok_or_else(|| bad("not https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(bad("user info in URI"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| bad("unclosed IPv6 literal"))?;
        let port = &v6[end + 1..];
        (format!("[{}]", &v6[..end]), port.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port: u16 = match port {
        None => 443,
        Some(p) => p.parse().map_err(|_| bad("bad port"))?,
    };
    if !allow_local {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare == "localhost" || bare.ends_with(".localhost") {
            return Err(bad("localhost (allow_local_hosts is off)"));
        }
        if bare.parse::<std::net::IpAddr>().is_ok() {
            return Err(bad("IP literal (allow_local_hosts is off)"));
        }
        if port != 443 || authority.ends_with(":443") {
            return Err(bad("explicit port (allow_local_hosts is off)"));
        }
    }
    Ok((host, port, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_rule_refuses_local_hosts_unless_allowed() {
        assert_eq!(
            check_uri("https://rrdp.example.net/n.xml", false).unwrap(),
            ("rrdp.example.net".into(), 443, "/n.xml".into())
        );
        for u in [
            "http://rrdp.example.net/n.xml",
            "https://localhost/n.xml",
            "https://127.0.0.1/n.xml",
            "https://[::1]/n.xml",
            "https://rrdp.example.net:8443/n.xml",
            "https://u@rrdp.example.net/n.xml",
            "https://rrdp.example.net/a b",
        ] {
            assert!(check_uri(u, false).is_err(), "{u}");
        }
        assert_eq!(
            check_uri("https://127.0.0.1:8443/n.xml", true).unwrap(),
            ("127.0.0.1".into(), 8443, "/n.xml".into())
        );
        assert_eq!(check_uri("https://[::1]:9/x", true).unwrap().0, "[::1]");
        assert!(check_uri("https://u@h/x", true).is_err());
    }
}
