//! The numbers peers send in headers and beats, as the mesh feeds them to
//! proto: `DRiP-Node-Counter` (with the reset flag) into a dedup window,
//! `RegMesh-Seq-From`/counter ranges and sync watermarks into the
//! watermark map. Any u64 a peer can write must be handled without panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmesh_proto::dedup::CounterWindow;
use regmesh_proto::sync::Marks;

fuzz_target!(|data: &[u8]| {
    let mut window = CounterWindow::default();
    let mut marks = Marks::default();
    for chunk in data.chunks_exact(17) {
        let a = u64::from_be_bytes(chunk[1..9].try_into().unwrap());
        let b = u64::from_be_bytes(chunk[9..17].try_into().unwrap());
        match chunk[0] % 4 {
            0 => {
                let _ = window.peek(a, b & 1 == 1);
                let _ = window.observe(a, b & 1 == 1);
            }
            1 => {
                let _ = marks.advance("c2", a, b);
            }
            2 => {
                let _ = marks.raise("c2", a);
            }
            _ => {
                let _ = regmesh_proto::sync::page_covers(a, b, chunk[0] & 4 != 0, a ^ b);
            }
        }
    }
});
