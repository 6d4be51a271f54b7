//! Peer-call tokens on arbitrary `Authorization` values: never panics, and
//! nothing but a token the key signed verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmesh_core::{jwt, Identity};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let token = jwt::from_authorization(&text);
    let _ = jwt::peek_issuer(token);
    let key = Identity::from_seed([1; 32]).verifying_key();
    let verified = jwt::verify(token, "c1", "c2", |_| Some(key), 1_000, 30);
    assert!(verified.is_err(), "an unsigned token verified: {token:?}");
});
