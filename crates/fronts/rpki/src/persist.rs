//! The console's state on disk (`state_dir`), so a console killed and
//! restarted picks up where it was instead of fetching every snapshot
//! again: each repository's RRDP state (session, serial, conditional-GET
//! validators, objects), the last good objects of every publication point,
//! the sync nodes marked for lying, and each trust anchor's last valid
//! certificate (so a restarted console validates while the TA's URI is
//! unreachable; the console checks it against the TAL and the clock again
//! on load).
//!
//! Layout: `blobs/<BLAKE3 hex>` holds each object body once; `repos/<repo
//! id>.json` and `last_good.json` map URIs to blob names; `marked.json`
//! lists node ids; `ta/<key>.cer` is the certificate of the TAL whose key
//! hashes (BLAKE3, hex) to `key`. Every file is written to a temporary name, synced and
//! renamed, and blobs before the index that names them, so a kill at any
//! point leaves the last complete state. Blobs no index names are removed
//! after each save. On load every blob is hashed again; a repository with a
//! missing or damaged blob is dropped (its snapshot is fetched again).
//!
//! Must never: load a body whose hash is not its name, read a file larger
//! than its limit, or write an index before the blobs it names.

use crate::fetch::Validators;
use crate::kinds::repo_id;
use crate::rrdp::RepoState;
use crate::validate::PpObjects;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest index file read (a repository's or the last-good map), bytes.
pub const INDEX_BYTES_MAX: u64 = 512 << 20;
/// Largest blob read, bytes (the RRDP object limit).
pub const BLOB_BYTES_MAX: u64 = 8 << 20;
/// Most repository index files read.
pub const REPOS_MAX: usize = crate::console::REPOS_MAX;
/// Largest trust anchor certificate file read, bytes.
pub const TA_BYTES_MAX: u64 = crate::console::TA_CERT_BYTES_MAX;

/// The state could not be read or written. Reading: nothing was loaded
/// from the file named. Writing: the files already renamed stay, the rest
/// keep their previous version.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Bad { path: String, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A repository's index file.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoIndex {
    notify: String,
    session: String,
    serial: u64,
    validators: Validators,
    /// rsync URI → blob name.
    objects: BTreeMap<String, String>,
}

/// What was loaded.
#[derive(Default)]
pub struct Loaded {
    pub repos: BTreeMap<String, Arc<RepoState>>,
    pub last_good: BTreeMap<String, PpObjects>,
    pub marked: BTreeSet<String>,
    /// Repositories dropped for a damaged or missing file.
    pub dropped: usize,
}

/// The state folder and what was last written there.
pub struct Persist {
    dir: PathBuf,
    /// notify → (session, serial, validators) last written.
    saved: BTreeMap<String, (String, u64, Validators)>,
    /// notify → the blob names its index holds.
    repo_blobs: BTreeMap<String, BTreeSet<String>>,
    last_good: BTreeMap<String, BTreeMap<String, String>>,
    marked: BTreeSet<String>,
    /// TAL key digest → the BLAKE3 name of the certificate last written.
    tas: BTreeMap<String, String>,
}

/// The file key of a TAL: BLAKE3 (hex) of its public key's DER.
pub fn ta_key(tal: &rpki::repository::tal::Tal) -> String {
    name(&tal.key_info().to_info_bytes())
}

fn name(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, PersistError> {
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    if len > max {
        return Err(PersistError::Bad {
            path: path.display().to_string(),
            why: format!("{len} bytes, more than {max}"),
        });
    }
    std::fs::read(path).map_err(io(path))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PersistError> {
    let bytes = read_limited(path, INDEX_BYTES_MAX)?;
    serde_json::from_slice(&bytes).map_err(|e| PersistError::Bad {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Persist {
    /// Opens (creating) the state folder.
    pub fn open(dir: &Path) -> Result<Persist, PersistError> {
        for d in [dir.to_path_buf(), dir.join("blobs"), dir.join("repos"), dir.join("ta")] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        Ok(Persist {
            dir: dir.to_path_buf(),
            saved: BTreeMap::new(),
            repo_blobs: BTreeMap::new(),
            last_good: BTreeMap::new(),
            marked: BTreeSet::new(),
            tas: BTreeMap::new(),
        })
    }

    fn ta_path(&self, key: &str) -> PathBuf {
        self.dir.join("ta").join(format!("{key}.cer"))
    }

    /// The trust anchor certificate saved for the TAL whose [`ta_key`] is
    /// `key`, if there is one. Not checked here: the caller validates it.
    pub fn load_ta(&mut self, key: &str) -> Result<Option<Bytes>, PersistError> {
        let path = self.ta_path(key);
        if !path.exists() {
            return Ok(None);
        }
        let b = read_limited(&path, TA_BYTES_MAX)?;
        self.tas.insert(key.to_string(), name(&b));
        Ok(Some(Bytes::from(b)))
    }

    fn blob(&self, n: &str) -> Result<Bytes, PersistError> {
        let path = self.dir.join("blobs").join(n);
        let b = read_limited(&path, BLOB_BYTES_MAX)?;
        if name(&b) != n {
            return Err(PersistError::Bad {
                path: path.display().to_string(),
                why: "content does not match its hash".into(),
            });
        }
        Ok(Bytes::from(b))
    }

    fn objects(&self, index: &BTreeMap<String, String>) -> Result<PpObjects, PersistError> {
        index.iter().map(|(u, n)| Ok((u.clone(), self.blob(n)?))).collect()
    }

    /// Everything held, checked; what is damaged is left out and logged.
    pub fn load(&mut self) -> Loaded {
        let mut out = Loaded::default();
        let repos_dir = self.dir.join("repos");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&repos_dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|x| x == "json"));
        files.sort();
        files.truncate(REPOS_MAX);
        for p in files {
            let loaded = read_json::<RepoIndex>(&p).and_then(|ix| {
                if p.file_stem().and_then(|s| s.to_str()) != Some(repo_id(&ix.notify).as_str()) {
                    return Err(PersistError::Bad {
                        path: p.display().to_string(),
                        why: "file name is not the repository's id".into(),
                    });
                }
                let objects = self.objects(&ix.objects)?;
                Ok((ix, objects))
            });
            match loaded {
                Ok((ix, objects)) => {
                    self.saved.insert(
                        ix.notify.clone(),
                        (ix.session.clone(), ix.serial, ix.validators.clone()),
                    );
                    self.repo_blobs
                        .insert(ix.notify.clone(), ix.objects.values().cloned().collect());
                    let state = RepoState {
                        notify: ix.notify.clone(),
                        session: ix.session,
                        serial: ix.serial,
                        objects,
                        validators: ix.validators,
                    };
                    out.repos.insert(ix.notify, Arc::new(state));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "repository state not loaded; its snapshot will be fetched");
                    out.dropped += 1;
                }
            }
        }
        let lg = self.dir.join("last_good.json");
        if lg.exists() {
            match read_json::<BTreeMap<String, BTreeMap<String, String>>>(&lg) {
                Ok(index) => {
                    for (mft, ix) in index {
                        match self.objects(&ix) {
                            Ok(o) => {
                                out.last_good.insert(mft.clone(), o);
                                self.last_good.insert(mft, ix);
                            }
                            Err(e) => tracing::warn!(error = %e, "last good objects not loaded"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "last good objects not loaded"),
            }
        }
        let mk = self.dir.join("marked.json");
        if mk.exists() {
            match read_json::<BTreeSet<String>>(&mk) {
                Ok(m) => {
                    self.marked = m.clone();
                    out.marked = m;
                }
                Err(e) => tracing::warn!(error = %e, "marked sync nodes not loaded"),
            }
        }
        out
    }

    /// Writes each object's blob (unless held) and returns the index.
    fn index(&self, objects: &PpObjects) -> Result<BTreeMap<String, String>, PersistError> {
        objects
            .iter()
            .map(|(u, b)| {
                let n = name(b);
                let path = self.dir.join("blobs").join(&n);
                if !path.exists() {
                    write_atomic(&path, b)?;
                }
                Ok((u.clone(), n))
            })
            .collect()
    }

    /// Writes what changed since the last save; then removes blobs no
    /// index names. Blocking: run it off the async threads.
    pub fn save(
        &mut self,
        repos: &BTreeMap<String, Arc<RepoState>>,
        last_good: &BTreeMap<String, PpObjects>,
        marked: &BTreeSet<String>,
        tas: &BTreeMap<String, Bytes>,
    ) -> Result<(), PersistError> {
        let mut changed = false;
        for (key, der) in tas {
            let n = name(der);
            if self.tas.get(key) != Some(&n) {
                write_atomic(&self.ta_path(key), der)?;
                self.tas.insert(key.clone(), n);
                changed = true;
            }
        }
        for (n, st) in repos {
            let key = (st.session.clone(), st.serial, st.validators.clone());
            if self.saved.get(n) == Some(&key) {
                continue;
            }
            let ix = RepoIndex {
                notify: n.clone(),
                session: st.session.clone(),
                serial: st.serial,
                validators: st.validators.clone(),
                objects: self.index(&st.objects)?,
            };
            sync_dir(&self.dir.join("blobs"))?;
            let path = self.dir.join("repos").join(format!("{}.json", repo_id(n)));
            write_atomic(&path, &serde_json::to_vec(&ix).expect("serializes"))?;
            self.saved.insert(n.clone(), key);
            self.repo_blobs.insert(n.clone(), ix.objects.into_values().collect());
            changed = true;
        }
        let gone: Vec<String> = self.saved.keys().filter(|n| !repos.contains_key(*n)).cloned().collect();
        for n in gone {
            let path = self.dir.join("repos").join(format!("{}.json", repo_id(&n)));
            let _ = std::fs::remove_file(&path);
            self.saved.remove(&n);
            self.repo_blobs.remove(&n);
            changed = true;
        }
        if self.last_good_differs(last_good) {
            let index: BTreeMap<String, BTreeMap<String, String>> = last_good
                .iter()
                .map(|(m, o)| Ok((m.clone(), self.index(o)?)))
                .collect::<Result<_, PersistError>>()?;
            sync_dir(&self.dir.join("blobs"))?;
            write_atomic(
                &self.dir.join("last_good.json"),
                &serde_json::to_vec(&index).expect("serializes"),
            )?;
            self.last_good = index;
            changed = true;
        }
        if *marked != self.marked {
            write_atomic(
                &self.dir.join("marked.json"),
                &serde_json::to_vec(marked).expect("serializes"),
            )?;
            self.marked = marked.clone();
            changed = true;
        }
        if changed {
            sync_dir(&self.dir.join("ta"))?;
            sync_dir(&self.dir.join("repos"))?;
            sync_dir(&self.dir)?;
            self.sweep();
        }
        Ok(())
    }

    /// Whether the last-good objects differ from what was written.
    fn last_good_differs(&self, last_good: &BTreeMap<String, PpObjects>) -> bool {
        last_good.len() != self.last_good.len()
            || last_good.iter().any(|(m, o)| {
                let Some(ix) = self.last_good.get(m) else { return true };
                ix.len() != o.len() || o.iter().any(|(u, b)| ix.get(u).is_none_or(|n| *n != name(b)))
            })
    }

    /// Removes blobs that no saved index names.
    fn sweep(&self) {
        let mut live: BTreeSet<&String> = self.last_good.values().flat_map(|ix| ix.values()).collect();
        live.extend(self.repo_blobs.values().flatten());
        let Ok(rd) = std::fs::read_dir(self.dir.join("blobs")) else {
            return;
        };
        for e in rd.flatten() {
            let f = e.file_name();
            let f = f.to_string_lossy();
            if !live.contains(&f.to_string()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(notify: &str, serial: u64, objs: &[(&str, &str)]) -> Arc<RepoState> {
        Arc::new(RepoState {
            notify: notify.into(),
            session: "s1".into(),
            serial,
            objects: objs
                .iter()
                .map(|(u, b)| (u.to_string(), Bytes::from(b.to_string())))
                .collect(),
            validators: Validators {
                etag: Some("\"e1\"".into()),
                last_modified: None,
            },
        })
    }

    #[test]
    fn a_saved_state_loads_back_and_damage_drops_only_its_repository() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Persist::open(dir.path()).unwrap();
        let mut repos = BTreeMap::new();
        repos.insert(
            "https://a/n.xml".to_string(),
            state("https://a/n.xml", 3, &[("rsync://a/x.roa", "xa")]),
        );
        repos.insert(
            "https://b/n.xml".to_string(),
            state("https://b/n.xml", 5, &[("rsync://b/y.roa", "yb")]),
        );
        let mut lg = BTreeMap::new();
        lg.insert("rsync://a/m.mft".to_string(), repos["https://a/n.xml"].objects.clone());
        let marked: BTreeSet<String> = ["c4".to_string()].into();
        let tas: BTreeMap<String, Bytes> = [("k1".to_string(), Bytes::from_static(b"ta cert"))].into();
        p.save(&repos, &lg, &marked, &tas).unwrap();

        let mut reopened = Persist::open(dir.path()).unwrap();
        assert_eq!(reopened.load_ta("k1").unwrap(), Some(Bytes::from_static(b"ta cert")));
        assert_eq!(reopened.load_ta("k2").unwrap(), None);
        std::fs::write(dir.path().join("ta/k3.cer"), vec![0u8; TA_BYTES_MAX as usize + 1]).unwrap();
        assert!(
            matches!(reopened.load_ta("k3"), Err(PersistError::Bad { .. })),
            "over the bound"
        );
        let got = reopened.load();
        assert_eq!(got.repos.len(), 2);
        assert_eq!(got.repos["https://b/n.xml"].serial, 5);
        assert_eq!(got.repos["https://a/n.xml"].objects, repos["https://a/n.xml"].objects);
        assert_eq!(
            got.repos["https://a/n.xml"].validators,
            repos["https://a/n.xml"].validators
        );
        assert_eq!(got.last_good, lg);
        assert_eq!(got.marked, marked);

        // A new serial replaces the old objects; the old blob is swept.
        repos.insert(
            "https://b/n.xml".to_string(),
            state("https://b/n.xml", 6, &[("rsync://b/y.roa", "yb2")]),
        );
        p.save(&repos, &lg, &marked, &tas).unwrap();
        assert!(!dir.path().join("blobs").join(name(b"yb")).exists());

        // A damaged blob drops its repository only.
        std::fs::write(dir.path().join("blobs").join(name(b"yb2")), b"tampered").unwrap();
        let got = Persist::open(dir.path()).unwrap().load();
        assert_eq!(got.dropped, 1);
        assert_eq!(got.repos.keys().collect::<Vec<_>>(), vec!["https://a/n.xml"]);
    }
}
