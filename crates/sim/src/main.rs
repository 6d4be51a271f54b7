use clap::{Parser, Subcommand};
use regmesh_sim::{replay_command, run_seed, scale};
use std::process::ExitCode;

/// Deterministic simulation of the regmesh mesh.
#[derive(Parser)]
#[command(name = "regmesh-sim", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Randomized fault search: runs seeds, checks every invariant after
    /// every step; exits non-zero on the first violation.
    Run {
        /// How many seeds (from --seed on).
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed (alone, without --seeds: just this one).
        #[arg(long)]
        seed: Option<u64>,
        /// Switch on a deliberately broken protocol variant (build with
        /// `--features broken`).
        #[arg(long)]
        broken: Option<String>,
        /// Print each seed's figures and the fault log.
        #[arg(long)]
        verbose: bool,
        /// Also walk into the known gaps (PROTOCOL.md, "Known gaps"):
        /// tombstones purged before faults end, deletes of ids two centers
        /// created.
        #[arg(long)]
        known_gaps: bool,
    },
    /// The scale study of document 000: convergence time, messages, bytes
    /// and per-center bandwidth at up to 1,000 centers and 1,000,000 agents.
    Scale(scale::Args),
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Run {
            seeds,
            seed,
            broken,
            verbose,
            known_gaps,
        } => {
            let (first, count) = match seed {
                Some(s) if !std::env::args().any(|a| a == "--seeds") => (s, 1),
                Some(s) => (s, seeds),
                None => (1, seeds),
            };
            let started = std::time::Instant::now();
            let mut steps = 0;
            for s in first..first + count {
                let (o, w) = match run_seed(s, broken.as_deref(), known_gaps) {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("regmesh-sim: {e}");
                        return ExitCode::from(2);
                    }
                };
                steps += o.steps;
                if verbose || o.violation.is_some() {
                    println!(
                        "seed {s}: {} centers, {} links, {} writes ({} creates granted, {} refused), {} messages ({} lost, {} duplicated, {} blocked), {} pulls, {} resyncs, {} purged, {} forgot, {} ties, {:?} clocks, converged {} ms after healing",
                        o.centers,
                        w.plan.links.len(),
                        o.writes,
                        o.granted,
                        o.refused,
                        o.net.sent,
                        o.net.lost,
                        o.net.duplicated,
                        o.net.blocked,
                        o.pulls,
                        o.resyncs,
                        o.purged,
                        o.forgot,
                        o.ties,
                        w.plan.clocks,
                        o.converged_after_ms.map_or("-".into(), |t| t.to_string()),
                    );
                    for l in &w.log {
                        println!("  {l}");
                    }
                }
                if o.violation.is_some() && verbose {
                    let mut links: Vec<_> = w.plan.policies.iter().collect();
                    links.sort_by_key(|(k, _)| **k);
                    for ((a, b), p) in links {
                        println!("  policy c{a:02}->c{b:02}: kinds {:?} groups {:?}", p.kinds, p.groups);
                    }
                    for c in &w.centers {
                        let mut marks: Vec<(String, u64)> = c.marks.to_map().into_iter().collect();
                        marks.sort();
                        let peers: Vec<String> = c
                            .peers
                            .iter()
                            .map(|p| format!("{}:{}", p.id, p.life.state().as_str()))
                            .collect();
                        println!(
                            "  {} {} up={} marks={marks:?} peers={peers:?}",
                            c.id,
                            c.state.as_str(),
                            c.up
                        );
                    }
                }
                if let Some(v) = o.violation {
                    println!("VIOLATION at seed {s}: {v}");
                    println!("reproduce: {}", replay_command(s, broken.as_deref(), known_gaps));
                    return ExitCode::FAILURE;
                }
            }
            println!(
                "{count} seeds passed ({} steps, {:.1} s)",
                steps,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Cmd::Scale(args) => match scale::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("regmesh-sim: {e}");
                ExitCode::from(2)
            }
        },
    }
}
