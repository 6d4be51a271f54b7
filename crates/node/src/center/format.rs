//! The format version of what a center keeps in its store besides record
//! bytes: metadata cells (`center.id`, `hlc`, `seq`, `change.reserved`,
//! `purged`, `watermarks`) and the layout of change-log entries. One cell,
//! `center.format` (decimal text), names it.
//!
//! Formats: 1, before the cell existed (no cell: a store written by an
//! earlier regmesh); 2, change-log entries carry their own format
//! (`events`). A store of a newer format is refused at start-up before
//! anything is written. Must never: write anything but the cell.

use regmesh_store::{Store, StoreError};

/// The metadata cell holding the format.
pub const CENTER_FORMAT_META: &str = "center.format";
/// The format this build writes, and the newest it reads.
pub const CENTER_FORMAT: u32 = 2;
/// The format of a store without the cell.
pub const CENTER_FORMAT_UNNAMED: u32 = 1;

/// The format `store` was written in ([`CENTER_FORMAT_UNNAMED`] without a
/// cell); [`StoreError::NewerFormat`] when newer than this build reads.
/// Reads only.
pub fn stored_format(store: &dyn Store) -> Result<u32, StoreError> {
    let cell = store.meta(CENTER_FORMAT_META)?;
    Ok(
        regmesh_store::check_format("center metadata", cell.as_deref(), CENTER_FORMAT)?
            .unwrap_or(CENTER_FORMAT_UNNAMED),
    )
}

/// The cell to write when the store is in an older format (this build
/// writes its own from now on, and reads both).
pub fn upgrade_cell(found: u32) -> Option<(String, Vec<u8>)> {
    (found < CENTER_FORMAT).then(|| (CENTER_FORMAT_META.to_string(), CENTER_FORMAT.to_string().into_bytes()))
}
