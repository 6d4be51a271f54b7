//! RRDP (RFC 8182) for one repository: fetch the notification file, decide
//! between nothing, deltas and the snapshot ([`plan`]), fetch and apply.
//! Deltas are used only when the session matches and their serials run
//! without a gap from ours to the notification's; every published and
//! withdrawn object's hash is checked against the state it changes; the
//! snapshot and delta URIs must share the notification's origin (RFC 9674);
//! every file's SHA-256 must match the notification's. A failed delta path
//! falls back to the snapshot once.
//!
//! Must never: change the state it was given (a sync builds a new state or
//! fails), keep an object larger than the limit, or fetch more deltas than
//! the limit.

use crate::fetch::{Client, FetchError, Fetched, Limits, Validators};
use bytes::Bytes;
use rpki::rrdp::{DeltaInfo, Hash, NotificationFile, ObjectReader, ProcessDelta, ProcessError, ProcessSnapshot};
use rpki::uri;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

/// Limits of one repository's sync.
#[derive(Debug, Clone, Copy)]
pub struct RrdpLimits {
    /// Most deltas applied in one sync (more: the snapshot).
    pub deltas_max: usize,
    /// Largest object, bytes.
    pub object_bytes_max: u64,
    /// Most objects in a repository.
    pub objects_max: usize,
    pub notification: Limits,
    pub bulk: Limits,
}

impl Default for RrdpLimits {
    fn default() -> Self {
        RrdpLimits {
            deltas_max: 100,
            object_bytes_max: 8 << 20,
            objects_max: 2_000_000,
            notification: Limits::NOTIFICATION,
            bulk: Limits::BULK,
        }
    }
}

/// A repository's objects at a session and serial, as last fetched whole.
#[derive(Debug, Clone, Default)]
pub struct RepoState {
    pub notify: String,
    pub session: String,
    pub serial: u64,
    /// rsync URI → content.
    pub objects: BTreeMap<String, Bytes>,
    pub validators: Validators,
}

impl RepoState {
    pub fn bytes(&self) -> u64 {
        self.objects.values().map(|b| b.len() as u64).sum()
    }
}

/// A sync failed. The state it started from is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum RrdpError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A file did not parse, or broke RRDP's rules.
    #[error("{uri}: {why}")]
    Invalid { uri: String, why: String },
    /// A file's SHA-256 is not the one the notification names.
    #[error("{uri}: hash mismatch")]
    Hash { uri: String },
}

/// What to do, given the state held and a notification file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Unchanged,
    /// Apply these deltas in order (serials contiguous, from ours + 1).
    Deltas(Vec<(u64, String, String)>),
    /// Fetch the snapshot, and why.
    Snapshot(&'static str),
}

/// Decides deltas versus snapshot. `deltas` in the plan are (serial, uri,
/// hash hex).
pub fn plan(held: Option<(&str, u64)>, nf: &NotificationFile, deltas_max: usize) -> Plan {
    let Some((session, serial)) = held else {
        return Plan::Snapshot("no state held");
    };
    if session != nf.session_id().to_string() {
        return Plan::Snapshot("session changed");
    }
    if serial == nf.serial() {
        return Plan::Unchanged;
    }
    if serial > nf.serial() {
        return Plan::Snapshot("serial went backwards");
    }
    if nf.delta_status().is_err() {
        return Plan::Snapshot("delta list over the limit or malformed");
    }
    let needed = nf.serial() - serial;
    if needed > deltas_max as u64 {
        return Plan::Snapshot("more deltas than the limit");
    }
    let mut by_serial: BTreeMap<u64, &DeltaInfo> = BTreeMap::new();
    for d in nf.deltas() {
        if by_serial.insert(d.serial(), d).is_some() {
            return Plan::Snapshot("a serial listed twice");
        }
    }
    let mut out = Vec::new();
    for s in serial + 1..=nf.serial() {
        match by_serial.get(&s) {
            Some(d) => out.push((s, d.uri().to_string(), d.hash().to_string())),
            None => return Plan::Snapshot("deltas do not reach our serial without a gap"),
        }
    }
    Plan::Deltas(out)
}

/// The outcome of one sync, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub how: &'static str,
    pub bytes: u64,
    pub elapsed_ms: u64,
    pub fallback: Option<String>,
}

/// Who downloads snapshot and delta files: this center ([`Local`]) or a
/// sync node (`remote::Remote`). Either way the caller checks each file's
/// SHA-256 against the notification ([`fetch_all`]); a downloader is never
/// trusted.
pub trait Download: Sync {
    /// Downloads `files` (URI, the SHA-256 the notification names), in order.
    fn download(
        &self,
        files: &[(String, Hash)],
        limits: Limits,
    ) -> impl std::future::Future<Output = Result<Vec<Bytes>, RrdpError>> + Send;
    /// Who it is, for status (`local` or a center id).
    fn who(&self) -> String;
}

/// Downloads with this center's own HTTPS client.
pub struct Local<'a>(pub &'a Client);

impl Download for Local<'_> {
    async fn download(&self, files: &[(String, Hash)], limits: Limits) -> Result<Vec<Bytes>, RrdpError> {
        let mut out = Vec::with_capacity(files.len());
        for (u, _) in files {
            match self.0.get(u, None, limits).await? {
                Fetched::Body { bytes, .. } => out.push(bytes),
                Fetched::NotModified => {
                    return Err(RrdpError::Invalid {
                        uri: u.clone(),
                        why: "304 to an unconditional GET".into(),
                    })
                }
            }
        }
        Ok(out)
    }
    fn who(&self) -> String {
        "local".into()
    }
}

/// Downloads `files` with `d` and checks every SHA-256.
pub async fn fetch_all(d: &impl Download, files: &[(String, Hash)], limits: Limits) -> Result<Vec<Bytes>, RrdpError> {
    let got = d.download(files, limits).await?;
    if got.len() != files.len() {
        return Err(RrdpError::Invalid {
            uri: files.first().map(|f| f.0.clone()).unwrap_or_default(),
            why: format!("{} asked, {} returned", files.len(), got.len()),
        });
    }
    for ((u, h), b) in files.iter().zip(&got) {
        if !h.matches(b) {
            return Err(RrdpError::Hash { uri: u.clone() });
        }
    }
    Ok(got)
}

/// Syncs the repository whose notification file is at `notify`, starting
/// from `held` (its last state, if any): this center fetches the
/// notification file itself, `d` downloads the snapshot or deltas. Returns
/// the new state (shared with `held` when unchanged).
pub async fn sync(
    client: &Client,
    d: &impl Download,
    notify: &str,
    held: Option<Arc<RepoState>>,
    limits: RrdpLimits,
) -> Result<(Arc<RepoState>, SyncReport), RrdpError> {
    let started = std::time::Instant::now();
    let invalid = |uri: &str, why: String| RrdpError::Invalid { uri: uri.into(), why };
    let notify_uri = uri::Https::from_string(notify.to_string()).map_err(|e| invalid(notify, e.to_string()))?;
    let held = held.filter(|h| h.notify == notify);
    let (bytes, validators) = match client
        .get(notify, held.as_ref().map(|h| &h.validators), limits.notification)
        .await?
    {
        Fetched::NotModified => {
            let h = held.expect("a conditional GET needs held state");
            return Ok((h, report("not-modified", 0, started, None)));
        }
        Fetched::Body { bytes, validators, .. } => (bytes, validators),
    };
    let mut total = bytes.len() as u64;
    let mut nf = NotificationFile::parse_limited(&bytes[..], limits.deltas_max)
        .map_err(|e| invalid(notify, format!("notification: {e}")))?;
    if !nf.has_matching_origins(&notify_uri) {
        return Err(invalid(notify, "snapshot or delta on another origin (RFC 9674)".into()));
    }
    nf.sort_deltas();
    let mut fallback = None;
    match plan(
        held.as_deref().map(|h| (h.session.as_str(), h.serial)),
        &nf,
        limits.deltas_max,
    ) {
        Plan::Unchanged => {
            let mut h = (*held.expect("unchanged implies held")).clone();
            h.validators = validators;
            return Ok((Arc::new(h), report("unchanged", total, started, None)));
        }
        Plan::Deltas(list) => {
            let base = held.expect("deltas imply held");
            match apply_deltas(d, &base, &list, &nf, limits).await {
                Ok((mut state, n)) => {
                    state.validators = validators;
                    total += n;
                    return Ok((Arc::new(state), report("deltas", total, started, None)));
                }
                Err(e) => {
                    tracing::info!(notify, error = %e, "RRDP deltas failed; falling back to the snapshot");
                    fallback = Some(e.to_string());
                }
            }
        }
        Plan::Snapshot(why) => {
            if held.is_some() {
                fallback = Some(why.to_string());
            }
        }
    }
    let snap_uri = nf.snapshot().uri().to_string();
    let body = fetch_all(d, &[(snap_uri.clone(), nf.snapshot().hash())], limits.bulk)
        .await?
        .remove(0);
    total += body.len() as u64;
    let mut p = SnapshotInto {
        session: nf.session_id().to_string(),
        serial: nf.serial(),
        objects: BTreeMap::new(),
        limits,
    };
    let body2 = body.clone();
    let (objects, ()) = tokio::task::spawn_blocking(move || {
        let r = p.process(&body2[..]);
        (std::mem::take(&mut p.objects), r)
    })
    .await
    .map(|(o, r)| r.map(|_| (o, ())))
    .map_err(|e| invalid(&snap_uri, e.to_string()))?
    .map_err(|e: ApplyError| invalid(&snap_uri, format!("snapshot: {e}")))?;
    let state = RepoState {
        notify: notify.into(),
        session: nf.session_id().to_string(),
        serial: nf.serial(),
        objects,
        validators,
    };
    Ok((Arc::new(state), report("snapshot", total, started, fallback)))
}

fn report(how: &'static str, bytes: u64, started: std::time::Instant, fallback: Option<String>) -> SyncReport {
    SyncReport {
        how,
        bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
        fallback,
    }
}

async fn apply_deltas(
    d: &impl Download,
    base: &RepoState,
    list: &[(u64, String, String)],
    nf: &NotificationFile,
    limits: RrdpLimits,
) -> Result<(RepoState, u64), RrdpError> {
    let mut objects = base.objects.clone();
    let mut total = 0;
    let mut files = Vec::with_capacity(list.len());
    for (_, u, hash_hex) in list {
        let hash: Hash = hash_hex.parse().map_err(|_| RrdpError::Invalid {
            uri: u.clone(),
            why: "bad hash".into(),
        })?;
        files.push((u.clone(), hash));
    }
    let bodies = fetch_all(d, &files, limits.bulk).await?;
    for ((serial, u, _), body) in list.iter().zip(bodies) {
        total += body.len() as u64;
        let mut p = DeltaInto {
            session: nf.session_id().to_string(),
            serial: *serial,
            objects,
            limits,
        };
        objects = tokio::task::spawn_blocking(move || p.process(&body[..]).map(|_| p.objects))
            .await
            .map_err(|e| RrdpError::Invalid {
                uri: u.clone(),
                why: e.to_string(),
            })?
            .map_err(|e| RrdpError::Invalid {
                uri: u.clone(),
                why: format!("delta {serial}: {e}"),
            })?;
    }
    Ok((
        RepoState {
            notify: base.notify.clone(),
            session: base.session.clone(),
            serial: nf.serial(),
            objects,
            validators: Validators::default(),
        },
        total,
    ))
}

/// Applying a snapshot or delta broke a rule.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Process(#[from] ProcessError),
    #[error("{0}")]
    Rule(String),
}

fn read_object(data: &mut ObjectReader, limits: &RrdpLimits) -> Result<Bytes, ApplyError> {
    let mut v = Vec::new();
    data.take(limits.object_bytes_max + 1)
        .read_to_end(&mut v)
        .map_err(ProcessError::from)?;
    if v.len() as u64 > limits.object_bytes_max {
        return Err(ApplyError::Rule(format!(
            "an object larger than {} bytes",
            limits.object_bytes_max
        )));
    }
    Ok(Bytes::from(v))
}

struct SnapshotInto {
    session: String,
    serial: u64,
    objects: BTreeMap<String, Bytes>,
    limits: RrdpLimits,
}

impl ProcessSnapshot for SnapshotInto {
    type Err = ApplyError;
    fn meta(&mut self, session_id: uuid::Uuid, serial: u64) -> Result<(), ApplyError> {
        if session_id.to_string() != self.session || serial != self.serial {
            return Err(ApplyError::Rule(format!(
                "snapshot is {session_id}/{serial}, the notification says {}/{}",
                self.session, self.serial
            )));
        }
        Ok(())
    }
    fn publish(&mut self, uri: uri::Rsync, data: &mut ObjectReader) -> Result<(), ApplyError> {
        let b = read_object(data, &self.limits)?;
        if self.objects.len() >= self.limits.objects_max {
            return Err(ApplyError::Rule(format!(
                "more than {} objects",
                self.limits.objects_max
            )));
        }
        if self.objects.insert(uri.to_string(), b).is_some() {
            return Err(ApplyError::Rule(format!("{uri} published twice")));
        }
        Ok(())
    }
}

struct DeltaInto {
    session: String,
    serial: u64,
    objects: BTreeMap<String, Bytes>,
    limits: RrdpLimits,
}

impl ProcessDelta for DeltaInto {
    type Err = ApplyError;
    fn meta(&mut self, session_id: uuid::Uuid, serial: u64) -> Result<(), ApplyError> {
        if session_id.to_string() != self.session || serial != self.serial {
            return Err(ApplyError::Rule(format!(
                "delta is {session_id}/{serial}, expected {}/{}",
                self.session, self.serial
            )));
        }
        Ok(())
    }
    fn publish(&mut self, uri: uri::Rsync, hash: Option<Hash>, data: &mut ObjectReader) -> Result<(), ApplyError> {
        let key = uri.to_string();
        match (hash, self.objects.get(&key)) {
            (None, Some(_)) => return Err(ApplyError::Rule(format!("{uri} published without a hash but exists"))),
            (Some(_), None) => return Err(ApplyError::Rule(format!("{uri} updated but not held"))),
            (Some(h), Some(cur)) if !h.matches(cur) => {
                return Err(ApplyError::Rule(format!("{uri}: update hash is not the held object's")))
            }
            _ => {}
        }
        let b = read_object(data, &self.limits)?;
        if self.objects.len() >= self.limits.objects_max && !self.objects.contains_key(&key) {
            return Err(ApplyError::Rule(format!(
                "more than {} objects",
                self.limits.objects_max
            )));
        }
        self.objects.insert(key, b);
        Ok(())
    }
    fn withdraw(&mut self, uri: uri::Rsync, hash: Hash) -> Result<(), ApplyError> {
        match self.objects.get(&uri.to_string()) {
            Some(cur) if hash.matches(cur) => {
                self.objects.remove(&uri.to_string());
                Ok(())
            }
            Some(_) => Err(ApplyError::Rule(format!(
                "{uri}: withdraw hash is not the held object's"
            ))),
            None => Err(ApplyError::Rule(format!("{uri} withdrawn but not held"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nf(session: &str, serial: u64, deltas: &[u64]) -> NotificationFile {
        let mut xml = format!(
            r#"<notification xmlns="http://www.ripe.net/rpki/rrdp" version="1" session_id="{session}" serial="{serial}">
<snapshot uri="https://h/s.xml" hash="{h}"/>"#,
            h = "00".repeat(32)
        );
        for d in deltas {
            xml += &format!(
                r#"<delta serial="{d}" uri="https://h/d{d}.xml" hash="{h}"/>"#,
                h = "11".repeat(32)
            );
        }
        xml += "</notification>";
        NotificationFile::parse(xml.as_bytes()).unwrap()
    }

    const S1: &str = "9df4b597-af9e-4dca-bdda-719cce2c4e28";
    const S2: &str = "0df4b597-af9e-4dca-bdda-719cce2c4e28";

    #[test]
    fn deltas_only_with_the_same_session_and_no_gap() {
        let n = nf(S1, 5, &[3, 4, 5]);
        assert_eq!(plan(None, &n, 100), Plan::Snapshot("no state held"));
        assert_eq!(plan(Some((S2, 4)), &n, 100), Plan::Snapshot("session changed"));
        assert_eq!(plan(Some((S1, 5)), &n, 100), Plan::Unchanged);
        assert_eq!(plan(Some((S1, 6)), &n, 100), Plan::Snapshot("serial went backwards"));
        match plan(Some((S1, 3)), &n, 100) {
            Plan::Deltas(d) => assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), [4, 5]),
            other => panic!("{other:?}"),
        }
        // Our serial 1 needs delta 2, which is not listed.
        assert_eq!(
            plan(Some((S1, 1)), &n, 100),
            Plan::Snapshot("deltas do not reach our serial without a gap")
        );
        // A gap in the middle.
        let gap = nf(S1, 5, &[3, 5]);
        assert!(matches!(plan(Some((S1, 2)), &gap, 100), Plan::Snapshot(_)));
        // Over the delta limit.
        assert_eq!(plan(Some((S1, 2)), &n, 2), Plan::Snapshot("more deltas than the limit"));
    }
}
