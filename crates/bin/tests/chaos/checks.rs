//! The checks, each a pure function of the evidence gathered (op log, state
//! polls, fault timeline, final listings, center logs) returning a verdict
//! with the offending facts. They judge by what clients were told (status
//! codes, versions) and what centers list, never by calling regmesh code.
//! Why each is sound despite timing is in `chaos.rs`'s module doc.

use super::monitor::Seen;
use super::nemesis::Timeline;
use super::writers::{Kind, Op, Res, Version, RACE_PREFIX};
use std::collections::{BTreeMap, BTreeSet};

/// What one center lists after the heal: id → (origin, version).
pub type Listing = BTreeMap<String, (String, Version)>;

/// Isolated this long before a poll may open an inactive window: bytes that
/// were on their way when the links were cut have been read by then.
pub const ISOLATION_GRACE_MS: u64 = 1000;
/// Offending facts kept per check.
const FACTS_MAX: usize = 12;

pub struct Evidence<'a> {
    pub ops: &'a [Op],
    pub seen: &'a [Seen],
    pub tl: &'a Timeline,
    /// Per center, its last listing (None: it never answered one).
    pub finals: &'a [Option<Listing>],
    /// Milliseconds from the heal until all listings were equal.
    pub converged_ms: Option<u64>,
    /// Per center, its log text.
    pub logs: &'a [String],
    pub crashes: &'a [String],
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub name: &'static str,
    pub facts: Vec<String>,
    /// How many facts there were in all.
    pub count: usize,
    /// What the check looked at (so a pass is seen to have had teeth).
    pub scope: String,
}

impl Verdict {
    fn new(name: &'static str, facts: Vec<String>, scope: String) -> Verdict {
        let count = facts.len();
        Verdict {
            name,
            facts: facts.into_iter().take(FACTS_MAX).collect(),
            count,
            scope,
        }
    }

    pub fn passed(&self) -> bool {
        self.count == 0
    }
}

/// Every check, in report order.
pub const NAMES: [&str; 6] = [
    "converge",
    "lost",
    "resurrect",
    "two_creators",
    "inactive_write",
    "logs",
];

pub fn run_all(e: &Evidence) -> Vec<Verdict> {
    vec![
        converge(e),
        lost(e),
        resurrect(e),
        two_creators(e),
        inactive_write(e),
        logs(e),
    ]
}

fn cname(c: usize) -> String {
    format!("c{}", c + 1)
}

fn vstr(v: Version) -> String {
    format!("{}.{}", v.0, v.1)
}

/// The center a writer's id belongs to (`cNw...`).
fn writer_origin(id: &str) -> Option<usize> {
    let digits: String = id.strip_prefix('c')?.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<usize>().ok()?.checked_sub(1)
}

/// Every op per id, in the order sent.
fn by_id(ops: &[Op]) -> BTreeMap<&str, Vec<&Op>> {
    let mut m: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        m.entry(op.id.as_str()).or_default().push(op);
    }
    for v in m.values_mut() {
        v.sort_by_key(|o| o.sent_ms);
    }
    m
}

fn version_of(op: &Op) -> Option<Version> {
    match op.res {
        Res::Acked { version, .. } => version,
        _ => None,
    }
}

fn converge(e: &Evidence) -> Verdict {
    let mut facts = Vec::new();
    if e.converged_ms.is_none() {
        let sizes: Vec<String> = e
            .finals
            .iter()
            .enumerate()
            .map(|(c, l)| {
                format!(
                    "{}={}",
                    cname(c),
                    l.as_ref().map_or("none".into(), |l| l.len().to_string())
                )
            })
            .collect();
        facts.push(format!(
            "listings never became equal; sizes {} (none: its list calls failed)",
            sizes.join(" ")
        ));
        // Ids on which the centers that did answer disagree.
        let answered: Vec<(usize, &Listing)> = e
            .finals
            .iter()
            .enumerate()
            .filter_map(|(c, l)| l.as_ref().map(|l| (c, l)))
            .collect();
        let ids: BTreeSet<&String> = answered.iter().flat_map(|(_, l)| l.keys()).collect();
        for id in ids {
            let views: Vec<(usize, Option<&(String, Version)>)> =
                answered.iter().map(|(c, l)| (*c, l.get(id))).collect();
            if views.windows(2).any(|w| w[0].1 != w[1].1) {
                let shown: Vec<String> = views
                    .iter()
                    .map(|(c, v)| match v {
                        Some((o, v)) => format!("{}:{o}@{}", cname(*c), vstr(*v)),
                        None => format!("{}:-", cname(*c)),
                    })
                    .collect();
                facts.push(format!("{id}: {}", shown.join(" ")));
            }
        }
    }
    let scope = match e.converged_ms {
        Some(ms) => format!("equal after {ms} ms"),
        None => "not converged".into(),
    };
    Verdict::new("converge", facts, scope)
}

/// What the ops of one id say must hold at the end.
struct Expect<'a> {
    owner: usize,
    /// Highest version the owner acknowledged.
    acked_max: Option<(Version, &'a Op)>,
    /// The last op was acknowledged as a put or heartbeat (not a delete),
    /// and nothing after it is in doubt.
    must_exist: Option<&'a Op>,
    /// The last acknowledged op was a delete and nothing after it is in doubt.
    must_be_gone: Option<&'a Op>,
}

/// Expectations of a writer's id (one writer, one center, ops in sequence).
fn expect_writer<'a>(owner: usize, ops: &[&'a Op], facts: &mut Vec<String>) -> Expect<'a> {
    let mut ex = Expect {
        owner,
        acked_max: None,
        must_exist: None,
        must_be_gone: None,
    };
    let mut present: Option<&Op> = None;
    for op in ops {
        if let Some(v) = version_of(op) {
            if ex.acked_max.is_none_or(|(m, _)| v > m) {
                ex.acked_max = Some((v, op));
            }
        }
        match &op.res {
            Res::Acked { status, .. } => {
                if let (Some(p), Kind::Put, 201) = (present, op.kind, status) {
                    facts.push(format!(
                        "{}: {} answered 201 (created) to [{}] though [{}] was acked present",
                        op.id,
                        cname(op.center),
                        op.marker,
                        p.marker
                    ));
                }
                present = (op.kind != Kind::Delete).then_some(*op);
                ex.must_exist = present;
                ex.must_be_gone = (op.kind == Kind::Delete).then_some(*op);
            }
            Res::Refused { status: 404, .. } => {
                if let Some(p) = present {
                    facts.push(format!(
                        "{}: {} answered 404 to {:?} [{}] after acking [{}] at {} ms",
                        op.id,
                        cname(op.center),
                        op.kind,
                        op.marker,
                        p.marker,
                        p.done_ms
                    ));
                }
                present = None;
            }
            Res::Unknown(_) => {
                ex.must_exist = None;
                ex.must_be_gone = None;
            }
            _ => {}
        }
    }
    ex
}

fn lost(e: &Evidence) -> Verdict {
    let mut facts = Vec::new();
    let mut judged = 0;
    for (id, ops) in by_id(e.ops) {
        let ex = if id.starts_with(RACE_PREFIX) {
            // The first center told 201 owns it; its acked writes must hold.
            let Some(first) = ops.iter().filter(|o| o.status() == 201).min_by_key(|o| o.done_ms) else {
                continue;
            };
            let mine: Vec<&Op> = ops.iter().filter(|o| o.center == first.center).copied().collect();
            // Never deleted: a second 201 from the owner means it had lost it.
            for again in mine.iter().filter(|o| o.status() == 201 && o.sent_ms > first.done_ms) {
                facts.push(format!(
                    "{id}: {} answered 201 (created) to [{}] though it had acked its creation [{}]",
                    cname(again.center),
                    again.marker,
                    first.marker
                ));
            }
            let acked_max = mine
                .iter()
                .filter_map(|o| version_of(o).map(|v| (v, *o)))
                .max_by_key(|x| x.0);
            Expect {
                owner: first.center,
                acked_max,
                must_exist: Some(first),
                must_be_gone: None,
            }
        } else {
            let Some(owner) = writer_origin(id) else { continue };
            expect_writer(owner, &ops, &mut facts)
        };
        judged += 1;
        // Problem → the centers that show it.
        let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (c, l) in e.finals.iter().enumerate() {
            let Some(l) = l else { continue };
            let problem = match (l.get(id), ex.must_exist) {
                (None, Some(op)) => Some(format!(
                    "missing though {} acked {:?} [{}] at {} ms",
                    cname(op.center),
                    op.kind,
                    op.marker,
                    op.done_ms
                )),
                (Some((origin, _)), _) if *origin != cname(ex.owner) => ex
                    .acked_max
                    .map(|_| format!("held from {origin}, but {} acked writes of it", cname(ex.owner))),
                (Some((_, v)), _) => ex.acked_max.filter(|(want, _)| v < want).map(|(want, op)| {
                    format!(
                        "version {} older than {} acked [{}] with {}",
                        vstr(*v),
                        cname(op.center),
                        op.marker,
                        vstr(want)
                    )
                }),
                (None, None) => None,
            };
            if let Some(p) = problem {
                problems.entry(p).or_default().push(cname(c));
            }
        }
        for (p, centers) in problems {
            facts.push(format!("{id}: at {}: {p}", centers.join(",")));
        }
    }
    Verdict::new("lost", facts, format!("{judged} ids with acked writes"))
}

fn resurrect(e: &Evidence) -> Verdict {
    let mut facts = Vec::new();
    let mut judged = 0;
    for (id, ops) in by_id(e.ops) {
        if id.starts_with(RACE_PREFIX) {
            continue;
        }
        let Some(owner) = writer_origin(id) else { continue };
        let mut ignore = Vec::new();
        let ex = expect_writer(owner, &ops, &mut ignore);
        let in_doubt = ops.iter().any(|o| matches!(o.res, Res::Unknown(_)));
        let never_acked = !ops.iter().any(|o| o.acked());
        let reason = match (ex.must_be_gone, never_acked && !in_doubt) {
            (Some(op), _) => format!(
                "{} acked its delete [{}] at {} ms",
                cname(op.center),
                op.marker,
                op.done_ms
            ),
            (None, true) => "every write of it was refused".to_string(),
            _ => continue,
        };
        judged += 1;
        for (c, l) in e.finals.iter().enumerate() {
            if let Some((origin, v)) = l.as_ref().and_then(|l| l.get(id)) {
                facts.push(format!(
                    "{id}: {} lists it ({origin}@{}) but {reason}",
                    cname(c),
                    vstr(*v)
                ));
            }
        }
    }
    Verdict::new("resurrect", facts, format!("{judged} ids deleted or never created"))
}

fn two_creators(e: &Evidence) -> Verdict {
    let mut facts = Vec::new();
    let mut raced = 0;
    for (id, ops) in by_id(e.ops) {
        if !id.starts_with(RACE_PREFIX) {
            continue;
        }
        raced += 1;
        // Race ids are never deleted, so one 201 at most, at one center;
        // only that center may answer 2xx (a 200 elsewhere means another
        // center holds it as its own).
        let mut acks: Vec<&&Op> = ops.iter().filter(|o| o.acked()).collect();
        acks.sort_by_key(|o| o.done_ms);
        let Some(first) = acks.iter().find(|o| o.status() == 201) else {
            continue;
        };
        for o in &acks {
            if o.center != first.center {
                let (from, until) = (o.sent_ms.min(first.sent_ms), o.done_ms.max(first.done_ms));
                let during: Vec<&str> =
                    e.tl.faults
                        .iter()
                        .filter(|f| f.0 <= until && f.1 >= from)
                        .map(|f| f.2.as_str())
                        .collect();
                facts.push(format!(
                    "{id}: {} answered {} to [{}] ({}..{} ms), {} answered 201 to [{}] ({}..{} ms); faults meanwhile: {}",
                    cname(o.center),
                    o.status(),
                    o.marker,
                    o.sent_ms,
                    o.done_ms,
                    cname(first.center),
                    first.marker,
                    first.sent_ms,
                    first.done_ms,
                    if during.is_empty() { "none".to_string() } else { during.join("; ") }
                ));
            }
        }
    }
    Verdict::new("two_creators", facts, format!("{raced} raced ids"))
}

/// Windows in which a center surely was inactive: it was isolated at
/// `from`, said `inactive` to a poll sent at least the grace later (and not
/// paused during the grace before the poll), and stays so until the
/// isolation ends or it is killed.
pub fn inactive_windows(e: &Evidence) -> Vec<(usize, u64, u64)> {
    let mut out = Vec::new();
    for &(c, from, until) in &e.tl.isolated {
        let first = e
            .seen
            .iter()
            .filter(|s| {
                s.center == c && s.state == "inactive" && s.sent_ms >= from + ISOLATION_GRACE_MS && s.recv_ms < until
            })
            // Running through the grace just before the poll: it read
            // whatever was on its way before the cut.
            .filter(|s| {
                !e.tl
                    .paused
                    .iter()
                    .any(|&(p, a, b)| p == c && a < s.sent_ms && b > s.sent_ms - ISOLATION_GRACE_MS)
            })
            .min_by_key(|s| s.recv_ms);
        let Some(s) = first else { continue };
        let end =
            e.tl.down
                .iter()
                .filter(|&&(d, k, _)| d == c && k >= s.recv_ms)
                .map(|&(_, k, _)| k)
                .fold(until, u64::min);
        out.push((c, s.recv_ms, end));
    }
    out
}

fn inactive_write(e: &Evidence) -> Verdict {
    let windows = inactive_windows(e);
    let mut facts = Vec::new();
    let (mut judged, mut refused) = (0, 0);
    for &(c, from, until) in &windows {
        for op in e
            .ops
            .iter()
            .filter(|o| o.center == c && o.sent_ms >= from && o.done_ms <= until)
        {
            judged += 1;
            match &op.res {
                Res::Acked { status, .. } => facts.push(format!(
                    "{} answered {status} to {:?} {} [{}] ({}..{} ms) while surely inactive ({from}..{until} ms)",
                    cname(c),
                    op.kind,
                    op.id,
                    op.marker,
                    op.sent_ms,
                    op.done_ms
                )),
                Res::Refused { status: 503, code } if code == "inactive" => refused += 1,
                _ => {}
            }
        }
    }
    let scope = format!(
        "{} windows ({} ms), {judged} writes in them, {refused} refused 503 inactive",
        windows.len(),
        windows.iter().map(|w| w.2 - w.1).sum::<u64>()
    );
    Verdict::new("inactive_write", facts, scope)
}

fn logs(e: &Evidence) -> Verdict {
    let mut facts: Vec<String> = e.crashes.to_vec();
    for (c, text) in e.logs.iter().enumerate() {
        for line in text.lines() {
            let l = line.to_ascii_lowercase();
            if l.contains("panicked")
                || l.contains("integrity")
                || l.contains("verified digest")
                || l.contains("failed verification")
            {
                facts.push(format!(
                    "{}.log: {}",
                    cname(c),
                    line.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    for op in e.ops {
        if let Res::Refused {
            status: 500..=502 | 504..,
            code,
        } = &op.res
        {
            facts.push(format!(
                "{} answered {} {code} to {}",
                cname(op.center),
                op.status(),
                op.line()
            ));
        }
    }
    Verdict::new(
        "logs",
        facts,
        format!("{} log lines", e.logs.iter().map(|t| t.lines().count()).sum::<usize>()),
    )
}
