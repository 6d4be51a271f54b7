//! Errors of the center's subsystems. Each variant says whether state
//! changed; the client API maps them to statuses in `crate::error`.
//!
//! Must never: carry an error whose variant hides a partial change.

use super::{EventDecodeError, Refusal};

/// A write was refused or failed. Unless a variant says otherwise, nothing
/// was changed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The record does not exist (or is a tombstone). Nothing changed.
    #[error("{kind}/{id} does not exist")]
    NotFound { kind: String, id: String },
    /// The live record belongs to another center. Nothing changed.
    #[error("{kind}/{id} is owned by center {owner}; only its origin may change it")]
    NotOwner { kind: String, id: String, owner: String },
    /// `If-Match` named another version. Nothing changed.
    #[error("current version is {current}, not {expected}")]
    VersionMismatch { current: String, expected: String },
    /// The op is not allowed here (a body that is not an object, an
    /// envelope field in a body, an internal op submitted as a client
    /// write, a version too far ahead of the clock). Nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The new version would exceed `limits.max_record_bytes`. Nothing changed.
    #[error("record would be {bytes} bytes; the limit is {max}")]
    TooLarge { bytes: usize, max: usize },
    /// The write queue is full; refused at once. Nothing changed.
    #[error("write queue is full ({0} waiting); retry shortly")]
    Overloaded(usize),
    /// The store failed, or a stored record failed its integrity check.
    /// The batch was not committed: nothing changed, and the writer's clock,
    /// counters and indexes are as before.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The writer has stopped. Nothing changed.
    #[error("the center is shutting down")]
    ShuttingDown,
    /// The center is `inactive` in its mesh (DRiP §5.7): client writes are
    /// refused before they are queued. Nothing changed.
    #[error("the center is inactive: none of its peers answers (DRiP §5.7); updates resume when one does")]
    Inactive,
    /// Records from another center failed their checks. Those listed were
    /// not applied; the `applied` others of the same call were (state
    /// changed for them). Callers must not count the refused ones as held.
    #[error("{} record(s) refused, {applied} applied; {}", refused.len(), refused.first().map(ToString::to_string).unwrap_or_default())]
    Refused { applied: usize, refused: Vec<Refusal> },
}

/// A read failed. Reads never change state.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stored bytes do not match the digest of the bytes verified when
    /// the record entered the center (changed on disk); counted in
    /// `regmesh_integrity_errors_total`.
    #[error("stored bytes of {kind}/{id} do not match the verified digest")]
    Integrity { kind: String, id: String },
    /// The store failed, or a stored record could not be decoded.
    #[error("storage failed: {0}")]
    Storage(String),
    /// A change-log entry could not be decoded.
    #[error("change log: {0}")]
    Event(#[from] EventDecodeError),
    /// The query names an unknown kind or a field that is not indexed.
    #[error("{0}")]
    BadQuery(String),
}

/// Start-up failed. Nothing is running; the data directory may hold a new
/// identity key or `center.id` cell, nothing else.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The data directory, a key file or the writer thread could not be set up.
    #[error("data directory {path}: {msg}")]
    DataDir { path: String, msg: String },
    /// The store could not be opened or read.
    #[error("{0}")]
    Store(#[from] regmesh_store::StoreError),
}
