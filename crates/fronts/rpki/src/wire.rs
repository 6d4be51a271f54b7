//! The peer messages between the console and sync nodes (RFIs over the
//! peer listener, mutual TLS): `rpki.fetch` (a task: files to download with
//! their SHA-256), `rpki.task` (a task's progress); and `rpki.blob`, the
//! type whose blobs are the downloaded files as raw bytes, keyed by their
//! SHA-256 in lowercase hex, pulled on the node's blob path
//! (`regmesh_node::messages::PeerBlobSource`). Typed, serde, bounded.
//!
//! Must never: carry more than [`TASK_FILES_MAX`] files in one task.

use serde::{Deserialize, Serialize};

pub const FETCH: &str = "rpki.fetch";
pub const TASK: &str = "rpki.task";
pub const BLOB: &str = "rpki.blob";

/// Most files in one task (a snapshot, or deltas up to the delta limit).
pub const TASK_FILES_MAX: usize = 128;

/// One file of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub uri: String,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// `rpki.fetch`: download these files before the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    pub task: String,
    pub notify: String,
    pub files: Vec<FileRef>,
    /// Milliseconds the node has from receiving the task.
    pub within_ms: u64,
}

/// `rpki.task` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    pub task: String,
}

/// A task's progress at the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Progress {
    Queued,
    Running,
    Done,
    Failed,
}

/// `rpki.task` answer data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskState {
    pub progress: Progress,
    #[serde(default)]
    pub error: Option<String>,
    pub bytes: u64,
    pub elapsed_ms: u64,
}

/// A SHA-256 in lowercase hex: 64 of 0-9 a-f.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_strict_json() {
        let f = Fetch {
            task: "t1".into(),
            notify: "https://h/n.xml".into(),
            files: vec![FileRef {
                uri: "https://h/s.xml".into(),
                sha256: "ab".repeat(32),
            }],
            within_ms: 1000,
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(serde_json::from_value::<Fetch>(v.clone()).unwrap(), f);
        let mut extra = v;
        extra["x"] = 1.into();
        assert!(serde_json::from_value::<Fetch>(extra).is_err());
        assert!(valid_sha256(&"0f".repeat(32)));
        assert!(!valid_sha256(&"0F".repeat(32)) && !valid_sha256("00"));
    }
}
