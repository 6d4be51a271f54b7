//! `regmesh diagnose record KIND ID` and `regmesh diagnose mesh`: ask a
//! center (which asks its peers) and print its report as a table, or as the
//! API's JSON with `--json`. Formatting only; the center explains.

use anyhow::Result;
use regmesh_node::client::Client;
use regmesh_node::diagnose::mesh::MeshReport;
use regmesh_node::diagnose::record::RecordReport;
use std::fmt::Write;

/// What to diagnose.
#[derive(clap::Subcommand)]
pub enum DiagnoseCmd {
    /// Every reachable center's version of one record, and why each differs.
    Record {
        /// Record kind, e.g. agent.
        kind: String,
        /// Record id.
        id: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The centers, their states, a lag matrix and links whose digests disagree.
    Mesh {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: &Client, cmd: DiagnoseCmd) -> Result<std::process::ExitCode> {
    let (path, json) = match &cmd {
        DiagnoseCmd::Record { kind, id, json } => {
            regmesh_core::validate_record_id(id)
                .map_err(|e| anyhow::anyhow!("{id:?} is not a valid record id: {}", e.0))?;
            (format!("/v1/diagnose/record/{kind}/{id}"), *json)
        }
        DiagnoseCmd::Mesh { json } => ("/v1/diagnose/mesh".to_string(), *json),
    };
    let reply = client.request(hyper::Method::GET, &path, None).await?;
    if !reply.status.is_success() || json {
        return Ok(crate::report(&reply));
    }
    let text = match cmd {
        DiagnoseCmd::Record { .. } => record_table(&serde_json::from_slice(&reply.body)?),
        DiagnoseCmd::Mesh { .. } => mesh_table(&serde_json::from_slice(&reply.body)?),
    };
    print!("{text}");
    Ok(std::process::ExitCode::SUCCESS)
}

/// One line per center: its verdict and why.
pub fn record_table(r: &RecordReport) -> String {
    let mut s = String::new();
    let _ = write!(s, "{}/{} asked at {}: ", r.kind, r.id, r.asked_by);
    let _ = match &r.newest {
        None => writeln!(s, "no center holds it"),
        Some(n) => writeln!(
            s,
            "newest is {}'s version {} (seq {}{}); {}",
            n.origin,
            n.version,
            n.seq,
            if n.deleted { ", deleted" } else { "" },
            if r.agree {
                "the centers agree"
            } else {
                "the centers differ"
            }
        ),
    };
    let w = r.findings.iter().map(|f| f.center.len()).max().unwrap_or(0);
    for f in &r.findings {
        let verdict = serde_json::to_value(f.verdict)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let _ = writeln!(s, "  {:w$}  {verdict:16}  {}", f.center, f.why);
    }
    s
}

/// Centers, the lag matrix, the links and the disagreements.
pub fn mesh_table(r: &MeshReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "centers (asked at {}):", r.asked_by);
    for c in &r.centers {
        let _ = writeln!(
            s,
            "  {:8} {:9} {}",
            c.center,
            c.state.as_deref().unwrap_or("?"),
            c.note.as_deref().unwrap_or("")
        );
    }
    let origins: Vec<&String> = r
        .lag
        .values()
        .flat_map(|row| row.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let _ = writeln!(
        s,
        "lag (records of each origin not yet covered; rows: centers, columns: origins):"
    );
    let _ = write!(s, "  {:8}", "");
    for o in &origins {
        let _ = write!(s, " {o:>6}");
    }
    s.push('\n');
    for (c, row) in &r.lag {
        let _ = write!(s, "  {c:8}");
        for o in &origins {
            let _ = match row.get(*o) {
                Some(n) => write!(s, " {n:>6}"),
                None => write!(s, " {:>6}", "-"),
            };
        }
        s.push('\n');
    }
    let _ = writeln!(s, "links (as the first end sees them):");
    for (from, l) in &r.links {
        let digest = match l.digest_match {
            Some(true) => "digests match",
            Some(false) => "DIGESTS DIFFER",
            None => "digests not compared yet",
        };
        let _ = writeln!(
            s,
            "  {from} -> {:6} {:12} {digest}, {} behind, last heard {}",
            l.peer,
            l.state,
            l.records_behind.map_or("?".into(), |n| n.to_string()),
            l.last_heard.as_deref().unwrap_or("never")
        );
    }
    if r.disagreements.is_empty() {
        let _ = writeln!(s, "disagreeing links: none");
    } else {
        let _ = writeln!(s, "disagreeing links:");
        for d in &r.disagreements {
            let _ = writeln!(
                s,
                "  {} - {}: at fault: {}; {}",
                d.a,
                d.b,
                d.fault.as_deref().unwrap_or("unclear"),
                d.why
            );
        }
    }
    s
}
