//! Differential test: the console's VRP set over a synthetic RPKI (built
//! in-process, served over loopback HTTPS) must be identical to what the
//! real `rpki-client` (Debian package; scripts/test installs it) validates
//! from the same repositories, and to what `rtrdump` (Debian `stayrtr`)
//! reads back from the console's RTR server.
//!
//! rpki-client runs RRDP-only (`-e /bin/false`: its rsync fallback always
//! fails), with our TAL, and in a private mount namespace (`unshare -m`)
//! where our HTTPS test CA is bind-mounted over the system bundle that its
//! libtls reads (it has no flag for a CA file).
//!
//! Budget: one world (~25 RSA keys), one console cycle, one rpki-client run
//! (its timeout 60 s; ~2 s here), one rtrdump: well under 30 s.

mod world;

use regmesh_front_rpki::console::{read_tals, Console};
use regmesh_front_rpki::fetch::Client;
use regmesh_front_rpki::rrdp::RrdpLimits;
use regmesh_front_rpki::rtr::RtrSource;
use regmesh_front_rpki::vrps::{self, VrpSet};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use world::{lab_cas, lab_expected, Lab};

fn need(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run scripts/test (it installs rpki-client and stayrtr)"
    );
}

/// Runs rpki-client over the lab; returns its VRPs.
fn rpki_client(dir: &Path, tal: &Path, ca_pem: &Path) -> VrpSet {
    use std::os::unix::fs::PermissionsExt;
    let uid = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, "_rpki-client"]).output().unwrap();
        String::from_utf8(o.stdout).unwrap().trim().parse().unwrap()
    };
    let (u, g) = (uid("-u"), uid("-g"));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cache, out) = (dir.join("rc-cache"), dir.join("rc-out"));
    for d in [&cache, &out] {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::chown(d, Some(u), Some(g)).unwrap();
    }
    let script = format!(
        "mount --bind {ca} /usr/lib/ssl/cert.pem && exec rpki-client -j -e /bin/false -s 60 -t {tal} -d {cache} {out}",
        ca = ca_pem.display(),
        tal = tal.display(),
        cache = cache.display(),
        out = out.display()
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "rpki-client failed: {log}");
    let text = std::fs::read_to_string(out.join("json")).unwrap_or_else(|e| panic!("no json output ({e}): {log}"));
    vrps::from_json(&text).unwrap_or_else(|| panic!("unreadable rpki-client json: {text}"))
}

/// (asn, prefix, max length), without the trust anchor (RTR has none).
fn triples(set: &VrpSet) -> BTreeSet<(u32, String, u8)> {
    set.iter().map(|v| (v.asn, v.prefix(), v.max_len)).collect()
}

fn rtrdump(addr: std::net::SocketAddr, dir: &Path) -> BTreeSet<(u32, String, u8)> {
    let file = dir.join("rtrdump.json");
    let o = Command::new("rtrdump")
        .args([
            "-connect",
            &addr.to_string(),
            "-file",
            file.to_str().unwrap(),
            "-rtr.version",
            "1",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "rtrdump: {}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["roas"]
        .as_array()
        .unwrap_or_else(|| panic!("rtrdump output: {text}"))
        .iter()
        .map(|r| {
            let asn = match &r["asn"] {
                serde_json::Value::String(s) => s.trim_start_matches("AS").parse().unwrap(),
                n => n.as_u64().unwrap() as u32,
            };
            (
                asn,
                r["prefix"].as_str().unwrap().to_string(),
                r["maxLength"].as_u64().unwrap() as u8,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vrps_are_identical_to_rpki_client_and_rtrdump_reads_them_back() {
    need("rpki-client");
    need("rtrdump");
    need("unshare");
    let lab = Lab::start(3, lab_cas());
    let dir = tempfile::tempdir().unwrap();
    let (tal, ca) = lab.write_trust(dir.path());

    let client = Client::new(&[&ca], true).unwrap();
    let rtr = RtrSource::new(60);
    let mut console = Console::new(
        read_tals(std::slice::from_ref(&tal)).unwrap(),
        client,
        RrdpLimits::default(),
        rtr.clone(),
        "c1",
    );
    console.cycle(None).await;
    let ours = console.shared.published.read().unwrap().vrps.clone();
    let expected: BTreeSet<_> = lab_expected().into_iter().collect();
    assert_eq!(triples(&ours), expected, "the console validates the lab as built");
    assert!(ours.iter().all(|v| v.ta == "lab"));

    let (d, t, c) = (dir.path().to_path_buf(), tal.clone(), ca.clone());
    let theirs = tokio::task::spawn_blocking(move || rpki_client(&d, &t, &c))
        .await
        .unwrap();
    eprintln!("regmesh {} VRPs, rpki-client {} VRPs", ours.len(), theirs.len());
    assert_eq!(*ours, theirs, "identical to rpki-client's VRPs");

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(rtr.clone().serve(l));
    let d = dir.path().to_path_buf();
    let read = tokio::task::spawn_blocking(move || rtrdump(addr, &d)).await.unwrap();
    assert_eq!(read, expected, "rtrdump reads the same set over RTR");
}
