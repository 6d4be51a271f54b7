//! What a chaos run tells its reader: one line per check (pass, FAIL, or
//! known defect reported but not asserted), the offending facts, and on any
//! failure the seed, the fault schedule, what the nemesis did when, the
//! reproduce command and the kept folder with every center's log and the op
//! log. Also the JSON summary `scripts/chaos` reads. It judges nothing.

use super::checks::{Evidence, Verdict};
use super::nemesis::Timeline;
use super::run::Settings;
use super::schedule::Schedule;
use super::writers::Res;
use anyhow::Result;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

pub struct Outcome {
    pub seed: u64,
    pub faults: usize,
    pub acked: usize,
    pub refused: usize,
    pub not_sent: usize,
    pub in_doubt: usize,
    pub verdicts: Vec<Verdict>,
    schedule: String,
    ops: String,
    heal_ms: u64,
}

impl Outcome {
    pub fn new(schedule: &Schedule, e: &Evidence, verdicts: Vec<Verdict>, heal_ms: u64) -> Outcome {
        let count = |f: fn(&Res) -> bool| e.ops.iter().filter(|o| f(&o.res)).count();
        Outcome {
            seed: schedule.seed,
            faults: schedule.faults.len(),
            acked: count(|r| matches!(r, Res::Acked { .. })),
            refused: count(|r| matches!(r, Res::Refused { .. })),
            not_sent: count(|r| matches!(r, Res::NotSent(_))),
            in_doubt: count(|r| matches!(r, Res::Unknown(_))),
            verdicts,
            schedule: schedule.to_string(),
            ops: e.ops.iter().map(|o| o.line() + "\n").collect(),
            heal_ms,
        }
    }

    pub fn any_failed(&self) -> bool {
        self.verdicts.iter().any(|v| !v.passed())
    }

    /// Why the test fails: a failed check not listed as a known defect.
    pub fn failure(&self, settings: &Settings) -> Option<String> {
        let failed: Vec<&str> = self
            .verdicts
            .iter()
            .filter(|v| !v.passed() && !settings.known.iter().any(|k| k == v.name))
            .map(|v| v.name)
            .collect();
        (!failed.is_empty()).then(|| {
            format!(
                "chaos seed {} failed: {} (see the report above)\nreproduce: {}",
                self.seed,
                failed.join(", "),
                settings.reproduce()
            )
        })
    }

    fn verdict_word(v: &Verdict, settings: &Settings) -> &'static str {
        match (v.passed(), settings.known.iter().any(|k| k == v.name)) {
            (true, _) => "pass",
            (false, true) => "FAIL (known defect, not asserted)",
            (false, false) => "FAIL",
        }
    }

    /// Prints the report to stderr; writes the op log into `kept` and the
    /// JSON summary to `CHAOS_REPORT`.
    pub fn print(&self, settings: &Settings, tl: &Timeline, kept: Option<&Path>) -> Result<()> {
        let mut out = String::new();
        writeln!(
            out,
            "chaos seed {}: {} faults, healed at {} ms; writes: {} acked, {} refused, {} not sent, {} in doubt",
            self.seed, self.faults, self.heal_ms, self.acked, self.refused, self.not_sent, self.in_doubt
        )?;
        for v in &self.verdicts {
            writeln!(
                out,
                "  {:<15} {:<34} {}",
                v.name,
                Self::verdict_word(v, settings),
                v.scope
            )?;
        }
        for v in self.verdicts.iter().filter(|v| !v.passed()) {
            writeln!(out, "{} ({} facts, first {}):", v.name, v.count, v.facts.len())?;
            for f in &v.facts {
                writeln!(out, "    {f}")?;
            }
        }
        if self.any_failed() {
            writeln!(out, "schedule: {}", self.schedule)?;
            writeln!(out, "what the nemesis did:")?;
            for l in &tl.log {
                writeln!(out, "    {l}")?;
            }
            writeln!(out, "reproduce: {}", settings.reproduce())?;
        }
        if let Some(dir) = kept {
            std::fs::write(dir.join("ops.log"), &self.ops)?;
            std::fs::write(dir.join("report.txt"), &out)?;
            writeln!(out, "kept: {} (cN.log per center, ops.log, report.txt)", dir.display())?;
        }
        eprint!("{out}");
        if let Some(path) = &settings.report {
            let checks: serde_json::Map<String, serde_json::Value> = self
                .verdicts
                .iter()
                .map(|v| {
                    (
                        v.name.to_string(),
                        json!({"passed": v.passed(), "count": v.count, "scope": v.scope, "facts": v.facts}),
                    )
                })
                .collect();
            let summary = json!({
                "seed": self.seed,
                "faults": self.faults,
                "acked": self.acked,
                "refused": self.refused,
                "not_sent": self.not_sent,
                "in_doubt": self.in_doubt,
                "checks": checks,
                "kept": kept.map(|d| d.display().to_string()),
            });
            std::fs::write(path, summary.to_string())?;
        }
        Ok(())
    }
}
