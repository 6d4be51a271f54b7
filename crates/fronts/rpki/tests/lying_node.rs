//! A sync node that lies: a real center whose front answers the task RFIs
//! (`rpki.fetch`, `rpki.task`, `rpki.blob`) with bytes that are not the
//! files asked for. The console (a real center running the rpki front)
//! must check every SHA-256 itself, keep the lab's VRPs exact by fetching
//! locally, and mark the node so that it is never scheduled again, also
//! after the console restarts (the mark is kept in its `state_dir`).
//!
//! Budget: two in-process centers, one world, cycles every second: ~15 s.

mod mesh;
mod world;

use regmesh_core::Kind;
use regmesh_front_rpki::kinds::{self, NodeBody, NODE};
use regmesh_front_rpki::wire;
use regmesh_node::client::Client;
use regmesh_node::front::{Front, FrontError, Section, Task};
use regmesh_node::messages::{PeerAnswer, PeerBlob, PeerMessage, PeerVerb};
use regmesh_node::{NodeBuilder, NodeHandle};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use world::{lab_cas, lab_expected, Lab};

/// The liar: publishes itself as an idle sync node, accepts every task,
/// says it is done, and serves garbage for every blob.
#[derive(Default)]
struct Liar {
    blobs_served: Arc<AtomicU64>,
}

impl Front for Liar {
    fn name(&self) -> &'static str {
        "rpki"
    }
    fn configure(&mut self, _: &Section) -> Result<(), FrontError> {
        Ok(())
    }
    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        kinds::all()
    }
    fn peer_messages(&self, _: &NodeHandle) -> Vec<PeerMessage> {
        let served = self.blobs_served.clone();
        vec![
            PeerMessage::new(PeerVerb::Rfi, wire::FETCH, |_: String, _: Value| async {
                PeerAnswer::accepted()
            }),
            PeerMessage::new(PeerVerb::Rfi, wire::TASK, |_: String, _: Value| async {
                PeerAnswer::with_data(json!({"progress": "done", "bytes": 9, "elapsed_ms": 1}))
            }),
            PeerMessage::blobs(wire::BLOB, move |_: &str, _: &str, _: u64| {
                served.fetch_add(1, Ordering::Relaxed);
                Ok(PeerBlob {
                    total: 12,
                    data: bytes::Bytes::from_static(b"not the file"),
                })
            }),
        ]
    }
    fn tasks(&self, node: &NodeHandle) -> Result<Vec<Task>, FrontError> {
        let node = node.clone();
        Ok(vec![Box::pin(async move {
            let body = NodeBody {
                role: regmesh_front_rpki::config::Role::Sync,
                location: None,
                region: None,
                cpu_permille: 0,
                mem_permille: 0,
                net_bps: 0,
                active: 0,
                queued: 0,
                speed_bps: Default::default(),
                lease_s: 600,
                expired: false,
            };
            let kind = node.kind(NODE).unwrap();
            let p = kind.prepare("c2", serde_json::to_value(&body).unwrap()).unwrap();
            while node.put(NODE, "c2", p.clone(), None).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_node_returning_wrong_bytes_is_marked_and_the_vrps_stay_exact() {
    let mut lab = Lab::start(3, lab_cas());
    let dir = tempfile::tempdir().unwrap();
    let (tal, ca) = lab.write_trust(dir.path());
    let console = format!(
        "[rpki]\nrole = \"console\"\ntals = [{tal:?}]\nca_certs = [{ca:?}]\nallow_local_hosts = true\nrefresh_s = 1\nstate_dir = {:?}\n",
        dir.path().join("c1-rpki")
    );
    let cfgs = mesh::configs(dir.path(), &[&console, "[rpki]\n"]);
    let c1 = NodeBuilder::new(cfgs[0].clone())
        .front(regmesh_front_rpki::RpkiFront::new())
        .start()
        .await
        .unwrap();
    let liar = Liar::default();
    let served = liar.blobs_served.clone();
    let c2 = NodeBuilder::new(cfgs[1].clone()).front(liar).start().await.unwrap();
    let api = Client::new(&format!("http://{}", c1.addr), None).unwrap();
    let status = || async {
        let r = api.request(hyper::Method::GET, "/v1/rpki/status", None).await.unwrap();
        r.json()
    };

    // The console learns of the liar, gives it the next serials, and marks it.
    let mut known = false;
    for _ in 0..200 {
        if status().await["sync_nodes"].as_array().map(Vec::len) == Some(1) {
            known = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(known, "the liar's rpki.node record never reached the console");
    lab.world.publish_all();
    lab.republish();
    let mut s = Value::Null;
    for _ in 0..200 {
        s = status().await;
        if s["marked_sync_nodes"] == json!(["c2"]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s["marked_sync_nodes"], json!(["c2"]), "{s}");
    assert!(served.load(Ordering::Relaxed) >= 1, "the console pulled from the liar");

    // Every repository reaches serial 2 anyway, fetched by the console.
    let mut done = false;
    for _ in 0..200 {
        s = status().await;
        let repos = s["repositories"].as_array().unwrap();
        if repos.len() == 3 && repos.iter().all(|r| r["serial"] == 2 && r["by"] == "c1") {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "{s}");
    let v = api
        .request(hyper::Method::GET, "/v1/rpki/vrps", None)
        .await
        .unwrap()
        .json();
    let got: BTreeSet<(u32, String, u8)> = v["roas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["asn"].as_str().unwrap()[2..].parse().unwrap(),
                r["prefix"].as_str().unwrap().to_string(),
                r["maxLength"].as_u64().unwrap() as u8,
            )
        })
        .collect();
    assert_eq!(got, lab_expected().into_iter().collect());

    // Marked means never scheduled again: later serials never reach it.
    let before = served.load(Ordering::Relaxed);
    lab.world.publish_all();
    lab.republish();
    for _ in 0..100 {
        s = status().await;
        if s["repositories"].as_array().unwrap().iter().all(|r| r["serial"] == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s["repositories"].as_array().unwrap().iter().all(|r| r["serial"] == 3),
        "{s}"
    );
    assert_eq!(served.load(Ordering::Relaxed), before);

    // The console restarts: the mark is still there, and the liar still
    // gets nothing.
    c1.shutdown().await;
    let c1 = NodeBuilder::new(cfgs[0].clone())
        .front(regmesh_front_rpki::RpkiFront::new())
        .start()
        .await
        .unwrap();
    let api = Client::new(&format!("http://{}", c1.addr), None).unwrap();
    lab.world.publish_all();
    lab.republish();
    for _ in 0..200 {
        let r = api.request(hyper::Method::GET, "/v1/rpki/status", None).await.unwrap();
        s = r.json();
        let repos = s["repositories"].as_array().cloned().unwrap_or_default();
        if repos.len() == 3 && repos.iter().all(|r| r["serial"] == 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["serial"] == 4 && r["by"] == "c1"),
        "{s}"
    );
    assert_eq!(s["marked_sync_nodes"], json!(["c2"]), "{s}");
    assert_eq!(served.load(Ordering::Relaxed), before);
    c1.shutdown().await;
    c2.shutdown().await;
}
