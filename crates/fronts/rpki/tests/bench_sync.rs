//! One measuring run (ignored in CI: `cargo test -p regmesh-front-rpki
//! --test bench_sync -- --ignored --nocapture`): full-sync time of R
//! repositories behind slow links (latency and a per-connection rate; each
//! repository carries a filler object so that it is bandwidth-bound) by
//! rpki-client, by the console alone, and by the console with 1, 2 and 4
//! sync nodes (in-process centers over mutual TLS); the VRP sets compared.
//!
//! Loopback cannot model one host's own link: every tool here gets the same
//! per-connection rate and fetches repositories in parallel, so sync nodes
//! add their data-path cost and no bandwidth. Said in the report.

mod mesh;
mod world;

use regmesh_front_rpki::console::{read_tals, Console};
use regmesh_front_rpki::fetch::Client;
use regmesh_front_rpki::rrdp::RrdpLimits;
use regmesh_front_rpki::rtr::RtrSource;
use regmesh_node::NodeBuilder;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use world::{CaSpec, Lab, Link, RoaSpec};

const REPOS: usize = 8;
const FILLER_BYTES: usize = 1 << 20;
const LINK: Link = Link {
    latency_ms: 100,
    rate_bps: 1_000_000,
    gzip: false,
    unreachable: false,
};

fn specs() -> Vec<CaSpec> {
    (1..REPOS)
        .map(|i| {
            let a: IpAddr = format!("10.{i}.0.0").parse().unwrap();
            CaSpec {
                name: format!("ca{i}"),
                repo: i,
                parent: None,
                v4: vec![(a, 16)],
                v6: vec![],
                asns: (64500 + i as u32, 64500 + i as u32),
                roas: vec![RoaSpec {
                    asn: 64500 + i as u32,
                    prefixes: vec![(a, 16, Some(24))],
                }],
            }
        })
        .collect()
}

/// New sessions everywhere (a full sync by snapshots), with filler.
fn reset(lab: &mut Lab) {
    for i in 0..REPOS {
        let mut filler = vec![0u8; FILLER_BYTES];
        getrandom::fill(&mut filler).unwrap();
        lab.world.objects[i].insert(format!("rsync://localhost/repo{i}/filler.bin"), filler.into());
        lab.publishers[i] = world::Publisher::new(lab.world.ports[i]);
    }
    lab.republish();
    for s in &lab.servers {
        *s.link.lock().unwrap() = LINK;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn full_sync_times() {
    let mut lab = Lab::start(REPOS, specs());
    let dir = tempfile::tempdir().unwrap();
    let (tal, ca) = lab.write_trust(dir.path());
    reset(&mut lab);

    // Console alone.
    let mut c = Console::new(
        read_tals(std::slice::from_ref(&tal)).unwrap(),
        Client::new(&[&ca], true).unwrap(),
        RrdpLimits::default(),
        RtrSource::new(60),
        "c1",
    );
    let t = Instant::now();
    c.cycle(None).await;
    let alone = t.elapsed();
    let vrps = c.shared.published.read().unwrap().vrps.len();
    println!("console alone: {:?} ({vrps} VRPs)", alone);

    // rpki-client (same flags as the differential test).
    reset(&mut lab);
    let (d, tl, cp) = (dir.path().to_path_buf(), tal.clone(), ca.clone());
    let t = Instant::now();
    let ok = tokio::task::spawn_blocking(move || {
        let cache = d.join("bench-cache");
        let out = d.join("bench-out");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for x in [&cache, &out] {
            std::fs::create_dir_all(x).unwrap();
            std::process::Command::new("chown")
                .arg("_rpki-client")
                .arg(x)
                .status()
                .unwrap();
        }
        let script = format!(
            "mount --bind {} /usr/lib/ssl/cert.pem && exec rpki-client -j -e /bin/false -s 120 -t {} -d {} {}",
            cp.display(),
            tl.display(),
            cache.display(),
            out.display()
        );
        let o = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        let n = std::fs::read_to_string(out.join("json"))
            .ok()
            .and_then(|t| regmesh_front_rpki::vrps::from_json(&t))
            .map(|s| s.len());
        (o.status.success(), n)
    })
    .await
    .unwrap();
    println!("rpki-client: {:?} {ok:?}", t.elapsed());

    // Console with k sync nodes.
    for k in [1usize, 2, 4] {
        let console = format!(
            "[rpki]\nrole = \"console\"\ntals = [{tal:?}]\nca_certs = [{ca:?}]\nallow_local_hosts = true\nrefresh_s = 1\n"
        );
        let sync = format!(
            "[rpki]\nrole = \"sync\"\nconsole = \"c1\"\nca_certs = [{ca:?}]\nallow_local_hosts = true\nrefresh_s = 1\n"
        );
        let mut fronts = vec![console.as_str()];
        fronts.extend(std::iter::repeat_n(sync.as_str(), k));
        let mdir = tempfile::tempdir().unwrap();
        let cfgs = mesh::configs(mdir.path(), &fronts);
        let mut running = Vec::new();
        for cfg in cfgs {
            running.push(
                NodeBuilder::new(cfg)
                    .front(regmesh_front_rpki::RpkiFront::new())
                    .start()
                    .await
                    .unwrap(),
            );
        }
        let api = regmesh_node::client::Client::new(&format!("http://{}", running[0].addr), None).unwrap();
        let status = || async {
            api.request(hyper::Method::GET, "/v1/rpki/status", None)
                .await
                .unwrap()
                .json()
        };
        let t0 = Instant::now();
        while status().await["sync_nodes"].as_array().map(Vec::len) != Some(k) {
            assert!(t0.elapsed() < Duration::from_secs(30), "sync nodes not known");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the first (local) cycles settle, then a full sync by snapshots.
        tokio::time::sleep(Duration::from_secs(2)).await;
        reset(&mut lab);
        let sessions: Vec<String> = lab.publishers.iter().map(|p| p.session.to_string()).collect();
        let t = Instant::now();
        let s = loop {
            let s = status().await;
            let repos = s["repositories"].as_array().cloned().unwrap_or_default();
            if repos.len() == REPOS
                && repos
                    .iter()
                    .all(|r| sessions.contains(&r["session"].as_str().unwrap_or("").to_string()))
            {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "{s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let by: Vec<&str> = s["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["by"].as_str().unwrap())
            .collect();
        println!(
            "console + {k} sync nodes: {:?} (cycle {} ms, {} VRPs, by {by:?})",
            t.elapsed(),
            s["last_cycle_duration_ms"],
            s["vrps"]
        );
        for r in running {
            r.shutdown().await;
        }
    }
}
