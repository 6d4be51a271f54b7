//! The scale study of document 000 (§2.2 topologies and latency classes,
//! §2.7 and §4.2.3: one million agents across one thousand centers).
//!
//! Simulated: the flooding of changes through the mesh by the same
//! [`Center`] code (proto's flood targets and dedup windows), on links whose
//! one-way latency follows the document's classes (local 1–5 ms, national
//! 10–50 ms, intercontinental 100–200 ms), with each center handling one
//! message at a time for a fixed service time. Measured per change: when it
//! reaches 99% and 100% of the centers, against the shortest-path latency
//! from its origin; messages, duplicates and bytes.
//!
//! Derived from those measurements and the protocol's message sizes: routine
//! bandwidth per center at `--agents` agents heartbeating every 30 s with
//! 500-byte records — the agents' own heartbeats, replicated renewals
//! (every heartbeat, or one per `leases.renewal_extension_s`), and center
//! beats (watermark deltas, a whole map every 30 beats, a slice of digests)
//! — against the document's 16.6 MB/s global estimate; the pull burst after
//! a 10-minute outage.

use crate::center::{Center, Change, Out, Settings};
use crate::msg::{Msg, CALL_OVERHEAD_BYTES, MARK_WIRE_BYTES, RECORD_WIRE_BYTES};
use crate::rng::Rng;
use regmesh_proto::constants::DIGESTS_PER_BEAT;
use regmesh_proto::policy::ExportPolicy;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    pub centers: usize,
    #[arg(long, default_value_t = 1_000_000)]
    pub agents: u64,
    /// full | star | hierarchical | hybrid (or `all`).
    #[arg(long, default_value = "all")]
    pub topology: String,
    /// Changes to flood (fewer for a full mesh of many centers: each costs
    /// about n² messages).
    #[arg(long, default_value_t = 200)]
    pub changes: usize,
    /// Time between two changes, ms.
    #[arg(long, default_value_t = 20)]
    pub gap_ms: u64,
    /// CPU time a center spends on one message, µs (from the benchmarks:
    /// about 160 µs of CPU per center per replicated write).
    #[arg(long, default_value_t = 160)]
    pub service_us: u64,
    /// Agent heartbeat period, s (document 000 §2.7).
    #[arg(long, default_value_t = 30)]
    pub heartbeat_s: u64,
    /// Center beat interval, ms (the node's default).
    #[arg(long, default_value_t = 1000)]
    pub beat_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Full,
    Star,
    Hierarchical,
    Hybrid,
}

impl Topology {
    pub fn parse(s: &str) -> Result<Vec<Topology>, String> {
        Ok(match s {
            "full" => vec![Topology::Full],
            "star" => vec![Topology::Star],
            "hierarchical" => vec![Topology::Hierarchical],
            "hybrid" => vec![Topology::Hybrid],
            "all" => vec![Topology::Full, Topology::Star, Topology::Hierarchical, Topology::Hybrid],
            _ => return Err(format!("topology {s:?} is not full, star, hierarchical, hybrid or all")),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Full => "full mesh",
            Topology::Star => "star",
            Topology::Hierarchical => "hierarchical",
            Topology::Hybrid => "hybrid",
        }
    }
}

/// Centers are placed 10 to a country and 10 countries to a region.
fn place(i: usize) -> (usize, usize) {
    (i / 100, i / 10)
}

/// One-way latency between two centers by the document's classes.
fn latency(rng: &mut Rng, a: usize, b: usize) -> u64 {
    let (ra, ca) = place(a);
    let (rb, cb) = place(b);
    if ca == cb {
        rng.range(1, 5)
    } else if ra == rb {
        rng.range(10, 50)
    } else {
        rng.range(100, 200)
    }
}

/// Undirected links with their latency.
pub fn links(t: Topology, n: usize, rng: &mut Rng) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    let mut add = |a: usize, b: usize, rng: &mut Rng| {
        if a != b && a < n && b < n {
            out.push((a.min(b), a.max(b), latency(rng, a, b)));
        }
    };
    let region_hub = |i: usize| (i / 100) * 100;
    let country_hub = |i: usize| (i / 10) * 10;
    match t {
        Topology::Full => {
            for a in 0..n {
                for b in a + 1..n {
                    add(a, b, rng);
                }
            }
        }
        Topology::Star => {
            for b in 1..n {
                add(0, b, rng);
            }
        }
        Topology::Hierarchical | Topology::Hybrid => {
            let regions: Vec<usize> = (0..n).step_by(100).collect();
            for (k, &a) in regions.iter().enumerate() {
                for &b in &regions[k + 1..] {
                    add(a, b, rng);
                }
            }
            for i in 0..n {
                if i == country_hub(i) && i != region_hub(i) {
                    add(i, region_hub(i), rng);
                } else if i != country_hub(i) {
                    add(i, country_hub(i), rng);
                }
            }
            if t == Topology::Hybrid {
                // Backup links: every local center to a second country hub
                // of its region, every country hub to a second region hub.
                for i in 0..n {
                    if i != country_hub(i) {
                        let other = region_hub(i) + (country_hub(i) - region_hub(i) + 10) % 100;
                        add(i, other, rng);
                    } else if i != region_hub(i) {
                        add(i, (region_hub(i) + 100) % n.max(1), rng);
                    }
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup_by_key(|l| (l.0, l.1));
    out
}

fn shortest_paths(n: usize, adj: &[Vec<(usize, u64)>], from: usize) -> Vec<u64> {
    let mut dist = vec![u64::MAX; n];
    let mut heap = BinaryHeap::new();
    dist[from] = 0;
    heap.push(Reverse((0u64, from)));
    while let Some(Reverse((d, x))) = heap.pop() {
        if d > dist[x] {
            continue;
        }
        for &(y, l) in &adj[x] {
            if d + l < dist[y] {
                dist[y] = d + l;
                heap.push(Reverse((d + l, y)));
            }
        }
    }
    dist
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// What one topology's run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub topology: Topology,
    pub centers: usize,
    pub links: usize,
    pub degree_mean: f64,
    pub degree_max: usize,
    pub changes: usize,
    pub t99: [u64; 3],
    pub t100: [u64; 3],
    pub sp99_p50: u64,
    pub within_aim: f64,
    pub msgs_per_change: f64,
    pub dups_per_change: f64,
    pub bytes_per_change: f64,
    pub center_bytes_mean: f64,
    pub center_bytes_max: f64,
}

enum Ev {
    /// A message arrives; it is handled once the center is free.
    Deliver {
        from: usize,
        to: usize,
        msg: Msg,
    },
    /// The center has spent its service time on it: handle it now.
    Handle {
        from: usize,
        to: usize,
        msg: Msg,
    },
    Publish {
        c: usize,
        k: usize,
    },
}

/// Floods `changes` changes through topology `t` and measures them.
pub fn measure(t: Topology, a: &Args, changes: usize) -> Report {
    let changes = changes.max(1);
    let n = a.centers;
    let mut rng = Rng::new(a.seed);
    let ls = links(t, n, &mut rng);
    let mut adj: Vec<Vec<(usize, u64)>> = vec![Vec::new(); n];
    for &(x, y, l) in &ls {
        adj[x].push((y, l));
        adj[y].push((x, l));
    }
    let full = ExportPolicy::new([], []);
    let settings = Settings {
        interval_ms: 3_600_000,
        skew_ms: 0,
        lease_ms: 3_600_000,
        tombstone_horizon_ms: 3_600_000,
        vote_timeout_ms: 1000,
        relaxed_replicas: true,
        pull_page: 1000,
    };
    let mut centers: Vec<Center> = (0..n)
        .map(|i| {
            let peers = adj[i]
                .iter()
                .map(|&(j, _)| (j, crate::world::Plan::center_id(j), full.clone()))
                .collect();
            let mut c = Center::new(i, crate::world::Plan::center_id(i), settings.clone(), peers);
            c.bootstrap(0);
            c
        })
        .collect();
    let lat: HashMap<(usize, usize), u64> = ls.iter().flat_map(|&(x, y, l)| [((x, y), l), ((y, x), l)]).collect();
    let mut heap: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut evs: HashMap<u64, Ev> = HashMap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Reverse<(u64, u64)>>, evs: &mut HashMap<u64, Ev>, at: u64, ev: Ev| {
        seq += 1;
        heap.push(Reverse((at, seq)));
        evs.insert(seq, ev);
    };
    let mut origins = Vec::new();
    for k in 0..changes {
        let c = rng.below(n as u64) as usize;
        origins.push(c);
        push(
            &mut heap,
            &mut evs,
            1000 + k as u64 * a.gap_ms * 1000,
            Ev::Publish { c, k },
        );
    }
    // Times in µs from here on.
    let service = a.service_us;
    let mut busy = vec![0u64; n];
    let mut written: Vec<u64> = vec![0; changes];
    let mut by_version: HashMap<(String, u64), usize> = HashMap::new();
    let mut arrived: Vec<Vec<u64>> = vec![Vec::new(); changes];
    let (mut msgs, mut dups, mut bytes) = (0u64, 0u64, 0u64);
    let mut center_bytes = vec![0u64; n];
    while let Some(Reverse((at, id))) = heap.pop() {
        let ev = evs.remove(&id).expect("event");
        let mut out = Vec::new();
        let c = match ev {
            Ev::Publish { c, k } => {
                let r = centers[c].publish(at / 1000, ("agent".into(), format!("x{k}")), &mut out);
                written[k] = at;
                by_version.insert((r.origin.clone(), r.seq), k);
                c
            }
            Ev::Deliver { from, to, msg } => {
                // One message at a time per center, in arrival order.
                let done = busy[to].max(at) + service;
                busy[to] = done;
                push(&mut heap, &mut evs, done, Ev::Handle { from, to, msg });
                continue;
            }
            Ev::Handle { from, to, msg } => {
                let before = centers[to].changes.len();
                centers[to].on_msg(at / 1000, from, msg, &mut out);
                if centers[to].changes.len() == before {
                    dups += 1;
                }
                to
            }
        };
        let me = centers[c].id.clone();
        for (_, ch) in centers[c].changes.drain(..) {
            if let Change::Put(r) = ch {
                if let Some(&k) = by_version.get(&(r.origin.clone(), r.seq)) {
                    if r.origin != me {
                        arrived[k].push(at - written[k]);
                    }
                }
            }
        }
        for o in out {
            if let Out::Send { to, msg } = o {
                let b = msg.wire_bytes();
                msgs += 1;
                bytes += b;
                center_bytes[c] += b;
                center_bytes[to] += b;
                let when = at + lat[&(c, to)] * 1000;
                push(&mut heap, &mut evs, when, Ev::Deliver { from: c, to, msg });
            }
        }
    }
    // Per change: when 99% / all of the other centers had it, and the aim.
    let (mut t99, mut t100, mut sp99s) = (Vec::new(), Vec::new(), Vec::new());
    let mut within = 0usize;
    for k in 0..changes {
        let mut got = arrived[k].clone();
        got.sort_unstable();
        let need99 = ((n - 1) as f64 * 0.99).ceil() as usize;
        let at99 = got.get(need99.saturating_sub(1)).copied().unwrap_or(u64::MAX) / 1000;
        let at100 = if got.len() >= n - 1 {
            got[n - 2] / 1000
        } else {
            u64::MAX
        };
        let mut sp = shortest_paths(n, &adj, origins[k]);
        sp.remove(origins[k]);
        let sp99 = pct(&mut sp, 0.99);
        if at99 <= sp99 + 100 {
            within += 1;
        }
        t99.push(at99);
        t100.push(at100);
        sp99s.push(sp99);
    }
    let mut degrees: Vec<usize> = adj.iter().map(Vec::len).collect();
    let cb_mean = center_bytes.iter().sum::<u64>() as f64 / n as f64 / changes as f64;
    let cb_max = *center_bytes.iter().max().unwrap_or(&0) as f64 / changes as f64;
    degrees.sort_unstable();
    Report {
        topology: t,
        centers: n,
        links: ls.len(),
        degree_mean: 2.0 * ls.len() as f64 / n as f64,
        degree_max: *degrees.last().unwrap_or(&0),
        changes,
        t99: [
            pct(&mut t99.clone(), 0.5),
            pct(&mut t99.clone(), 0.99),
            *t99.iter().max().unwrap_or(&0),
        ],
        t100: [
            pct(&mut t100.clone(), 0.5),
            pct(&mut t100.clone(), 0.99),
            *t100.iter().max().unwrap_or(&0),
        ],
        sp99_p50: pct(&mut sp99s, 0.5),
        within_aim: within as f64 / changes as f64,
        msgs_per_change: msgs as f64 / changes as f64,
        dups_per_change: dups as f64 / changes as f64,
        bytes_per_change: bytes as f64 / changes as f64,
        center_bytes_mean: cb_mean,
        center_bytes_max: cb_max,
    }
}

fn rate(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1e6 {
        format!("{:.1} MB/s", bytes_per_s / 1e6)
    } else {
        format!("{:.1} KB/s", bytes_per_s / 1e3)
    }
}

/// Bytes a beat exchange costs one link per second, both directions: each
/// side's call (with the per-call overhead) and its answer, each carrying a
/// delta of watermarks (a whole map every `FULL_BEAT_EVERY` beats) and a
/// slice of digests.
fn beat_bytes_per_link_s(centers: u64, changes_per_s: f64, beat_ms: u64) -> f64 {
    let per_beat_s = beat_ms as f64 / 1000.0;
    let full = centers as f64 / regmesh_proto::sync::FULL_BEAT_EVERY as f64;
    let changed = (changes_per_s * per_beat_s).min(centers as f64);
    let body = 80.0 + MARK_WIRE_BYTES as f64 * (full + changed) + DIGEST_WIRE_BYTES * DIGESTS_PER_BEAT as f64;
    let call = CALL_OVERHEAD_BYTES as f64 + body;
    let answer = ANSWER_OVERHEAD_BYTES as f64 + body;
    2.0 * (call + answer) / per_beat_s
}

/// An answer's status line and headers.
const ANSWER_OVERHEAD_BYTES: u64 = 200;
/// One origin's digest in a beat (`"origin":{"agent":"<64 hex>"}`).
const DIGEST_WIRE_BYTES: f64 = 90.0;

/// Prints one topology's table.
pub fn print(r: &Report, a: &Args) {
    let n = r.centers as f64;
    let agents = a.agents as f64;
    let hb = a.heartbeat_s as f64;
    let share = agents * RECORD_WIRE_BYTES as f64 / hb / n;
    // Each message counted once, as document 000 counts its 16.6 MB/s.
    let per_change_mean = r.bytes_per_change / n;
    // The busiest center, its sends and receipts.
    let per_change_max = r.center_bytes_max;
    let own = share;
    let links_mean = r.degree_mean / 2.0;
    let ms = |v: u64| -> String {
        if v == u64::MAX {
            "never".into()
        } else {
            format!("{v} ms")
        }
    };
    println!(
        "### {} — {} centers, {} agents",
        r.topology.as_str(),
        r.centers,
        a.agents
    );
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| links (mean / max degree) | {} ({:.1} / {}) |",
        r.links, r.degree_mean, r.degree_max
    );
    println!("| changes flooded | {} |", r.changes);
    println!(
        "| a change reaches 99% of centers, p50 / p99 / max | {} / {} / {} |",
        ms(r.t99[0]),
        ms(r.t99[1]),
        ms(r.t99[2])
    );
    println!(
        "| a change reaches all centers, p50 / p99 / max | {} / {} / {} |",
        ms(r.t100[0]),
        ms(r.t100[1]),
        ms(r.t100[2])
    );
    println!(
        "| shortest-path latency to the 99th-percentile center, p50 | {} ms |",
        r.sp99_p50
    );
    println!(
        "| changes at 99% within that shortest path + 100 ms (the aim) | {:.0}% |",
        100.0 * r.within_aim
    );
    println!(
        "| messages per change (duplicates among them) | {:.0} ({:.0}) |",
        r.msgs_per_change, r.dups_per_change
    );
    println!(
        "| bytes per change: whole mesh / per center / busiest center | {:.0} / {:.0} / {:.0} |",
        r.bytes_per_change, per_change_mean, per_change_max
    );
    println!(
        "| document 000's per-center share (16.6 MB/s ÷ centers) | {} |",
        rate(share)
    );
    for (label, ext_s) in [("0 (default)", 0u64), ("3600", 3600), ("86400", 86_400)] {
        // Replicated renewals per second, whole mesh.
        let renewals = if ext_s == 0 { agents / hb } else { agents / ext_s as f64 };
        let beats_mean = links_mean * 2.0 * beat_bytes_per_link_s(r.centers as u64, renewals, a.beat_ms) / 2.0;
        let beats_max = r.degree_max as f64 * beat_bytes_per_link_s(r.centers as u64, renewals, a.beat_ms);
        let mean = own + renewals * per_change_mean + beats_mean;
        let max = own + renewals * per_change_max + beats_max;
        println!(
            "| routine per center, `renewal_extension_s` = {label}: mean / busiest | {} / {} ({:.1}× / {:.0}× the share) |",
            rate(mean),
            rate(max),
            mean / share,
            max / share
        );
        if ext_s == 86_400 {
            println!(
                "| … of which own agents' heartbeats / replicated renewals / center beats (mean) | {} / {} / {} |",
                rate(own),
                rate(renewals * per_change_mean),
                rate(beats_mean)
            );
        }
    }
    // A 10-minute outage: the returning center pulls one current version
    // of every record that changed meanwhile, 1,000 a page.
    for (label, per_agent_s) in [
        ("every renewal replicated", hb),
        ("renewal_extension_s = 86400", 86_400.0),
    ] {
        let missed = agents * (1.0 - (-600.0 / per_agent_s).exp());
        let bytes = missed * RECORD_WIRE_BYTES as f64 + (missed / 1000.0).ceil() * (CALL_OVERHEAD_BYTES + 200) as f64;
        println!(
            "| burst after a 10-minute outage ({label}): records / MB pulled | {:.0} / {:.1} |",
            missed,
            bytes / 1e6
        );
    }
    println!();
}

pub fn run(a: &Args) -> Result<(), String> {
    if a.centers < 2 || a.centers > 5000 {
        return Err("--centers must be 2 to 5000".into());
    }
    if a.changes == 0 || a.changes > 100_000 {
        return Err("--changes must be 1 to 100000".into());
    }
    for t in Topology::parse(&a.topology)? {
        // A full mesh costs about n² messages a change: keep it bounded in
        // count, and one change in flight at a time (memory).
        let mut a = a.clone();
        if t == Topology::Full {
            a.changes = a.changes.min((10_000_000 / (a.centers * a.centers)).max(3));
            a.gap_ms = a.gap_ms.max(2000);
        }
        let started = std::time::Instant::now();
        let r = measure(t, &a, a.changes);
        print(&r, &a);
        eprintln!("({} simulated in {:.1} s)", t.as_str(), started.elapsed().as_secs_f64());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(n: usize) -> Args {
        Args {
            centers: n,
            agents: 10_000,
            topology: "all".into(),
            changes: 5,
            gap_ms: 50,
            service_us: 100,
            heartbeat_s: 30,
            beat_ms: 1000,
            seed: 1,
        }
    }

    #[test]
    fn every_topology_is_connected_and_every_change_reaches_everyone() {
        for t in Topology::parse("all").unwrap() {
            let r = measure(t, &args(230), 5);
            assert!(r.t100.iter().all(|&x| x != u64::MAX), "{t:?}: {r:?}");
            assert!(r.t99[0] <= r.t100[0]);
        }
    }

    #[test]
    fn a_full_mesh_costs_one_message_per_peer() {
        let r = measure(Topology::Full, &args(30), 5);
        // The origin sends 29 and names them reached (RegMesh-Reached):
        // none relays. Without the header each of the 29 would relay to the
        // 27 others but the origin and the one it first heard it from.
        assert_eq!(r.msgs_per_change, 29.0, "{r:?}");
        assert_eq!(r.dups_per_change, 0.0, "{r:?}");
        let s = measure(Topology::Star, &args(30), 5);
        assert!(s.msgs_per_change <= 30.0, "{s:?}");
    }
}
