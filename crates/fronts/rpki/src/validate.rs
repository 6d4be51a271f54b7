//! Top-down validation (RFC 6487, 9286, 6482): from each trust anchor's
//! certificate, every CA's publication point in turn — its manifest, the
//! CRL the manifest names, every listed file's hash — then child CA
//! certificates (recursively), ROAs into VRPs and ASPA objects into
//! attestations, each attestation with its expiry (the earliest notAfter
//! and CRL nextUpdate on its chain, see [`crate::aspas`]). A publication
//! point that
//! fails as a whole (RFC 9286 §6) falls back to its last good objects; the
//! walk also reports the RRDP repositories it needed and did not have, so
//! the caller can fetch them and walk again.
//!
//! Synchronous and pure apart from the clock the `rpki` crate reads: the
//! caller gives the repositories' objects. Must never: fetch, follow a CA
//! loop, go deeper than [`DEPTH_MAX`], or take a VRP from an object the
//! manifest does not list with its hash.

use crate::rrdp::RepoState;
use crate::vrps::{Vrp, VrpSet};
use bytes::Bytes;
use rpki::repository::aspa::Aspa;
use rpki::repository::cert::{Cert, ResourceCert};
use rpki::repository::crl::Crl;
use rpki::repository::error::{ValidationError, VerificationError};
use rpki::repository::manifest::{Manifest, ManifestHash};
use rpki::repository::roa::Roa;
use rpki::repository::tal::Tal;
use rpki::uri;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Deepest CA chain below a trust anchor.
pub const DEPTH_MAX: usize = 32;
/// Most CAs in one walk.
pub const CAS_MAX: usize = 200_000;
/// Most files one manifest may list.
pub const MANIFEST_FILES_MAX: usize = 100_000;

/// A publication point's objects (rsync URI → content) when it last
/// validated.
pub type PpObjects = BTreeMap<String, Bytes>;

/// What one walk found.
#[derive(Debug, Default)]
pub struct WalkResult {
    pub vrps: VrpSet,
    pub aspas: crate::aspas::AspaSet,
    /// RRDP notification URIs a CA named that the walk had no state for.
    pub wanted: BTreeSet<String>,
    /// Publication points: manifest URI → what happened.
    pub pps: BTreeMap<String, PpStatus>,
    /// CAs with no RRDP notification URI (rsync only; out of scope).
    pub rsync_only: usize,
    /// Repository → the trust anchor it was found under.
    pub repo_ta: BTreeMap<String, String>,
}

/// How a publication point fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PpStatus {
    Valid {
        notify: String,
    },
    /// Failed now; its last good objects were used.
    LastGood {
        notify: String,
        why: String,
    },
    Failed {
        notify: String,
        why: String,
    },
    /// Its repository has not been fetched yet.
    Missing {
        notify: String,
    },
}

/// A publication point cannot be used. Nothing of it was kept.
#[derive(Debug, thiserror::Error)]
pub enum PpError {
    #[error("{0}")]
    Rule(String),
}

fn rule(m: impl Into<String>) -> PpError {
    PpError::Rule(m.into())
}

/// Validates a trust anchor certificate fetched for `tal`: it must carry
/// the TAL's key and be a valid self-signed RPKI CA certificate.
pub fn trust_anchor(tal: &Tal, der: Bytes) -> Result<ResourceCert, PpError> {
    let cert = Cert::decode(der).map_err(|e| rule(format!("TA certificate: {e}")))?;
    if cert.subject_public_key_info() != tal.key_info() {
        return Err(rule("TA certificate key is not the TAL's"));
    }
    cert.validate_ta(tal.info().clone(), false)
        .map_err(|e: ValidationError| rule(format!("TA certificate: {e}")))
}

/// The walk over one trust anchor's tree.
pub struct Walker<'a> {
    pub repos: &'a BTreeMap<String, Arc<RepoState>>,
    pub last_good: &'a mut BTreeMap<String, PpObjects>,
    pub ta_name: String,
    pub out: &'a mut WalkResult,
    seen: BTreeSet<Vec<u8>>,
    cas: usize,
}

struct PpOut {
    vrps: Vec<Vrp>,
    aspas: Vec<crate::aspas::Aspa>,
    /// Valid child CAs, each with its chain's expiry (Unix seconds).
    children: Vec<(ResourceCert, i64)>,
    objects: PpObjects,
}

/// A certificate's notAfter, Unix seconds.
fn not_after_s(cert: &Cert) -> i64 {
    cert.validity().not_after().timestamp()
}

impl<'a> Walker<'a> {
    pub fn new(
        repos: &'a BTreeMap<String, Arc<RepoState>>,
        last_good: &'a mut BTreeMap<String, PpObjects>,
        ta_name: &str,
        out: &'a mut WalkResult,
    ) -> Self {
        Walker {
            repos,
            last_good,
            ta_name: ta_name.into(),
            out,
            seen: BTreeSet::new(),
            cas: 0,
        }
    }

    /// Walks the tree under `ca` (a trust anchor first).
    pub fn walk(&mut self, ca: ResourceCert) {
        let expires_s = not_after_s(&ca);
        // Each CA with the earliest notAfter and CRL nextUpdate above it
        // (its own notAfter included, its own CRL not yet).
        let mut stack = vec![(ca, 0usize, expires_s)];
        while let Some((ca, depth, expires_s)) = stack.pop() {
            let ski = ca.subject_key_identifier().as_slice().to_vec();
            if depth > DEPTH_MAX || self.cas >= CAS_MAX || !self.seen.insert(ski) {
                continue;
            }
            self.cas += 1;
            for (child, child_expires_s) in self.publication_point(&ca, expires_s) {
                stack.push((child, depth + 1, child_expires_s));
            }
        }
    }

    /// One CA's publication point; returns its valid child CAs with their
    /// chains' expiry.
    fn publication_point(&mut self, ca: &ResourceCert, expires_s: i64) -> Vec<(ResourceCert, i64)> {
        let (Some(notify), Some(mft)) = (ca.rpki_notify(), ca.rpki_manifest()) else {
            self.out.rsync_only += 1;
            return Vec::new();
        };
        let (notify, mft_uri) = (notify.to_string(), mft.to_string());
        self.out
            .repo_ta
            .entry(notify.clone())
            .or_insert_with(|| self.ta_name.clone());
        let Some(repo) = self.repos.get(&notify) else {
            self.out.wanted.insert(notify.clone());
            self.out.pps.insert(mft_uri, PpStatus::Missing { notify });
            return Vec::new();
        };
        let current = process(ca, &|u| repo.objects.get(u).cloned(), &self.ta_name, expires_s);
        let (result, status) = match current {
            Ok(out) => {
                self.last_good.insert(mft_uri.clone(), out.objects.clone());
                (Some(out), PpStatus::Valid { notify })
            }
            Err(e) => match self.last_good.get(&mft_uri) {
                Some(good) => match process(ca, &|u| good.get(u).cloned(), &self.ta_name, expires_s) {
                    Ok(out) => (
                        Some(out),
                        PpStatus::LastGood {
                            notify,
                            why: e.to_string(),
                        },
                    ),
                    Err(e2) => (
                        None,
                        PpStatus::Failed {
                            notify,
                            why: format!("{e}; last good: {e2}"),
                        },
                    ),
                },
                None => (
                    None,
                    PpStatus::Failed {
                        notify,
                        why: e.to_string(),
                    },
                ),
            },
        };
        if let PpStatus::Failed { why, .. } | PpStatus::LastGood { why, .. } = &status {
            tracing::info!(manifest = %mft_uri, why, "publication point not valid as fetched");
        }
        self.out.pps.insert(mft_uri, status);
        match result {
            Some(out) => {
                self.out.vrps.extend(out.vrps);
                for a in out.aspas {
                    crate::aspas::merge(&mut self.out.aspas, a);
                }
                out.children
            }
            None => Vec::new(),
        }
    }
}

/// A manifest file name: `[A-Za-z0-9_-]+` then `.` and three letters.
fn valid_file_name(name: &[u8]) -> bool {
    let Some(dot) = name.iter().position(|b| *b == b'.') else {
        return false;
    };
    let (stem, ext) = (&name[..dot], &name[dot + 1..]);
    !stem.is_empty()
        && stem
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        && ext.len() == 3
        && ext.iter().all(u8::is_ascii_lowercase)
}

/// Validates one publication point from `get` (rsync URI → content);
/// `expires_s` is the earliest notAfter and CRL nextUpdate above it.
fn process(ca: &ResourceCert, get: &dyn Fn(&str) -> Option<Bytes>, ta: &str, expires_s: i64) -> Result<PpOut, PpError> {
    let mft_uri = ca.rpki_manifest().ok_or_else(|| rule("no manifest URI"))?;
    let repo_uri = ca.ca_repository().ok_or_else(|| rule("no caRepository URI"))?;
    let mft_bytes = get(mft_uri.as_str()).ok_or_else(|| rule(format!("{mft_uri} not in the repository")))?;
    let mut objects = PpObjects::new();
    objects.insert(mft_uri.to_string(), mft_bytes.clone());
    let mft = Manifest::decode(mft_bytes, false).map_err(|e| rule(format!("{mft_uri}: {e}")))?;
    let (mft_ee, content) = mft.validate(ca, false).map_err(|e| rule(format!("{mft_uri}: {e}")))?;
    if content.is_stale() {
        return Err(rule(format!("{mft_uri}: stale (nextUpdate passed)")));
    }
    if content.len() > MANIFEST_FILES_MAX {
        return Err(rule(format!("{mft_uri}: more than {MANIFEST_FILES_MAX} files")));
    }
    // Every listed file present with its hash, or the whole point fails.
    let mut files: Vec<(uri::Rsync, Bytes)> = Vec::new();
    let alg = content.file_hash_alg();
    for item in content.iter() {
        let (name, hash) = item.into_pair();
        if !valid_file_name(name.as_ref()) {
            return Err(rule(format!(
                "{mft_uri}: bad file name {:?}",
                String::from_utf8_lossy(name.as_ref())
            )));
        }
        let u = repo_uri
            .join(name.as_ref())
            .map_err(|e| rule(format!("{mft_uri}: {e}")))?;
        let data = get(u.as_str()).ok_or_else(|| rule(format!("{u} listed but not in the repository")))?;
        ManifestHash::new(hash, alg)
            .verify(&data)
            .map_err(|_| rule(format!("{u}: hash is not the manifest's")))?;
        objects.insert(u.to_string(), data.clone());
        files.push((u, data));
    }
    // The CRL: the one the manifest's EE names, listed on the manifest.
    let crl_uri = mft_ee
        .crl_uri()
        .ok_or_else(|| rule(format!("{mft_uri}: EE has no CRL URI")))?;
    let crl_data = files
        .iter()
        .find(|(u, _)| u == crl_uri)
        .map(|(_, d)| d.clone())
        .ok_or_else(|| rule(format!("{crl_uri} is not on the manifest")))?;
    let mut crl = Crl::decode(crl_data).map_err(|e| rule(format!("{crl_uri}: {e}")))?;
    crl.verify_signature(ca.subject_public_key_info())
        .map_err(|e| rule(format!("{crl_uri}: {e}")))?;
    if crl.is_stale() {
        return Err(rule(format!("{crl_uri}: stale (nextUpdate passed)")));
    }
    crl.cache_serials();
    let expires_s = expires_s.min(crl.next_update().timestamp());
    if crl.contains(mft_ee.serial_number()) {
        return Err(rule(format!("{mft_uri}: its EE certificate is revoked")));
    }
    let mut out = PpOut {
        vrps: Vec::new(),
        aspas: Vec::new(),
        children: Vec::new(),
        objects,
    };
    for (u, data) in files {
        let s = u.as_str();
        if s.ends_with(".cer") {
            let Ok(cert) = Cert::decode(data) else {
                tracing::debug!(uri = s, "certificate does not decode; skipped");
                continue;
            };
            if !cert.is_ca() || crl.contains(cert.serial_number()) {
                continue;
            }
            match cert.validate_ca(ca, false) {
                Ok(child) => {
                    let child_expires_s = expires_s.min(not_after_s(&child));
                    out.children.push((child, child_expires_s));
                }
                Err(e) => tracing::debug!(uri = s, error = %e, "CA certificate invalid; skipped"),
            }
        } else if s.ends_with(".roa") {
            let Ok(roa) = Roa::decode(data, false) else {
                tracing::debug!(uri = s, "ROA does not decode; skipped");
                continue;
            };
            let checked = roa.process(ca, false, |ee| {
                if crl.contains(ee.serial_number()) {
                    Err(VerificationError::new("EE certificate revoked").into())
                } else {
                    Ok(())
                }
            });
            match checked {
                Ok((_, content)) => {
                    let asn = content.as_id().into_u32();
                    for a in content.iter() {
                        out.vrps.push(Vrp {
                            asn,
                            addr: a.address(),
                            len: a.address_length(),
                            max_len: a.max_length(),
                            ta: ta.to_string(),
                        });
                    }
                }
                Err(e) => tracing::debug!(uri = s, error = %e, "ROA invalid; skipped"),
            }
        } else if s.ends_with(".asa") {
            let Ok(aspa) = Aspa::decode(data, false) else {
                tracing::debug!(uri = s, "ASPA does not decode; skipped");
                continue;
            };
            let checked = aspa.process(ca, false, |ee| {
                if crl.contains(ee.serial_number()) {
                    Err(VerificationError::new("EE certificate revoked").into())
                } else {
                    Ok(())
                }
            });
            match checked {
                Ok((ee, content)) => out.aspas.push(crate::aspas::Aspa {
                    customer: content.customer_as().into_u32(),
                    providers: content.provider_as_set().iter().map(|a| a.into_u32()).collect(),
                    ta: ta.to_string(),
                    expires_s: expires_s.min(not_after_s(&ee)),
                }),
                Err(e) => tracing::debug!(uri = s, error = %e, "ASPA invalid; skipped"),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_file_names_follow_the_profile() {
        for ok in ["a.roa", "A-b_9.cer", "x.crl"] {
            assert!(valid_file_name(ok.as_bytes()), "{ok}");
        }
        for bad in ["", ".roa", "a.ROA", "a.b.roa", "../x.roa", "a/b.roa", "a.ro", "a b.roa"] {
            assert!(!valid_file_name(bad.as_bytes()), "{bad}");
        }
    }
}
