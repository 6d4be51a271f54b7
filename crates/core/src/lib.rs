//! regmesh core: the pure types and rules every other layer builds on.
//!
//! Owns records (the unit of replication), the hybrid logical clock, the merge
//! lattice, the canonical binary codec, Ed25519 signatures over that codec, the
//! [`Kind`] abstraction (kinds themselves are defined by fronts), and the
//! documented limits.
//!
//! Must never: perform I/O, read a clock, spawn tasks or allocate without bound.
//! Time and randomness come in as arguments.

pub mod codec;
pub mod hlc;
pub mod id;
pub mod jwt;
pub mod kind;
pub mod limits;
pub mod record;
pub mod sign;
pub mod time;

pub use codec::DecodeError;
pub use hlc::{Hlc, HlcClock};
pub use id::{validate_center_id, validate_record_id, IdError};
pub use kind::{Creation, DuplicateKind, Kind, Kinds, Lease, Prepared, ValidationError};
pub use record::{Record, Visibility};
pub use sign::{Identity, SignatureError, VerifyingKey};
