//! The change feed: what each committed version is reported as, its encoding
//! in the change log, and reading the log and the live channel.
//!
//! Every committed version gets the next change number; numbers are never
//! reused. Must never: write the log outside the writer's transaction.
//!
//! Entry layout, format 2 (written): `0, format (=2), type, reason,
//! record bytes`. Format 1 (written before formats were named, read still):
//! `type, reason, record bytes`; its first byte, a type, is never 0. An
//! entry of a newer format is refused ([`EventDecodeError::NewerFormat`]).

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

/// The change-log entry format this build writes, and the newest it reads.
pub const CHANGE_FORMAT: u8 = 2;

pub(super) fn encode_event(typ: EventType, reason: Option<DeleteReason>, record_bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + record_bytes.len());
    v.extend_from_slice(&[0, CHANGE_FORMAT]);
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
    // Format 2 and later start with 0; format 1 with its type.
    let b = match b {
        [0, CHANGE_FORMAT, rest @ ..] => rest,
        [0, format, ..] if *format > CHANGE_FORMAT => {
            return Err(EventDecodeError::NewerFormat { no, format: *format })
        }
        [0, format, ..] => return Err(EventDecodeError::UnknownFormat { no, format: *format }),
        [0] => return Err(EventDecodeError::Truncated { no }),
        legacy => legacy,
    };
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
    /// Written by a newer regmesh: this build cannot read it.
    #[error("change {no} is in change-log format {format}, newer than the format {CHANGE_FORMAT} this build reads; nothing was changed")]
    NewerFormat { no: u64, format: u8 },
    /// A format number no regmesh writes.
    #[error("change {no} names unknown change-log format {format}")]
    UnknownFormat { no: u64, format: u8 },
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

#[cfg(test)]
mod tests {
    use super::*;
    use regmesh_core::{Hlc, Identity, Visibility};

    fn record_bytes() -> Vec<u8> {
        let mut r = Record {
            kind: "agent".into(),
            id: "a1".into(),
            origin: "c1".into(),
            version: Hlc::new(1_700_000_000_000, 0),
            seq: 7,
            expires_at_ms: None,
            visibility: Visibility::Public,
            deleted: false,
            body: "{}".into(),
            sig: [0; 64],
        };
        Identity::from_seed([7; 32]).sign_record(&mut r);
        codec::encode(&r)
    }

    #[test]
    fn entries_carry_their_format_and_read_back() {
        let rec = record_bytes();
        let b = encode_event(EventType::Delete, Some(DeleteReason::Retention), &rec);
        assert_eq!(&b[..4], &[0, CHANGE_FORMAT, 3, 2]);
        let e = decode_event(5, &b).unwrap();
        assert_eq!(
            (e.no, e.typ, e.reason),
            (5, EventType::Delete, Some(DeleteReason::Retention))
        );
        assert_eq!(codec::encode(&e.record), rec);
    }

    #[test]
    fn entries_written_before_formats_were_named_still_read() {
        // Format 1, as earlier builds wrote it: type, reason, record.
        let rec = record_bytes();
        let mut old = vec![1, 0];
        old.extend_from_slice(&rec);
        let e = decode_event(9, &old).unwrap();
        assert_eq!((e.typ, e.reason, e.record.id.as_str()), (EventType::Put, None, "a1"));
    }

    #[test]
    fn an_entry_of_a_newer_format_is_refused_with_its_format() {
        let mut newer = vec![0, CHANGE_FORMAT + 1, 1, 0];
        newer.extend_from_slice(&record_bytes());
        let e = decode_event(3, &newer).unwrap_err();
        assert!(matches!(e, EventDecodeError::NewerFormat { no: 3, format: 3 }), "{e}");
        assert!(e.to_string().contains("nothing was changed"), "{e}");
        assert!(matches!(
            decode_event(3, &[0, 1, 1, 0]),
            Err(EventDecodeError::UnknownFormat { format: 1, .. })
        ));
        assert!(matches!(decode_event(3, &[0]), Err(EventDecodeError::Truncated { .. })));
    }
}
