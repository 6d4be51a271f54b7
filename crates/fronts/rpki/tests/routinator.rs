//! Differential check against Routinator (NLnet Labs): the console's VRP
//! and ASPA sets over the synthetic RPKI (plus two ASPA objects) must be
//! identical to what `routinator vrps` validates from the same
//! repositories. (ASPA is compared with Routinator, not rpki-client: the
//! Debian rpki-client 8.2 reads the older ASPA profile with `afiLimit`,
//! the `rpki` crate writes the current one.) Routinator is not packaged for
//! Debian and takes minutes to build, so this test is ignored in CI and run
//! by `bench/routinator` (which installs it with `cargo install`).
//!
//! Routinator runs RRDP-only (`--disable-rsync`), with our TAL only
//! (`--no-rir-tals --extra-tals-dir`), our HTTPS test CA
//! (`--rrdp-root-cert`), `--allow-dubious-hosts` (the lab is on
//! `localhost` with ports) and `--enable-aspa`.
//!
//! Budget: one world (~25 RSA keys), one console cycle, one Routinator run
//! (a few seconds).

mod world;

use regmesh_front_rpki::console::{read_tals, Console};
use regmesh_front_rpki::fetch::Client;
use regmesh_front_rpki::rrdp::RrdpLimits;
use regmesh_front_rpki::rtr::RtrSource;
use regmesh_front_rpki::{aspas, vrps};
use std::process::Command;
use world::{lab_cas, lab_expected, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs routinator (bench/routinator installs it)"]
async fn vrps_and_aspas_are_identical_to_routinator() {
    let routinator = std::env::var("ROUTINATOR").unwrap_or_else(|_| "routinator".into());
    let mut lab = Lab::start(3, lab_cas());
    lab.world
        .aspas
        .insert(0, vec![(64496, vec![64500, 64501]), (64497, vec![0])]);
    lab.world.aspas.insert(1, vec![(65001, vec![64496])]);
    lab.world.publish_all();
    lab.republish();
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
    let (ours, our_aspas) = {
        let p = console.shared.published.read().unwrap();
        (p.vrps.clone(), p.aspas.clone())
    };
    let our_aspas: std::collections::BTreeSet<(u32, Vec<u32>)> =
        our_aspas.values().map(|a| (a.customer, a.providers.clone())).collect();
    assert_eq!(our_aspas.len(), 3, "the console validates the lab's ASPAs");
    let expected: std::collections::BTreeSet<_> = lab_expected().into_iter().collect();
    let triples: std::collections::BTreeSet<_> = ours.iter().map(|v| (v.asn, v.prefix(), v.max_len)).collect();
    assert_eq!(triples, expected, "the console validates the lab as built");

    let out = dir.path().join("routinator.json");
    if let Ok(s) = std::env::var("ROUTINATOR_HOLD_S") {
        eprintln!("lab held: tals {} ca {}", tals.display(), ca_kept.display());
        tokio::time::sleep(std::time::Duration::from_secs(s.parse().unwrap())).await;
    }
    let t = std::time::Instant::now();
    let o = tokio::task::spawn_blocking({
        let (dir, tals, ca, out) = (dir.path().to_path_buf(), tals.clone(), ca_kept.clone(), out.clone());
        move || {
            Command::new(routinator)
                .arg("-v")
                .arg("--no-rir-tals")
                .arg("--extra-tals-dir")
                .arg(&tals)
                .arg("-r")
                .arg(dir.join("routinator-cache"))
                .args([
                    "--disable-rsync",
                    "--allow-dubious-hosts",
                    "--enable-aspa",
                    "--log-repository-issues",
                    "--rrdp-root-cert",
                ])
                .arg(&ca)
                .args(["vrps", "-f", "json", "-o"])
                .arg(&out)
                .output()
                .expect("routinator is not installed: run bench/routinator")
        }
    })
    .await
    .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "routinator: {log}");
    eprintln!("{log}");
    let text = std::fs::read_to_string(&out).unwrap();
    let theirs = vrps::from_json(&text).unwrap_or_else(|| panic!("unreadable routinator json: {text}"));
    println!(
        "regmesh {} VRPs, routinator {} VRPs ({:?})",
        ours.len(),
        theirs.len(),
        t.elapsed()
    );
    assert_eq!(*ours, theirs, "identical to Routinator's VRPs");
    let their_aspas = aspas::from_json(&text).unwrap_or_else(|| panic!("no aspas in routinator json: {text}"));
    println!("regmesh {} ASPAs, routinator {}", our_aspas.len(), their_aspas.len());
    assert_eq!(our_aspas, their_aspas, "identical to Routinator's ASPAs");
}
