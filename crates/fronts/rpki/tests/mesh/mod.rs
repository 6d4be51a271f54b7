//! In-process centers peered over mutual TLS on loopback (full mesh), for
//! the RPKI tests that need real centers without processes. Test support.
#![allow(dead_code)]

use regmesh_core::Identity;
use regmesh_node::config::{CenterKey, PeerConfig, PeerListenConfig};
use regmesh_node::Config;

/// Configs of `fronts.len()` centers c1, c2, ...; center i's `[fronts]`
/// table is `fronts[i]`.
pub fn configs(dir: &std::path::Path, fronts: &[&str]) -> Vec<Config> {
    let n = fronts.len();
    let ca = regmesh_node::peer::pki::Ca::generate("test CA").unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    let ports: Vec<u16> = (0..n)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let ids: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
    let mut keys = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let identity = Identity::from_seed([i as u8 + 7; 32]);
        let pem = identity.to_pkcs8_pem().unwrap();
        std::fs::write(dir.join(format!("{id}.key")), &pem).unwrap();
        std::fs::write(dir.join(format!("{id}.crt")), ca.issue(id, &pem).unwrap()).unwrap();
        keys.push(regmesh_core::sign::key_hex(&identity.verifying_key()));
    }
    (0..n)
        .map(|i| {
            let mut cfg = Config::for_test(&ids[i], &dir.join(&ids[i]));
            cfg.fronts = toml::from_str(fronts[i]).unwrap();
            cfg.peer = Some(PeerListenConfig {
                listen: format!("127.0.0.1:{}", ports[i]).parse().unwrap(),
                cert: dir.join(format!("{}.crt", ids[i])),
                key: dir.join(format!("{}.key", ids[i])),
                ca: dir.join("ca.pem"),
                beat_interval_ms: 200,
                clock_skew_s: 30,
                max_body_bytes: 1 << 20,
                vote_timeout_ms: 2000,
                claims: Default::default(),
                protocol_min: regmesh_node::config::default_protocol_min(),
                protocol_max: regmesh_node::config::default_protocol_max(),
            });
            let others = (0..n).filter(|j| *j != i);
            cfg.peers = others
                .clone()
                .map(|j| PeerConfig {
                    id: ids[j].clone(),
                    url: format!("https://127.0.0.1:{}", ports[j]),
                    kinds: Vec::new(),
                    groups: Vec::new(),
                })
                .collect();
            cfg.centers = others
                .map(|j| CenterKey {
                    id: ids[j].clone(),
                    public_key: keys[j].clone(),
                })
                .collect();
            cfg
        })
        .collect()
}
