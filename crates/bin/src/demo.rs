//! `regmesh demo`: a local three-center mesh as real processes. It registers
//! sample agents at each center and shows them arriving everywhere. A second
//! run reuses the mesh its folder holds (keys, configs, data); `--fresh`
//! deletes what an earlier demo wrote there and starts over.
//!
//! Must never: delete anything in the folder but the files `regmesh init`
//! writes for three centers and their data folders.

use anyhow::{bail, Context, Result};
use regmesh_node::client::Client;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const CENTERS: [&str; 3] = ["c1", "c2", "c3"];

pub async fn run(dir: &Path, base_port: u16, keep: bool, fresh: bool) -> Result<()> {
    let held = dir.join("c1.toml").exists();
    if held && fresh {
        forget(dir)?;
    }
    if held && !fresh {
        println!(
            "reusing the demo mesh in {} (its ports and data; --fresh starts over)",
            dir.display()
        );
        for id in CENTERS {
            if !dir.join(format!("{id}.toml")).exists() {
                bail!(
                    "{} holds no {id}.toml: not a demo mesh; use --fresh or another --dir",
                    dir.display()
                );
            }
        }
    } else {
        crate::init::run(3, crate::init::Topology::Full, dir, base_port, &[])?;
    }
    let exe = std::env::current_exe()?;
    let mut procs = Kill(Vec::new());
    let mut clients = Vec::new();
    for id in CENTERS {
        let mut child = Command::new(&exe)
            .args(["serve", "--config"])
            .arg(dir.join(format!("{id}.toml")))
            .env("REGMESH_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a center")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .context("a center did not start")?
            .to_string();
        println!("started {id}: client API {url}");
        procs.0.push(child);
        clients.push((id, Client::new(&url, None)?));
    }
    let t0 = Instant::now();
    for (id, c) in &clients {
        loop {
            let v = c.request(hyper::Method::GET, "/v1/peers", None).await?.json();
            let peers_ok = v["peers"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["state"] == "OPERATIONAL"));
            if v["state"] == "active" && peers_ok {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("{id} did not join the mesh in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "mesh is up (every peer OPERATIONAL) after {:.1} s\n",
        t0.elapsed().as_secs_f64()
    );
    let samples = [("translator", "translate"), ("summarizer", "summarize")];
    for (k, (id, c)) in clients.iter().enumerate() {
        for (name, cap) in samples {
            let agent = format!("did:web:{id}.example.com:{name}");
            let body = json!({
                "addresses": [format!("2001:db8:{}::{}", k + 1, name.len())],
                "endpoints": [{"url": format!("https://{id}.example.com/{name}/a2a"), "protocol": "a2a"}],
                "status": "online",
                "capabilities": [{"name": cap, "tags": ["demo"]}],
            });
            let r = c
                .request(hyper::Method::PUT, &format!("/v1/agents/{agent}"), Some(&body))
                .await?;
            if !r.status.is_success() {
                bail!(
                    "registering {agent} at {id}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
            }
            println!("registered {agent} at {id}");
        }
    }
    println!();
    let t1 = Instant::now();
    loop {
        let mut all = true;
        let mut table = Vec::new();
        for (id, c) in &clients {
            let v = c.request(hyper::Method::GET, "/v1/agents?tag=demo", None).await?.json();
            let items = v["items"].as_array().cloned().unwrap_or_default();
            all &= items.len() == 6;
            table.push((id, items));
        }
        if all || t1.elapsed() > Duration::from_secs(10) {
            for (id, items) in table {
                println!("{id} holds {} agents:", items.len());
                for a in items {
                    println!(
                        "  {:<40} origin {}",
                        a["id"].as_str().unwrap_or(""),
                        a["origin"].as_str().unwrap_or("")
                    );
                }
            }
            println!(
                "\n{} after {} ms",
                if all {
                    "every agent arrived at every center"
                } else {
                    "not every agent arrived"
                },
                t1.elapsed().as_millis()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if keep {
        println!(
            "\nthe mesh keeps running (configs in {}); Ctrl-C stops it",
            dir.display()
        );
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}

/// Deletes what `regmesh init` and the centers of an earlier demo wrote in
/// `dir`, and nothing else.
fn forget(dir: &Path) -> Result<()> {
    let mut files = vec!["ca.pem".to_string(), "ca.key".to_string()];
    for id in CENTERS {
        for ext in ["toml", "key", "crt"] {
            files.push(format!("{id}.{ext}"));
        }
        let data = dir.join(format!("{id}-data"));
        if data.exists() {
            std::fs::remove_dir_all(&data).with_context(|| data.display().to_string())?;
        }
    }
    for f in files {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| p.display().to_string())?;
        }
    }
    println!("removed the earlier demo mesh in {}", dir.display());
    Ok(())
}
