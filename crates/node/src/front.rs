//! The seam for fronts: what a front declares to the node (its name, its
//! kinds, its client-API routes, the peer message types it handles, the
//! background tasks it runs) and how the node picks the fronts a config
//! enables from its `[fronts.NAME]` sections.
//!
//! A front is one crate under `crates/fronts/`; it talks to the node only
//! through the [`NodeHandle`] it is given. Must never: reach into the center,
//! the mesh or the store directly, write kinds it did not declare, or serve
//! outside what it declared here.

use crate::config::ConfigError;
use crate::handle::NodeHandle;
use crate::messages::PeerMessage;
use axum::Router;
use regmesh_core::Kind;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

/// A background task of a front (a UDP server, a refresh loop). The node
/// spawns it after the API serves and aborts it at shutdown; a task that
/// wants to end cleanly watches [`NodeHandle::closing`].
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Longest front name, bytes.
pub const FRONT_NAME_BYTES_MAX: usize = 32;

/// A front could not be configured or started. The node did not start.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// Its `[fronts.NAME]` section is wrong.
    #[error("fronts.{front}: {message}")]
    Config { front: String, message: String },
    /// Something it set up at start failed (a socket, a registration).
    #[error("front {front}: {message}")]
    Start { front: String, message: String },
}

impl FrontError {
    pub fn config(front: &str, message: impl Into<String>) -> Self {
        FrontError::Config {
            front: front.into(),
            message: message.into(),
        }
    }
    pub fn start(front: &str, message: impl Into<String>) -> Self {
        FrontError::Start {
            front: front.into(),
            message: message.into(),
        }
    }
}

/// A front's `[fronts.NAME]` section as the front reads it: the keys as
/// written (without the node's `enabled`), and where relative paths in it
/// start (the config file's folder).
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub table: toml::Table,
    pub base_dir: Option<PathBuf>,
}

impl Section {
    /// `p` resolved against the config file's folder if it is relative.
    pub fn path(&self, p: &Path) -> PathBuf {
        match &self.base_dir {
            Some(b) if p.is_relative() && !b.as_os_str().is_empty() => b.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// A front: a set of kinds plus a protocol adapter (HTTP routes, peer
/// messages, tasks). The node calls, in this order: `configure`, `kinds`
/// (possibly more than once: it must return the same set each time), then,
/// with its handle, `peer_messages`, `routes`, `tasks` (once each).
pub trait Front: Send + 'static {
    /// Its name: `[a-z0-9_-]{1,32}`, the `[fronts.NAME]` section it reads.
    fn name(&self) -> &'static str;

    /// Whether it runs when the config has no section for it. Default: no.
    fn on_by_default(&self) -> bool {
        false
    }

    /// Reads its `[fronts.NAME]` section (empty when the section is
    /// absent). Default: refuses any key.
    fn configure(&mut self, section: &Section) -> Result<(), FrontError> {
        match section.table.keys().next() {
            None => Ok(()),
            Some(k) => Err(FrontError::config(self.name(), format!("unknown key {k:?}"))),
        }
    }

    /// The kinds it owns. Each says how a new id is created and where its
    /// lease lives ([`Kind::creation`], [`Kind::lease`]). Only these may be
    /// written through its handle.
    fn kinds(&self) -> Vec<Arc<dyn Kind>>;

    /// Peer message types it handles (NOTIFY/RFI with its own type names).
    fn peer_messages(&self, _node: &NodeHandle) -> Vec<PeerMessage> {
        Vec::new()
    }

    /// Its client-API routes, merged into the node's API behind the node's
    /// auth, load shedding and response counting. Must not overlap another
    /// front's or the node's routes, and must not set a fallback.
    fn routes(&self, _node: &NodeHandle) -> Router {
        Router::new()
    }

    /// OpenAPI 3.1 path items of its routes (path -> item), served in
    /// `/v1/openapi.json` (helpers in [`crate::openapi`]). Default: none.
    fn openapi_paths(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// Background tasks it runs. Set up what can fail here (bind a socket
    /// with `std::net`, open a file) and return the error: the node then does
    /// not start.
    fn tasks(&self, _node: &NodeHandle) -> Result<Vec<Task>, FrontError> {
        Ok(Vec::new())
    }
}

/// Checks a front name: `[a-z0-9_-]{1,32}`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= FRONT_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks one `[fronts.NAME]` section as far as the node reads it.
pub fn check_section(name: &str, section: &toml::Value) -> Result<(), ConfigError> {
    if !valid_name(name) {
        return Err(ConfigError(format!(
            "fronts.{name:?}: a front name is 1 to {FRONT_NAME_BYTES_MAX} of a-z 0-9 _ -"
        )));
    }
    let t = section
        .as_table()
        .ok_or_else(|| ConfigError(format!("fronts.{name} must be a table ([fronts.{name}])")))?;
    if let Some(e) = t.get("enabled") {
        if !e.is_bool() {
            return Err(ConfigError(format!("fronts.{name}.enabled must be true or false")));
        }
    }
    Ok(())
}

/// The fronts `cfg` enables, configured, in registration order. A section
/// naming no registered front is refused, so is a front registered twice.
pub fn select(cfg: &crate::Config, fronts: Vec<Box<dyn Front>>) -> Result<Vec<Box<dyn Front>>, crate::StartError> {
    let mut names: Vec<&'static str> = Vec::new();
    for f in &fronts {
        let n = f.name();
        if !valid_name(n) || names.contains(&n) {
            return Err(FrontError::start(n, "invalid front name, or two fronts of this name").into());
        }
        names.push(n);
    }
    for (name, section) in &cfg.fronts {
        check_section(name, section)?;
        if !names.contains(&name.as_str()) {
            return Err(ConfigError(format!(
                "fronts.{name}: no such front in this build (it has: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
            .into());
        }
    }
    let mut out = Vec::new();
    for mut f in fronts {
        let (enabled, mut table) = match cfg.fronts.get(f.name()).and_then(toml::Value::as_table) {
            Some(t) => (
                t.get("enabled").and_then(toml::Value::as_bool).unwrap_or(true),
                t.clone(),
            ),
            None => (f.on_by_default(), toml::Table::new()),
        };
        if !enabled {
            continue;
        }
        table.remove("enabled");
        f.configure(&Section {
            table,
            base_dir: cfg.config_dir.clone(),
        })?;
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sections_and_paths() {
        assert!(valid_name("agent") && valid_name("rpki-sync_2"));
        assert!(!valid_name("") && !valid_name("Agent") && !valid_name(&"a".repeat(33)));
        let s = Section {
            table: toml::Table::new(),
            base_dir: Some(PathBuf::from("/etc/regmesh")),
        };
        assert_eq!(s.path(Path::new("tals/x.tal")), Path::new("/etc/regmesh/tals/x.tal"));
        assert_eq!(s.path(Path::new("/abs.tal")), Path::new("/abs.tal"));
        assert_eq!(Section::default().path(Path::new("x")), Path::new("x"));
    }
}
