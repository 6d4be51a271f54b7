//! ASPA at the console: attestations signed under the lab's CAs are
//! validated into the set the API serves (rpki-client's `aspas` member);
//! one whose customer AS the CA does not hold is not. (Identity with another validator is checked
//! against Routinator by `bench/routinator`: Debian's rpki-client 8.2
//! reads an older ASPA profile.)
//!
//! Each attestation carries rpki-client's `expires`: the earliest notAfter
//! and CRL nextUpdate from its EE certificate up to the trust anchor; two
//! attestations of one customer are served as one entry.
//!
//! Budget: two worlds (~25 RSA keys each), one console cycle each: a few
//! seconds.

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
    assert!(got.values().all(|a| a.ta == "lab"));
}

async fn validated(lab: &Lab) -> (aspas::AspaSet, String) {
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
    let p = console.shared.published.read().unwrap();
    let text = vrps::to_json_with(&p.vrps, &p.aspas, 1);
    ((*p.aspas).clone(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_expires_at_the_earliest_not_after_or_next_update_on_its_chain() {
    use rpki::repository::crl::Crl;
    use rpki::repository::sigobj::SignedObject;
    let mut lab = Lab::start(3, lab_cas());
    // ripe (under the TA): AS64496's EE is valid one hour only.
    lab.world.aspas.insert(0, vec![(64496, vec![64500])]);
    lab.world.aspa_valid_s.insert(64496, 3_600);
    // apnic-member (under apnic): two attestations of AS65050, valid a
    // year; apnic's CRL (one level up) is due in two hours, the member's
    // own CRL and the TA's in a day.
    lab.world
        .aspas
        .insert(2, vec![(65050, vec![64497]), (65050, vec![64496, 65000])]);
    lab.world.crl_next_update_s_for.insert("apnic".into(), 7_200);
    lab.world.publish_all();
    lab.republish();
    let object = |repo: usize, uri: &str| {
        lab.world.objects[repo]
            .get(uri)
            .cloned()
            .unwrap_or_else(|| panic!("{uri} not published"))
    };
    let ee_not_after = SignedObject::decode(object(1, "rsync://localhost/repo1/ripe/as64496-0.asa"), false)
        .unwrap()
        .cert()
        .validity()
        .not_after()
        .timestamp();
    let apnic_crl_next = Crl::decode(object(2, "rsync://localhost/repo2/apnic/crl.crl"))
        .unwrap()
        .next_update()
        .timestamp();

    let (set, text) = validated(&lab).await;
    assert_eq!(set.len(), 2, "one entry per customer: {text}");
    assert_eq!(set[&64496].expires_s, ee_not_after, "the EE's notAfter: {text}");
    assert_eq!(
        set[&65050].expires_s, apnic_crl_next,
        "the parent CA's CRL nextUpdate: {text}"
    );
    assert_eq!(set[&65050].providers, vec![64496, 64497, 65000]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let served: Vec<(u64, i64)> = v["aspas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["customer_asid"].as_u64().unwrap(), a["expires"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        served,
        vec![(64496, ee_not_after), (65050, apnic_crl_next)],
        "served as rpki-client's `expires`"
    );
}
