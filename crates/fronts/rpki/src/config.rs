//! `[fronts.rpki]`: what a center's RPKI role is and how it fetches. Reads
//! the section the node hands over, checks every key, and resolves paths
//! against the config file's folder.
//!
//! Must never: open a file or a socket (the front does that at start), or
//! accept a key it does not know.

use crate::schedule::Algorithm;
use regmesh_node::front::{FrontError, Section};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default time between two validation runs at the console, seconds.
pub const REFRESH_S_DEFAULT: u64 = 600;
/// Shortest and longest `refresh_s`.
pub const REFRESH_S_MIN: u64 = 1;
pub const REFRESH_S_MAX: u64 = 86_400;
/// Most TAL files and most extra CA files.
pub const TALS_MAX: usize = 32;
pub const CA_CERTS_MAX: usize = 32;
/// Longest region or location text, bytes.
pub const LABEL_BYTES_MAX: usize = 64;
/// Most rows of the designated-assignment table.
pub const DESIGNATED_MAX: usize = 4096;
/// Default, shortest and longest `task_stall_ms`.
pub const TASK_STALL_MS_DEFAULT: u64 = 5_000;
pub const TASK_STALL_MS_MIN: u64 = 100;
pub const TASK_STALL_MS_MAX: u64 = 600_000;
/// Shortest `lease_s` of a sync node's record (the longest is
/// [`crate::kinds::NODE_LEASE_S_MAX`]).
pub const LEASE_S_MIN: u64 = 3;

const NAME: &str = crate::NAME;

/// What this center does in the relying party (document 001 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The console (RCN): knows every repository, schedules fetches,
    /// validates, serves VRPs and RTR.
    Console,
    /// A sync node (RSN): fetches repositories on the console's orders.
    Sync,
}

/// `[fronts.rpki]`, checked.
#[derive(Debug, Clone)]
pub struct RpkiConfig {
    pub role: Role,
    /// Trust anchor locators (RFC 8630 files), or folders whose `*.tal`
    /// files are read.
    pub tals: Vec<PathBuf>,
    /// Extra PEM root certificates trusted for repositories' HTTPS.
    pub ca_certs: Vec<PathBuf>,
    /// Accept `localhost`, IP literals and explicit ports in repository
    /// URIs (labs and tests only).
    pub allow_local_hosts: bool,
    pub algorithm: Algorithm,
    pub refresh_s: u64,
    /// The console's RTR listener (RFC 8210).
    pub rtr_listen: Option<SocketAddr>,
    /// RIR service region of this sync node (`afrinic`, `apnic`, `arin`,
    /// `lacnic`, `ripe`), for the region algorithm.
    pub region: Option<String>,
    /// Free-text location of this sync node (document 001 §3.1.1).
    pub location: Option<String>,
    /// The operator's table for the designated algorithm: repository host
    /// to sync-node center id.
    pub designated: Vec<(String, String)>,
    /// A sync node's console: the only center whose tasks it takes.
    pub console: Option<String>,
    /// The console's state folder (repository states, last good objects,
    /// marked nodes), kept across restarts; none: memory only.
    pub state_dir: Option<PathBuf>,
    /// How long the console waits for a sync node to answer one task
    /// message before it gives the task to another node, ms.
    pub task_stall_ms: u64,
    /// A sync node's record lease, seconds: how long the console keeps
    /// scheduling on it after its last record. None: three `refresh_s`.
    pub lease_s: Option<u64>,
}

impl RpkiConfig {
    /// The lease a sync node gives its record, seconds.
    pub fn node_lease_s(&self) -> u64 {
        self.lease_s
            .unwrap_or(self.refresh_s.saturating_mul(3))
            .clamp(LEASE_S_MIN, crate::kinds::NODE_LEASE_S_MAX)
    }
}

impl Default for RpkiConfig {
    fn default() -> Self {
        RpkiConfig {
            role: Role::Console,
            tals: Vec::new(),
            ca_certs: Vec::new(),
            allow_local_hosts: false,
            algorithm: Algorithm::Sequential,
            refresh_s: REFRESH_S_DEFAULT,
            rtr_listen: None,
            region: None,
            location: None,
            designated: Vec::new(),
            console: None,
            state_dir: None,
            task_stall_ms: TASK_STALL_MS_DEFAULT,
            lease_s: None,
        }
    }
}

fn err(m: impl Into<String>) -> FrontError {
    FrontError::config(NAME, m)
}

fn string(k: &str, v: &toml::Value) -> Result<String, FrontError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| err(format!("{k} must be a string")))
}

fn paths(k: &str, v: &toml::Value, max: usize, section: &Section) -> Result<Vec<PathBuf>, FrontError> {
    let list = v
        .as_array()
        .ok_or_else(|| err(format!("{k} must be a list of file paths")))?;
    if list.len() > max {
        return Err(err(format!("{k}: at most {max} files")));
    }
    list.iter()
        .map(|p| {
            let s = p
                .as_str()
                .ok_or_else(|| err(format!("{k} must be a list of strings")))?;
            if s.is_empty() {
                return Err(err(format!("{k}: an empty path")));
            }
            Ok(section.path(std::path::Path::new(s)))
        })
        .collect()
}

fn label(k: &str, v: &toml::Value) -> Result<String, FrontError> {
    let s = string(k, v)?;
    if s.is_empty() || s.len() > LABEL_BYTES_MAX || s.chars().any(char::is_control) {
        return Err(err(format!(
            "{k} must be 1 to {LABEL_BYTES_MAX} bytes without control characters"
        )));
    }
    Ok(s)
}

impl RpkiConfig {
    /// Reads and checks a `[fronts.rpki]` section.
    pub fn from_section(section: &Section) -> Result<RpkiConfig, FrontError> {
        let mut c = RpkiConfig::default();
        let mut role = None;
        for (k, v) in &section.table {
            match k.as_str() {
                "role" => {
                    role = Some(match string(k, v)?.as_str() {
                        "console" => Role::Console,
                        "sync" => Role::Sync,
                        other => return Err(err(format!("role {other:?}: must be \"console\" or \"sync\""))),
                    })
                }
                "tals" => c.tals = paths(k, v, TALS_MAX, section)?,
                "ca_certs" => c.ca_certs = paths(k, v, CA_CERTS_MAX, section)?,
                "allow_local_hosts" => {
                    c.allow_local_hosts = v
                        .as_bool()
                        .ok_or_else(|| err("allow_local_hosts must be true or false"))?
                }
                "algorithm" => {
                    let s = string(k, v)?;
                    c.algorithm = s
                        .parse()
                        .map_err(|e: crate::schedule::UnknownAlgorithm| err(e.to_string()))?;
                }
                "refresh_s" => {
                    let n = v
                        .as_integer()
                        .ok_or_else(|| err("refresh_s must be a whole number of seconds"))?;
                    if n < REFRESH_S_MIN as i64 || n > REFRESH_S_MAX as i64 {
                        return Err(err(format!("refresh_s must be {REFRESH_S_MIN} to {REFRESH_S_MAX}")));
                    }
                    c.refresh_s = n as u64;
                }
                "rtr_listen" => {
                    let s = string(k, v)?;
                    c.rtr_listen = Some(
                        s.parse()
                            .map_err(|_| err(format!("rtr_listen {s:?} is not a TCP socket address")))?,
                    );
                }
                "region" => {
                    let s = label(k, v)?;
                    if !crate::schedule::REGIONS.contains(&s.as_str()) {
                        return Err(err(format!(
                            "region {s:?}: must be one of {}",
                            crate::schedule::REGIONS.join(", ")
                        )));
                    }
                    c.region = Some(s);
                }
                "location" => c.location = Some(label(k, v)?),
                "designated" => {
                    let t = v
                        .as_table()
                        .ok_or_else(|| err("designated must be a table of repository host = \"center id\""))?;
                    if t.len() > DESIGNATED_MAX {
                        return Err(err(format!("designated: at most {DESIGNATED_MAX} rows")));
                    }
                    for (host, center) in t {
                        c.designated
                            .push((host.to_ascii_lowercase(), label("designated", center)?));
                    }
                }
                "console" => c.console = Some(label(k, v)?),
                "state_dir" => {
                    let s = string(k, v)?;
                    if s.is_empty() {
                        return Err(err("state_dir: an empty path"));
                    }
                    c.state_dir = Some(section.path(std::path::Path::new(&s)));
                }
                "task_stall_ms" => {
                    let n = v
                        .as_integer()
                        .ok_or_else(|| err("task_stall_ms must be a whole number of milliseconds"))?;
                    if n < TASK_STALL_MS_MIN as i64 || n > TASK_STALL_MS_MAX as i64 {
                        return Err(err(format!(
                            "task_stall_ms must be {TASK_STALL_MS_MIN} to {TASK_STALL_MS_MAX}"
                        )));
                    }
                    c.task_stall_ms = n as u64;
                }
                "lease_s" => {
                    let max = crate::kinds::NODE_LEASE_S_MAX;
                    let n = v
                        .as_integer()
                        .ok_or_else(|| err("lease_s must be a whole number of seconds"))?;
                    if n < LEASE_S_MIN as i64 || n > max as i64 {
                        return Err(err(format!("lease_s must be {LEASE_S_MIN} to {max}")));
                    }
                    c.lease_s = Some(n as u64);
                }
                other => return Err(err(format!("unknown key {other:?}"))),
            }
        }
        c.role = role.ok_or_else(|| err("role is required (\"console\" or \"sync\")"))?;
        match c.role {
            Role::Console => {
                if c.tals.is_empty() {
                    return Err(err("a console needs at least one file in tals"));
                }
                if c.console.is_some() {
                    return Err(err("console names a sync node's console; a console has none"));
                }
            }
            Role::Sync => {
                if !c.tals.is_empty() || c.rtr_listen.is_some() || c.state_dir.is_some() {
                    return Err(err(
                        "tals, rtr_listen and state_dir are the console's; a sync node has none",
                    ));
                }
                if c.console.is_none() {
                    return Err(err("a sync node needs console, the center id whose tasks it takes"));
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Section {
        Section {
            table: text.parse().unwrap(),
            base_dir: Some(PathBuf::from("/etc/regmesh")),
        }
    }

    #[test]
    fn a_console_section_is_read_with_paths_resolved() {
        let c = RpkiConfig::from_section(&section(
            r#"role = "console"
tals = ["tals/lab.tal"]
ca_certs = ["/abs/ca.pem"]
allow_local_hosts = true
algorithm = "network-aware"
refresh_s = 30
task_stall_ms = 1500
state_dir = "rpki-state"
rtr_listen = "127.0.0.1:3323""#,
        ))
        .unwrap();
        assert_eq!(c.role, Role::Console);
        assert_eq!(c.tals, vec![PathBuf::from("/etc/regmesh/tals/lab.tal")]);
        assert_eq!(c.ca_certs, vec![PathBuf::from("/abs/ca.pem")]);
        assert!(c.allow_local_hosts);
        assert_eq!(c.algorithm, Algorithm::NetworkAware);
        assert_eq!(c.refresh_s, 30);
        assert_eq!(c.task_stall_ms, 1500);
        assert_eq!(c.state_dir, Some(PathBuf::from("/etc/regmesh/rpki-state")));
        assert_eq!(c.rtr_listen, Some("127.0.0.1:3323".parse().unwrap()));
    }

    #[test]
    fn bad_sections_are_refused_with_the_key_named() {
        for (text, needle) in [
            ("", "role is required"),
            ("role = \"boss\"", "role \"boss\""),
            ("role = \"console\"", "at least one file in tals"),
            ("role = \"sync\"\ntals = [\"x\"]", "a sync node has none"),
            ("role = \"sync\"\nrefresh_s = 0", "refresh_s must be"),
            ("role = \"sync\"\nalgorithm = \"magic\"", "magic"),
            ("role = \"sync\"\nregion = \"mars\"", "region \"mars\""),
            ("role = \"sync\"\nrtr_listen = \"nope\"", "rtr_listen"),
            ("role = \"sync\"\nsurprise = 1", "unknown key \"surprise\""),
            ("role = \"sync\"", "a sync node needs console"),
            ("role = \"sync\"\nconsole = \"\"", "console must be"),
            (
                "role = \"sync\"\nconsole = \"c1\"\ntask_stall_ms = 5",
                "task_stall_ms must be",
            ),
            ("role = \"sync\"\nconsole = \"c1\"\nlease_s = 2", "lease_s must be"),
            (
                "role = \"console\"\ntals = [\"x\"]\nconsole = \"c1\"",
                "a console has none",
            ),
        ] {
            let e = RpkiConfig::from_section(&section(text)).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
