//! Document 001's Table 1 made quantitative on a scheduling model: 4
//! heterogeneous sync nodes (different link speeds per repository region,
//! one loaded) and 120 repositories of mixed sizes in five regions; each
//! algorithm assigns every repository once, nodes work through their tasks
//! one at a time, and a node's measured speed to a host becomes known after
//! its first fetch from it (as `rpki.node` records report). Prints time to
//! full sync (makespan), bytes and imbalance (busiest node's time over the
//! mean) per algorithm; asserts what the model must show.
//!
//! Budget: pure computation, milliseconds.

use regmesh_front_rpki::schedule::{Algorithm, NodeView, RepoView, Scheduler, REGIONS};
use std::collections::BTreeMap;

struct Node {
    id: &'static str,
    region: &'static str,
    /// Bytes per second to a repository in each region (index of REGIONS).
    bps: [u64; 5],
    cpu_permille: u32,
}

fn nodes() -> Vec<Node> {
    vec![
        Node {
            id: "c2",
            region: "ripe",
            bps: [2_000_000, 1_000_000, 2_000_000, 500_000, 20_000_000],
            cpu_permille: 100,
        },
        Node {
            id: "c3",
            region: "arin",
            bps: [500_000, 1_000_000, 20_000_000, 8_000_000, 2_000_000],
            cpu_permille: 100,
        },
        Node {
            id: "c4",
            region: "apnic",
            bps: [500_000, 20_000_000, 1_000_000, 300_000, 1_000_000],
            cpu_permille: 100,
        },
        Node {
            id: "c5",
            region: "lacnic",
            bps: [1_000_000, 300_000, 4_000_000, 10_000_000, 1_000_000],
            cpu_permille: 850,
        },
    ]
}

fn repos() -> Vec<(String, usize, u64)> {
    // (host, region index, bytes): sizes from 100 kB to ~20 MB, deterministic.
    (0..120)
        .map(|i| {
            let size = 100_000 + ((i as u64 * 7919) % 97) * 200_000;
            (format!("rrdp{i}.{}", REGIONS[i % 5]), i % 5, size)
        })
        .collect()
}

struct Row {
    makespan_s: f64,
    bytes: BTreeMap<&'static str, u64>,
    imbalance: f64,
}

fn run(a: Algorithm) -> Row {
    let ns = nodes();
    let designated: Vec<(String, String)> = repos()
        .iter()
        .map(|(h, r, _)| {
            // The operator's table: each region to the node in it (AFRINIC to RIPE's).
            let id = match REGIONS[*r] {
                "ripe" | "afrinic" => "c2",
                "arin" => "c3",
                "apnic" => "c4",
                _ => "c5",
            };
            (h.clone(), id.to_string())
        })
        .collect();
    let mut s = Scheduler::new(a, 42, &designated);
    let mut busy_s: BTreeMap<&str, f64> = ns.iter().map(|n| (n.id, 0.0)).collect();
    let mut bytes: BTreeMap<&str, u64> = ns.iter().map(|n| (n.id, 0)).collect();
    let mut measured: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for (host, region, size) in repos() {
        // Queue depth in the views: tasks not yet finished when this one is
        // assigned, approximated by busy time in units of 10 s (capped).
        let min_busy = busy_s.values().cloned().fold(f64::INFINITY, f64::min);
        let views: Vec<NodeView> = ns
            .iter()
            .map(|n| NodeView {
                id: n.id.into(),
                region: Some(n.region.into()),
                cpu_permille: n.cpu_permille,
                mem_permille: 300,
                active: 1.min(((busy_s[n.id] - min_busy) / 10.0) as u32),
                queued: (((busy_s[n.id] - min_busy) / 10.0) as u32).min(6),
                speed_bps: measured.get(n.id).cloned().unwrap_or_default(),
                marked: false,
            })
            .collect();
        let repo = RepoView {
            host: host.clone(),
            region: Some(REGIONS[region].into()),
        };
        let id = s.pick(&repo, &views).expect("a node is always available in this model");
        let n = ns.iter().find(|n| n.id == id).unwrap();
        // A loaded CPU slows a node's processing by its load share.
        let bps = n.bps[region] as f64 * (1.0 - n.cpu_permille as f64 / 2000.0);
        let key = n.id;
        *busy_s.get_mut(key).unwrap() += size as f64 / bps;
        *bytes.get_mut(key).unwrap() += size;
        // Hosts of one region share the link: measuring one tells the region.
        for (h, r, _) in repos() {
            if r == region {
                measured.entry(key).or_default().insert(h, n.bps[region]);
            }
        }
        let _ = host;
    }
    let makespan_s = busy_s.values().cloned().fold(0.0, f64::max);
    let mean = busy_s.values().sum::<f64>() / busy_s.len() as f64;
    Row {
        makespan_s,
        bytes,
        imbalance: makespan_s / mean,
    }
}

#[test]
fn the_six_algorithms_on_heterogeneous_sync_nodes() {
    let total: u64 = repos().iter().map(|r| r.2).sum();
    println!(
        "{} repositories, {:.1} MB; nodes c2 (RIPE), c3 (ARIN), c4 (APNIC), c5 (LACNIC, loaded)",
        repos().len(),
        total as f64 / 1e6
    );
    println!("| algorithm | time to full sync (s) | MB per node c2/c3/c4/c5 | imbalance |");
    println!("|---|---|---|---|");
    let mut rows = BTreeMap::new();
    for a in Algorithm::ALL {
        let r = run(a);
        let mb: Vec<String> = r.bytes.values().map(|b| format!("{:.0}", *b as f64 / 1e6)).collect();
        println!(
            "| {} | {:.1} | {} | {:.2} |",
            a.name(),
            r.makespan_s,
            mb.join("/"),
            r.imbalance
        );
        assert_eq!(r.bytes.values().sum::<u64>(), total, "{a:?}: every repository once");
        rows.insert(a.name(), r);
    }
    // What the model must show: knowing links beats ignoring them.
    let t = |n: &str| rows[n].makespan_s;
    assert!(t("network-aware") < t("random") && t("network-aware") < t("sequential"));
    assert!(t("region") < t("random") && t("designated") < t("random"));
    assert!(t("dynamic") < t("random"));
}
