//! Center configuration: a TOML file, every field optional with a documented
//! default, overridden by command-line flags. `regmesh config show` prints the
//! effective result.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default client API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./regmesh-data";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Center id (`[A-Za-z0-9._-]{1,64}`). Default: the host name.
    pub id: String,
    /// Directory holding the identity key and the database.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub leases: LeaseConfig,
    pub limits: LimitsConfig,
    /// The peer listener (mutual TLS). Absent: a standalone center.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerListenConfig>,
    /// The peers this center talks to directly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerConfig>,
    /// Centers whose records this center accepts: their ids and public keys
    /// (peers and non-neighbours alike). Records from other origins are refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub centers: Vec<CenterKey>,
    /// `[fronts.NAME]` sections, one per front, each handed as written to
    /// the front of that name to parse (`crate::front`). The node itself
    /// reads only `enabled` (a boolean, default true). A name no front of
    /// this build has is refused when the node starts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fronts: BTreeMap<String, toml::Value>,
    /// The folder of the file this config was loaded from, against which
    /// fronts resolve relative paths in their sections. Not a config key.
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

/// The peer listener and this center's TLS identity. Relative paths are
/// relative to the config file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerListenConfig {
    /// Peer API listen address (HTTPS, mutual TLS).
    pub listen: SocketAddr,
    /// This center's certificate (PEM), issued by `ca` for the center id.
    pub cert: PathBuf,
    /// This center's Ed25519 private key (PKCS#8 PEM). It is also the key
    /// that signs records and tokens, replacing `data_dir/identity.key`.
    pub key: PathBuf,
    /// CA certificate(s) (PEM) that peers' certificates must chain to.
    pub ca: PathBuf,
    /// How often this center beats to each peer, milliseconds.
    #[serde(default = "default_beat_interval_ms")]
    pub beat_interval_ms: u64,
    /// Largest accepted difference between a token's `iat` and our clock, s.
    #[serde(default = "default_clock_skew_s")]
    pub clock_skew_s: u64,
    /// Largest peer request body, bytes.
    #[serde(default = "default_peer_body_bytes")]
    pub max_body_bytes: usize,
    /// How long the vote on a new id may take across the mesh, milliseconds.
    #[serde(default = "default_vote_timeout_ms")]
    pub vote_timeout_ms: u64,
    /// Whose yes a new id needs: `"majority"` of all configured centers
    /// (this one, `peers` and `centers`; the default) or `"all"` of them
    /// (DRiP's rule: one silent center stops new ids).
    #[serde(default)]
    pub claims: ClaimsRule,
    /// Lowest peer protocol version this center speaks (default: the
    /// lowest this build speaks). Raise it once no peer needs an older one.
    #[serde(default = "default_protocol_min")]
    pub protocol_min: u16,
    /// Highest peer protocol version this center speaks (default: the
    /// highest this build speaks). Pin an older one during a rolling
    /// upgrade, until every peer runs a build that speaks the newer one.
    #[serde(default = "default_protocol_max")]
    pub protocol_max: u16,
}

/// `[peer] protocol_min` when not set: the lowest version this build speaks.
pub fn default_protocol_min() -> u16 {
    regmesh_proto::version::PROTOCOL_MIN
}
/// `[peer] protocol_max` when not set: the highest version this build speaks.
pub fn default_protocol_max() -> u16 {
    regmesh_proto::version::PROTOCOL_MAX
}

/// `[peer] claims`: the quorum a claim of a new id needs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClaimsRule {
    #[default]
    Majority,
    All,
}

fn default_vote_timeout_ms() -> u64 {
    2000
}

fn default_beat_interval_ms() -> u64 {
    1000
}
fn default_clock_skew_s() -> u64 {
    30
}
fn default_peer_body_bytes() -> usize {
    16 << 20
}

/// One peer and what this center exports to it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's center id (its certificate is issued for this name).
    pub id: String,
    /// Its peer API, `https://host:port`.
    pub url: String,
    /// Kinds exported to it; empty means every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Visibility groups it belongs to: records and capabilities marked
    /// `authorized:<group>` go to it only for these groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A center whose records are accepted, and its Ed25519 public key (hex).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CenterKey {
    pub id: String,
    pub public_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Client API listen address.
    pub listen: SocketAddr,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Requests served at once; more get 503.
    pub max_concurrent_requests: usize,
    /// Open client connections; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Open client connections from one source address; more are closed at once.
    pub max_connections_per_address: usize,
    /// Deadline for a request's headers, milliseconds, from the connection's
    /// opening or the request's first byte; slower connections are closed.
    pub header_read_timeout_ms: u64,
    /// How long a keep-alive connection may wait for its next request,
    /// milliseconds; then it is closed.
    pub idle_timeout_ms: u64,
    /// Deadline for receiving a request body, milliseconds; slower gets 408.
    pub body_timeout_ms: u64,
    /// Open watch streams at once; more get 503.
    pub max_watchers: usize,
    /// Bearer tokens. With none, the API only listens on loopback.
    pub tokens: Vec<TokenConfig>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Label for logs.
    #[serde(default)]
    pub name: String,
    /// The secret a client sends as `Authorization: Bearer <token>`.
    pub token: String,
    /// Any of `read`, `write`, `admin` (admin implies the others).
    pub scopes: Vec<Scope>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

/// A `[store] backend`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Redb,
    Postgres,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where records live: `redb` (one file in the data directory, the
    /// default) or `postgres` (the database at `url`, which several
    /// processes serving this center may share: shared authority).
    pub backend: StoreBackend,
    /// PostgreSQL connection URL (`postgres://user@host:port/db`); only with
    /// `backend = "postgres"`.
    pub url: String,
    /// PostgreSQL connections this process opens (1..=256).
    pub pool: usize,
    /// Shared authority: how often an idle process takes up what the others
    /// committed (its indexes, listings and watch streams lag this much).
    pub follow_interval_ms: u64,
    /// Shared authority: the lease of the process running the center's
    /// timers; another takes them over this long after it dies.
    pub timers_lease_ms: u64,
    /// Page cache of the embedded database, MiB.
    pub cache_mib: usize,
    /// Writes waiting for the writer; more get 503.
    pub write_queue: usize,
    /// Most writes committed in one transaction (group commit).
    pub write_batch_max: usize,
    /// Change-log entries kept for `GET /v1/watch?since=`.
    pub watch_history: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// How long an agent whose lease ran out stays (as `offline`) before it
    /// is removed, seconds (document 000 §4.1.1).
    pub retention_s: u64,
    /// How long a tombstone is kept before it is purged, seconds.
    pub tombstone_horizon_s: u64,
    /// How often lease deadlines are checked, milliseconds.
    pub sweep_interval_ms: u64,
    /// How much longer than its lease a renewal promises to the other
    /// centers, seconds. 0: every heartbeat is a new version, replicated
    /// everywhere. N > 0: a heartbeat renews the lease here only, as long as
    /// the last replicated version still covers a whole lease; the origin
    /// replicates a renewal about once per N seconds per agent, and still
    /// publishes `offline` as soon as the lease runs out. Replicas then mark
    /// an agent stale up to N seconds later when its origin falls silent.
    pub renewal_extension_s: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest encoded record, bytes.
    pub max_record_bytes: usize,
    /// Default and largest page size of `GET /v1/agents`.
    pub list_limit_default: usize,
    pub list_limit_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: default_center_id(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            api: ApiConfig::default(),
            store: StoreConfig::default(),
            leases: LeaseConfig::default(),
            limits: LimitsConfig::default(),
            peer: None,
            peers: Vec::new(),
            centers: Vec::new(),
            fronts: BTreeMap::new(),
            config_dir: None,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: DEFAULT_LISTEN.parse().expect("default listen address"),
            max_body_bytes: 128 * 1024,
            max_concurrent_requests: 1024,
            max_connections: 4096,
            max_connections_per_address: 256,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            max_watchers: 256,
            tokens: Vec::new(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Redb,
            url: String::new(),
            pool: 4,
            follow_interval_ms: 200,
            timers_lease_ms: 5000,
            cache_mib: 128,
            write_queue: 4096,
            write_batch_max: 1024,
            watch_history: 100_000,
        }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            retention_s: 24 * 3600,
            tombstone_horizon_s: 7 * 24 * 3600,
            sweep_interval_ms: 500,
            renewal_extension_s: 0,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_record_bytes: regmesh_core::limits::RECORD_BYTES_MAX,
            list_limit_default: 100,
            list_limit_max: 1000,
        }
    }
}

/// The config could not be used. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads a TOML file; unknown keys are errors. Relative paths in it
    /// (data_dir, peer cert/key/ca) are taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.config_dir = Some(base.to_path_buf());
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        if toml::from_str::<toml::Value>(&text)
            .ok()
            .and_then(|v| v.get("data_dir").cloned())
            .is_some()
        {
            fix(&mut c.data_dir);
        }
        if let Some(p) = &mut c.peer {
            fix(&mut p.cert);
            fix(&mut p.key);
            fix(&mut p.ca);
        }
        Ok(c)
    }

    /// The public key configured for center `id`, if any.
    pub fn center_key(&self, id: &str) -> Option<&str> {
        self.centers.iter().find(|c| c.id == id).map(|c| c.public_key.as_str())
    }

    /// A config for tests: loopback, port 0, the given data directory,
    /// short sweep interval.
    pub fn for_test(id: &str, data_dir: &Path) -> Config {
        let mut c = Config {
            id: id.to_string(),
            data_dir: data_dir.to_path_buf(),
            ..Config::default()
        };
        c.api.listen = "127.0.0.1:0".parse().unwrap();
        c.store.cache_mib = 8;
        c.leases.sweep_interval_ms = 50;
        c
    }

    /// Checks every rule the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        regmesh_core::validate_center_id(&self.id).map_err(|e| ConfigError(format!("id: {e}")))?;
        let nonzero = [
            ("api.max_body_bytes", self.api.max_body_bytes as u64),
            ("api.max_concurrent_requests", self.api.max_concurrent_requests as u64),
            ("api.max_watchers", self.api.max_watchers as u64),
            ("api.max_connections", self.api.max_connections as u64),
            ("api.body_timeout_ms", self.api.body_timeout_ms),
            (
                "api.max_connections_per_address",
                self.api.max_connections_per_address as u64,
            ),
            ("api.header_read_timeout_ms", self.api.header_read_timeout_ms),
            ("api.idle_timeout_ms", self.api.idle_timeout_ms),
            ("store.cache_mib", self.store.cache_mib as u64),
            ("store.write_queue", self.store.write_queue as u64),
            ("store.write_batch_max", self.store.write_batch_max as u64),
            ("store.watch_history", self.store.watch_history),
            ("store.follow_interval_ms", self.store.follow_interval_ms),
            ("store.timers_lease_ms", self.store.timers_lease_ms),
            ("leases.sweep_interval_ms", self.leases.sweep_interval_ms),
            ("limits.max_record_bytes", self.limits.max_record_bytes as u64),
            ("limits.list_limit_default", self.limits.list_limit_default as u64),
            ("limits.list_limit_max", self.limits.list_limit_max as u64),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(ConfigError(format!("{name} must be greater than 0")));
            }
        }
        match self.store.backend {
            StoreBackend::Postgres if self.store.url.is_empty() => {
                return Err(ConfigError("store.url: backend \"postgres\" needs a url".into()))
            }
            StoreBackend::Postgres if !(1..=regmesh_store::PG_POOL_MAX).contains(&self.store.pool) => {
                return Err(ConfigError(format!(
                    "store.pool must be 1..={}",
                    regmesh_store::PG_POOL_MAX
                )))
            }
            StoreBackend::Postgres if self.leases.renewal_extension_s > 0 => {
                return Err(ConfigError(
                    "leases.renewal_extension_s must be 0 with backend \"postgres\" (renewals kept in one \
                     process's memory would be unknown to the process running the timers)"
                        .into(),
                ))
            }
            _ => {}
        }
        if self.limits.list_limit_default > self.limits.list_limit_max {
            return Err(ConfigError(
                "limits.list_limit_default exceeds limits.list_limit_max".into(),
            ));
        }
        for t in &self.api.tokens {
            if t.token.len() < 16 {
                return Err(ConfigError(format!(
                    "api.tokens {:?}: a token must be at least 16 characters",
                    t.name
                )));
            }
            if t.scopes.is_empty() {
                return Err(ConfigError(format!("api.tokens {:?}: no scopes", t.name)));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.peers {
            regmesh_core::validate_center_id(&p.id).map_err(|e| ConfigError(format!("peers {:?}: {e}", p.id)))?;
            if p.id == self.id {
                return Err(ConfigError(format!("peers: {:?} is this center itself", p.id)));
            }
            if !seen.insert(p.id.as_str()) {
                return Err(ConfigError(format!("peers: {:?} appears twice", p.id)));
            }
            let rest = p.url.strip_prefix("https://").ok_or_else(|| {
                ConfigError(format!(
                    "peers {:?}: url must be https://host:port, not {:?}",
                    p.id, p.url
                ))
            })?;
            if rest.is_empty() || rest.contains('/') {
                return Err(ConfigError(format!("peers {:?}: url must be https://host:port", p.id)));
            }
            if self.center_key(&p.id).is_none() {
                return Err(ConfigError(format!(
                    "peers {:?}: no [[centers]] entry with its public key",
                    p.id
                )));
            }
            for g in &p.groups {
                regmesh_core::validate_center_id(g)
                    .map_err(|_| ConfigError(format!("peers {:?}: bad group {g:?}", p.id)))?;
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.centers {
            regmesh_core::validate_center_id(&c.id).map_err(|e| ConfigError(format!("centers {:?}: {e}", c.id)))?;
            if !seen.insert(c.id.as_str()) {
                return Err(ConfigError(format!("centers: {:?} appears twice", c.id)));
            }
            if c.public_key.len() != 64 || !c.public_key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError(format!(
                    "centers {:?}: public_key must be 64 hex digits",
                    c.id
                )));
            }
        }
        if !self.peers.is_empty() && self.peer.is_none() {
            return Err(ConfigError(
                "peers are configured but [peer] (listener, cert, key, ca) is not".into(),
            ));
        }
        if let Some(p) = &self.peer {
            if p.beat_interval_ms == 0 || p.max_body_bytes == 0 {
                return Err(ConfigError(
                    "peer.beat_interval_ms and peer.max_body_bytes must be greater than 0".into(),
                ));
            }
            regmesh_proto::version::Versions::configured(p.protocol_min, p.protocol_max)
                .map_err(|e| ConfigError(format!("peer.protocol_min, peer.protocol_max: {e}")))?;
        }
        for (name, section) in &self.fronts {
            crate::front::check_section(name, section)?;
        }
        if self.api.tokens.is_empty() && !self.api.listen.ip().is_loopback() {
            return Err(ConfigError(format!(
                "api.listen {} is not a loopback address and no api.tokens are configured; \
                 add a token or listen on 127.0.0.1 / [::1]",
                self.api.listen
            )));
        }
        Ok(())
    }

    /// TOML of the effective config, with token secrets masked.
    pub fn to_toml_redacted(&self) -> String {
        let mut c = self.clone();
        for t in &mut c.api.tokens {
            t.token = "<redacted>".into();
        }
        c.store.url = redact_url_password(&c.store.url);
        toml::to_string(&c).expect("config serializes")
    }
}

/// `url` with the password of `scheme://user:password@host` and of a
/// `password=` parameter replaced by `<redacted>`.
fn redact_url_password(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(s) = out.find("://") {
        let auth_end = out[s + 3..].find(['/', '?']).map_or(out.len(), |e| s + 3 + e);
        if let Some(at) = out[s + 3..auth_end].rfind('@').map(|a| s + 3 + a) {
            if let Some(colon) = out[s + 3..at].find(':').map(|c| s + 3 + c) {
                out.replace_range(colon + 1..at, "<redacted>");
            }
        }
    }
    if let Some(p) = out.find("password=") {
        let end = out[p..].find(['&', ' ']).map_or(out.len(), |e| p + e);
        out.replace_range(p + "password=".len()..end, "<redacted>");
    }
    out
}

/// The host name, reduced to the characters a center id allows.
pub fn default_center_id() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let id: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(regmesh_core::id::CENTER_ID_BYTES_MAX)
        .collect();
    if id.is_empty() {
        "regmesh".into()
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = Config {
            id: "c1".into(),
            ..Config::default()
        };
        c.validate().unwrap();
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn protocol_versions_default_to_the_build_and_must_be_a_range_it_speaks() {
        let peer = |extra: &str| {
            let text = format!(
                "id = \"c1\"\n[peer]\nlisten = \"127.0.0.1:7701\"\ncert = \"c.crt\"\nkey = \"c.key\"\nca = \"ca.pem\"\n{extra}"
            );
            toml::from_str::<Config>(&text).unwrap()
        };
        let c = peer("");
        let p = c.peer.as_ref().unwrap();
        assert_eq!(
            (p.protocol_min, p.protocol_max),
            (
                regmesh_proto::version::PROTOCOL_MIN,
                regmesh_proto::version::PROTOCOL_MAX
            )
        );
        c.validate().unwrap();
        peer("protocol_max = 1").validate().unwrap();
        for bad in [
            "protocol_max = 9",
            "protocol_min = 2\nprotocol_max = 1",
            "protocol_min = 0",
        ] {
            let e = peer(bad).validate().unwrap_err().0;
            assert!(e.contains("peer.protocol_min, peer.protocol_max"), "{bad}: {e}");
        }
    }

    #[test]
    fn refuses_public_listen_without_tokens() {
        let mut c = Config {
            id: "c1".into(),
            ..Config::default()
        };
        c.api.listen = "0.0.0.0:7700".parse().unwrap();
        assert!(c.validate().unwrap_err().0.contains("loopback"));
        c.api.tokens.push(TokenConfig {
            name: "ops".into(),
            token: "x".repeat(32),
            scopes: vec![Scope::Admin],
        });
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_refused() {
        assert!(toml::from_str::<Config>("idd = \"x\"").is_err());
        let c: Config = toml::from_str("id = \"bad id\"").unwrap();
        assert!(c.validate().is_err());
        let c: Config = toml::from_str("id = \"c1\"\n[store]\nwrite_queue = 0").unwrap();
        assert!(c.validate().is_err());
        let c: Config = toml::from_str("id = \"c1\"\n[[api.tokens]]\ntoken = \"short\"\nscopes = [\"read\"]").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn front_sections_round_trip_and_are_checked() {
        let c: Config = toml::from_str("id = \"c1\"\n[fronts.agent]\nenabled = false\n[fronts.note]\nx = 1").unwrap();
        c.validate().unwrap();
        assert_eq!(c.fronts["note"]["x"].as_integer(), Some(1));
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c1.toml");
        std::fs::write(&file, "id = \"c1\"\n[fronts.note]\nfile = \"x\"").unwrap();
        assert_eq!(Config::load(&file).unwrap().config_dir.as_deref(), Some(dir.path()));
        for bad in [
            "[fronts]\nagent = 1",
            "[fronts.agent]\nenabled = \"no\"",
            "[fronts.\"Bad Name\"]",
        ] {
            let c: Config = toml::from_str(&format!("id = \"c1\"\n{bad}")).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn redacts_tokens() {
        let mut c = Config {
            id: "c1".into(),
            ..Config::default()
        };
        c.api.tokens.push(TokenConfig {
            name: "a".into(),
            token: "s3cr3t-s3cr3t-s3cr3t".into(),
            scopes: vec![Scope::Read],
        });
        c.store.url = "postgres://rm:pw-s3cr3t@db:5432/regmesh?sslmode=disable&password=s3cr3t2".into();
        let t = c.to_toml_redacted();
        assert!(!t.contains("s3cr3t") && t.contains("<redacted>"), "{t}");
        assert!(
            t.contains("postgres://rm:<redacted>@db:5432/regmesh?sslmode=disable&password=<redacted>"),
            "{t}"
        );
    }

    #[test]
    fn postgres_backend_needs_url_and_pool() {
        let c: Config = toml::from_str("id = \"c1\"").unwrap();
        assert_eq!(c.store.backend, StoreBackend::Redb, "the default backend");
        let c: Config = toml::from_str("id = \"c1\"\n[store]\nbackend = \"postgres\"").unwrap();
        assert!(c.validate().unwrap_err().0.contains("store.url"));
        let ok = "id = \"c1\"\n[store]\nbackend = \"postgres\"\nurl = \"postgres://u@h/d\"\npool = 8";
        let c: Config = toml::from_str(ok).unwrap();
        c.validate().unwrap();
        assert_eq!((c.store.backend, c.store.pool), (StoreBackend::Postgres, 8));
        let c: Config = toml::from_str(&ok.replace("pool = 8", "pool = 0")).unwrap();
        assert!(c.validate().unwrap_err().0.contains("store.pool"));
        assert!(toml::from_str::<Config>("id = \"c1\"\n[store]\nbackend = \"mysql\"").is_err());
    }
}
