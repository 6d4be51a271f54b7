//! Trust in peer certificates: the mesh's CA, or, for a peer added at
//! runtime from DNS (document 003), the SHA-256 of its certificate's
//! SubjectPublicKeyInfo that a DNSSEC-validated TLSA 3 1 1 gave
//! (`Mesh::add_peer`). Owns the pin table and the rustls verifiers of both
//! directions that accept either. A pin replaces only the issuer check:
//! the handshake signature is still verified with the certificate's key,
//! and a pinned certificate must still name the peer's center id.
//!
//! Must never accept a certificate that neither chains to the CA nor
//! matches a pin, nor let a pinned certificate speak for a center whose
//! pin it does not match (`Trust::names`).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// SHA-256 of a certificate's DER SubjectPublicKeyInfo (TLSA 3 1 1).
pub type Pin = [u8; 32];

/// The SPKI pin of `cert`, or `None` if it does not parse.
pub fn pin_of(cert: &CertificateDer<'_>) -> Option<Pin> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = ee.subject_public_key_info();
    let d = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    d.as_ref().try_into().ok()
}

/// The CA verifiers and the pins of runtime peers, shared by the listener,
/// every peer client and the call authenticator.
pub struct Trust {
    ca_server: Arc<dyn ServerCertVerifier>,
    ca_client: Arc<dyn ClientCertVerifier>,
    /// Center id → pin, for peers added at runtime.
    pins: RwLock<HashMap<String, Pin>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

impl Trust {
    pub fn new(ca_server: Arc<dyn ServerCertVerifier>, ca_client: Arc<dyn ClientCertVerifier>) -> Arc<Trust> {
        Arc::new(Trust {
            ca_server,
            ca_client,
            pins: RwLock::new(HashMap::new()),
        })
    }

    /// Pins center `id` to `pin`. Returns false (nothing changed) if `id`
    /// already has a pin.
    pub fn pin(&self, id: &str, pin: Pin) -> bool {
        let mut pins = self.pins.write().expect("pins lock");
        if pins.contains_key(id) {
            return false;
        }
        pins.insert(id.to_string(), pin);
        true
    }

    pub fn pin_for(&self, id: &str) -> Option<Pin> {
        self.pins.read().expect("pins lock").get(id).copied()
    }

    fn pinned(&self, cert: &CertificateDer<'_>) -> bool {
        pin_of(cert).is_some_and(|p| self.pins.read().expect("pins lock").values().any(|q| *q == p))
    }

    fn ca_accepts(&self, cert: &CertificateDer<'_>) -> bool {
        self.ca_client.verify_client_cert(cert, &[], UnixTime::now()).is_ok()
    }

    /// Whether client certificate `cert` (accepted by the handshake) speaks
    /// for center `id`: it names `id` and, if `id` is pinned, matches its
    /// pin, else chains to the CA.
    pub fn names(&self, cert: &CertificateDer<'_>, id: &str) -> bool {
        if !super::pki::cert_is_for(cert, id) {
            return false;
        }
        match self.pin_for(id) {
            Some(p) => pin_of(cert) == Some(p),
            None => self.ca_accepts(cert),
        }
    }
}

/// The listener's client verifier: the CA, or any pinned certificate
/// (which center it speaks for is [`Trust::names`]'s to say). No
/// certificate at all is allowed too (HELLO only).
#[derive(Debug)]
pub struct ClientVerifier(pub Arc<Trust>);

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a pinned peer's certificate has another issuer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.0.ca_client.verify_client_cert(end_entity, intermediates, now) {
            Ok(v) => Ok(v),
            Err(_) if self.0.pinned(end_entity) => Ok(ClientCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.ca_client.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.ca_client.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.ca_client.supported_verify_schemes()
    }
}

/// A peer client's server verifier: the CA for the peer's id, or, for a
/// pinned id, a certificate that matches the pin and names that id.
#[derive(Debug)]
pub struct ServerVerifier(pub Arc<Trust>);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let ServerName::DnsName(name) = server_name {
            if let Some(pin) = self.0.pin_for(name.as_ref()) {
                return if pin_of(end_entity) == Some(pin) && super::pki::cert_is_for(end_entity, name.as_ref()) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "the certificate of {} does not match its TLSA pin",
                        name.as_ref()
                    )))
                };
            }
        }
        self.0
            .ca_server
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.ca_server.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.ca_server.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.ca_server.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::pki::Ca;
    use rustls::pki_types::pem::PemObject;

    fn cert(ca: &Ca, id: &str, seed: u8) -> CertificateDer<'static> {
        let key = regmesh_core::Identity::from_seed([seed; 32]).to_pkcs8_pem().unwrap();
        let pem = ca.issue(id, &key).unwrap();
        CertificateDer::pem_slice_iter(pem.as_bytes()).next().unwrap().unwrap()
    }

    #[test]
    fn a_pinned_certificate_speaks_only_for_its_own_center() {
        let (ours, theirs) = (Ca::generate("ours").unwrap(), Ca::generate("theirs").unwrap());
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &ours.cert_pem).unwrap();
        let trust = crate::peer::pki::trust(&ca).unwrap();
        let c2 = cert(&ours, "c2", 2);
        let d1 = cert(&theirs, "d1", 3);
        // A runtime peer's certificate that also calls itself c2.
        let fake_c2 = cert(&theirs, "c2", 3);
        assert!(trust.names(&c2, "c2"), "the CA's");
        assert!(!trust.names(&d1, "d1"), "not pinned yet");
        assert!(trust.pin("d1", pin_of(&d1).unwrap()));
        assert!(!trust.pin("d1", [0; 32]), "pinned once: unchanged");
        assert!(trust.names(&d1, "d1"));
        assert!(!trust.names(&fake_c2, "c2"), "c2 is trusted by the CA only");
        assert!(!trust.names(&c2, "d1"), "names another center");
        let v = ClientVerifier(trust.clone());
        let now = UnixTime::now();
        assert!(v.verify_client_cert(&d1, &[], now).is_ok());
        assert!(v.verify_client_cert(&c2, &[], now).is_ok());
        assert!(v.verify_client_cert(&cert(&theirs, "d2", 4), &[], now).is_err());
        let s = ServerVerifier(trust);
        let name = |n: &str| ServerName::try_from(n.to_string()).unwrap();
        assert!(s.verify_server_cert(&d1, &[], &name("d1"), &[], now).is_ok());
        assert!(
            s.verify_server_cert(&c2, &[], &name("d1"), &[], now).is_err(),
            "not d1's pin"
        );
        assert!(s.verify_server_cert(&c2, &[], &name("c2"), &[], now).is_ok());
        assert!(s.verify_server_cert(&fake_c2, &[], &name("c2"), &[], now).is_err());
    }
}
