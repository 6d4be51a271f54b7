//! The durable record of the promises this center gave other centers'
//! votes (`regmesh_proto::vote::Promise`): one line per promise in
//! `data_dir/claims.log`, flushed to disk before the yes leaves, and read
//! back at start-up, so a restart never forgets a claim or a doubt and says
//! yes twice. Owns the file only; what is promised is proto's decision.
//!
//! Bounded: when the file holds more lines than twice the live promises
//! (and at least [`COMPACT_LINES_MIN`]), it is rewritten from them.
//!
//! Group commit ([`Journal`]): promises given while a flush is on the disk
//! wait in a queue and go to disk together, with one fsync, so concurrent
//! votes share it. Every promise is still on disk before its yes leaves.
//!
//! Format 2 (written) starts with the line `#format<TAB>2`; format 1 (earlier
//! builds) has no such line and the same promise lines, and is rewritten in
//! format 2 when opened. A newer format is refused before anything is
//! written ([`ClaimsLogError::NewerFormat`]).

use regmesh_proto::vote::Promise;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Lines below which the log is never compacted.
pub const COMPACT_LINES_MIN: usize = 10_000;

/// The format this build writes, and the newest it reads.
pub const CLAIMS_LOG_FORMAT: u32 = 2;
/// What the first line of a format 2 log starts with.
const FORMAT_PREFIX: &str = "#format\t";

fn format_line() -> String {
    format!("{FORMAT_PREFIX}{CLAIMS_LOG_FORMAT}\n")
}

/// The log could not be read or written. A failed append leaves the
/// promise in memory only, and the vote is answered no.
#[derive(Debug, thiserror::Error)]
pub enum ClaimsLogError {
    #[error("claims log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log was written by a newer regmesh (or its format line is not a
    /// number). Nothing was read or changed.
    #[error("claims log {path}: format {found:?} is not one this build reads (at most {CLAIMS_LOG_FORMAT}); nothing was changed")]
    NewerFormat { path: PathBuf, found: String },
}

pub struct ClaimsLog {
    path: PathBuf,
    file: File,
    lines: usize,
}

fn line(p: &Promise) -> String {
    // Kinds, ids and center ids never hold a tab or a newline (validated).
    format!("{}\t{}\t{}\t{}\t{}\n", p.kind, p.id, p.initiator, p.counter, p.until_ms)
}

fn parse(l: &str) -> Option<Promise> {
    let mut f = l.split('\t');
    Some(Promise {
        kind: f.next()?.to_string(),
        id: f.next()?.to_string(),
        initiator: f.next()?.to_string(),
        counter: f.next()?.parse().ok()?,
        until_ms: f.next()?.parse().ok()?,
    })
}

impl ClaimsLog {
    /// Opens (or creates) the log in `dir` and returns the promises in it,
    /// oldest first. A torn last line (a crash mid-append) is skipped.
    pub fn open(dir: &Path) -> Result<(ClaimsLog, Vec<Promise>), ClaimsLogError> {
        let path = dir.join("claims.log");
        let io = |source| ClaimsLogError::Io {
            path: path.clone(),
            source,
        };
        let mut format = None;
        let promises: Vec<Promise> = match File::open(&path) {
            Ok(f) => {
                let mut lines = BufReader::new(f).lines().map_while(Result::ok).peekable();
                if let Some(first) = lines.peek() {
                    if let Some(v) = first.strip_prefix(FORMAT_PREFIX) {
                        match v.trim().parse::<u32>() {
                            Ok(n) if n <= CLAIMS_LOG_FORMAT => format = Some(n),
                            _ => {
                                return Err(ClaimsLogError::NewerFormat {
                                    path: path.clone(),
                                    found: v.chars().take(16).collect(),
                                })
                            }
                        }
                        lines.next();
                    } else {
                        format = Some(1);
                    }
                }
                lines.filter_map(|l| parse(&l)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        // A torn last line must not run into the next one appended.
        let len = file.metadata().map_err(io)?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(io)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io)?;
            }
        }
        if format.is_none() && len == 0 {
            // New (or empty): the format line goes first.
            file.write_all(format_line().as_bytes()).map_err(io)?;
        }
        let lines = promises.len();
        let mut log = ClaimsLog { path, file, lines };
        match format {
            // Written by an earlier build: rewritten in this format.
            Some(n) if n < CLAIMS_LOG_FORMAT => log.compact(&promises)?,
            _ => {}
        }
        Ok((log, promises))
    }

    /// Appends `p` and waits until it is on disk.
    pub fn append(&mut self, p: &Promise) -> Result<(), ClaimsLogError> {
        self.append_all(std::slice::from_ref(p))
    }

    /// Appends every promise of `ps` in one write and waits, with one
    /// fsync, until all are on disk. On an error none may be counted as
    /// durable (some lines may have reached the file; reading them back
    /// only keeps a promise the caller then drops, which is safe).
    pub fn append_all(&mut self, ps: &[Promise]) -> Result<(), ClaimsLogError> {
        let text: String = ps.iter().map(line).collect();
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|source| ClaimsLogError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.lines += ps.len();
        Ok(())
    }

    /// Whether the log has grown enough to be rewritten from `live` promises.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > COMPACT_LINES_MIN.max(2 * live)
    }

    /// Rewrites the log to hold exactly `live` (atomically: a new file
    /// renamed over the old one).
    pub fn compact(&mut self, live: &[Promise]) -> Result<(), ClaimsLogError> {
        let tmp = self.path.with_extension("log.new");
        let io = |source| ClaimsLogError::Io {
            path: tmp.clone(),
            source,
        };
        let mut f = File::create(&tmp).map_err(io)?;
        let text: String = std::iter::once(format_line()).chain(live.iter().map(line)).collect();
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(io)?;
        self.lines = live.len();
        Ok(())
    }
}

/// The log with group commit: [`Journal::enqueue`] queues a promise, and
/// one flusher at a time writes everything queued with one fsync
/// ([`Journal::flush_queued`]). The queue holds at most the promises of the
/// votes being collected (proto's `VOTES_COLLECTING_MAX`), since each vote
/// persists one promise.
pub struct Journal {
    log: Mutex<ClaimsLog>,
    /// Promises waiting for disk, and whether a flusher is at work.
    queue: Mutex<(Vec<Promise>, bool)>,
}

impl Journal {
    pub fn new(log: ClaimsLog) -> Self {
        Journal {
            log: Mutex::new(log),
            queue: Mutex::new((Vec::new(), false)),
        }
    }

    /// Queues `p` for disk. Returns true when the caller must now flush
    /// ([`Journal::flush_queued`] until it returns `None`); false when a
    /// flusher is at work already and will write `p` too.
    pub fn enqueue(&self, p: Promise) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.0.push(p);
        !std::mem::replace(&mut q.1, true)
    }

    /// Blocking, for the flusher only: writes every queued promise with
    /// one fsync and returns them with whether they are durable; then
    /// `compact` may rewrite the log while it is still locked. `None` when
    /// the queue was empty: the flusher's turn ended.
    pub fn flush_queued(
        &self,
        compact: impl FnOnce(&mut ClaimsLog),
    ) -> Option<(Vec<Promise>, Result<(), ClaimsLogError>)> {
        let batch = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.0.is_empty() {
                q.1 = false;
                return None;
            }
            std::mem::take(&mut q.0)
        };
        let mut log = self.log();
        let written = log.append_all(&batch);
        if written.is_ok() {
            compact(&mut log);
        }
        Some((batch, written))
    }

    /// The log itself (for tests and compaction).
    pub fn log(&self) -> MutexGuard<'_, ClaimsLog> {
        // A panic mid-flush leaves the file as any crash would.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, until_ms: u64) -> Promise {
        Promise {
            kind: "agent".into(),
            id: id.into(),
            initiator: "c2".into(),
            counter: 7,
            until_ms,
        }
    }

    #[test]
    fn promises_survive_reopening_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, none) = ClaimsLog::open(dir.path()).unwrap();
        assert!(none.is_empty());
        log.append(&p("a", 100)).unwrap();
        log.append(&p("b", 0)).unwrap();
        drop(log);
        // A torn line at the end is skipped.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("claims.log"))
            .unwrap();
        f.write_all(b"agent\tc\tc2\t7").unwrap();
        let (mut log, back) = ClaimsLog::open(dir.path()).unwrap();
        assert_eq!(back, vec![p("a", 100), p("b", 0)]);
        log.compact(&[p("b", 0)]).unwrap();
        log.append(&p("d", 5)).unwrap();
        let (_, back) = ClaimsLog::open(dir.path()).unwrap();
        assert_eq!(back, vec![p("b", 0), p("d", 5)]);
    }

    #[test]
    fn queued_promises_go_to_disk_together_and_the_flusher_turn_ends_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ClaimsLog::open(dir.path()).unwrap();
        let j = Journal::new(log);
        // The first enqueuer flushes; the others find a flusher at work.
        assert!(j.enqueue(p("a", 1)));
        assert!(!j.enqueue(p("b", 2)));
        assert!(!j.enqueue(p("c", 3)));
        let (batch, written) = j.flush_queued(|_| {}).expect("a batch");
        written.unwrap();
        assert_eq!(batch, vec![p("a", 1), p("b", 2), p("c", 3)]);
        // Queued while the batch was on the disk: the same flusher takes it.
        assert!(!j.enqueue(p("d", 4)));
        assert_eq!(j.flush_queued(|_| {}).expect("a batch").0, vec![p("d", 4)]);
        assert!(j.flush_queued(|_| {}).is_none());
        // The turn ended: the next enqueuer flushes.
        assert!(j.enqueue(p("e", 5)));
        assert!(j.flush_queued(|_| {}).is_some());
        drop(j);
        let (_, back) = ClaimsLog::open(dir.path()).unwrap();
        assert_eq!(back, vec![p("a", 1), p("b", 2), p("c", 3), p("d", 4), p("e", 5)]);
    }

    #[test]
    fn a_log_written_before_formats_reads_and_is_rewritten_in_this_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims.log");
        // Format 1, as earlier builds wrote it: promise lines only.
        std::fs::write(&path, "agent\ta\tc2\t7\t100\nagent\tb\tc2\t7\t0\n").unwrap();
        let (_, back) = ClaimsLog::open(dir.path()).unwrap();
        assert_eq!(back, vec![p("a", 100), p("b", 0)]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#format\t2\n"), "{text:?}");
        let (_, again) = ClaimsLog::open(dir.path()).unwrap();
        assert_eq!(again, back);
    }

    #[test]
    fn a_new_log_names_its_format_and_a_newer_one_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims.log");
        let (mut log, _) = ClaimsLog::open(dir.path()).unwrap();
        log.append(&p("a", 100)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "#format\t2\nagent\ta\tc2\t7\t100\n"
        );
        let newer = "#format\t3\nagent\ta\tc2\t7\t100\tnew-field\n";
        std::fs::write(&path, newer).unwrap();
        let e = ClaimsLog::open(dir.path()).err().expect("must refuse");
        assert!(
            matches!(&e, ClaimsLogError::NewerFormat { found, .. } if found == "3"),
            "{e}"
        );
        assert!(e.to_string().contains("nothing was changed"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
    }
}
