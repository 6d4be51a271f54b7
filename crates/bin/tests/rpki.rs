//! The RPKI front in a real mesh of `regmesh` processes set up with
//! `regmesh init --fronts rpki`: c1 the console, c2 and c3 sync nodes,
//! against a synthetic RPKI served over loopback HTTPS (the rpki crate's
//! test world). The console serves the lab's VRPs as rpki-client JSON and
//! Routinator CSV and over RTR (read back with `rtrdump`), sync nodes
//! publish their load, and once they are known the console's downloads go
//! through them as tasks over the peer listener; a sync node killed
//! mid-task leaves its repositories fetched anyway. A sync node paused with
//! SIGSTOP has its tasks given to the other sync node within the console's
//! `task_stall_ms`, and gets tasks again once it runs and writes its
//! record. A console killed and restarted while the trust anchor's host is
//! unreachable validates from the TA certificate it saved.
//!
//! Budget: two meshes of three processes and one console alone, ~25 RSA
//! keys each, cycles every second: ~20 s each (the stall test ~25 s),
//! run in parallel.

mod peer_harness;
#[path = "../../fronts/rpki/tests/world/mod.rs"]
mod world;

use peer_harness::{get, spawn, wait_until, Proc, BIN};
use regmesh_node::client::Client;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use world::{lab_cas, lab_expected, Lab};

/// A base port whose mesh ports and the console's RTR port are free.
fn free_base() -> u16 {
    loop {
        let b = peer_harness::free_base(3);
        if std::net::TcpListener::bind(("127.0.0.1", b + 3)).is_ok() {
            return b;
        }
    }
}

fn vrp_triples(v: &Value) -> BTreeSet<(u32, String, u8)> {
    v["roas"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|r| {
            let asn = r["asn"].as_str().unwrap().strip_prefix("AS").unwrap().parse().unwrap();
            (
                asn,
                r["prefix"].as_str().unwrap().to_string(),
                r["maxLength"].as_u64().unwrap() as u8,
            )
        })
        .collect()
}

fn repos_by(status: &Value) -> Vec<(String, String)> {
    status["repositories"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["by"].as_str().unwrap_or("").to_string(),
                        r["how"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `regmesh init --centers 3 --fronts rpki` in a new folder, with the
/// lab's trust written there, every center allowed the lab's hosts and
/// cycling every second, `console_extra` added to c1's section and
/// `sync_extra` to the sync nodes'. Returns the folder and the base port.
fn init_mesh(lab: &Lab, console_extra: &str, sync_extra: &str) -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base();
    let out = Command::new(BIN)
        .args([
            "init",
            "--centers",
            "3",
            "--fronts",
            "rpki",
            "--base-port",
            &base.to_string(),
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.write_trust(&dir.path().join("tals"));
    std::fs::rename(dir.path().join("tals/https-ca.pem"), dir.path().join("https-ca.pem")).unwrap();
    for id in ["c1", "c2", "c3"] {
        let p = dir.path().join(format!("{id}.toml"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("[fronts.rpki]\n"), "{text}");
        if id != "c1" {
            assert!(text.contains("console = \"c1\""), "{text}");
        }
        let extra = if id == "c1" { console_extra } else { sync_extra };
        let text = text.replace(
            "[fronts.rpki]\n",
            &format!("[fronts.rpki]\nallow_local_hosts = true\nca_certs = [\"https-ca.pem\"]\nrefresh_s = 1\n{extra}"),
        );
        std::fs::write(&p, text).unwrap();
    }
    (dir, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_and_two_sync_nodes_serve_the_lab_vrps() {
    let mut lab = Lab::start(3, lab_cas());
    let (dir, base) = init_mesh(&lab, "", "");
    let (p1, url) = spawn(dir.path(), "c1");
    let mut p1: Option<Proc> = Some(p1);
    let mut p2 = Some(spawn(dir.path(), "c2").0);
    let _p3 = spawn(dir.path(), "c3").0;
    let c1 = Client::new(&url, None).unwrap();
    let expected: BTreeSet<_> = lab_expected().into_iter().collect();

    // The console validates the lab: JSON, CSV, status.
    wait_until("the console's first VRPs", Duration::from_secs(20), || async {
        let (s, v) = get(&c1, "/v1/rpki/vrps").await;
        s == 200 && vrp_triples(&v).len() == expected.len()
    })
    .await;
    let (_, v) = get(&c1, "/v1/rpki/vrps").await;
    assert_eq!(vrp_triples(&v), expected);
    assert!(v["roas"].as_array().unwrap().iter().all(|r| r["ta"] == "lab"));
    let r = c1
        .request(hyper::Method::GET, "/v1/rpki/vrps?format=csv", None)
        .await
        .unwrap();
    let csv = String::from_utf8_lossy(&r.body).into_owned();
    assert!(csv.starts_with("ASN,IP Prefix,Max Length,Trust Anchor\n"), "{csv}");
    assert!(csv.contains("AS64496,10.1.0.0/16,24,lab\n"), "{csv}");
    assert_eq!(csv.lines().count(), expected.len() + 1);
    let (s, _) = get(&c1, "/v1/rpki/vrps?format=xml").await;
    assert_eq!(s, 400);

    // RTR on P + 3, read back by rtrdump.
    let file = dir.path().join("rtrdump.json");
    let o = Command::new("rtrdump")
        .args([
            "-connect",
            &format!("127.0.0.1:{}", base + 3),
            "-file",
            file.to_str().unwrap(),
        ])
        .output()
        .expect("rtrdump is not installed: run scripts/test");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dumped: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let dumped: BTreeSet<(u32, String, u8)> = dumped["roas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let asn = match &r["asn"] {
                Value::String(s) => s.trim_start_matches("AS").parse().unwrap(),
                n => n.as_u64().unwrap() as u32,
            };
            (
                asn,
                r["prefix"].as_str().unwrap().to_string(),
                r["maxLength"].as_u64().unwrap() as u8,
            )
        })
        .collect();
    assert_eq!(dumped, expected);

    // Sync nodes publish their metadata and load; then new serials are
    // downloaded through them.
    wait_until(
        "both sync nodes known to the console",
        Duration::from_secs(20),
        || async {
            let (_, s) = get(&c1, "/v1/rpki/status").await;
            s["sync_nodes"].as_array().map(|a| a.len()) == Some(2)
        },
    )
    .await;
    lab.world.specs[0].roas.pop();
    lab.world.publish_all();
    lab.republish();
    wait_until("downloads through sync nodes", Duration::from_secs(20), || async {
        let (_, s) = get(&c1, "/v1/rpki/status").await;
        let by = repos_by(&s);
        by.len() == 3 && by.iter().all(|(b, how)| (b == "c2" || b == "c3") && how == "deltas")
    })
    .await;
    let (_, v) = get(&c1, "/v1/rpki/vrps").await;
    assert_eq!(vrp_triples(&v).len(), expected.len() - 2);

    // A sync node dies; repositories it was given are fetched anyway.
    for s in &lab.servers {
        s.link.lock().unwrap().latency_ms = 300;
    }
    lab.world.specs[1].roas.pop();
    lab.world.publish_all();
    lab.republish();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(p2.take());
    wait_until(
        "the next serial fetched without c2",
        Duration::from_secs(30),
        || async {
            let (_, v) = get(&c1, "/v1/rpki/vrps").await;
            vrp_triples(&v).len() == expected.len() - 4
        },
    )
    .await;
    let (_, s) = get(&c1, "/v1/rpki/status").await;
    assert!(
        s["repositories"].as_array().unwrap().iter().all(|r| r["serial"] == 3),
        "{s}"
    );
    let r = c1.request(hyper::Method::GET, "/metrics", None).await.unwrap();
    let metrics = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        metrics.contains(&format!("regmesh_rpki_vrps {}\n", expected.len() - 4)),
        "{metrics}"
    );
    assert!(
        metrics.contains("regmesh_rpki_tasks_total{outcome=\"done\"}"),
        "{metrics}"
    );

    // The console is killed (SIGKILL) in the middle of a cycle (slow
    // repositories) and restarted: it starts from the state it saved in
    // its state_dir, fetches no snapshot, and serves the same set again.
    assert!(dir.path().join("c1-data/rpki/repos").read_dir().unwrap().count() == 3);
    drop(p1.take());
    let (p1b, url) = spawn(dir.path(), "c1");
    let _p1b = p1b;
    let c1 = Client::new(&url, None).unwrap();
    let (s, _) = get(&c1, "/v1/rpki/vrps").await;
    assert_eq!(s, 503, "no set before the first cycle ends");
    wait_until("VRPs after the console's restart", Duration::from_secs(30), || async {
        let (s, v) = get(&c1, "/v1/rpki/vrps").await;
        s == 200 && vrp_triples(&v).len() == expected.len() - 4
    })
    .await;
    let (_, s) = get(&c1, "/v1/rpki/status").await;
    let repos = s["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 3, "{s}");
    for r in repos {
        assert!(
            r["serial"] == 3 && (r["how"] == "not-modified" || r["how"] == "unchanged"),
            "after a restart nothing is fetched again: {s}"
        );
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a center's process.
fn signal(p: &Proc, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &p.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal}");
}

async fn metric(c: &Client, name: &str) -> u64 {
    let r = c.request(hyper::Method::GET, "/metrics", None).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sync_node_has_its_tasks_given_to_another() {
    let mut lab = Lab::start(3, lab_cas());
    // Every lab repository is c2's by the operator's table, so the first
    // try of every task goes to c2.
    // The sync nodes' records hold for a minute (not the default three
    // cycles), so the stopped c2 stays live and the console must find it
    // stalled by itself: what this test is about. With the default lease
    // c2's record runs out during the pause below (as it could, under
    // load, between the stop and the console's next cycle) and c3 is
    // picked without any stall.
    let (dir, _) = init_mesh(
        &lab,
        "algorithm = \"designated\"\ntask_stall_ms = 1000\ndesignated = { localhost = \"c2\" }\n",
        "lease_s = 60\n",
    );
    let (_p1, url) = spawn(dir.path(), "c1");
    let p2 = spawn(dir.path(), "c2").0;
    let _p3 = spawn(dir.path(), "c3").0;
    let c1 = Client::new(&url, None).unwrap();
    let expected = lab_expected().len();
    wait_until("both sync nodes known", Duration::from_secs(30), || async {
        let (_, s) = get(&c1, "/v1/rpki/status").await;
        s["sync_nodes"].as_array().map(|a| a.len()) == Some(2) && s["cycles"].as_u64() >= Some(1)
    })
    .await;
    let serial_by = |serial: u64, by: &'static str| {
        let c1 = &c1;
        move || async move {
            let (_, s) = get(c1, "/v1/rpki/status").await;
            let repos = s["repositories"].as_array().cloned().unwrap_or_default();
            repos.len() == 3 && repos.iter().all(|r| r["serial"] == serial && r["by"] == by)
        }
    };
    lab.world.specs[0].roas.pop();
    lab.world.publish_all();
    lab.republish();
    wait_until("serial 2 fetched by c2", Duration::from_secs(20), serial_by(2, "c2")).await;

    // c2 stops answering: each task given to it is taken back after the
    // stall time and done by c3, not by the console.
    signal(&p2, "STOP");
    // Longer than the default lease (three one-second cycles).
    tokio::time::sleep(Duration::from_millis(4000)).await;
    lab.world.specs[1].roas.pop();
    lab.world.publish_all();
    lab.republish();
    let t = std::time::Instant::now();
    wait_until(
        "serial 3 fetched by c3 while c2 is stopped",
        Duration::from_secs(20),
        serial_by(3, "c3"),
    )
    .await;
    let took = t.elapsed();
    let (_, v) = get(&c1, "/v1/rpki/vrps").await;
    assert_eq!(vrp_triples(&v).len(), expected - 4);
    assert!(metric(&c1, "regmesh_rpki_tasks_total{outcome=\"stalled\"}").await >= 1);
    assert!(metric(&c1, "regmesh_rpki_tasks_reassigned_total").await >= 1);
    println!("serial 3 by c3 {took:?} after c2 stopped");

    // c2 runs again: once its new record arrives the console stops
    // avoiding it (waited for, not guessed: under load the record may take
    // seconds) and gives it tasks again.
    signal(&p2, "CONT");
    wait_until("c2 no longer avoided", Duration::from_secs(20), || async {
        let (_, s) = get(&c1, "/v1/rpki/status").await;
        s["avoided_sync_nodes"].as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    lab.world.specs[2].roas.pop();
    lab.world.publish_all();
    lab.republish();
    wait_until(
        "serial 4 fetched by c2 again",
        Duration::from_secs(20),
        serial_by(4, "c2"),
    )
    .await;
    drop(p2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_restarted_while_the_ta_is_unreachable_validates_from_its_saved_certificate() {
    let lab = Lab::start(3, lab_cas());
    let (dir, _) = init_mesh(&lab, "", "");
    let expected: BTreeSet<_> = lab_expected().into_iter().collect();
    let (p1, url) = spawn(dir.path(), "c1");
    let c1 = Client::new(&url, None).unwrap();
    wait_until("the console's first VRPs", Duration::from_secs(20), || async {
        let (s, v) = get(&c1, "/v1/rpki/vrps").await;
        s == 200 && vrp_triples(&v) == expected
    })
    .await;
    let saved = dir.path().join("c1-data/rpki/ta");
    assert_eq!(saved.read_dir().unwrap().count(), 1, "the TA certificate is saved");

    // SIGKILL; the TA's host (it also serves repository 0) goes away; the
    // console starts again from its state_dir.
    drop(p1);
    lab.servers[0].link.lock().unwrap().unreachable = true;
    let (_p1, url) = spawn(dir.path(), "c1");
    let c1 = Client::new(&url, None).unwrap();
    wait_until("a cycle after the restart", Duration::from_secs(20), || async {
        let (s, _) = get(&c1, "/v1/rpki/vrps").await;
        s == 200
    })
    .await;
    let (_, v) = get(&c1, "/v1/rpki/vrps").await;
    assert_eq!(vrp_triples(&v), expected, "validated from the saved TA certificate");
    let (_, s) = get(&c1, "/v1/rpki/status").await;
    assert!(
        s["trust_anchor_errors"]["lab"].is_string(),
        "the TA's fetch error is shown: {s}"
    );
}
