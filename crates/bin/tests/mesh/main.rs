//! Real meshes of `regmesh` processes on loopback, set up with `regmesh init`
//! exactly as an operator would, and probed with the client API and with curl
//! (the DRiP draft's requests).

//!
//! One test binary (`--test mesh`), one file per scenario family: `alias`, `line`,
//! `full`, `sync`, `cut`, `diagnose`, `latency`, `scope`. Processes, ports and proxies come from the shared
//! harness; this file keeps only what these scenarios share.

mod alias;
mod cut;
mod diagnose;
mod full;
mod latency;
mod line;
#[path = "../peer_harness/mod.rs"]
mod peer_harness;
mod scope;
mod sync;

pub use peer_harness::*;
pub use regmesh_node::client::Client;
pub use serde_json::{json, Value};
pub use std::path::Path;
pub use std::process::Command;
pub use std::time::{Duration, Instant};

/// How many items a list call answers.
async fn count(c: &Client, path: &str) -> usize {
    get(c, path).await.1["items"].as_array().map_or(0, Vec::len)
}

/// Deletes `path` at `c`; the status code.
async fn delete(c: &Client, path: &str) -> u16 {
    c.request(hyper::Method::DELETE, path, None)
        .await
        .unwrap()
        .status
        .as_u16()
}

async fn peer_states(c: &Client) -> Vec<(String, String)> {
    let (_, v) = get(c, "/v1/peers").await;
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn agent(i: usize) -> Value {
    json!({"addresses": [format!("2001:db8::{i:x}")], "capabilities": [{"name": "translate"}]})
}

/// Creates agents `{prefix}{i}` (i zero-padded to two digits if `pad`) for
/// i in 0..n at `c`, each a 201.
async fn put_agents(c: &Client, prefix: &str, n: usize, pad: bool) {
    for i in 0..n {
        let id = if pad {
            format!("{prefix}{i:02}")
        } else {
            format!("{prefix}{i}")
        };
        let r = c
            .request(hyper::Method::PUT, &format!("/v1/agents/{id}"), Some(&agent(i)))
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201, "{id}: {:?}", r.json());
    }
}

/// Sets the exported kinds of `peer` in `center`'s config (empty: all).
fn set_export_kinds(dir: &Path, center: &str, peer: &str, kinds: &str) {
    set_peer_field(dir, center, peer, "kinds", kinds);
}

/// Sets (or, with "", removes) one field of a center's `[[peers]]` entry for
/// `peer`, on the line after its `url`.
fn set_peer_field(dir: &Path, center: &str, peer: &str, field: &str, value: &str) {
    let path = dir.join(format!("{center}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!("[[peers]]\nid = \"{peer}\"\n");
    let i = text.find(&marker).expect("peer entry");
    let url_end = i + marker.len() + text[i + marker.len()..].find('\n').unwrap() + 1;
    let rest = &text[url_end..];
    let rest = if rest.starts_with(&format!("{field} = ")) {
        &rest[rest.find('\n').unwrap() + 1..]
    } else {
        rest
    };
    let line = if value.is_empty() {
        String::new()
    } else {
        format!("{field} = {value}\n")
    };
    std::fs::write(&path, format!("{}{line}{rest}", &text[..url_end])).unwrap();
}

/// Sets `[leases] tombstone_horizon_s` in a center's config.
fn set_tombstone_horizon(dir: &Path, center: &str, secs: u64) {
    let path = dir.join(format!("{center}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let i = text.find("tombstone_horizon_s = ").expect("leases section");
    let end = i + text[i..].find('\n').unwrap();
    std::fs::write(
        &path,
        format!("{}tombstone_horizon_s = {secs}{}", &text[..i], &text[end..]),
    )
    .unwrap();
}
