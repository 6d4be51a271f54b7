//! The canonical record codec on arbitrary bytes: never panics, and what
//! it accepts is exactly the encoding of what it decodes to (so no two byte
//! strings decode to the same record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmesh_core::codec::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode(data) {
        assert_eq!(encode(&r), data, "accepted bytes that are not canonical");
        let _ = regmesh_core::kind::view(&r, false);
    }
});
