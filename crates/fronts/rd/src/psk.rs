//! The pre-shared keys of the coaps listener (RFC 7252 §9.1.3.1): which
//! PSK identities may open a DTLS session, and with which key. Read once
//! at start from the TOML file `[fronts.rd] psk_file` names:
//!
//! ```toml
//! [identities]
//! "sensor-1" = "a key as text"
//! "gateway" = { hex = "00112233445566778899aabbccddeeff" }
//! ```
//!
//! Must never: log or show a key, or accept an identity that is not UTF-8
//! (identities name registrants in first-come-first-remembered checks).

use std::collections::HashMap;
use std::path::Path;

/// Most identities in one file.
pub const IDENTITIES_MAX: usize = 10_000;
/// Longest identity, bytes.
pub const IDENTITY_BYTES_MAX: usize = 128;
/// Longest key, bytes.
pub const KEY_BYTES_MAX: usize = 64;
/// Largest key file read, bytes.
pub const FILE_BYTES_MAX: u64 = 4 << 20;

/// The key file could not be used. Nothing was loaded.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
}

/// Identities and their keys.
#[derive(Clone, Default)]
pub struct PskTable {
    keys: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for PskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PskTable({} identities)", self.keys.len())
    }
}

impl PskTable {
    /// Reads and checks the key file at `path`.
    pub fn load(path: &Path) -> Result<PskTable, PskError> {
        let shown = path.display().to_string();
        let read = |source| PskError::Read {
            path: shown.clone(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > FILE_BYTES_MAX {
            return Err(PskError::Invalid {
                path: shown,
                why: format!("larger than {FILE_BYTES_MAX} bytes"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        PskTable::parse(&text).map_err(|why| PskError::Invalid { path: shown, why })
    }

    /// Parses the key file's text.
    pub fn parse(text: &str) -> Result<PskTable, String> {
        let doc: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
        let mut keys = HashMap::new();
        for (k, v) in &doc {
            if k != "identities" {
                return Err(format!("unknown key {k:?} (only [identities])"));
            }
            let t = v.as_table().ok_or("identities must be a table")?;
            if t.len() > IDENTITIES_MAX {
                return Err(format!("more than {IDENTITIES_MAX} identities"));
            }
            for (id, key) in t {
                if id.is_empty() || id.len() > IDENTITY_BYTES_MAX || id.chars().any(char::is_control) {
                    return Err(format!(
                        "identity {id:?} must be 1 to {IDENTITY_BYTES_MAX} bytes without control characters"
                    ));
                }
                let bytes = match key {
                    toml::Value::String(s) => s.as_bytes().to_vec(),
                    toml::Value::Table(h) if h.len() == 1 && h.get("hex").is_some_and(toml::Value::is_str) => {
                        decode_hex(h["hex"].as_str().unwrap_or_default())
                            .ok_or_else(|| format!("key of {id:?}: hex is not an even number of hex digits"))?
                    }
                    _ => return Err(format!("key of {id:?} must be a string or {{ hex = \"...\" }}")),
                };
                if bytes.is_empty() || bytes.len() > KEY_BYTES_MAX {
                    return Err(format!("key of {id:?} must be 1 to {KEY_BYTES_MAX} bytes"));
                }
                keys.insert(id.clone(), bytes);
            }
        }
        if keys.is_empty() {
            return Err("no identities".into());
        }
        Ok(PskTable { keys })
    }

    /// The key of `identity`, if it is known.
    pub fn key(&self, identity: &[u8]) -> Option<&[u8]> {
        let id = std::str::from_utf8(identity).ok()?;
        self.keys.get(id).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_hex_keys_and_refuses_bad_files() {
        let t = PskTable::parse("[identities]\n\"dev 1\" = \"secret\"\ngw = { hex = \"00ff\" }\n").unwrap();
        assert_eq!(t.key(b"dev 1"), Some(&b"secret"[..]));
        assert_eq!(t.key(b"gw"), Some(&[0u8, 255][..]));
        assert_eq!(t.key(b"nobody"), None);
        assert_eq!(t.key(&[0xff]), None);
        for bad in [
            "",
            "[identities]\n",
            "[other]\na = \"b\"\n",
            "[identities]\na = \"\"\n",
            "[identities]\na = 5\n",
            "[identities]\na = { hex = \"0\" }\n",
            "[identities]\na = { hex = \"zz\" }\n",
            "[identities]\n\"a\\u0001\" = \"k\"\n",
            &format!("[identities]\na = \"{}\"\n", "k".repeat(KEY_BYTES_MAX + 1)),
        ] {
            assert!(PskTable::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
