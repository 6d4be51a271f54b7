//! The console against a synthetic RPKI whose repositories misbehave:
//! deltas and conditional GET on the normal path; session resets and serial
//! gaps (the snapshot instead); wrong hashes, oversize objects, compressed
//! answers, stalls and slow transfers (refused, the repository's last state
//! stays); expired CRLs (the publication point's last good objects serve).
//!
//! Budget: six worlds of ~25 RSA keys, 2–3 console cycles each, stalls of at
//! most 1 s: under 20 s in all.

mod world;

use regmesh_front_rpki::console::{read_tals, Console, RepoStatus};
use regmesh_front_rpki::fetch::{Client, Limits};
use regmesh_front_rpki::rrdp::RrdpLimits;
use regmesh_front_rpki::rtr::RtrSource;
use std::collections::{BTreeMap, BTreeSet};
use world::{lab_cas, lab_expected, notify_uri, Lab};

struct Rig {
    lab: Lab,
    _dir: tempfile::TempDir,
    tal: std::path::PathBuf,
    ca: std::path::PathBuf,
    console: Console,
}

fn console(tal: &std::path::Path, ca: &std::path::Path, limits: RrdpLimits) -> Console {
    let client = Client::new(&[ca], true).unwrap();
    Console::new(
        read_tals(&[tal.to_path_buf()]).unwrap(),
        client,
        limits,
        RtrSource::new(60),
        "c1",
    )
}

fn rig(limits: RrdpLimits) -> Rig {
    let lab = Lab::start(3, lab_cas());
    let dir = tempfile::tempdir().unwrap();
    let (tal, ca) = lab.write_trust(dir.path());
    let console = console(&tal, &ca, limits);
    Rig {
        lab,
        _dir: dir,
        tal,
        ca,
        console,
    }
}

type Triples = BTreeSet<(u32, String, u8)>;

async fn cycle(c: &mut Console) -> (Triples, BTreeMap<String, RepoStatus>) {
    c.cycle(None).await;
    let p = c.shared.published.read().unwrap();
    (
        p.vrps.iter().map(|v| (v.asn, v.prefix(), v.max_len)).collect(),
        p.repos.clone(),
    )
}

fn expected() -> Triples {
    lab_expected().into_iter().collect()
}

impl Rig {
    fn notify(&self, i: usize) -> String {
        notify_uri(self.lab.world.ports[i])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_by_deltas_and_unchanged_repositories_by_304() {
    let mut r = rig(RrdpLimits::default());
    let (vrps, st) = cycle(&mut r.console).await;
    assert_eq!(vrps, expected());
    assert!(st.values().all(|s| s.how == "snapshot"), "{st:?}");
    let (vrps, st) = cycle(&mut r.console).await;
    assert_eq!(vrps, expected());
    assert!(st.values().all(|s| s.how == "not-modified"), "{st:?}");
    // One ROA goes away; every manifest is reissued.
    let gone = r.lab.world.specs[0].roas.pop().unwrap();
    r.lab.world.publish_all();
    r.lab.republish();
    let (vrps, st) = cycle(&mut r.console).await;
    assert!(st.values().all(|s| s.how == "deltas" && s.serial == 2), "{st:?}");
    let mut want = expected();
    for (a, l, m) in &gone.prefixes {
        want.remove(&(gone.asn, format!("{a}/{l}"), m.unwrap_or(*l)));
    }
    assert_eq!(vrps, want);
    assert_eq!(vrps.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reset_or_a_serial_gap_takes_the_snapshot() {
    let mut r = rig(RrdpLimits::default());
    cycle(&mut r.console).await;
    r.lab.world.publish_all();
    // Repository 1 restarts its session; repository 2 skips a delta.
    r.lab.publishers[1] = world::Publisher::new(r.lab.world.ports[1]);
    r.lab.republish();
    r.lab.world.publish_all();
    r.lab.republish();
    let gap = r.lab.publishers[2].deltas.remove(0);
    let files = r.lab.publishers[2].files();
    *r.lab.servers[2].files.lock().unwrap() = files;
    assert_eq!(gap.0, 2);
    let (vrps, st) = cycle(&mut r.console).await;
    assert_eq!(vrps, expected());
    let s1 = &st[&r.notify(1)];
    assert_eq!((s1.how.as_str(), s1.serial), ("snapshot", 2), "{s1:?}");
    assert!(s1.last_error.as_deref().unwrap().contains("session changed"), "{s1:?}");
    let s2 = &st[&r.notify(2)];
    assert_eq!((s2.how.as_str(), s2.serial), ("snapshot", 3), "{s2:?}");
    assert!(s2.last_error.as_deref().unwrap().contains("gap"), "{s2:?}");
    assert_eq!(st[&r.notify(0)].how, "deltas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hashes_are_refused_and_the_last_state_stays() {
    let mut r = rig(RrdpLimits::default());
    cycle(&mut r.console).await;
    r.lab.world.publish_all();
    r.lab.republish();
    // Repository 1's delta is corrupted: the snapshot is taken instead.
    let n1 = r.notify(1);
    let corrupt = |files: &mut BTreeMap<String, bytes::Bytes>, what: &str| {
        for (p, b) in files.iter_mut() {
            if p.contains(what) {
                let mut v = b.to_vec();
                let i = v.len() / 2;
                v[i] ^= 1;
                *b = v.into();
            }
        }
    };
    corrupt(&mut r.lab.servers[1].files.lock().unwrap(), "delta-2");
    let (vrps, st) = cycle(&mut r.console).await;
    assert_eq!(vrps, expected());
    assert_eq!(st[&n1].how, "snapshot");
    assert!(
        st[&n1].last_error.as_deref().unwrap().contains("hash mismatch"),
        "{:?}",
        st[&n1]
    );
    // Next serial: delta and snapshot both corrupted. The fetch fails, the
    // repository keeps serial 2, and its VRPs stay.
    r.lab.world.publish_all();
    r.lab.republish();
    corrupt(&mut r.lab.servers[1].files.lock().unwrap(), "-3.xml");
    let (vrps, st) = cycle(&mut r.console).await;
    assert_eq!(st[&n1].how, "failed");
    assert!(st[&n1].last_error.as_deref().unwrap().contains("hash mismatch"));
    assert_eq!(st[&n1].serial, 2);
    assert_eq!(vrps, expected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_objects_and_compressed_answers_are_refused() {
    let mut r = rig(RrdpLimits {
        object_bytes_max: 600,
        ..RrdpLimits::default()
    });
    let (vrps, st) = cycle(&mut r.console).await;
    assert!(vrps.is_empty());
    let s0 = &st[&r.notify(0)];
    assert_eq!(s0.how, "failed");
    assert!(
        s0.last_error.as_deref().unwrap().contains("larger than 600 bytes"),
        "{s0:?}"
    );

    let mut c = console(&r.tal, &r.ca, RrdpLimits::default());
    r.lab.servers[0].link.lock().unwrap().gzip = true;
    c.cycle(None).await;
    let p = c.shared.published.read().unwrap();
    assert!(p.vrps.is_empty());
    let e = &p.ta_errors["lab"];
    assert!(e.contains("Content-Encoding"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_and_slow_transfers_time_out_and_the_last_state_stays() {
    let limits = RrdpLimits {
        notification: Limits {
            total_ms: 400,
            ..Limits::NOTIFICATION
        },
        bulk: Limits {
            rate_min_bps: 1_000_000,
            rate_grace_ms: 100,
            ..Limits::BULK
        },
        ..RrdpLimits::default()
    };
    let mut r = rig(limits);
    let (vrps, _) = cycle(&mut r.console).await;
    assert_eq!(vrps, expected());
    r.lab.world.publish_all();
    r.lab.republish();
    r.lab.servers[2].link.lock().unwrap().latency_ms = 1000;
    r.lab.servers[1].link.lock().unwrap().rate_bps = 20_000;
    let (vrps, st) = cycle(&mut r.console).await;
    let (s1, s2) = (&st[&r.notify(1)], &st[&r.notify(2)]);
    assert_eq!(s2.how, "failed");
    assert!(
        s2.last_error.as_deref().unwrap().contains("no answer within 400 ms"),
        "{s2:?}"
    );
    assert_eq!(s1.how, "failed");
    assert!(s1.last_error.as_deref().unwrap().contains("rate below"), "{s1:?}");
    assert_eq!((s1.serial, s2.serial), (1, 1));
    assert_eq!(vrps, expected(), "the last states still validate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_crl_fails_its_point_and_the_last_good_objects_serve() {
    let mut r = rig(RrdpLimits::default());
    cycle(&mut r.console).await;
    r.lab.world.crl_next_update_s = -3600;
    r.lab.world.publish_all();
    r.lab.republish();
    let (vrps, _) = cycle(&mut r.console).await;
    assert_eq!(vrps, expected(), "last good objects of every point");
    {
        let p = r.console.shared.published.read().unwrap();
        assert_eq!((p.pps_valid, p.pps_last_good, p.pps_failed), (0, 5, 0));
    }
    // A console that never saw them valid has nothing.
    let mut fresh = console(&r.tal, &r.ca, RrdpLimits::default());
    let (vrps, _) = cycle(&mut fresh).await;
    assert!(vrps.is_empty());
    let p = fresh.shared.published.read().unwrap();
    assert_eq!(
        (p.pps_valid, p.pps_failed),
        (0, 1),
        "the TA's point fails; nothing below is reached"
    );
}
