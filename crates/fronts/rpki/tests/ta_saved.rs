//! A console keeps each trust anchor's last valid certificate in its
//! `state_dir`: a console restarted (a new `Console` over the same folder)
//! while the TA's host is unreachable validates from the saved certificate
//! and the saved repositories, and reports the TA's fetch error; once the
//! saved certificate has expired it is refused and nothing is validated.
//! (The bin test `crates/bin/tests/rpki.rs` does the same with a real
//! process restart.)
//!
//! Budget: one world (~25 RSA keys), three console cycles and a wait of at
//! most the TA certificate's 10 s life: ~15 s.

mod world;

use regmesh_front_rpki::console::{read_tals, Console};
use regmesh_front_rpki::fetch::Client;
use regmesh_front_rpki::rrdp::RrdpLimits;
use regmesh_front_rpki::rtr::RtrSource;
use std::path::Path;
use std::time::{Duration, SystemTime};
use world::{lab_cas, lab_expected, Lab};

fn console(tal: &Path, ca: &Path, state: &Path) -> Console {
    let mut c = Console::new(
        read_tals(&[tal.to_path_buf()]).unwrap(),
        Client::new(&[ca], true).unwrap(),
        RrdpLimits::default(),
        RtrSource::new(60),
        "c1",
    );
    c.restore(state).unwrap();
    c
}

/// (VRP count, the TA's error) after one cycle.
async fn cycle(c: &mut Console) -> (usize, Option<String>) {
    c.cycle(None).await;
    let p = c.shared.published.read().unwrap();
    (p.vrps.len(), p.ta_errors.get("lab").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_console_validates_from_its_saved_ta_certificate_until_it_expires() {
    let mut lab = Lab::start(3, lab_cas());
    let expires = lab.world.reissue_ta(10);
    lab.republish();
    let dir = tempfile::tempdir().unwrap();
    let (tal, ca) = lab.write_trust(dir.path());
    let state = dir.path().join("state");
    let want = lab_expected().len();

    let (n, err) = cycle(&mut console(&tal, &ca, &state)).await;
    assert_eq!((n, err), (want, None), "first run: the TA answers");

    // The TA's host (it also serves repository 0) goes away.
    lab.servers[0].link.lock().unwrap().unreachable = true;
    let (n, err) = cycle(&mut console(&tal, &ca, &state)).await;
    assert!(
        SystemTime::now() < expires,
        "the machine is too slow for this test's 10 s TA life"
    );
    assert!(err.is_some(), "the TA's fetch failed and is reported");
    assert_eq!(n, want, "restarted: validated from the saved TA certificate");

    // The saved certificate expires: a restarted console refuses it.
    if let Ok(left) = expires.duration_since(SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
    let (n, err) = cycle(&mut console(&tal, &ca, &state)).await;
    assert!(err.is_some());
    assert_eq!(n, 0, "an expired saved TA certificate is not used");
}
