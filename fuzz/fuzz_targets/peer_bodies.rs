//! Peer message bodies: flood and sync batches (plain and deflated),
//! heartbeats, and the `Accept-Encoding` reader. None may panic; a flood
//! body decodes only to records whose encodings are canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmesh_node::peer::encoding;
use regmesh_node::peer::mesh::{decode_records, Beat};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    let body = match selector % 3 {
        0 => rest.to_vec(),
        // The receiver inflates up to its body limit; 1 MiB here.
        1 => match encoding::inflate(rest, 1 << 20) {
            Ok(b) => b,
            Err(_) => return,
        },
        _ => {
            let _ = encoding::accepts_deflate(std::str::from_utf8(rest).ok());
            rest.to_vec()
        }
    };
    if let Ok(records) = decode_records(&body) {
        for r in &records {
            let _ = regmesh_core::kind::view(r, false);
        }
    }
    let text = String::from_utf8_lossy(&body);
    let v = match serde_json::from_str::<Value>(text.trim()) {
        Ok(v) => v,
        Err(_) => Value::String(text.trim().trim_matches('"').to_string()),
    };
    let _ = Beat::parse(&v);
});
