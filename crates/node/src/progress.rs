//! Progress of long work (an import, a full sync, a resync): how much is
//! done, the rate, and the time left when the total is known. On a terminal
//! a bar redrawn in place; otherwise a line every few seconds (to stderr, or
//! to the log for work inside a running center). Work that ends before the
//! first interval prints nothing, so routine short pulls stay quiet.
//!
//! Owns only the arithmetic and the formatting; the caller says what is
//! done. Must never: block the work it reports on, or print more often
//! than its interval (a bar at most every [`BAR_EVERY`]).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a bar is redrawn at most.
pub const BAR_EVERY: Duration = Duration::from_millis(200);
/// How often a progress line goes to stderr when it is not a terminal.
pub const LINES_EVERY: Duration = Duration::from_secs(2);
/// How often a center logs the progress of its own long work.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
/// Width of the bar in characters.
const BAR_WIDTH: usize = 30;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One line redrawn in place (`\r`), ended by a newline at the finish.
    Bar,
    /// Whole lines, one per interval.
    Lines,
}

/// The progress of one piece of work.
pub struct Progress {
    what: String,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last: Instant,
    every: Duration,
    style: Style,
    emitted: bool,
    sink: Box<dyn FnMut(&str) + Send>,
}

impl Progress {
    /// Progress shown on stderr: a bar if it is a terminal, lines otherwise.
    pub fn stderr(what: &str, total: Option<u64>) -> Progress {
        use std::io::Write;
        if std::io::stderr().is_terminal() {
            Self::with(what, total, Style::Bar, BAR_EVERY, Instant::now(), |s| {
                let mut e = std::io::stderr().lock();
                let _ = e.write_all(s.as_bytes());
                let _ = e.flush();
            })
        } else {
            Self::with(what, total, Style::Lines, LINES_EVERY, Instant::now(), |s| {
                eprintln!("{s}")
            })
        }
    }

    /// Progress of a center's own work, as `info` log lines.
    pub fn log(what: &str, total: Option<u64>) -> Progress {
        Self::with(
            what,
            total,
            Style::Lines,
            LOG_EVERY,
            Instant::now(),
            |s| tracing::info!(target: "regmesh::progress", "{s}"),
        )
    }

    /// Progress started at `start`, shown in `style` at most every `every`
    /// through `sink` (which gets a whole line for [`Style::Lines`], and the
    /// redraw text, carriage return included, for [`Style::Bar`]).
    pub fn with(
        what: &str,
        total: Option<u64>,
        style: Style,
        every: Duration,
        start: Instant,
        sink: impl FnMut(&str) + Send + 'static,
    ) -> Progress {
        Progress {
            what: what.into(),
            total,
            done: 0,
            start,
            last: start,
            every,
            style,
            emitted: false,
            sink: Box::new(sink),
        }
    }

    /// `n` more units done now.
    pub fn add(&mut self, n: u64) {
        self.add_at(n, Instant::now());
    }

    /// `n` more units done at `now`; shows progress if an interval passed.
    pub fn add_at(&mut self, n: u64, now: Instant) {
        self.set_at(self.done.saturating_add(n), now);
    }

    /// `done` units done in all, now.
    pub fn set(&mut self, done: u64) {
        self.set_at(done, Instant::now());
    }

    /// `done` units done in all at `now`; shows progress if an interval
    /// passed.
    pub fn set_at(&mut self, done: u64, now: Instant) {
        self.done = done;
        if now.saturating_duration_since(self.last) >= self.every {
            self.last = now;
            self.emitted = true;
            let text = match self.style {
                Style::Lines => self.line(now),
                Style::Bar => format!("\r{}", self.bar(now)),
            };
            (self.sink)(&text);
        }
    }

    /// How many units are done.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The work ended now.
    pub fn finish(self) {
        self.finish_at(Instant::now());
    }

    /// The work ended at `now`: a last line (and the bar's newline) if any
    /// progress was shown; nothing for work shorter than one interval.
    pub fn finish_at(mut self, now: Instant) {
        if !self.emitted {
            return;
        }
        let secs = now.saturating_duration_since(self.start).as_secs_f64();
        let text = format!(
            "{}: done, {} in {:.1} s ({}/s)",
            self.what,
            self.done,
            secs,
            rate(self.done, secs)
        );
        match self.style {
            Style::Lines => (self.sink)(&text),
            Style::Bar => (self.sink)(&format!("\r{text}\x1b[K\n")),
        }
    }

    /// `what: done/total (pct%), rate/s, eta left`.
    fn line(&self, now: Instant) -> String {
        let secs = now.saturating_duration_since(self.start).as_secs_f64();
        let per_s = if secs > 0.0 { self.done as f64 / secs } else { 0.0 };
        match self.total {
            Some(total) => {
                let left = total.saturating_sub(self.done);
                let eta = if per_s > 0.0 {
                    format!("{} left", duration_text(left as f64 / per_s))
                } else {
                    "time left unknown".into()
                };
                format!(
                    "{}: {}/{} ({}%), {}/s, {eta}",
                    self.what,
                    self.done,
                    total,
                    percent(self.done, total),
                    rate(self.done, secs)
                )
            }
            None => format!("{}: {} so far, {}/s", self.what, self.done, rate(self.done, secs)),
        }
    }

    /// `[#####.....] ` followed by the line, cleared to the end.
    fn bar(&self, now: Instant) -> String {
        let filled = match self.total {
            Some(t) if t > 0 => (self.done.min(t) as usize * BAR_WIDTH) / t as usize,
            _ => 0,
        };
        format!(
            "[{}{}] {}\x1b[K",
            "#".repeat(filled),
            ".".repeat(BAR_WIDTH - filled),
            self.line(now)
        )
    }
}

fn percent(done: u64, total: u64) -> u64 {
    (done.min(total) * 100).checked_div(total).unwrap_or(100)
}

/// Units per second, whole.
fn rate(done: u64, secs: f64) -> u64 {
    if secs > 0.0 {
        (done as f64 / secs).round() as u64
    } else {
        0
    }
}

/// `42 s`, `3 m 05 s`, `2 h 07 m`.
pub fn duration_text(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} m {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn collect(style: Style) -> (Progress, Arc<Mutex<Vec<String>>>, Instant) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let t0 = Instant::now();
        let p = Progress::with("import", Some(1000), style, Duration::from_secs(2), t0, move |s| {
            g.lock().unwrap().push(s.to_string())
        });
        (p, got, t0)
    }

    #[test]
    fn lines_every_interval_with_rate_and_time_left() {
        let (mut p, got, t0) = collect(Style::Lines);
        p.add_at(100, t0 + Duration::from_millis(500));
        assert!(got.lock().unwrap().is_empty(), "nothing before the first interval");
        p.add_at(100, t0 + Duration::from_secs(2));
        p.add_at(50, t0 + Duration::from_secs(3));
        p.add_at(250, t0 + Duration::from_secs(4));
        p.finish_at(t0 + Duration::from_secs(5));
        assert_eq!(
            *got.lock().unwrap(),
            [
                "import: 200/1000 (20%), 100/s, 8 s left",
                "import: 500/1000 (50%), 125/s, 4 s left",
                "import: done, 500 in 5.0 s (100/s)",
            ]
        );
    }

    #[test]
    fn short_work_prints_nothing_and_unknown_totals_have_no_eta() {
        let (mut p, got, t0) = collect(Style::Lines);
        p.add_at(1000, t0 + Duration::from_secs(1));
        p.finish_at(t0 + Duration::from_secs(1));
        assert!(got.lock().unwrap().is_empty());

        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let mut p = Progress::with("full sync from c2", None, Style::Lines, LOG_EVERY, t0, move |s| {
            g.lock().unwrap().push(s.to_string())
        });
        p.add_at(4000, t0 + Duration::from_secs(200));
        assert_eq!(*got.lock().unwrap(), ["full sync from c2: 4000 so far, 20/s"]);
        assert_eq!(duration_text(3725.0), "1 h 02 m");
        assert_eq!(duration_text(65.0), "1 m 05 s");
    }

    #[test]
    fn a_bar_redraws_in_place_and_ends_with_a_newline() {
        let (mut p, got, t0) = collect(Style::Bar);
        p.add_at(500, t0 + Duration::from_secs(2));
        p.finish_at(t0 + Duration::from_secs(4));
        let got = got.lock().unwrap();
        assert!(
            got[0].starts_with("\r[###############...............] import: 500/1000 (50%)"),
            "{got:?}"
        );
        assert!(got[1].starts_with("\rimport: done, 500 in 4.0 s") && got[1].ends_with('\n'));
    }
}
