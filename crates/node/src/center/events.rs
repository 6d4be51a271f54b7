//! The change feed: what each committed version is reported as, its encoding
//! in the change log, and reading the log and the live channel.
//!
//! Every committed version gets the next change number; numbers are never
//! reused. Must never: write the log outside the writer's transaction.

use super::{Center, ReadError};
use regmesh_core::codec;
use regmesh_core::Record;
use std::sync::Arc;
use tokio::sync::broadcast;

/// What a change event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created, replaced, or renewed by a heartbeat.
    Put,
    /// The lease ran out; the record is now offline.
    Expire,
    /// Deleted (tombstone).
    Delete,
}

impl EventType {
    /// The name the change feed and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Put => "put",
            EventType::Expire => "expire",
            EventType::Delete => "delete",
        }
    }
}

/// Why a record was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// A client asked.
    Client,
    /// Its lease ran out and the retention period passed.
    Retention,
    /// A resync with a peer showed its origin deleted it, and the
    /// tombstone is gone (it was behind the tombstone horizon here).
    Resync,
}

/// One entry of the change feed.
#[derive(Clone, Debug)]
pub struct Event {
    /// Change number: increasing, never reused. Consecutive while the center
    /// runs; a restart may skip ahead (the writer reserves numbers in blocks).
    pub no: u64,
    pub typ: EventType,
    pub reason: Option<DeleteReason>,
    pub record: Record,
}

pub(super) fn encode_event(typ: EventType, reason: Option<DeleteReason>, record_bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + record_bytes.len());
    v.push(match typ {
        EventType::Put => 1,
        EventType::Expire => 2,
        EventType::Delete => 3,
    });
    v.push(match reason {
        None => 0,
        Some(DeleteReason::Client) => 1,
        Some(DeleteReason::Retention) => 2,
        Some(DeleteReason::Resync) => 3,
    });
    v.extend_from_slice(record_bytes);
    v
}

pub(super) fn decode_event(no: u64, b: &[u8]) -> Result<Event, EventDecodeError> {
    let (&typ, rest) = b.split_first().ok_or(EventDecodeError::Truncated { no })?;
    let (&reason, record) = rest.split_first().ok_or(EventDecodeError::Truncated { no })?;
    let typ = match typ {
        1 => EventType::Put,
        2 => EventType::Expire,
        3 => EventType::Delete,
        t => return Err(EventDecodeError::UnknownType { no, typ: t }),
    };
    let reason = match reason {
        0 => None,
        1 => Some(DeleteReason::Client),
        2 => Some(DeleteReason::Retention),
        3 => Some(DeleteReason::Resync),
        r => return Err(EventDecodeError::UnknownReason { no, reason: r }),
    };
    let record = codec::decode(record).map_err(|source| EventDecodeError::Record { no, source })?;
    Ok(Event {
        no,
        typ,
        reason,
        record,
    })
}

/// A change-log entry could not be decoded (written by another version, or
/// damaged). Reading changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("change {no} is truncated")]
    Truncated { no: u64 },
    #[error("change {no} has unknown type {typ}")]
    UnknownType { no: u64, typ: u8 },
    #[error("change {no} has unknown reason {reason}")]
    UnknownReason { no: u64, reason: u8 },
    #[error("change {no}: {source}")]
    Record { no: u64, source: regmesh_core::DecodeError },
}

impl Center {
    /// Subscribes to change events committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.events.subscribe()
    }

    /// Oldest and newest change numbers still in the change log.
    pub fn change_bounds(&self) -> Result<Option<(u64, u64)>, ReadError> {
        self.shared
            .store
            .change_bounds()
            .map_err(|e| ReadError::Storage(e.to_string()))
    }

    /// Logged changes numbered above `after`, at most `limit`.
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, ReadError> {
        let raw = self
            .shared
            .store
            .changes_after(after, limit)
            .map_err(|e| ReadError::Storage(e.to_string()))?;
        raw.into_iter()
            .map(|(n, b)| decode_event(n, &b).map_err(ReadError::from))
            .collect()
    }
}
