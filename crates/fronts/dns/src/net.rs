//! DNS over TCP to one server (the validating resolver, a primary, the
//! parent): one message out, one in, with a deadline and a size bound (to
//! a primary or the parent signed, the answer's TSIG checked), and
//! the TLS probe that reads the certificate an agent's peer port presents.
//!
//! Must never: wait without a deadline, read more than
//! [`RESPONSE_BYTES_MAX`], or trust the probed certificate for anything but
//! comparing it with a validated TLSA record.

use crate::tsig::{self, TsigError, TsigKey};
use crate::wire::{self, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one exchange may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest response read (the TCP length prefix allows 65535).
pub const RESPONSE_BYTES_MAX: usize = 65_535;

/// An exchange failed. Nothing was changed at the server unless the
/// message was an UPDATE that arrived (its answer may be lost).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{addr}: {why}")]
    Io { addr: SocketAddr, why: String },
    #[error("{addr}: no answer within {} ms", EXCHANGE_TIMEOUT.as_millis())]
    Timeout { addr: SocketAddr },
    #[error("{addr}: {0}", addr = .1)]
    Wire(wire::WireError, SocketAddr),
    #[error("{addr}: answer id {got} for query id {want}")]
    WrongId { addr: SocketAddr, got: u16, want: u16 },
    /// The answer to a signed request is not validly signed: it is not
    /// used (the server may have acted on the request).
    #[error("{addr}: {0}", addr = .1)]
    Tsig(TsigError, SocketAddr),
}

/// Signs `msg` with `key` at `now_s`, sends it to `addr`, and returns the
/// answer only if its TSIG verifies over our request's MAC.
pub async fn exchange_signed(
    addr: SocketAddr,
    mut msg: Vec<u8>,
    key: &TsigKey,
    now_s: u64,
) -> Result<Response, NetError> {
    let mac = tsig::sign(&mut msg, key, now_s, None);
    let r = exchange(addr, &msg).await?;
    tsig::verify(&r.msg, key, &mac, now_s).map_err(|e| NetError::Tsig(e, addr))?;
    Ok(r)
}

/// Sends `msg` to `addr` over TCP and reads the answer.
pub async fn exchange(addr: SocketAddr, msg: &[u8]) -> Result<Response, NetError> {
    let io = |e: std::io::Error| NetError::Io {
        addr,
        why: e.to_string(),
    };
    let want = u16::from_be_bytes([msg[0], msg[1]]);
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
        let mut out = Vec::with_capacity(msg.len() + 2);
        out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        out.extend_from_slice(msg);
        s.write_all(&out).await.map_err(io)?;
        let len = s.read_u16().await.map_err(io)? as usize;
        let mut buf = vec![0; len.min(RESPONSE_BYTES_MAX)];
        s.read_exact(&mut buf).await.map_err(io)?;
        let r = wire::parse(buf).map_err(|e| NetError::Wire(e, addr))?;
        if r.id != want {
            return Err(NetError::WrongId { addr, got: r.id, want });
        }
        Ok(r)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, fut)
        .await
        .map_err(|_| NetError::Timeout { addr })?
}

/// A random message id.
pub fn new_id() -> u16 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).expect("the OS random source");
    u16::from_be_bytes(b)
}

#[derive(Debug)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>, Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().expect("capture lock") = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// The end-entity certificate (DER) the TLS server at `addr` presents. The
/// handshake may fail afterwards (the peer port wants a client
/// certificate): the certificate was seen, and its key proven, before that.
pub async fn probe_certificate(addr: SocketAddr) -> Result<Vec<u8>, NetError> {
    let io = |why: String| NetError::Io { addr, why };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| io(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Capture(seen.clone(), provider)))
        .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| io(e.to_string()))?;
        let _ = conn.connect(name, tcp).await;
        Ok::<_, NetError>(())
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, fut)
        .await
        .map_err(|_| NetError::Timeout { addr })??;
    let cert = seen.lock().expect("capture lock").take();
    cert.ok_or_else(|| io("no certificate presented".into()))
}
