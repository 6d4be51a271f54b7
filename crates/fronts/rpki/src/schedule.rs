//! The six task-assignment algorithms of document 001 §4 over a scheduling
//! model: which sync node fetches a repository next. Pure: the model comes
//! in as plain data, a pick goes out; the only state kept is the sequential
//! algorithm's history and the random generator.
//!
//! Must never: read a clock, a socket or the store, or pick a node that is
//! marked (it returned wrong hashes) or already at its task limit.

use std::collections::BTreeMap;
use std::str::FromStr;

/// RIR service regions a sync node or a repository can be in.
pub const REGIONS: [&str; 5] = ["afrinic", "apnic", "arin", "lacnic", "ripe"];
/// Tasks a sync node runs or queues at once; a node at this count gets no more.
pub const TASKS_PER_NODE_MAX: u32 = 8;

/// Region distance: for each region, the others from nearest to farthest
/// (by the continents they serve).
fn region_order(r: &str) -> &'static [&'static str] {
    match r {
        "afrinic" => &["afrinic", "ripe", "arin", "lacnic", "apnic"],
        "apnic" => &["apnic", "ripe", "arin", "afrinic", "lacnic"],
        "arin" => &["arin", "lacnic", "ripe", "apnic", "afrinic"],
        "lacnic" => &["lacnic", "arin", "afrinic", "ripe", "apnic"],
        "ripe" => &["ripe", "afrinic", "arin", "apnic", "lacnic"],
        _ => &[],
    }
}

/// An algorithm, as `algorithm` in `[fronts.rpki]` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// §4.1: any available node, uniformly.
    Random,
    /// §4.2: round-robin over the nodes sorted by id, remembering where it was.
    Sequential,
    /// §4.3: the highest measured download speed to the repository's host.
    NetworkAware,
    /// §4.4: the highest weight from load (CPU, memory, tasks) and speed.
    Dynamic,
    /// §4.5: the nearest region to the repository's first.
    Region,
    /// §4.6: the operator's table (repository host → node).
    Designated,
}

impl Algorithm {
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Random,
        Algorithm::Sequential,
        Algorithm::NetworkAware,
        Algorithm::Dynamic,
        Algorithm::Region,
        Algorithm::Designated,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Random => "random",
            Algorithm::Sequential => "sequential",
            Algorithm::NetworkAware => "network-aware",
            Algorithm::Dynamic => "dynamic",
            Algorithm::Region => "region",
            Algorithm::Designated => "designated",
        }
    }
}

/// An algorithm name no algorithm has.
#[derive(Debug, thiserror::Error)]
#[error("algorithm {0:?}: must be one of random, sequential, network-aware, dynamic, region, designated")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

/// A sync node as the scheduler sees it (its metadata and load records).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeView {
    pub id: String,
    pub region: Option<String>,
    /// CPU and memory use, per mille (0..=1000).
    pub cpu_permille: u32,
    pub mem_permille: u32,
    pub active: u32,
    pub queued: u32,
    /// Measured download speed per repository host, bytes per second.
    pub speed_bps: BTreeMap<String, u64>,
    /// It returned wrong hashes or serials: never picked.
    pub marked: bool,
}

impl NodeView {
    fn available(&self) -> bool {
        !self.marked && self.active + self.queued < TASKS_PER_NODE_MAX
    }
    fn tasks(&self) -> u32 {
        self.active + self.queued
    }
}

/// A repository to assign.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoView {
    pub host: String,
    pub region: Option<String>,
}

/// The scheduler: an algorithm plus the little state two of them keep.
#[derive(Debug, Clone)]
pub struct Scheduler {
    algorithm: Algorithm,
    /// Sequential: the id picked last (the history).
    last: Option<String>,
    /// Random: xorshift64* state, never zero.
    rng: u64,
    designated: BTreeMap<String, String>,
}

impl Scheduler {
    pub fn new(algorithm: Algorithm, seed: u64, designated: &[(String, String)]) -> Self {
        Scheduler {
            algorithm,
            last: None,
            rng: seed | 1,
            designated: designated.iter().cloned().collect(),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The node to fetch `repo`, or None when no node is available. Ties go
    /// to the node with fewer tasks, then the smaller id.
    pub fn pick(&mut self, repo: &RepoView, nodes: &[NodeView]) -> Option<String> {
        let mut avail: Vec<&NodeView> = nodes.iter().filter(|n| n.available()).collect();
        if avail.is_empty() {
            return None;
        }
        avail.sort_by(|a, b| a.id.cmp(&b.id));
        let best_by = |key: &dyn Fn(&NodeView) -> u64| -> String {
            let mut best = avail[0];
            for n in &avail[1..] {
                let (kn, kb) = (key(n), key(best));
                if kn > kb || (kn == kb && n.tasks() < best.tasks()) {
                    best = n;
                }
            }
            best.id.clone()
        };
        let picked = match self.algorithm {
            Algorithm::Random => {
                let i = (self.next_random() % avail.len() as u64) as usize;
                avail[i].id.clone()
            }
            Algorithm::Sequential => self.sequential(&avail),
            Algorithm::NetworkAware => {
                if avail.iter().all(|n| !n.speed_bps.contains_key(&repo.host)) {
                    // Nothing measured yet: spread to measure.
                    self.sequential(&avail)
                } else {
                    best_by(&|n| n.speed_bps.get(&repo.host).copied().unwrap_or(0))
                }
            }
            Algorithm::Dynamic => best_by(&|n| dynamic_weight(n, &repo.host)),
            Algorithm::Region => {
                let order = repo.region.as_deref().map(region_order).unwrap_or(&[]);
                // Nearer region scores higher; fewer tasks breaks ties.
                best_by(&|n| {
                    let pos = n
                        .region
                        .as_deref()
                        .and_then(|r| order.iter().position(|o| *o == r))
                        .unwrap_or(order.len());
                    (order.len() - pos) as u64
                })
            }
            Algorithm::Designated => match self.designated.get(&repo.host) {
                Some(id) if avail.iter().any(|n| &n.id == id) => id.clone(),
                // Not in the table, or its node is absent, marked or full.
                _ => self.sequential(&avail),
            },
        };
        Some(picked)
    }

    fn sequential(&mut self, avail: &[&NodeView]) -> String {
        let next = match &self.last {
            None => avail[0],
            Some(last) => avail.iter().find(|n| n.id > *last).copied().unwrap_or(avail[0]),
        };
        self.last = Some(next.id.clone());
        next.id.clone()
    }
}

/// Dynamic weight: idle share of CPU and memory, divided by tasks held,
/// times measured speed to the host (1 MB/s when unmeasured). Higher wins.
pub fn dynamic_weight(n: &NodeView, host: &str) -> u64 {
    let idle_cpu = 1000u64.saturating_sub(n.cpu_permille.min(1000) as u64) + 1;
    let idle_mem = 1000u64.saturating_sub(n.mem_permille.min(1000) as u64) + 1;
    let speed_kbps = n.speed_bps.get(host).copied().unwrap_or(1_000_000) / 1000 + 1;
    idle_cpu * idle_mem / 1000 * speed_kbps / (1 + n.tasks() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeView {
        NodeView {
            id: id.into(),
            ..Default::default()
        }
    }

    fn repo(host: &str, region: Option<&str>) -> RepoView {
        RepoView {
            host: host.into(),
            region: region.map(str::to_string),
        }
    }

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
        }
        assert!("fastest".parse::<Algorithm>().is_err());
    }

    #[test]
    fn no_available_node_means_no_pick() {
        let mut full = node("c2");
        full.active = TASKS_PER_NODE_MAX;
        let mut liar = node("c3");
        liar.marked = true;
        for a in Algorithm::ALL {
            let mut s = Scheduler::new(a, 7, &[]);
            assert_eq!(s.pick(&repo("h", None), &[full.clone(), liar.clone()]), None, "{a:?}");
            assert_eq!(s.pick(&repo("h", None), &[]), None);
        }
    }

    #[test]
    fn sequential_cycles_in_id_order_and_keeps_history_across_changes() {
        let mut s = Scheduler::new(Algorithm::Sequential, 1, &[]);
        let nodes = [node("c3"), node("c2"), node("c4")];
        let picks: Vec<_> = (0..4).map(|_| s.pick(&repo("h", None), &nodes).unwrap()).collect();
        assert_eq!(picks, ["c2", "c3", "c4", "c2"]);
        // c3 leaves: the cycle goes on after c2, skipping it.
        let nodes = [node("c2"), node("c4")];
        assert_eq!(s.pick(&repo("h", None), &nodes).unwrap(), "c4");
    }

    #[test]
    fn random_is_roughly_even_and_reproducible() {
        let nodes = [node("c2"), node("c3"), node("c4"), node("c5")];
        let mut a = Scheduler::new(Algorithm::Random, 42, &[]);
        let mut b = Scheduler::new(Algorithm::Random, 42, &[]);
        let mut counts = BTreeMap::new();
        for _ in 0..4000 {
            let p = a.pick(&repo("h", None), &nodes).unwrap();
            assert_eq!(Some(p.clone()), b.pick(&repo("h", None), &nodes));
            *counts.entry(p).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        assert!(counts.values().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn network_aware_takes_the_fastest_measured_node_for_that_host() {
        let mut s = Scheduler::new(Algorithm::NetworkAware, 1, &[]);
        let mut a = node("c2");
        a.speed_bps.insert("rrdp.a".into(), 5_000_000);
        a.speed_bps.insert("rrdp.b".into(), 100);
        let mut b = node("c3");
        b.speed_bps.insert("rrdp.b".into(), 9_000_000);
        b.cpu_permille = 990; // load is ignored by this algorithm
        let nodes = [a, b];
        assert_eq!(s.pick(&repo("rrdp.a", None), &nodes).unwrap(), "c2");
        assert_eq!(s.pick(&repo("rrdp.b", None), &nodes).unwrap(), "c3");
        // Unmeasured host: spread in turn.
        assert_eq!(s.pick(&repo("rrdp.c", None), &nodes).unwrap(), "c2");
        assert_eq!(s.pick(&repo("rrdp.c", None), &nodes).unwrap(), "c3");
    }

    #[test]
    fn dynamic_prefers_idle_fast_nodes_and_moves_away_from_load() {
        let mut s = Scheduler::new(Algorithm::Dynamic, 1, &[]);
        let mut busy = node("c2");
        busy.cpu_permille = 900;
        busy.active = 4;
        let idle = node("c3");
        assert_eq!(s.pick(&repo("h", None), &[busy.clone(), idle.clone()]).unwrap(), "c3");
        // A much faster link outweighs some load.
        let mut fast = busy.clone();
        fast.cpu_permille = 300;
        fast.active = 1;
        fast.speed_bps.insert("h".into(), 50_000_000);
        assert_eq!(s.pick(&repo("h", None), &[fast, idle]).unwrap(), "c2");
        assert!(dynamic_weight(&node("x"), "h") > dynamic_weight(&busy, "h"));
    }

    #[test]
    fn region_picks_the_nearest_region_then_the_least_loaded() {
        let mut s = Scheduler::new(Algorithm::Region, 1, &[]);
        let mut ripe = node("c2");
        ripe.region = Some("ripe".into());
        let mut ripe2 = node("c5");
        ripe2.region = Some("ripe".into());
        let mut arin = node("c3");
        arin.region = Some("arin".into());
        let mut apnic = node("c4");
        apnic.region = Some("apnic".into());
        ripe.active = 2;
        let nodes = [ripe, arin, apnic, ripe2];
        assert_eq!(s.pick(&repo("h", Some("ripe")), &nodes).unwrap(), "c5");
        assert_eq!(s.pick(&repo("h", Some("lacnic")), &nodes).unwrap(), "c3");
        assert_eq!(s.pick(&repo("h", Some("apnic")), &nodes).unwrap(), "c4");
        // AFRINIC has no node: RIPE is nearest.
        assert_eq!(s.pick(&repo("h", Some("afrinic")), &nodes).unwrap(), "c5");
    }

    #[test]
    fn designated_follows_the_table_and_falls_back_in_turn() {
        let table = [("rrdp.a".to_string(), "c3".to_string())];
        let mut s = Scheduler::new(Algorithm::Designated, 1, &table);
        let nodes = [node("c2"), node("c3")];
        for _ in 0..3 {
            assert_eq!(s.pick(&repo("rrdp.a", None), &nodes).unwrap(), "c3");
        }
        assert_eq!(s.pick(&repo("rrdp.b", None), &nodes).unwrap(), "c2");
        let mut marked = node("c3");
        marked.marked = true;
        assert_eq!(s.pick(&repo("rrdp.a", None), &[node("c2"), marked]).unwrap(), "c2");
    }
}
