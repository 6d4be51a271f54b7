//! `regmesh init`: everything a local mesh of N centers needs, in one folder.
//! It writes a CA, then per center a key, a certificate and a config. Center i
//! listens for clients on `P + 10·(i−1)` and for peers on the port after it;
//! with `--fronts rd`, it serves CoAP (the Resource Directory) on
//! `[::1]:P + 10·(i−1) + 2`; with `--fronts rpki`, c1 is the RPKI console
//! (TALs from `<out>/tals/`, RTR on `127.0.0.1:P + 3`) and every other
//! center a sync node.

use anyhow::{bail, Context, Result};
use regmesh_core::sign::key_hex;
use regmesh_core::Identity;
use regmesh_node::center::write_private_file;
use regmesh_node::config::{CenterKey, Config, PeerConfig, PeerListenConfig};
use regmesh_node::peer::pki::Ca;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Topology {
    /// Every center peers with every other.
    Full,
    /// c1 – c2 – … – cN.
    Line,
    /// A line closed into a circle.
    Ring,
    /// c1 in the middle, peering with every other.
    Star,
}

/// Neighbours of center `i` (0-based) among `n`.
pub fn neighbours(t: Topology, n: usize, i: usize) -> Vec<usize> {
    let mut v: Vec<usize> = match t {
        Topology::Full => (0..n).filter(|j| *j != i).collect(),
        Topology::Line => [i.checked_sub(1), (i + 1 < n).then_some(i + 1)]
            .into_iter()
            .flatten()
            .collect(),
        Topology::Ring if n <= 2 => return neighbours(Topology::Line, n, i),
        Topology::Ring => vec![(i + n - 1) % n, (i + 1) % n],
        Topology::Star if i == 0 => (1..n).collect(),
        Topology::Star => vec![0],
    };
    v.sort_unstable();
    v.dedup();
    v
}

/// Optional fronts `init` can write a section for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InitFront {
    /// The CoAP Resource Directory, on `[::1]:P + 10·(i−1) + 2`.
    Rd,
    /// The RPKI relying party: c1 the console (RTR on `127.0.0.1:P + 3`),
    /// the others sync nodes.
    Rpki,
}

pub fn run(n: usize, topology: Topology, out: &Path, base_port: u16, fronts: &[InitFront]) -> Result<()> {
    if !(1..=256).contains(&n) {
        bail!("--centers must be 1 to 256");
    }
    let last_port = base_port as usize + 10 * (n - 1) + 3;
    if last_port > u16::MAX as usize {
        bail!("--base-port {base_port} leaves no room for {n} centers (ports up to {last_port})");
    }
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    if fronts.contains(&InitFront::Rpki) {
        std::fs::create_dir_all(out.join("tals")).context("tals folder")?;
    }
    let ids: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
    for id in &ids {
        for ext in ["toml", "key", "crt"] {
            let p = out.join(format!("{id}.{ext}"));
            if p.exists() {
                bail!(
                    "{} exists; refusing to overwrite a mesh (use another --out)",
                    p.display()
                );
            }
        }
    }
    let ca = Ca::generate("regmesh local mesh CA")?;
    std::fs::write(out.join("ca.pem"), &ca.cert_pem)?;
    write_private_file(&out.join("ca.key"), ca.key_pem.as_bytes())?;
    let mut keys = Vec::with_capacity(n);
    for id in &ids {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let identity = Identity::from_seed(seed);
        let pem = identity.to_pkcs8_pem()?;
        write_private_file(&out.join(format!("{id}.key")), pem.as_bytes())?;
        std::fs::write(out.join(format!("{id}.crt")), ca.issue(id, &pem)?)?;
        keys.push(key_hex(&identity.verifying_key()));
    }
    let api_port = |i: usize| base_port as usize + 10 * i;
    for (i, id) in ids.iter().enumerate() {
        let mut cfg = Config {
            id: id.clone(),
            data_dir: PathBuf::from(format!("{id}-data")),
            ..Config::default()
        };
        cfg.api.listen = format!("127.0.0.1:{}", api_port(i)).parse()?;
        cfg.peer = Some(PeerListenConfig {
            listen: format!("127.0.0.1:{}", api_port(i) + 1).parse()?,
            cert: format!("{id}.crt").into(),
            key: format!("{id}.key").into(),
            ca: "ca.pem".into(),
            beat_interval_ms: 1000,
            clock_skew_s: 30,
            max_body_bytes: 16 << 20,
            vote_timeout_ms: 2000,
            claims: Default::default(),
            protocol_min: regmesh_node::config::default_protocol_min(),
            protocol_max: regmesh_node::config::default_protocol_max(),
        });
        cfg.peers = neighbours(topology, n, i)
            .into_iter()
            .map(|j| PeerConfig {
                id: ids[j].clone(),
                url: format!("https://127.0.0.1:{}", api_port(j) + 1),
                kinds: Vec::new(),
                groups: Vec::new(),
            })
            .collect();
        cfg.centers = ids
            .iter()
            .zip(&keys)
            .filter(|(other, _)| *other != id)
            .map(|(other, k)| CenterKey {
                id: other.clone(),
                public_key: k.clone(),
            })
            .collect();
        if fronts.contains(&InitFront::Rd) {
            let mut t = toml::Table::new();
            t.insert("listen".into(), format!("[::1]:{}", api_port(i) + 2).into());
            t.insert("upstreams".into(), toml::Value::Array(Vec::new()));
            cfg.fronts.insert("rd".into(), toml::Value::Table(t));
        }
        if fronts.contains(&InitFront::Rpki) {
            cfg.fronts
                .insert("rpki".into(), toml::Value::Table(rpki_section(i, api_port(i))));
        }
        cfg.validate()?;
        std::fs::write(out.join(format!("{id}.toml")), toml_text(&cfg)?)?;
    }
    println!(
        "wrote a {topology:?} mesh of {n} centers to {}: ca.pem, and for each center <id>.toml, <id>.key, <id>.crt",
        out.display()
    );
    println!("run one with: regmesh serve --config {}", out.join("c1.toml").display());
    Ok(())
}

/// `[fronts.rpki]` of center `i` (0-based): c1 the console, others sync.
fn rpki_section(i: usize, api_port: usize) -> toml::Table {
    let mut t = toml::Table::new();
    if i == 0 {
        t.insert("role".into(), "console".into());
        t.insert("tals".into(), toml::Value::Array(vec!["tals".into()]));
        t.insert("rtr_listen".into(), format!("127.0.0.1:{}", api_port + 3).into());
        t.insert("state_dir".into(), "c1-data/rpki".into());
    } else {
        t.insert("role".into(), "sync".into());
        t.insert("console".into(), "c1".into());
    }
    t
}

fn toml_text(cfg: &Config) -> Result<String> {
    Ok(format!(
        "# Written by `regmesh init`. Relative paths are relative to this file.\n{}",
        cfg.to_toml_redacted()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies() {
        assert_eq!(neighbours(Topology::Line, 3, 0), vec![1]);
        assert_eq!(neighbours(Topology::Line, 3, 1), vec![0, 2]);
        assert_eq!(neighbours(Topology::Ring, 4, 0), vec![1, 3]);
        assert_eq!(neighbours(Topology::Ring, 2, 0), vec![1]);
        assert_eq!(neighbours(Topology::Star, 4, 0), vec![1, 2, 3]);
        assert_eq!(neighbours(Topology::Star, 4, 2), vec![0]);
        assert_eq!(neighbours(Topology::Full, 3, 1), vec![0, 2]);
        assert!(neighbours(Topology::Full, 1, 0).is_empty());
    }
}
