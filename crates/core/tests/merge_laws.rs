//! Property tests: merge is a join-semilattice, the codec round-trips, and any
//! change to a signed record's bytes breaks its signature.

use proptest::prelude::*;
use regmesh_core::codec::{decode, encode};
use regmesh_core::record::{merge, merge_opt};
use regmesh_core::sign::verify_record;
use regmesh_core::{Hlc, Identity, Record, Visibility};

fn visibility() -> impl Strategy<Value = Visibility> {
    prop_oneof![
        Just(Visibility::Public),
        Just(Visibility::Local),
        "[a-z]{1,8}".prop_map(Visibility::Authorized),
    ]
}

/// Versions of one key `agent/a`, with small value ranges so that ties on
/// version and origin actually happen.
fn record() -> impl Strategy<Value = Record> {
    (
        0u64..4,
        0u32..3,
        prop_oneof![Just("c1"), Just("c2")],
        0u64..4,
        proptest::option::of(0u64..1_000),
        visibility(),
        any::<bool>(),
        "[a-z]{0,3}",
        any::<[u8; 32]>(),
    )
        .prop_map(|(w, l, origin, seq, exp, vis, deleted, s, sig)| {
            let mut sig64 = [0u8; 64];
            sig64[..32].copy_from_slice(&sig);
            Record {
                kind: "agent".into(),
                id: "a".into(),
                origin: origin.into(),
                version: Hlc::new(w, l),
                seq,
                expires_at_ms: exp,
                visibility: vis,
                deleted,
                body: serde_json::json!({ "s": s }).to_string(),
                sig: sig64,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn merge_is_commutative(a in record(), b in record()) {
        prop_assert_eq!(merge(a.clone(), b.clone()), merge(b, a));
    }

    #[test]
    fn merge_is_associative(a in record(), b in record(), c in record()) {
        prop_assert_eq!(
            merge(merge(a.clone(), b.clone()), c.clone()),
            merge(a, merge(b, c))
        );
    }

    #[test]
    fn merge_is_idempotent(a in record()) {
        prop_assert_eq!(merge(a.clone(), a.clone()), a);
    }

    #[test]
    fn absent_is_bottom(a in record()) {
        prop_assert_eq!(merge_opt(None, Some(a.clone())), Some(a.clone()));
        prop_assert_eq!(merge_opt(Some(a.clone()), None), Some(a));
    }

    #[test]
    fn order_of_delivery_does_not_matter(mut v in proptest::collection::vec(record(), 1..8), rot in 0usize..8) {
        let forward = v.iter().cloned().reduce(merge).unwrap();
        let n = v.len();
        v.rotate_left(rot % n);
        v.reverse();
        let other = v.into_iter().reduce(merge).unwrap();
        prop_assert_eq!(forward, other);
    }

    #[test]
    fn newer_version_wins(a in record(), b in record()) {
        prop_assume!(a.version != b.version);
        let m = merge(a.clone(), b.clone());
        prop_assert_eq!(m.version, a.version.max(b.version));
    }

    #[test]
    fn codec_round_trips(a in record()) {
        prop_assert_eq!(decode(&encode(&a)).unwrap(), a);
    }

    #[test]
    fn codec_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn tampering_breaks_the_signature(a in record(), seed in any::<[u8; 32]>(), pos in any::<usize>(), flip in 1u8..=255) {
        let id = Identity::from_seed(seed);
        let mut r = a;
        id.sign_record(&mut r);
        prop_assert!(verify_record(&r, &id.verifying_key()).is_ok());
        let mut bytes = encode(&r);
        let i = pos % bytes.len();
        bytes[i] ^= flip;
        // Either the bytes no longer decode, or they decode to a record whose
        // signature fails.
        if let Ok(t) = decode(&bytes) {
            prop_assert!(verify_record(&t, &id.verifying_key()).is_err());
        }
    }

    #[test]
    fn another_key_does_not_verify(a in record(), s1 in any::<[u8; 32]>(), s2 in any::<[u8; 32]>()) {
        prop_assume!(s1 != s2);
        let mut r = a;
        Identity::from_seed(s1).sign_record(&mut r);
        prop_assert!(verify_record(&r, &Identity::from_seed(s2).verifying_key()).is_err());
    }
}

#[test]
fn pem_round_trip() {
    let id = Identity::from_seed([7; 32]);
    let pem = id.to_pkcs8_pem().unwrap();
    assert!(pem.contains("BEGIN PRIVATE KEY"));
    let back = Identity::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.verifying_key(), id.verifying_key());
    assert!(Identity::from_pkcs8_pem("garbage").is_err());
}
