//! Certificates and TLS configuration for the peer listener.
//!
//! A mesh shares one CA. Each center's certificate is issued for its center id
//! (a DNS subject alternative name) and holds the center's Ed25519 identity
//! key. So one key signs records, tokens and TLS handshakes, and the CA binds it
//! to the center id. Peers authenticate each other with mutual TLS. The
//! listener also accepts connections without a client certificate, but only
//! HELLO may use them (document 003); every other route requires a verified
//! certificate. A peer found from DNS has no certificate from our CA: it is
//! trusted by the SPKI pin its validated TLSA gives (`pins.rs`).

use super::pins::{ClientVerifier, ServerVerifier, Trust};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ED25519,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

/// A PKI or TLS setup problem. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(pub String);

fn err(ctx: &str, e: impl std::fmt::Display) -> PkiError {
    PkiError(format!("{ctx}: {e}"))
}

/// A CA that issues center certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA private key, PEM (keep it offline in production).
    pub key_pem: String,
}

impl Ca {
    /// A new Ed25519 CA named `name`, valid for 10 years.
    pub fn generate(name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(|e| err("CA key", e))?;
        let key_pem = key.serialize_pem();
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA params", e))?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = p.self_signed(&key).map_err(|e| err("CA certificate", e))?;
        Ok(Ca {
            issuer: Issuer::new(p, key),
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    /// Issues the certificate of center `id` for its key (PKCS#8 PEM).
    pub fn issue(&self, id: &str, center_key_pem: &str) -> Result<String, PkiError> {
        let key = KeyPair::from_pem(center_key_pem).map_err(|e| err("center key", e))?;
        let mut p = CertificateParams::new(vec![id.to_string()]).map_err(|e| err("center params", e))?;
        p.distinguished_name.push(DnType::CommonName, id);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| err("center certificate", e))?;
        Ok(cert.pem())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|e| err(&path.display().to_string(), e))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read(path)?;
    let out: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let out = out.map_err(|e| err(&path.display().to_string(), e))?;
    if out.is_empty() {
        return Err(PkiError(format!("{}: no certificate in it", path.display())));
    }
    Ok(out)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| err(&path.display().to_string(), e))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| err(&ca.display().to_string(), e))?;
    }
    Ok(Arc::new(roots))
}

/// The CA's verifiers for both directions, with no pins yet
/// ([`super::pins::Trust`]).
pub fn trust(ca: &Path) -> Result<Arc<Trust>, PkiError> {
    let roots = roots(ca)?;
    let server = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| err("server verifier", e))?;
    let client = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| err("client verifier", e))?;
    Ok(Trust::new(server, client))
}

/// Server side: our certificate; client certificates verified against the
/// CA when offered (HELLO comes without one).
pub fn server_config(cert: &Path, key_path: &Path, ca: &Path) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    server_config_trusting(cert, key_path, &trust(ca)?)
}

/// [`server_config`] accepting client certificates that `trust` accepts:
/// the CA's, or a runtime peer's pinned one.
pub fn server_config_trusting(
    cert: &Path,
    key_path: &Path,
    trust: &Arc<Trust>,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("TLS versions", e))?
        .with_client_cert_verifier(Arc::new(ClientVerifier(trust.clone())))
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| err("server certificate", e))?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// Client side: servers verified against the CA for the peer's id; we
/// present our certificate. With `with_cert = false`, no client certificate
/// (for HELLO, and for tests of refusal).
pub fn client_config(
    cert: &Path,
    key_path: &Path,
    ca: &Path,
    with_cert: bool,
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    client_config_trusting(cert, key_path, &trust(ca)?, with_cert)
}

/// [`client_config`] verifying servers as `trust` does: a pinned peer by
/// its pin, any other by the CA.
pub fn client_config_trusting(
    cert: &Path,
    key_path: &Path,
    trust: &Arc<Trust>,
    with_cert: bool,
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("TLS versions", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerVerifier(trust.clone())));
    let mut c = if with_cert {
        b.with_client_auth_cert(certs(cert)?, key(key_path)?)
            .map_err(|e| err("client certificate", e))?
    } else {
        b.with_no_client_auth()
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// True if `cert` (already verified against the CA by the handshake) was
/// issued for center `id`.
pub fn cert_is_for(cert: &CertificateDer<'_>, id: &str) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(id) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

/// The TLS server name of center `id`.
pub fn server_name(id: &str) -> Result<ServerName<'static>, PkiError> {
    ServerName::try_from(id.to_string()).map_err(|e| err("center id as TLS name", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_certificates_that_name_their_center() {
        let ca = Ca::generate("test CA").unwrap();
        let id = regmesh_core::Identity::from_seed([3; 32]);
        let pem = ca.issue("c1", &id.to_pkcs8_pem().unwrap()).unwrap();
        let der: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(cert_is_for(&der[0], "c1"));
        assert!(!cert_is_for(&der[0], "c2"));
        assert!(ca.issue("c_2", &id.to_pkcs8_pem().unwrap()).is_ok());
    }
}
