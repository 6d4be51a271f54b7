//! Chaos test (issue 11, "Tests that keep it so"): five real `regmesh`
//! centers, set up with `regmesh init` and run with `regmesh serve --config`,
//! every peer link through a proxy the test controls (one per direction of
//! calls). On a schedule planned from `CHAOS_SEED` alone, the nemesis kills
//! centers with SIGKILL and restarts them on their data, pauses them with
//! SIGSTOP/SIGCONT, splits the mesh both ways and one way, freezes the bytes
//! of a link one way or both, delays and drops connections. Meanwhile two
//! writers per center create, update, heartbeat and delete their own ids, and
//! a racer creates fresh ids at two centers at once and re-claims held ids at
//! random centers. The schedule also sets `tombstone_horizon_s` (3 s, 8 s or
//! the default week), so short horizons put tombstone purges and resyncs
//! under the faults. Then everything is healed, the writers stop, and the
//! test waits (bounded) until every center lists the same records.
//!
//! Checks (names as in `CHAOS_KNOWN_DEFECTS` and the report):
//! - `converge`: every center lists the same (id, origin, version) within
//!   `CHAOS_CONVERGE_SECONDS` of the heal.
//! - `lost`: for every id, the version each center finally lists is at least
//!   the highest version its owner acknowledged, and from that owner; an id
//!   whose last op was an acknowledged put is listed everywhere. Also caught
//!   on the way: the owner answering 404, or 201 (created) again, for an id it
//!   had acknowledged as present. A writer's ops on one id are sequential;
//!   when one is in doubt (sent, no answer) the writer never touches that id
//!   again, so a late-applied op can only be the id's last, and the checks
//!   then ask only what any outcome of it allows.
//! - `resurrect`: an id whose last op was an acknowledged delete, or whose
//!   every write was refused, is listed nowhere.
//! - `two_creators`: race ids are never deleted, so after the first 201 for
//!   one, no other center may answer 2xx for it (a 201 is a second grant, a
//!   200 a second owner). Only answers count, never ops in doubt.
//! - `inactive_write`: no write is acknowledged while the center surely was
//!   `inactive`. Polling alone cannot prove a state held through a request,
//!   so the check uses windows that are sure by construction: a center whose
//!   every link (in and out) is cut can learn from no peer, so once it says
//!   `inactive` it stays so until a link heals or the process is killed. A
//!   window starts with a `/v1/peers` poll that answers `inactive`, sent at
//!   least [`checks::ISOLATION_GRACE_MS`] after the isolation began, the
//!   center unpaused through that long before it (so bytes on their way
//!   before the cut have been read). It runs from the poll's answer until
//!   the isolation ends (taken before the heal) or the center is killed
//!   (taken before the kill). A write sent after the window opened and
//!   acknowledged before it closed was processed while inactive. Writes
//!   elsewhere are not judged, so a pass only speaks for these windows; the
//!   report says how many writes they held.
//! - `logs`: no panic, no `integrity` (or digest verification) error in any
//!   center's log, no 5xx other than 503, no center exiting by itself.
//!
//! Settings (environment): `CHAOS_SEED` (default 1), `CHAOS_SECONDS` of
//! faults (default 30), `CHAOS_CONVERGE_SECONDS` (default 45),
//! `CHAOS_KNOWN_DEFECTS` (comma-separated check names reported but not
//! asserted; unset means [`KNOWN_DEFECTS_WHEN_UNSET`], empty means none),
//! `CHAOS_REPORT` (a file to write a JSON summary to, for `scripts/chaos`),
//! `CHAOS_KEEP=1` (keep the work folder, with the op log, even when the test
//! passes; it is kept whenever the test fails),
//! `CHAOS_FAULTS=none` (a control run: the same writers, no faults).
//! Budget: the default run takes about 37 s when the mesh converges (30 s of
//! faults, 5 s of setup, the checks) and at most about 85 s when it never
//! does (plus the 45 s convergence limit), on 2 cores.

#[path = "chaos/checks.rs"]
mod checks;
#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/monitor.rs"]
mod monitor;
#[path = "chaos/nemesis.rs"]
mod nemesis;
#[path = "chaos/proxy.rs"]
mod proxy;
#[path = "chaos/report.rs"]
mod report;
#[path = "chaos/rng.rs"]
mod rng;
#[path = "chaos/run.rs"]
mod run;
#[path = "chaos/schedule.rs"]
mod schedule;
#[path = "chaos/writers.rs"]
mod writers;

/// Checks reported but not asserted when `CHAOS_KNOWN_DEFECTS` is unset:
/// every check failed on `main` when this test was added, from open defects:
/// `inactive_write` (issue 11 item 2), `logs` (integrity errors after a
/// tombstone purge, item 1), `two_creators` and `lost` (a cut-off or split
/// side grants an id the other side holds: item 2 and issue 10 item 5),
/// `converge` and `resurrect` (once: a replica kept an id its origin had
/// deleted, with `tombstone_horizon_s = 3`). Take each name out as its fix is
/// merged; `CHAOS_KNOWN_DEFECTS=` asserts everything now.
pub const KNOWN_DEFECTS_WHEN_UNSET: &str = "";

/// Centers in the mesh.
const CENTERS: usize = 5;

#[test]
fn chaos() {
    let settings = run::Settings::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = rt
        .block_on(run::campaign(settings.clone(), CENTERS))
        .expect("chaos run");
    if let Some(why) = outcome.failure(&settings) {
        panic!("{why}");
    }
}
