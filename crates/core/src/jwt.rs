//! JWTs for peer calls (DRiP §6.2): compact JWS signed with the center's
//! Ed25519 key. Pure: the caller passes the time and the random `jti`.
//!
//! - Header `{"alg":"EdDSA","typ":"JWT"}`. `EdDSA` is the name DRiP-era
//!   software knows; RFC 9864's `Ed25519` is accepted too. Anything else, `none`
//!   included, is refused.
//! - Claims `iss` (sending center), `aud` (receiving center, so a token for
//!   one peer is useless at another), `iat`, `exp`, `jti` (16 random bytes).
//! - Verification checks `iss` against the sender the caller authenticated
//!   otherwise (its client certificate), the signature with that sender's
//!   configured key, `aud` against ourselves, and `iat`
//!   within the skew window. It also checks that `exp` has not passed and that
//!   the lifetime is at most [`TTL_S_MAX`]. Refusing replays (same `iss`,
//!   `jti`) needs state: see `regmesh_proto::replay`.

use crate::sign::{Identity, VerifyingKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest token accepted, bytes.
pub const TOKEN_BYTES_MAX: usize = 2048;
/// Longest lifetime (`exp - iat`) accepted, seconds.
pub const TTL_S_MAX: u64 = 300;
/// Default lifetime of tokens this center issues, seconds.
pub const TTL_S_DEFAULT: u64 = 60;

/// Claims of a peer-call token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

/// A token was refused. Nothing was changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token algorithm {0:?} is not accepted (EdDSA only)")]
    Algorithm(String),
    #[error("token issuer {0:?} is not a configured peer")]
    UnknownIssuer(String),
    #[error("token issuer {iss:?} is not the sender {sender:?} its certificate names")]
    IssuerMismatch { iss: String, sender: String },
    #[error("token is for {aud:?}, not for this center")]
    Audience { aud: String },
    #[error("token signature does not verify")]
    Signature,
    #[error("token iat is {off_s} s away from our clock (limit {skew_s} s)")]
    Skew { off_s: u64, skew_s: u64 },
    #[error("token has expired")]
    Expired,
    #[error("token lifetime exceeds {TTL_S_MAX} s")]
    Lifetime,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// Issues a token from `identity` (center `iss`) to center `aud`.
pub fn issue(identity: &Identity, iss: &str, aud: &str, now_s: u64, ttl_s: u64, jti: [u8; 16]) -> String {
    let header = B64.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let claims = Claims {
        iss: iss.to_string(),
        aud: aud.to_string(),
        iat: now_s,
        exp: now_s + ttl_s.min(TTL_S_MAX),
        jti: B64.encode(jti),
    };
    let body = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
    let signing_input = format!("{header}.{body}");
    let sig = identity.sign_raw(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(sig))
}

/// The token in an `Authorization` value, with or without `Bearer `.
pub fn from_authorization(value: &str) -> &str {
    let v = value.trim();
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or(v)
        .trim()
}

/// Verifies `token` sent by peer `sender` to center `me` at `now_s`.
/// `key_of` gives the configured key of a peer id.
///
/// `sender` must come from outside the token: the center its client
/// certificate names. The token's `iss` is checked against it, and the
/// signature with `sender`'s key, so a token is only ever accepted from the
/// center that issued it. (Passing the token's own `iss` here would compare
/// the issuer with itself.)
pub fn verify(
    token: &str,
    sender: &str,
    me: &str,
    key_of: impl Fn(&str) -> Option<VerifyingKey>,
    now_s: u64,
    skew_s: u64,
) -> Result<Claims, JwtError> {
    if token.len() > TOKEN_BYTES_MAX {
        return Err(JwtError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header: Header = serde_json::from_slice(
        &B64.decode(h)
            .map_err(|_| JwtError::Malformed("header is not base64url"))?,
    )
    .map_err(|_| JwtError::Malformed("header is not JSON"))?;
    if header.alg != "EdDSA" && header.alg != "Ed25519" {
        return Err(JwtError::Algorithm(header.alg));
    }
    let claims: Claims = serde_json::from_slice(
        &B64.decode(c)
            .map_err(|_| JwtError::Malformed("claims are not base64url"))?,
    )
    .map_err(|_| JwtError::Malformed("claims are not the expected JSON"))?;
    if claims.iss != sender {
        return Err(JwtError::IssuerMismatch {
            iss: claims.iss,
            sender: sender.to_string(),
        });
    }
    let key = key_of(sender).ok_or_else(|| JwtError::UnknownIssuer(claims.iss.clone()))?;
    let sig_bytes: [u8; 64] = B64
        .decode(s)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?
        .try_into()
        .map_err(|_| JwtError::Malformed("signature is not 64 bytes"))?;
    let signing_input = &token[..h.len() + 1 + c.len()];
    key.verify(signing_input.as_bytes(), &Signature::from_bytes(&sig_bytes))
        .map_err(|_| JwtError::Signature)?;
    if claims.aud != me {
        return Err(JwtError::Audience { aud: claims.aud });
    }
    let off_s = now_s.abs_diff(claims.iat);
    if off_s > skew_s {
        return Err(JwtError::Skew { off_s, skew_s });
    }
    if claims.exp < claims.iat || claims.exp - claims.iat > TTL_S_MAX {
        return Err(JwtError::Lifetime);
    }
    if claims.exp <= now_s {
        return Err(JwtError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (Identity, Identity) {
        (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]))
    }

    #[test]
    fn round_trip_with_and_without_bearer() {
        let (a, _) = keys();
        let t = issue(&a, "c1", "c2", 1000, 60, [9; 16]);
        let ka = a.verifying_key();
        let key_of = |id: &str| (id == "c1").then_some(ka);
        let c = verify(from_authorization(&format!("Bearer {t}")), "c1", "c2", key_of, 1010, 30).unwrap();
        assert_eq!((c.iss.as_str(), c.aud.as_str(), c.iat, c.exp), ("c1", "c2", 1000, 1060));
        assert!(verify(from_authorization(&t), "c1", "c2", key_of, 1010, 30).is_ok());
    }

    #[test]
    fn refusals() {
        let (a, b) = keys();
        let ka = a.verifying_key();
        let key_of = |id: &str| (id == "c1").then_some(ka);
        let t = issue(&a, "c1", "c2", 1000, 60, [9; 16]);
        assert!(matches!(
            verify(&t, "c9", "c2", key_of, 1000, 30),
            Err(JwtError::IssuerMismatch { .. })
        ));
        assert!(matches!(
            verify(&t, "c1", "c3", key_of, 1000, 30),
            Err(JwtError::Audience { .. })
        ));
        assert!(matches!(
            verify(&t, "c1", "c2", key_of, 2000, 30),
            Err(JwtError::Skew { .. })
        ));
        assert_eq!(verify(&t, "c1", "c2", key_of, 1060, 100), Err(JwtError::Expired));
        // Signed by the wrong key.
        let forged = issue(&b, "c1", "c2", 1000, 60, [9; 16]);
        assert_eq!(verify(&forged, "c1", "c2", key_of, 1000, 30), Err(JwtError::Signature));
        // Unknown issuer.
        let other = issue(&b, "c7", "c2", 1000, 60, [9; 16]);
        assert!(matches!(
            verify(&other, "c7", "c2", key_of, 1000, 30),
            Err(JwtError::UnknownIssuer(_))
        ));
        // alg none, with the signature stripped.
        let parts: Vec<&str> = t.split('.').collect();
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), parts[1]);
        assert!(matches!(
            verify(&none, "c1", "c2", key_of, 1000, 30),
            Err(JwtError::Algorithm(_))
        ));
        // Tampered claims.
        let evil = B64.encode(br#"{"iss":"c1","aud":"c2","iat":1000,"exp":1060,"jti":"x","admin":true}"#);
        let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
        assert!(matches!(
            verify(&tampered, "c1", "c2", key_of, 1000, 30),
            Err(JwtError::Malformed(_))
        ));
        let evil = B64.encode(br#"{"iss":"c1","aud":"c2","iat":1000,"exp":1061,"jti":"CQkJCQkJCQkJCQkJCQkJCQ"}"#);
        let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
        assert_eq!(
            verify(&tampered, "c1", "c2", key_of, 1000, 30),
            Err(JwtError::Signature)
        );
        for garbage in ["", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(3000)] {
            assert!(
                matches!(
                    verify(garbage, "c1", "c2", key_of, 1000, 30),
                    Err(JwtError::Malformed(_))
                ),
                "{garbage:.20}"
            );
        }
    }

    #[test]
    fn record_and_token_signatures_do_not_mix() {
        // A record signature is over a domain-separated message; it never
        // verifies as a token signature over the same bytes, and vice versa.
        let (a, _) = keys();
        let t = issue(&a, "c1", "c2", 1000, 60, [9; 16]);
        let parts: Vec<&str> = t.split('.').collect();
        let mut r = crate::Record {
            kind: "agent".into(),
            id: "x".into(),
            origin: "c1".into(),
            version: crate::Hlc::new(1, 0),
            seq: 1,
            expires_at_ms: None,
            visibility: crate::Visibility::Public,
            deleted: false,
            body: "{}".into(),
            sig: [0; 64],
        };
        a.sign_record(&mut r);
        let forged = format!("{}.{}.{}", parts[0], parts[1], B64.encode(r.sig));
        let ka = a.verifying_key();
        assert_eq!(
            verify(&forged, "c1", "c2", |_| Some(ka), 1000, 30),
            Err(JwtError::Signature)
        );
    }
}
