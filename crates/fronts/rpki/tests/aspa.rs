//! ASPA at the console: attestations signed under the lab's CAs are
//! validated into the set the API serves (rpki-client's `aspas` member);
//! one whose customer AS the CA does not hold is not. (Identity with another validator is checked
//! against Routinator by `bench/routinator`: Debian's rpki-client 8.2
//! reads an older ASPA profile.)
//!
//! Budget: one world (~25 RSA keys), one console cycle: a few seconds.

mod world;

use regmesh_front_rpki::console::{read_tals, Console};
use regmesh_front_rpki::fetch::Client;
use regmesh_front_rpki::rrdp::RrdpLimits;
use regmesh_front_rpki::rtr::RtrSource;
use regmesh_front_rpki::{aspas, vrps};
use std::collections::BTreeSet;
use world::{lab_cas, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aspas_under_the_cas_resources_are_validated_and_served() {
    let mut lab = Lab::start(3, lab_cas());
    // CA 0 ("ripe") holds AS64496-64511; CA 1 ("apnic") AS65000-65100.
    lab.world
        .aspas
        .insert(0, vec![(64496, vec![64500, 64501]), (64497, vec![0]), (65000, vec![1])]);
    lab.world.aspas.insert(1, vec![(65001, vec![64496])]);
    lab.world.publish_all();
    lab.republish();
    let dir = tempfile::tempdir().unwrap();
    let (tal, ca) = lab.write_trust(dir.path());
    let mut console = Console::new(
        read_tals(std::slice::from_ref(&tal)).unwrap(),
        Client::new(&[&ca], true).unwrap(),
        RrdpLimits::default(),
        RtrSource::new(60),
        "c1",
    );
    console.cycle(None).await;
    let (set, got) = {
        let p = console.shared.published.read().unwrap();
        (p.vrps.clone(), p.aspas.clone())
    };
    let text = vrps::to_json_with(&set, &got, 1);
    let served = aspas::from_json(&text).unwrap();
    let want: BTreeSet<(u32, Vec<u32>)> = [(64496, vec![64500, 64501]), (64497, vec![0]), (65001, vec![64496])].into();
    assert_eq!(served, want, "AS65000 is not ripe's to attest: {text}");
    assert!(got.iter().all(|a| a.ta == "lab"));
}
