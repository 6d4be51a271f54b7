//! Polls every center's `/v1/peers` for the DRiP node state it reports
//! (`active`, `sync`, `inactive`) and logs each answer with when the poll was
//! sent and answered. The inactive-write check reads this log; the monitor
//! judges nothing and never writes.

use super::nemesis::Clock;
use regmesh_node::client::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const POLL_INTERVAL: Duration = Duration::from_millis(150);
const POLL_TIMEOUT: Duration = Duration::from_millis(1000);

/// One answered poll.
#[derive(Clone, Debug)]
pub struct Seen {
    pub center: usize,
    pub sent_ms: u64,
    pub recv_ms: u64,
    pub state: String,
}

pub type SeenLog = Arc<Mutex<Vec<Seen>>>;

async fn poll(client: Client, center: usize, clock: Clock, log: SeenLog, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let sent_ms = clock.ms();
        let r = tokio::time::timeout(POLL_TIMEOUT, client.request(hyper::Method::GET, "/v1/peers", None)).await;
        if let Ok(Ok(r)) = r {
            if let Some(state) = r.json()["state"].as_str() {
                log.lock().expect("seen log").push(Seen {
                    center,
                    sent_ms,
                    recv_ms: clock.ms(),
                    state: state.to_string(),
                });
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Starts one poller per center; they run until `stop` is set.
pub fn start(urls: &[String], clock: Clock, stop: Arc<AtomicBool>) -> (SeenLog, Vec<tokio::task::JoinHandle<()>>) {
    let log: SeenLog = Arc::default();
    let tasks = urls
        .iter()
        .enumerate()
        .map(|(c, u)| {
            let client = Client::new(u, None).expect("client url");
            tokio::spawn(poll(client, c, clock, log.clone(), stop.clone()))
        })
        .collect();
    (log, tasks)
}
