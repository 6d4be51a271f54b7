//! Structured random inputs for every core parser that takes outside bytes:
//! the canonical record codec, peer-call tokens, version text, visibility
//! and id rules (agent JSON: `crates/fronts/agent/tests/agent_json_random.rs`). Each input is either arbitrary or a mutation of a
//! valid one (bit flips, truncations, splices, huge lengths, invalid UTF-8,
//! duplicate keys, oversized numbers, deep nesting), so the parsers are
//! driven past their first check.
//!
//! Properties, besides "never panics":
//! - codec: `decode(encode(r)) == r`, and every accepted byte string is the
//!   encoding of what it decodes to, so no two byte strings decode to the
//!   same record; changed signed bytes never verify;
//! - tokens: a changed token never verifies.
//!
//! Budget: the case counts below take about 3 s in a debug build on the
//! reference machine. `PROPTEST_CASES` overrides every count
//! (`scripts/fuzz --minutes M` raises it).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use proptest::prelude::*;
use regmesh_core::codec::{self, canonical_json, decode, encode, encode_unsigned};
use regmesh_core::kind::{view, view_json};
use regmesh_core::sign::verify_record;
use regmesh_core::{jwt, Hlc, Identity, Record, Visibility};
use serde_json::Value;

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

mod mutate;
use mutate::{apply, json_value, mutation, text, Mutation};

// ---- records -------------------------------------------------------------

fn visibility() -> impl Strategy<Value = Visibility> {
    prop_oneof![
        Just(Visibility::Public),
        Just(Visibility::Local),
        text(64).prop_map(Visibility::Authorized),
    ]
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_string()),
        Just(r#"{"addresses":["2001:db8::1"],"capabilities":[],"endpoints":[],"status":"online"}"#.to_string()),
        text(200),
        json_value().prop_map(|v| canonical_json(&v)),
    ]
}

/// Any record the codec can carry (field lengths within its length bytes).
fn record() -> impl Strategy<Value = Record> {
    (
        (text(40), text(300), text(64)),
        (any::<u64>(), any::<u32>(), any::<u64>()),
        proptest::option::of(any::<u64>()),
        visibility(),
        any::<bool>(),
        body(),
        proptest::collection::vec(any::<u8>(), 64),
    )
        .prop_map(
            |((kind, id, origin), (wall, logical, seq), exp, vis, deleted, body, sig)| {
                let cut = |s: String, n: usize| -> String {
                    let mut s = s;
                    while s.len() > n {
                        s.pop();
                    }
                    s
                };
                let vis = match vis {
                    Visibility::Authorized(g) => Visibility::Authorized(cut(g, 255)),
                    v => v,
                };
                Record {
                    kind: cut(kind, 255),
                    id: cut(id, 65_535),
                    origin: cut(origin, 255),
                    version: Hlc::new(wall, logical),
                    seq,
                    expires_at_ms: exp,
                    visibility: vis,
                    deleted,
                    body,
                    sig: sig.try_into().unwrap(),
                }
            },
        )
}

/// Encodings of a few fixed records, to splice from.
fn encoding_pool() -> Vec<Vec<u8>> {
    let base = Record {
        kind: "agent".into(),
        id: "did:web:example.com:a1".into(),
        origin: "c1".into(),
        version: Hlc::new(1_700_000_000_000, 3),
        seq: 42,
        expires_at_ms: Some(1_700_000_030_000),
        visibility: Visibility::Authorized("partners".into()),
        deleted: false,
        body: r#"{"addresses":["2001:db8::1"]}"#.into(),
        sig: [7; 64],
    };
    let mut tomb = base.clone();
    tomb.deleted = true;
    tomb.body = "{}".into();
    tomb.expires_at_ms = None;
    tomb.visibility = Visibility::Public;
    let mut local = base.clone();
    local.visibility = Visibility::Local;
    vec![encode(&base), encode(&tomb), encode(&local), encode_unsigned(&base)]
}

proptest! {
    #![proptest_config(config(2000))]

    /// Arbitrary bytes: refused, or the exact encoding of what they decode to.
    #[test]
    fn decode_accepts_only_canonical_bytes(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(r) = decode(&b) {
            prop_assert_eq!(encode(&r), b);
        }
    }

    /// Decode is the inverse of encode, and the signed part is a prefix.
    #[test]
    fn codec_round_trips(r in record()) {
        let b = encode(&r);
        prop_assert_eq!(decode(&b), Ok(r.clone()));
        prop_assert!(b.starts_with(&encode_unsigned(&r)));
        prop_assert_eq!(b.len(), encode_unsigned(&r).len() + codec::SIG_BYTES);
    }

    /// Mutated valid encodings: refused, or canonical (so a mutation that
    /// decodes decodes to a different record than the original).
    #[test]
    fn decode_of_mutated_encodings(
        r in record(),
        muts in proptest::collection::vec(mutation(encoding_pool()), 1..4),
    ) {
        let orig = encode(&r);
        let b = apply(orig.clone(), &muts);
        if let Ok(d) = decode(&b) {
            prop_assert_eq!(encode(&d), b.clone());
            if b != orig {
                prop_assert_ne!(d, r);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Changed signed bytes never verify; unchanged ones always do.
    #[test]
    fn changed_signed_bytes_never_verify(
        r in record(),
        muts in proptest::collection::vec(mutation(encoding_pool()), 1..4),
    ) {
        let id = Identity::from_seed([5; 32]);
        let key = id.verifying_key();
        let mut r = r;
        id.sign_record(&mut r);
        let orig = encode(&r);
        prop_assert!(verify_record(&decode(&orig).unwrap(), &key).is_ok());
        let b = apply(orig.clone(), &muts);
        if let Ok(d) = decode(&b) {
            if b != orig {
                prop_assert!(verify_record(&d, &key).is_err(), "a changed record verified");
            }
        }
    }
}

// ---- tokens ----------------------------------------------------------------

/// Claims segments that are valid JSON of the wrong shape.
fn evil_claims() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#"{"iss":"c1","iss":"c9","aud":"c2","iat":1000,"exp":1060,"jti":"x"}"#.to_string()),
        Just(r#"{"iss":"c1","aud":"c2","iat":1e400,"exp":1060,"jti":"x"}"#.to_string()),
        Just(r#"{"iss":"c1","aud":"c2","iat":-1,"exp":1060,"jti":"x"}"#.to_string()),
        Just(r#"{"iss":"c1","aud":"c2","iat":18446744073709551616,"exp":1060,"jti":"x"}"#.to_string()),
        Just(r#"{"iss":"c1","aud":"c2","iat":18446744073709551615,"exp":18446744073709551615,"jti":"x"}"#.to_string()),
        Just(r#"{"iss":"c1","aud":"c2","iat":1000,"exp":0,"jti":"x"}"#.to_string()),
        Just(r#"{"iss":"c1","aud":"c2","iat":1000.5,"exp":1060,"jti":"x"}"#.to_string()),
        Just(r#"{"iss":{"a":1},"aud":"c2","iat":1000,"exp":1060,"jti":"x"}"#.to_string()),
        Just(r#"{"iss":"c1\u0000","aud":"c2","iat":1000,"exp":1060,"jti":"x"}"#.to_string()),
        Just(format!("{}1{}", "[".repeat(200), "]".repeat(200))),
        Just(r#"{"alg":"none"}"#.to_string()),
        Just(r#"{"alg":"EdDSA","alg":"none"}"#.to_string()),
        Just(r#"{"alg":"ed25519"}"#.to_string()),
        json_value().prop_map(|v| v.to_string()),
    ]
}

#[derive(Debug, Clone)]
enum TokenEdit {
    Bytes(Vec<Mutation>),
    /// Replace segment `seg` by the base64url of `text`.
    Segment {
        seg: usize,
        text: String,
    },
    /// Add a second `Bearer `, padding or white space.
    Wrap(&'static str, &'static str),
}

fn token_edit() -> impl Strategy<Value = TokenEdit> {
    let pool = vec![b"eyJhbGciOiJFZERTQSJ9".to_vec(), b"..".to_vec(), b"=".to_vec()];
    prop_oneof![
        proptest::collection::vec(mutation(pool), 1..3).prop_map(TokenEdit::Bytes),
        (0usize..4, evil_claims()).prop_map(|(seg, text)| TokenEdit::Segment { seg, text }),
        prop_oneof![
            Just(TokenEdit::Wrap("Bearer ", "")),
            Just(TokenEdit::Wrap("Bearer Bearer ", "")),
            Just(TokenEdit::Wrap("", "=")),
            Just(TokenEdit::Wrap("", "==")),
            Just(TokenEdit::Wrap(" \t", " ")),
            Just(TokenEdit::Wrap("", ".")),
        ],
    ]
}

fn edit_token(t: &str, e: &TokenEdit) -> Vec<u8> {
    match e {
        TokenEdit::Bytes(m) => apply(t.as_bytes().to_vec(), m),
        TokenEdit::Segment { seg, text } => {
            let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
            let enc = B64.encode(text.as_bytes());
            if *seg < parts.len() {
                parts[*seg] = enc;
            } else {
                parts.push(enc);
            }
            parts.join(".").into_bytes()
        }
        TokenEdit::Wrap(a, b) => format!("{a}{t}{b}").into_bytes(),
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// A changed token never verifies; verification never panics, whatever
    /// the clock reads.
    #[test]
    fn changed_tokens_never_verify(
        now_s in prop_oneof![Just(1_000u64), any::<u64>(), Just(u64::MAX)],
        ttl_s in 0u64..400,
        jti in any::<[u8; 16]>(),
        edit in token_edit(),
        skew_s in prop_oneof![Just(30u64), Just(u64::MAX)],
    ) {
        let a = Identity::from_seed([1; 32]);
        let ka = a.verifying_key();
        let key_of = |id: &str| (id == "c1").then_some(ka);
        // Issuing at the end of time is not a parser's job.
        let now_s = now_s.min(u64::MAX - 400);
        let t = jwt::issue(&a, "c1", "c2", now_s, ttl_s, jti);
        let edited = edit_token(&t, &edit);
        let text = String::from_utf8_lossy(&edited);
        let presented = jwt::from_authorization(&text);
        for at in [now_s, now_s.saturating_add(1), 0, u64::MAX] {
            if let Ok(c) = jwt::verify(presented, "c1", "c2", key_of, at, skew_s) {
                prop_assert_eq!(presented, t.as_str(), "a changed token verified: {:?}", c);
            }
        }
    }

    /// Arbitrary `Authorization` values.
    #[test]
    fn arbitrary_tokens_are_refused(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&b);
        let t = jwt::from_authorization(&text);
        let ka = Identity::from_seed([1; 32]).verifying_key();
        prop_assert!(jwt::verify(t, "c1", "c2", |_| Some(ka), 1000, 30).is_err());
    }
}

// ---- small text forms ------------------------------------------------------

proptest! {
    #![proptest_config(config(2000))]

    /// Version text (`If-Match`, ETags): parses, or is refused; what parses
    /// prints back to a form that parses to the same version.
    #[test]
    fn version_text(s in prop_oneof![
        text(40),
        (any::<u64>(), any::<u32>()).prop_map(|(w, l)| format!("{w}.{l}")),
        "[+-]?[0-9]{0,22}\\.[+-]?[0-9]{0,12}",
    ]) {
        if let Ok(h) = s.parse::<Hlc>() {
            prop_assert_eq!(h.to_string().parse::<Hlc>(), Ok(h));
        }
    }

    /// Visibility: parses only its own printed form.
    #[test]
    fn visibility_text(s in prop_oneof![text(80), "authorized:[A-Za-z0-9._-]{0,70}"]) {
        if let Ok(v) = Visibility::parse(&s) {
            prop_assert_eq!(v.to_string(), s);
        }
    }

    /// Id rules never panic and never accept what a URL path or a header
    /// would change.
    #[test]
    fn id_rules(s in text(300)) {
        if regmesh_core::validate_record_id(&s).is_ok() {
            prop_assert!(s.len() <= 256 && s.is_ascii());
            prop_assert!(!s.contains(['/', '?', '#', ' ']));
        }
        if regmesh_core::validate_center_id(&s).is_ok() {
            prop_assert!(s.len() <= 64 && s.is_ascii());
        }
    }

    /// The JSON view of any stored record is JSON, whatever its fields hold.
    #[test]
    fn view_of_a_valid_body_is_json(r in record(), stale in any::<bool>()) {
        let mut r = r;
        r.body = r#"{"addresses":["2001:db8::1"],"status":"online"}"#.into();
        let v: Value = serde_json::from_str(&view_json(&r, stale)).unwrap();
        prop_assert_eq!(v["id"].as_str(), Some(r.id.as_str()));
    }
}

// ---- regressions found by the properties above ----------------------------

/// A public key in the config (`[[centers]] public_key`) that is 64 bytes
/// but not ASCII. `sign::key_from_hex` slices the string two bytes at a time
/// and panics inside a multi-byte character (crates/core/src/sign.rs:104)
/// instead of refusing it.
#[test]
fn key_hex_of_non_ascii_is_refused() {
    let s = format!("a{}", "€".repeat(21));
    assert_eq!(s.len(), 64);
    assert!(regmesh_core::sign::key_from_hex(&s).is_err());
}

/// The parsed view of a record whose body is not a JSON object (a replica
/// applies bodies exactly as their origin signed them).
#[test]
fn view_of_a_body_that_is_not_an_object() {
    for body in ["this is not an agent", "", "[1,2]", "{\"a\":", "{} {}", "\"x\""] {
        let r = Record {
            kind: "agent".into(),
            id: "a1".into(),
            origin: "c1".into(),
            version: Hlc::new(1, 0),
            seq: 1,
            expires_at_ms: None,
            visibility: Visibility::Public,
            deleted: false,
            body: body.into(),
            sig: [0; 64],
        };
        let v = view(&r, false);
        assert_eq!(v["id"], "a1", "{body:?}");
    }
}
