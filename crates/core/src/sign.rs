//! Ed25519 identity of a center and the signature over a record's canonical
//! encoding. Signatures are domain-separated (`regmesh-record-v1`) so a record
//! signature can never be replayed as a signature over anything else the
//! center signs with the same key (JWTs, for example).

use crate::codec::encode_unsigned;
use crate::record::Record;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use thiserror::Error;

const RECORD_CONTEXT: &[u8] = b"regmesh-record-v1\0";

/// A signature did not verify. Nothing was changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature of {kind}/{id} from {origin} does not verify")]
    Bad { kind: String, id: String, origin: String },
    #[error("identity key: {0}")]
    Key(String),
}

/// A center's signing identity.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// From 32 secret bytes (the caller draws them from the OS RNG).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// From a PKCS#8 PEM private key (the `*.key` file in the data directory).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, SignatureError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| Identity { key })
            .map_err(|e| SignatureError::Key(e.to_string()))
    }

    /// PKCS#8 PEM of the private key, for writing to the data directory.
    /// Written as PKCS#8 v1 (RFC 5208, secret key only), which OpenSSL,
    /// curl and rustls all read; v2 with the public key is read too.
    pub fn to_pkcs8_pem(&self) -> Result<String, SignatureError> {
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(Default::default())
        .map(|z| z.to_string())
        .map_err(|e| SignatureError::Key(e.to_string()))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `r` in place (its current `sig` is ignored and replaced).
    pub fn sign_record(&self, r: &mut Record) {
        let msg = signing_input(r);
        r.sig = self.key.sign(&msg).to_bytes();
    }

    /// Raw signature over arbitrary bytes, for callers that add their own
    /// domain separation (e.g. JWTs).
    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

fn signing_input(r: &Record) -> Vec<u8> {
    let mut msg = RECORD_CONTEXT.to_vec();
    msg.extend_from_slice(&encode_unsigned(r));
    msg
}

/// Verifies `r.sig` against the origin's public key.
pub fn verify_record(r: &Record, origin_key: &VerifyingKey) -> Result<(), SignatureError> {
    let sig = Signature::from_bytes(&r.sig);
    origin_key
        .verify(&signing_input(r), &sig)
        .map_err(|_| SignatureError::Bad {
            kind: r.kind.clone(),
            id: r.id.clone(),
            origin: r.origin.clone(),
        })
}

/// Hex of a public key, for logs, status and config.
pub fn key_hex(k: &VerifyingKey) -> String {
    k.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a public key from 64 hex digits.
pub fn key_from_hex(s: &str) -> Result<VerifyingKey, SignatureError> {
    if s.len() != 64 || !s.is_ascii() {
        return Err(SignatureError::Key("public key must be 64 hex digits".into()));
    }
    let mut b = [0u8; 32];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| SignatureError::Key("public key must be 64 hex digits".into()))?;
    }
    VerifyingKey::from_bytes(&b).map_err(|e| SignatureError::Key(e.to_string()))
}
