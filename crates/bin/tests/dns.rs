//! The DNS front (issue 14) against real DNS software: `lab/dns/up` starts
//! Knot (a signed private root and parent, the signed zone with its HSYNC
//! RRset, one primary per provider), Unbound validating from the root's DS,
//! and the regmesh agents. What the primaries and the parent serve is read
//! with kdig; HSYNC and TLSA are changed with knsupdate.
//!
//! Budget: four labs (four, three, three and three agents, six or five
//! Knot servers, one Unbound each), every wait bounded: ~60 s, ~25 s,
//! ~30 s, ~20 s.

mod peer_harness;

use peer_harness::{create_agents, get, wait_mesh_up, wait_until, Proc, BIN};
use regmesh_node::client::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ZONE: &str = "example.lab.";

/// A lab; stopped with `lab/dns/down` when dropped.
struct Lab {
    dir: tempfile::TempDir,
    v: Value,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/dns").join(name)
}

impl Lab {
    fn up(providers: usize, extra: &[&str]) -> Lab {
        for tool in ["knotd", "unbound", "kdig", "knsupdate"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{tool} is not installed (scripts/test installs knot, knot-dnsutils, unbound)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script("up"))
            .args(["--providers", &providers.to_string(), "--dir"])
            .arg(dir.path())
            .args(extra)
            .env("REGMESH_BIN", BIN)
            .output()
            .unwrap();
        let lab = Lab {
            v: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            dir,
        };
        assert!(
            out.status.success() && lab.v.is_object(),
            "lab/dns/up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let urls: Vec<String> = (0..providers)
            .map(|i| lab.provider(i)["api"].as_str().unwrap().to_string())
            .collect();
        VIEWS.with(|v| *v.borrow_mut() = urls);
        lab
    }

    fn provider(&self, i: usize) -> &Value {
        &self.v["providers"][i]
    }

    fn client(&self, i: usize) -> Client {
        Client::new(self.provider(i)["api"].as_str().unwrap(), None).unwrap()
    }

    fn primary_port(&self, i: usize) -> u16 {
        self.provider(i)["primary"]["port"].as_u64().unwrap() as u16
    }

    fn parent_port(&self) -> u16 {
        self.v["parent"]["port"].as_u64().unwrap() as u16
    }

    /// Sends `lines` (knsupdate commands) to the zone's server or the parent.
    fn nsupdate(&self, server: &str, zone: &str, lines: &[String]) {
        let s = &self.v[server];
        let mut input = format!("server 127.0.0.1 {}\nzone {zone}\n", s["port"]);
        for l in lines {
            input.push_str(l);
            input.push('\n');
        }
        input.push_str("send\n");
        let mut c = Command::new("knsupdate")
            .args(["-y", s["tsig"].as_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "knsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops one process `lab/dns/up` started (by its name in D/pids),
    /// after checking that the pid still runs a command naming the lab.
    fn stop(&self, name: &str) {
        let pids = std::fs::read_to_string(self.dir.path().join("pids")).unwrap();
        let pid = pids
            .lines()
            .find_map(|l| l.strip_suffix(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not in {pids}"));
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let dir = self.dir.path().to_string_lossy().into_owned();
        assert!(
            String::from_utf8_lossy(&cmd).contains(&dir),
            "{name} ({pid}) is not running"
        );
        let ok = Command::new("kill").args(["-KILL", pid]).status().unwrap();
        assert!(ok.success());
    }

    fn hsync(&self, add: bool, rdata: &str) {
        let verb = if add {
            "add example.lab. 2"
        } else {
            "delete example.lab."
        };
        self.nsupdate("zone_server", ZONE, &[format!("update {verb} {rdata}")]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(script("down")).arg("--dir").arg(self.dir.path()).output();
    }
}

/// The NS set `port` serves for the zone (answer or referral), via kdig.
fn served(port: u16) -> BTreeSet<String> {
    let out = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+norec",
            "+time=1",
            "+retry=0",
            ZONE,
            "NS",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[3] == "NS").then(|| f[4].to_ascii_lowercase())
        })
        .collect()
}

fn ns_of(providers: &[usize]) -> BTreeSet<String> {
    providers
        .iter()
        .flat_map(|p| [format!("ns1.p{p}.lab."), format!("ns2.p{p}.lab.")])
        .collect()
}

async fn zone(c: &Client) -> Value {
    let (s, v) = get(c, &format!("/v1/dns/zones/{ZONE}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Waits until every port serves `want`; returns how long it took. On
/// timeout, fails with what each port serves and each agent's view.
async fn until_served(what: &str, ports: &[u16], want: &BTreeSet<String>, limit: Duration) -> Duration {
    let t0 = Instant::now();
    while !ports.iter().all(|p| &served(*p) == want) {
        if t0.elapsed() > limit {
            let got: Vec<_> = ports.iter().map(|p| served(*p)).collect();
            let views = VIEWS.with(|v| v.borrow().clone());
            let mut dump = String::new();
            for c in views {
                let c = Client::new(&c, None).unwrap();
                dump.push_str(&format!("\n{}", get(&c, &format!("/v1/dns/zones/{ZONE}")).await.1));
            }
            panic!("timed out after {limit:?} waiting for {what}: want {want:?}, served {got:?}{dump}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

thread_local! {
    /// The agents' API URLs, for failure messages.
    static VIEWS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

async fn all_operational(c: &Client, peers: usize) -> bool {
    let v = zone(c).await;
    let ps = v["peers"].as_object().cloned().unwrap_or_default();
    ps.len() == peers && ps.values().all(|p| p["state"] == "OPERATIONAL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_sync_the_ns_set_at_every_primary_and_the_parent() {
    let lab = Lab::up(4, &["--listed", "3"]);
    let c: Vec<Client> = (0..4).map(|i| lab.client(i)).collect();
    let primaries: Vec<u16> = (0..4).map(|i| lab.primary_port(i)).collect();

    // Three providers reach OPERATIONAL from DNS alone; the fourth, not in
    // HSYNC, does nothing and says why.
    let t0 = Instant::now();
    for (i, ci) in c.iter().take(3).enumerate() {
        wait_until(
            &format!("agent {} OPERATIONAL with both peers", i + 1),
            Duration::from_secs(20),
            || all_operational(ci, 2),
        )
        .await;
    }
    eprintln!("three agents OPERATIONAL {:?} after the lab was up", t0.elapsed());
    // Each peer's record-signing key is learned from the certificate its
    // validated TLSA pins: the same key `regmesh init` gave the mesh.
    let cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(lab.dir.path().join("agents/c1.toml")).unwrap()).unwrap();
    let v1 = zone(&c[0]).await;
    for (center, identity) in [("c2", "agent.p2.lab."), ("c3", "agent.p3.lab.")] {
        let known = cfg["centers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"].as_str() == Some(center))
            .and_then(|e| e["public_key"].as_str())
            .unwrap();
        assert_eq!(v1["peers"][identity]["record_key"], json!(known), "{v1}");
    }
    let v4 = zone(&c[3]).await;
    assert!(
        v4["refused"]
            .as_str()
            .unwrap_or("")
            .contains("agent.p4.lab. is not in the zone's HSYNC RRset"),
        "{v4}"
    );
    let mut ports: Vec<u16> = primaries[..3].to_vec();
    ports.push(lab.parent_port());
    until_served(
        "three providers' NS set",
        &ports,
        &ns_of(&[1, 2, 3]),
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        served(primaries[3]),
        BTreeSet::from(["ns.lab.".to_string()]),
        "p4 untouched"
    );

    // A fourth provider joins HSYNC: every primary and the parent serve the
    // four-provider set.
    let p4 = lab.provider(3)["hsync_rdata"].as_str().unwrap().to_string();
    lab.hsync(true, &p4);
    let mut all = primaries.clone();
    all.push(lab.parent_port());
    let took = until_served(
        "four providers' NS set",
        &all,
        &ns_of(&[1, 2, 3, 4]),
        Duration::from_secs(20),
    )
    .await;
    eprintln!("HSYNC + p4 -> every primary and the parent serve 8 NS: {took:?}");

    // A contribution changes: measured to every primary and the parent.
    let t0 = Instant::now();
    let r = c[1]
        .request(
            hyper::Method::PUT,
            &format!("/v1/dns/zones/{ZONE}/ns"),
            Some(&json!({"ns": ["ns1.p2.lab.", "ns3.p2.lab."]})),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    let mut want = ns_of(&[1, 3, 4]);
    want.extend(["ns1.p2.lab.".to_string(), "ns3.p2.lab.".to_string()]);
    until_served("p2's new contribution", &all, &want, Duration::from_secs(10)).await;
    eprintln!(
        "contribution change -> every primary and the parent: {:?}",
        t0.elapsed()
    );

    // A provider leaves HSYNC: its contribution leaves the set.
    lab.hsync(false, &p4);
    let mut want3 = ns_of(&[1, 3]);
    want3.extend(["ns1.p2.lab.".to_string(), "ns3.p2.lab.".to_string()]);
    until_served("p4 removed", &ports, &want3, Duration::from_secs(20)).await;

    // p3's agent goes down: p1 changes its contribution, and no primary is
    // updated while p3 is not OPERATIONAL; once p3 is back, all are.
    lab.stop("agent-c3");
    wait_until("p3 no longer OPERATIONAL at p1", Duration::from_secs(15), || async {
        let v = zone(&c[0]).await;
        matches!(
            v["peers"]["agent.p3.lab."]["state"].as_str(),
            Some("DEGRADED" | "INTERRUPTED")
        )
    })
    .await;
    let r = c[0]
        .request(
            hyper::Method::PUT,
            &format!("/v1/dns/zones/{ZONE}/ns"),
            Some(&json!({"ns": ["ns1.p1.lab."]})),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for p in &ports {
        assert_eq!(served(*p), want3, "no UPDATE while p3 is down");
    }
    let v = zone(&c[0]).await;
    assert!(v["waiting"].as_str().unwrap_or("").contains("agent.p3.lab."), "{v}");
    let _p3 = peer_harness::spawn(&lab.dir.path().join("agents"), "c3").0;
    want3.remove("ns2.p1.lab.");
    let took = until_served("p1's change after p3 is back", &ports, &want3, Duration::from_secs(30)).await;
    eprintln!("p3 restarted -> every primary and the parent updated: {took:?}");

    // Refusals, each with its reason. An identity whose records are in an
    // unsigned zone:
    let insecure = "TYPE3997 \\# 24 010200056167656e7408696e736563757265036c61620000";
    lab.hsync(true, insecure);
    wait_until("the unsigned identity refused", Duration::from_secs(15), || async {
        let v = zone(&c[0]).await;
        v["peers"]["agent.insecure.lab."]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("unsigned answer:") && r.contains("AD bit clear"))
    })
    .await;
    // Meanwhile nothing is applied: a peer is not OPERATIONAL.
    let v = zone(&c[0]).await;
    assert!(
        v["waiting"].as_str().unwrap_or("").contains("agent.insecure.lab."),
        "{v}"
    );
    lab.hsync(false, insecure);

    // A TLSA that does not match p3's certificate.
    let v1 = zone(&c[0]).await;
    let p3_addr = v1["peers"]["agent.p3.lab."]["addr"].as_str().unwrap().to_string();
    let port = p3_addr.rsplit_once(':').unwrap().1.to_string();
    let tlsa = format!("_{port}._tcp.api.agent.p3.lab.");
    lab.nsupdate(
        "parent",
        "lab.",
        &[
            format!("update delete {tlsa} TLSA"),
            format!("update add {tlsa} 2 TLSA 3 1 1 {}", "ab".repeat(32)),
        ],
    );
    wait_until("p3's TLSA refused", Duration::from_secs(15), || async {
        let v = zone(&c[0]).await;
        v["peers"]["agent.p3.lab."]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("TLSA mismatch"))
    })
    .await;

    // A wrong trust anchor: an agent configured with another root DS
    // refuses everything.
    let dir = tempfile::tempdir().unwrap();
    let lone = lone_agent(&lab, dir.path());
    let cl = Client::new(&lone.1, None).unwrap();
    wait_until("the wrong trust anchor refused", Duration::from_secs(15), || async {
        let (_, v) = get(&cl, &format!("/v1/dns/zones/{ZONE}")).await;
        v["refused"]
            .as_str()
            .is_some_and(|r| r.starts_with("wrong trust anchor"))
    })
    .await;
}

/// A single agent (no mesh) whose trust anchor is a DS no root key has.
fn lone_agent(lab: &Lab, dir: &Path) -> (Proc, String) {
    let base = peer_harness::free_base(1);
    let out = Command::new(BIN)
        .args(["init", "--centers", "1", "--base-port", &base.to_string(), "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.join("wrong.ds"), format!(". 2 IN DS 1 13 2 {}\n", "cd".repeat(32))).unwrap();
    let p = lab.provider(0);
    let text = std::fs::read_to_string(dir.join("c1.toml")).unwrap();
    let text = format!(
        "{text}\n[fronts.dns]\nidentity = \"agent.p1.lab.\"\nresolver = \"127.0.0.1:{}\"\ntrust_anchor = \"wrong.ds\"\nzones = [\"{ZONE}\"]\ninterval_ms = 500\n[fronts.dns.primary]\naddr = \"127.0.0.1:{}\"\ntsig = \"{}\"\n",
        lab.v["resolver"]["port"],
        p["primary"]["port"],
        p["primary"]["tsig"].as_str().unwrap()
    );
    std::fs::write(dir.join("c1.toml"), text).unwrap();
    peer_harness::spawn(dir, "c1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_votes_invalidate_the_election_and_nobody_updates_the_parent() {
    let lab = Lab::up(3, &["--votes", "7,7"]);
    let c: Vec<Client> = (0..3).map(|i| lab.client(i)).collect();
    let ports: Vec<u16> = (0..3).map(|i| lab.primary_port(i)).collect();
    // The primaries are updated (no leader is needed for that) ...
    until_served(
        "three providers' NS set",
        &ports,
        &ns_of(&[1, 2, 3]),
        Duration::from_secs(25),
    )
    .await;
    // ... but every election is invalid, on every agent, with the reason.
    for ci in &c {
        wait_until("an invalid election", Duration::from_secs(15), || async {
            let v = zone(ci).await;
            v["election"]["phase"] == "invalid"
                && v["election"]["reason"].as_str().unwrap_or("").contains("7")
                && v["leader"].is_null()
        })
        .await;
    }
    // The parent still delegates to the zone owner's server only.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(served(lab.parent_port()), BTreeSet::from(["ns.lab.".to_string()]));
}

/// The `rtype` records at `name` that `port` serves, in any section (a
/// referral's glue is in the additional one), RDATA as kdig writes it.
fn records(port: u16, name: &str, rtype: &str) -> BTreeSet<String> {
    let out = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+norec",
            "+time=1",
            "+retry=0",
            name,
            rtype,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 4 && f[3] == rtype && f[0].eq_ignore_ascii_case(name)).then(|| f[4..].join(" "))
        })
        .collect()
}

/// Budget: one lab of three signing providers, every wait bounded (~30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signers_serve_every_signers_keys_with_cds_cdnskey_csync_and_glue() {
    let lab = Lab::up(3, &[]);
    let c: Vec<Client> = (0..3).map(|i| lab.client(i)).collect();
    let ports: Vec<u16> = (0..3).map(|i| lab.primary_port(i)).collect();
    let parent = lab.parent_port();

    // Each primary signs with its own KSK and ZSK: once synced, every
    // primary serves all six DNSKEYs, and CDS and CDNSKEY for the three
    // KSKs, the same at every provider (RFC 8901 model 2).
    let t0 = Instant::now();
    wait_until(
        "every signer's keys at every primary",
        Duration::from_secs(25),
        || async {
            let sets: Vec<_> = ports.iter().map(|p| records(*p, ZONE, "DNSKEY")).collect();
            sets[0].len() == 6 && sets.iter().all(|s| s == &sets[0])
        },
    )
    .await;
    eprintln!(
        "three signers' DNSKEYs at every primary {:?} after the lab was up",
        t0.elapsed()
    );
    let keys = records(ports[0], ZONE, "DNSKEY");
    let ksks: BTreeSet<String> = keys.iter().filter(|k| k.starts_with("257 ")).cloned().collect();
    assert_eq!(ksks.len(), 3, "{keys:?}");
    wait_until(
        "CDS, CDNSKEY and CSYNC at every primary",
        Duration::from_secs(10),
        || async {
            ports.iter().all(|p| {
                records(*p, ZONE, "CDNSKEY") == ksks
                    && records(*p, ZONE, "CDS").len() == 3
                    && records(*p, ZONE, "CSYNC") == BTreeSet::from(["0 1 A NS AAAA".to_string()])
            })
        },
    )
    .await;
    let cds = records(ports[0], ZONE, "CDS");
    assert!(
        ports.iter().all(|p| records(*p, ZONE, "CDS") == cds),
        "one CDS set everywhere"
    );
    // Each primary still signs its DNSKEY RRset with its own KSK.
    for p in &ports {
        assert!(dnssec_signed(*p), "primary {p} signs its DNSKEY RRset");
    }

    // A nameserver inside the zone: its glue is served by every primary
    // and, with the delegation, by the parent.
    let r = c[0]
        .request(
            hyper::Method::PUT,
            &format!("/v1/dns/zones/{ZONE}/ns"),
            Some(&json!({"ns": ["ns1.example.lab.", "ns1.p1.lab."], "glue": {"ns1.example.lab.": ["127.0.0.53"]}})),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    let mut want = ns_of(&[2, 3]);
    want.extend(["ns1.example.lab.".to_string(), "ns1.p1.lab.".to_string()]);
    let mut all = ports.clone();
    all.push(parent);
    let took = until_served("p1's in-zone nameserver", &all, &want, Duration::from_secs(15)).await;
    let glue = BTreeSet::from(["127.0.0.53".to_string()]);
    wait_until(
        "glue at every primary and the parent",
        Duration::from_secs(10),
        || async { all.iter().all(|p| records(*p, "ns1.example.lab.", "A") == glue) },
    )
    .await;
    eprintln!("in-zone nameserver with glue -> every primary and the parent: {took:?}+");
    // A nameserver inside the zone without glue is refused, and changes
    // nothing.
    let r = c[1]
        .request(
            hyper::Method::PUT,
            &format!("/v1/dns/zones/{ZONE}/ns"),
            Some(&json!({"ns": ["ns9.example.lab."]})),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 400);
    let v = zone(&c[1]).await;
    assert_eq!(
        v["contributions"]["agent.p2.lab."]["ns"],
        json!(["ns1.p2.lab.", "ns2.p2.lab."]),
        "{v}"
    );

    // The glue leaves with its nameserver.
    let r = c[0]
        .request(
            hyper::Method::PUT,
            &format!("/v1/dns/zones/{ZONE}/ns"),
            Some(&json!({"ns": ["ns1.p1.lab."]})),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    let mut want = ns_of(&[2, 3]);
    want.insert("ns1.p1.lab.".to_string());
    until_served(
        "p1 without its in-zone nameserver",
        &all,
        &want,
        Duration::from_secs(15),
    )
    .await;
    wait_until(
        "glue removed at every primary and the parent",
        Duration::from_secs(10),
        || async { all.iter().all(|p| records(*p, "ns1.example.lab.", "A").is_empty()) },
    )
    .await;
}

/// Whether `port` answers the zone's DNSKEY with an RRSIG (+dnssec).
fn dnssec_signed(port: u16) -> bool {
    let out = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+norec",
            "+dnssec",
            "+time=1",
            "+retry=0",
            ZONE,
            "DNSKEY",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(3) == Some("RRSIG") && l.split_whitespace().nth(4) == Some("DNSKEY"))
}

/// Agents with no `[[peers]]`, no `[[centers]]` and a CA each find each
/// other from DNS alone: each discovered peer joins the mesh trusted by
/// the SPKI pin of its validated TLSA and the record key in that
/// certificate, and the mesh links become OPERATIONAL and replicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_no_peers_configured_and_separate_cas_mesh_from_dns_alone() {
    let lab = Lab::up(3, &["--dns-only"]);
    let agents = lab.dir.path().join("agents");
    let mut cas = BTreeSet::new();
    for i in 1..=3 {
        let cfg: toml::Table =
            toml::from_str(&std::fs::read_to_string(agents.join(format!("c{i}.toml"))).unwrap()).unwrap();
        assert!(cfg.get("peers").is_none() && cfg.get("centers").is_none(), "{cfg}");
        let ca = cfg["peer"]["ca"].as_str().unwrap();
        cas.insert(std::fs::read_to_string(agents.join(ca)).unwrap());
    }
    assert_eq!(cas.len(), 3, "a CA per agent");
    let c: Vec<Client> = (0..3).map(|i| lab.client(i)).collect();
    let t0 = Instant::now();
    for (i, ci) in c.iter().enumerate() {
        wait_until(
            &format!("agent {} OPERATIONAL with both peers", i + 1),
            Duration::from_secs(30),
            || all_operational(ci, 2),
        )
        .await;
    }
    eprintln!(
        "three DNS-only agents OPERATIONAL {:?} after the lab was up",
        t0.elapsed()
    );
    wait_mesh_up(&c.iter().collect::<Vec<_>>()).await;
    // The mesh replicates: an agent record created at c1 reaches c2 and c3.
    create_agents(&c[0], "dns-only-", 1).await;
    for ci in &c[1..] {
        wait_until("the record replicated", Duration::from_secs(10), || async {
            get(ci, "/v1/agents/dns-only-0").await.0 == 200
        })
        .await;
    }
    // And the NS union is applied at every primary.
    let primaries: Vec<u16> = (0..3).map(|i| lab.primary_port(i)).collect();
    until_served(
        "three providers' NS set",
        &primaries,
        &ns_of(&[1, 2, 3]),
        Duration::from_secs(15),
    )
    .await;
}
