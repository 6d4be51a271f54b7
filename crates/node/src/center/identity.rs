//! The center's identity key in its data directory: loaded, or created on
//! first start and written atomically, readable by the owner only.
//!
//! Must never: overwrite an existing key, or leave a key file readable by
//! others.

use super::{OpenError, KEY_FILE};
use regmesh_core::sign::key_hex;
use regmesh_core::Identity;
use std::path::Path;

/// Loads the identity key from `dir`, creating it (mode 0600) on first start.
pub fn load_or_create_identity(dir: &Path) -> Result<Identity, OpenError> {
    let err = |msg: String| OpenError::DataDir {
        path: dir.display().to_string(),
        msg,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(pem) => Identity::from_pkcs8_pem(&pem).map_err(|e| err(format!("{KEY_FILE}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| err(format!("no OS randomness: {e}")))?;
            let id = Identity::from_seed(seed);
            let pem = id.to_pkcs8_pem().map_err(|e| err(e.to_string()))?;
            write_private_file(&path, pem.as_bytes()).map_err(|e| err(format!("{KEY_FILE}: {e}")))?;
            tracing::info!(key = %key_hex(&id.verifying_key()), "created identity key {}", path.display());
            Ok(id)
        }
        Err(e) => Err(err(format!("{KEY_FILE}: {e}"))),
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir),
/// readable by the owner only.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
