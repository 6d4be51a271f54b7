//! The SQL of the PostgreSQL backend: the schema and its format version, and
//! each [`Store`](crate::Store) operation as statements on one connection.
//!
//! Tables (`bytea` keys, so ordering is bytewise like redb's and an id may
//! hold any UTF-8, NUL included): `regmesh_records (kind, id) → bytes`,
//! `regmesh_changes n → bytes`, `regmesh_meta key → bytes`; the meta cell
//! `store.format` holds the layout version.
//!
//! Must never: run anything but the statements here (no schema change
//! outside [`ensure_schema`]), or report a batch as not committed when its
//! `COMMIT` may have reached the server.

use crate::{RecordOp, StoreError, WriteBatch};
use postgres::Client;
use std::collections::HashMap;

/// Layout version written in `regmesh_meta["store.format"]`.
pub const STORE_FORMAT: u32 = 1;

/// Rows fetched per round trip of a scan; bounds the memory of one page.
pub const SCAN_PAGE_ROWS: i64 = 256;

/// A failure before `COMMIT` was sent: nothing was committed.
pub fn be(e: postgres::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A change number as the `bigint` column holds it; numbers above
/// `i64::MAX` are refused before anything is written.
fn change_no(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n)
        .map_err(|_| StoreError::Backend(format!("change number {n} is above what PostgreSQL's bigint holds")))
}

fn text(b: Vec<u8>, what: &str) -> Result<String, StoreError> {
    String::from_utf8(b).map_err(|_| StoreError::Corrupt(format!("{what} is not UTF-8")))
}

/// Creates the tables if absent and checks or writes the format version,
/// in one transaction under an advisory lock, so that several processes
/// starting at once on one database agree. A newer or unreadable format is
/// refused before anything is written.
pub fn ensure_schema(c: &mut Client) -> Result<(), StoreError> {
    let mut t = c.transaction().map_err(be)?;
    // Any fixed number: serializes concurrent first starts.
    t.execute("SELECT pg_advisory_xact_lock(7270437501)", &[]).map_err(be)?;
    t.batch_execute(
        "CREATE TABLE IF NOT EXISTS regmesh_records (
             kind bytea NOT NULL, id bytea NOT NULL, bytes bytea NOT NULL,
             PRIMARY KEY (kind, id));
         CREATE TABLE IF NOT EXISTS regmesh_changes (n bigint PRIMARY KEY, bytes bytea NOT NULL);
         CREATE TABLE IF NOT EXISTS regmesh_meta (key text PRIMARY KEY, bytes bytea NOT NULL);",
    )
    .map_err(be)?;
    let found: Option<Vec<u8>> = t
        .query_opt("SELECT bytes FROM regmesh_meta WHERE key = 'store.format'", &[])
        .map_err(be)?
        .map(|r| r.get(0));
    // A newer or unreadable layout returns here: the transaction is rolled
    // back on drop and nothing is written.
    if crate::check_format("store layout", found.as_deref(), STORE_FORMAT)?.is_none() {
        t.execute(
            "INSERT INTO regmesh_meta (key, bytes) VALUES ('store.format', $1)",
            &[&STORE_FORMAT.to_string().into_bytes()],
        )
        .map_err(be)?;
    }
    commit(t)
}

/// Commits; a failure the server answered is rolled back ([`conflict_or`]
/// decides which), one without an answer (the connection broke) is
/// [`StoreError::CommitUnknown`].
fn commit(t: postgres::Transaction<'_>) -> Result<(), StoreError> {
    t.commit().map_err(|e| {
        if e.as_db_error().is_some() {
            conflict_or(e)
        } else {
            StoreError::CommitUnknown(e.to_string())
        }
    })
}

/// A failure of a batch the server refused: a serialization failure or a
/// deadlock (SERIALIZABLE databases such as CockroachDB report concurrent
/// fenced batches so) is [`StoreError::Conflict`], to be built again;
/// anything else [`StoreError::Backend`]. Either way nothing was applied.
fn conflict_or(e: postgres::Error) -> StoreError {
    use postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
            StoreError::Conflict(format!("serialization: {e}"))
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Applies `b` in one transaction. Of several ops on one key the last
/// decides, so each key's final op is computed first and the records change
/// in two set-based statements (deletes, then upserts).
pub fn apply(c: &mut Client, b: &WriteBatch) -> Result<(), StoreError> {
    let mut last: HashMap<(&str, &str), Option<&[u8]>> = HashMap::new();
    for op in &b.records {
        let v = match op {
            RecordOp::Put { bytes, .. } => Some(bytes.as_slice()),
            RecordOp::Remove { .. } => None,
        };
        last.insert(op.key(), v);
    }
    let (mut del_k, mut del_i) = (Vec::new(), Vec::new());
    let (mut put_k, mut put_i, mut put_v) = (Vec::new(), Vec::new(), Vec::new());
    for ((kind, id), v) in last {
        match v {
            None => {
                del_k.push(kind.as_bytes());
                del_i.push(id.as_bytes());
            }
            Some(v) => {
                put_k.push(kind.as_bytes());
                put_i.push(id.as_bytes());
                put_v.push(v);
            }
        }
    }
    let mut changes: HashMap<i64, &[u8]> = HashMap::new();
    for (n, v) in &b.changes {
        changes.insert(change_no(*n)?, v.as_slice());
    }
    let (ch_n, ch_v): (Vec<i64>, Vec<&[u8]>) = changes.into_iter().unzip();
    let meta: HashMap<&str, &[u8]> = b.meta.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let (meta_k, meta_v): (Vec<&str>, Vec<&[u8]>) = meta.into_iter().unzip();

    let mut t = c.transaction().map_err(be)?;
    if b.relaxed {
        // Visible at once; its WAL reaches disk with the next synchronous
        // commit (PostgreSQL flushes the log in order).
        t.batch_execute("SET LOCAL synchronous_commit = off")
            .map_err(conflict_or)?;
    }
    if let Some((k, want)) = &b.expect_meta {
        // Takes the cell's row lock until commit: a concurrent fenced batch
        // waits, then finds the value changed (or the row there) and fails.
        let held = match want {
            Some(v) => t.execute(
                "UPDATE regmesh_meta SET bytes = bytes WHERE key = $1 AND bytes = $2",
                &[k, v],
            ),
            None => t.execute(
                "INSERT INTO regmesh_meta (key, bytes) VALUES ($1, '') ON CONFLICT (key) DO NOTHING",
                &[k],
            ),
        }
        .map_err(conflict_or)?;
        if held != 1 {
            return Err(StoreError::Conflict(k.clone()));
        }
    }
    if !del_k.is_empty() {
        t.execute(
            "DELETE FROM regmesh_records r USING unnest($1::bytea[], $2::bytea[]) AS d(kind, id)
             WHERE r.kind = d.kind AND r.id = d.id",
            &[&del_k, &del_i],
        )
        .map_err(conflict_or)?;
    }
    if !put_k.is_empty() {
        t.execute(
            "INSERT INTO regmesh_records (kind, id, bytes)
             SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[])
             ON CONFLICT (kind, id) DO UPDATE SET bytes = excluded.bytes",
            &[&put_k, &put_i, &put_v],
        )
        .map_err(conflict_or)?;
    }
    if !ch_n.is_empty() {
        t.execute(
            "INSERT INTO regmesh_changes (n, bytes) SELECT * FROM unnest($1::int8[], $2::bytea[])
             ON CONFLICT (n) DO UPDATE SET bytes = excluded.bytes",
            &[&ch_n, &ch_v],
        )
        .map_err(conflict_or)?;
    }
    if let Some(below) = b.trim_changes_below {
        match i64::try_from(below) {
            Ok(below) => t.execute("DELETE FROM regmesh_changes WHERE n < $1", &[&below]),
            Err(_) => t.execute("DELETE FROM regmesh_changes", &[]),
        }
        .map_err(conflict_or)?;
    }
    if !meta_k.is_empty() {
        t.execute(
            "INSERT INTO regmesh_meta (key, bytes) SELECT * FROM unnest($1::text[], $2::bytea[])
             ON CONFLICT (key) DO UPDATE SET bytes = excluded.bytes",
            &[&meta_k, &meta_v],
        )
        .map_err(conflict_or)?;
    }
    commit(t)
}

pub fn get(c: &mut Client, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(c.query_opt(
        "SELECT bytes FROM regmesh_records WHERE kind = $1 AND id = $2",
        &[&kind.as_bytes(), &id.as_bytes()],
    )
    .map_err(be)?
    .map(|r| r.get(0)))
}

/// One statement, so one snapshot.
pub fn get_many(c: &mut Client, kind: &str, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let keys: Vec<&[u8]> = ids.iter().map(|i| i.as_bytes()).collect();
    let mut found: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for r in c
        .query(
            "SELECT id, bytes FROM regmesh_records WHERE kind = $1 AND id = ANY($2::bytea[])",
            &[&kind.as_bytes(), &keys],
        )
        .map_err(be)?
    {
        found.insert(r.get(0), r.get(1));
    }
    Ok(ids.iter().map(|i| found.get(i.as_bytes()).cloned()).collect())
}

/// One page of records in `(kind, id)` order after `after` (from the start
/// when `None`), at most [`SCAN_PAGE_ROWS`].
pub fn scan_page(
    c: &mut Client,
    after: Option<&(String, String)>,
) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
    let rows = match after {
        None => c.query(
            "SELECT kind, id, bytes FROM regmesh_records ORDER BY kind, id LIMIT $1",
            &[&SCAN_PAGE_ROWS],
        ),
        Some((k, i)) => c.query(
            "SELECT kind, id, bytes FROM regmesh_records WHERE (kind, id) > ($1, $2)
             ORDER BY kind, id LIMIT $3",
            &[&k.as_bytes(), &i.as_bytes(), &SCAN_PAGE_ROWS],
        ),
    }
    .map_err(be)?;
    rows.into_iter()
        .map(|r| Ok((text(r.get(0), "kind")?, text(r.get(1), "id")?, r.get(2))))
        .collect()
}

pub fn changes_after(c: &mut Client, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    c.query(
        "SELECT n, bytes FROM regmesh_changes WHERE n > $1 ORDER BY n LIMIT $2",
        &[&after, &limit],
    )
    .map_err(be)?
    .into_iter()
    .map(|r| {
        let n: i64 = r.get(0);
        let n = u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative change number {n}")))?;
        Ok((n, r.get(1)))
    })
    .collect()
}

pub fn change_bounds(c: &mut Client) -> Result<Option<(u64, u64)>, StoreError> {
    let r = c
        .query_one("SELECT min(n), max(n) FROM regmesh_changes", &[])
        .map_err(be)?;
    let (lo, hi): (Option<i64>, Option<i64>) = (r.get(0), r.get(1));
    let conv = |n: i64| u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative change number {n}")));
    match lo.zip(hi) {
        None => Ok(None),
        Some((lo, hi)) => Ok(Some((conv(lo)?, conv(hi)?))),
    }
}

pub fn meta(c: &mut Client, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(c.query_opt("SELECT bytes FROM regmesh_meta WHERE key = $1", &[&key])
        .map_err(be)?
        .map(|r| r.get(0)))
}
