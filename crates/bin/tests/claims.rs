//! Claims of new ids by a majority of all configured centers, on three real
//! `regmesh` processes set up with `regmesh init`: one center down costs
//! nothing, the minority side of a split refuses new ids while the majority
//! side creates them, no id is ever acknowledged to two creators, and racing
//! creates of one id leave exactly one winner, and a restarted center keeps
//! the promises it gave; with `claims = "all"` (DRiP's rule) one center down
//! stops new ids.
//!
//! Budget: five meshes of three processes, about 50 s in all.

mod peer_harness;

use peer_harness::{get, serve, state_of, wait_mesh_up, wait_until};
use regmesh_node::client::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Creates (or updates) agent `id` at `c`: the status and the body.
async fn put(c: &Client, id: &str) -> (u16, Value) {
    let body = json!({"addresses": ["2001:db8::1"]});
    let r = c
        .request(hyper::Method::PUT, &format!("/v1/agents/{id}"), Some(&body))
        .await
        .unwrap();
    (r.status.as_u16(), r.json())
}

async fn origin_everywhere(clients: &[&Client], id: &str) -> Vec<Value> {
    let mut v = Vec::new();
    for c in clients {
        v.push(get(c, &format!("/v1/agents/{id}")).await.1["origin"].clone());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_of_three_centers_down_creates_succeed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    peer_harness::init(dir.path(), 3, "full");
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    drop(p3);
    // No waiting for c3 to be DEGRADED: c1 and c2 are a majority.
    assert_eq!(state_of(&c1, "c3").await, "OPERATIONAL", "c3 not yet judged");
    for i in 0..5 {
        let (s, b) = put(&c1, &format!("down{i}")).await;
        assert_eq!(s, 201, "down{i}: {b}");
    }
    let (s, b) = put(&c2, "down-c2").await;
    assert_eq!(s, 201, "{b}");
}

/// A switch that cuts proxied links: open connections drop, new ones are
/// closed at once.
#[derive(Default)]
struct Cut {
    on: AtomicBool,
    now: tokio::sync::Notify,
}

impl Cut {
    fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
        if on {
            self.now.notify_waiters();
        }
    }
}

/// Forwards every connection on `listen` to `target` unless cut.
async fn proxy(listen: tokio::net::TcpListener, target: String, cut: Arc<Cut>) {
    loop {
        let Ok((mut a, _)) = listen.accept().await else { return };
        if cut.on.load(Ordering::SeqCst) {
            continue;
        }
        let (target, cut) = (target.clone(), cut.clone());
        tokio::spawn(async move {
            let Ok(mut b) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let cutting = cut.now.notified();
            if cut.on.load(Ordering::SeqCst) {
                return;
            }
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                _ = cutting => {}
            }
        });
    }
}

/// Routes `center`'s calls to `peer` through a proxy controlled by `cut`.
async fn route_through(dir: &Path, center: &str, peer: &str, cut: Arc<Cut>) {
    let listen = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listen.local_addr().unwrap().port();
    let path = dir.join(format!("{center}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!("id = \"{peer}\"\nurl = \"https://");
    let i = text.find(&marker).expect("peer entry") + marker.len();
    let end = i + text[i..].find('"').unwrap();
    let target = text[i..end].to_string();
    std::fs::write(&path, format!("{}127.0.0.1:{port}{}", &text[..i], &text[end..])).unwrap();
    tokio::spawn(proxy(listen, target, cut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_split_the_minority_refuses_new_ids_and_no_id_gets_two_creators() {
    let dir = tempfile::tempdir().unwrap();
    peer_harness::init(dir.path(), 3, "full");
    let cut = Arc::new(Cut::default());
    for (a, b) in [("c1", "c3"), ("c3", "c1"), ("c2", "c3"), ("c3", "c2")] {
        route_through(dir.path(), a, b, cut.clone()).await;
    }
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    // c3 alone on one side, c1 and c2 on the other; each side has judged
    // the other (an isolated center used to grant ids once its peers were
    // no longer asked).
    cut.set(true);
    for (c, peer) in [(&c3, "c1"), (&c3, "c2"), (&c1, "c3"), (&c2, "c3")] {
        wait_until("the other side is not OPERATIONAL", Duration::from_secs(15), || async {
            state_of(c, peer).await != "OPERATIONAL"
        })
        .await;
    }
    for id in ["split-a", "split-b", "both"] {
        let (s, b) = put(&c3, id).await;
        assert_eq!(s, 503, "the minority must refuse {id}: {b}");
        // A minority of one has no peer left, so it is `inactive` and
        // refuses before voting; a minority with peers (the simulator and
        // proto's tally tests) refuses for want of a quorum.
        let code = b["error"]["code"].as_str().unwrap_or_default();
        assert!(["inactive", "vote_undecided"].contains(&code), "{b}");
    }
    for id in ["major-a", "both"] {
        let (s, b) = put(&c1, id).await;
        assert_eq!(s, 201, "the majority creates {id}: {b}");
    }
    let (s, b) = put(&c2, "major-b").await;
    assert_eq!(s, 201, "{b}");

    // Healed: the one creator of `both` owns it everywhere, and c3 cannot
    // take it over.
    cut.set(false);
    wait_until("everyone agrees c1 owns `both`", Duration::from_secs(20), || async {
        origin_everywhere(&[&c1, &c2, &c3], "both")
            .await
            .iter()
            .all(|o| o == "c1")
    })
    .await;
    let (s, b) = put(&c3, "both").await;
    assert_eq!(s, 409, "{b}");
    for id in ["split-a", "split-b"] {
        assert_eq!(
            get(&c1, &format!("/v1/agents/{id}")).await.0,
            404,
            "{id} was never created"
        );
    }
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    let (s, b) = put(&c3, "after").await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_of_one_id_leave_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    peer_harness::init(dir.path(), 3, "full");
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    let mut wins = [0usize; 3];
    for i in 0..20 {
        let id = format!("race{i:02}");
        let (a, b, c) = tokio::join!(put(&c1, &id), put(&c2, &id), put(&c3, &id));
        let statuses = [a.0, b.0, c.0];
        let winners: Vec<usize> = (0..3).filter(|k| statuses[*k] == 201).collect();
        assert_eq!(winners.len(), 1, "{id}: {statuses:?} {a:?} {b:?} {c:?}");
        for (s, body) in [&a, &b, &c] {
            assert!(matches!(s, 201 | 409), "{id}: {s} {body}");
        }
        wins[winners[0]] += 1;
        let winner = Value::from(format!("c{}", winners[0] + 1));
        wait_until(
            "every center has the winner's record",
            Duration::from_secs(10),
            || async {
                origin_everywhere(&[&c1, &c2, &c3], &id)
                    .await
                    .iter()
                    .all(|o| *o == winner)
            },
        )
        .await;
    }
    eprintln!("race winners: c1 {}, c2 {}, c3 {}", wins[0], wins[1], wins[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_center_remembers_the_claims_it_gave() {
    // With c3 down, c1 creates a `local` agent on c2's yes: its record
    // never leaves c1, so c2's claim for it expires into a doubt about c1.
    // c2 restarts, c3 comes back, c1 goes down. c3 asking for the same id
    // must not be granted on c2's yes: only c1, which holds the id, could
    // resolve c2's doubt.
    let dir = tempfile::tempdir().unwrap();
    peer_harness::init(dir.path(), 3, "full");
    let (p1, c1) = serve(dir.path(), "c1");
    let (p2, c2) = serve(dir.path(), "c2");
    let (p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    drop(p3);
    let body = json!({"addresses": ["2001:db8::1"], "visibility": "local"});
    let r = c1
        .request(hyper::Method::PUT, "/v1/agents/hidden", Some(&body))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.json());
    // c2's claim (2 s vote + 2 s grace) runs out.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    drop(p2);
    let (_p2, c2) = serve(dir.path(), "c2");
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    drop(p1);
    let (s, b) = put(&c3, "hidden").await;
    assert_eq!(s, 503, "c1's create of `hidden` is still in doubt at c2: {b}");
    let _ = c3;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_claims_all_one_center_down_stops_new_ids() {
    // DRiP's rule, kept as an option: every configured center must say yes.
    let dir = tempfile::tempdir().unwrap();
    peer_harness::init(dir.path(), 3, "full");
    for id in ["c1", "c2", "c3"] {
        let path = dir.path().join(format!("{id}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("claims = \"majority\""), "init writes the default");
        std::fs::write(&path, text.replace("claims = \"majority\"", "claims = \"all\"")).unwrap();
    }
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    let (s, b) = put(&c1, "everyone").await;
    assert_eq!(s, 201, "{b}");
    drop(p3);
    let (s, b) = put(&c1, "two-of-three").await;
    assert_eq!(s, 503, "{b}");
    let _ = c2;
}
