//! Differential check against Routinator (NLnet Labs): the console's VRP
//! set over the synthetic RPKI must be identical to what `routinator vrps`
//! validates from the same repositories. Routinator is not packaged for
//! Debian and takes minutes to build, so this test is ignored in CI and run
//! by `bench/routinator` (which installs it with `cargo install`).
//!
//! Routinator runs RRDP-only (`--disable-rsync`), with our TAL only
//! (`--no-rir-tals --extra-tals-dir`), our HTTPS test CA
//! (`--rrdp-root-cert`) and `--allow-dubious-hosts` (the lab is on
//! `localhost` with ports).
//!
//! Budget: one world (~25 RSA keys), one console cycle, one Routinator run
//! (a few seconds).

mod world;

use regmesh_front_rpki::console::{read_tals, Console};
use regmesh_front_rpki::fetch::Client;
use regmesh_front_rpki::rrdp::RrdpLimits;
use regmesh_front_rpki::rtr::RtrSource;
use regmesh_front_rpki::vrps;
use std::process::Command;
use world::{lab_cas, lab_expected, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs routinator (bench/routinator installs it)"]
async fn vrps_are_identical_to_routinator() {
    let routinator = std::env::var("ROUTINATOR").unwrap_or_else(|_| "routinator".into());
    let lab = Lab::start(3, lab_cas());
    let dir = tempfile::tempdir().unwrap();
    let tals = dir.path().join("tals");
    std::fs::create_dir_all(&tals).unwrap();
    let (tal, ca) = lab.write_trust(&tals);
    // Routinator reads every file of the folder as a TAL: keep only ours.
    let ca_kept = dir.path().join("https-ca.pem");
    std::fs::rename(&ca, &ca_kept).unwrap();

    let mut console = Console::new(
        read_tals(std::slice::from_ref(&tal)).unwrap(),
        Client::new(&[&ca_kept], true).unwrap(),
        RrdpLimits::default(),
        RtrSource::new(60),
        "c1",
    );
    console.cycle(None).await;
    let ours = console.shared.published.read().unwrap().vrps.clone();
    let expected: std::collections::BTreeSet<_> = lab_expected().into_iter().collect();
    let triples: std::collections::BTreeSet<_> = ours.iter().map(|v| (v.asn, v.prefix(), v.max_len)).collect();
    assert_eq!(triples, expected, "the console validates the lab as built");

    let out = dir.path().join("routinator.json");
    let t = std::time::Instant::now();
    let o = tokio::task::spawn_blocking({
        let (dir, tals, ca, out) = (dir.path().to_path_buf(), tals.clone(), ca_kept.clone(), out.clone());
        move || {
            Command::new(routinator)
                .arg("--no-rir-tals")
                .arg("--extra-tals-dir")
                .arg(&tals)
                .arg("-r")
                .arg(dir.join("routinator-cache"))
                .args(["--disable-rsync", "--allow-dubious-hosts", "--rrdp-root-cert"])
                .arg(&ca)
                .args(["vrps", "-f", "json", "-o"])
                .arg(&out)
                .output()
                .expect("routinator is not installed: run bench/routinator")
        }
    })
    .await
    .unwrap();
    assert!(o.status.success(), "routinator: {}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    let theirs = vrps::from_json(&text).unwrap_or_else(|| panic!("unreadable routinator json: {text}"));
    println!(
        "regmesh {} VRPs, routinator {} VRPs ({:?})",
        ours.len(),
        theirs.len(),
        t.elapsed()
    );
    assert_eq!(*ours, theirs, "identical to Routinator's VRPs");
}
