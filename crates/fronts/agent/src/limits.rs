//! Per-field limits of the `agent` kind (document 000 §3.3's information
//! model). Record-level limits that hold for every kind are in
//! `regmesh_core::limits`.

/// Most IP addresses on one agent.
pub const ADDRESSES_MAX: usize = 16;
/// Most endpoints on one agent.
pub const ENDPOINTS_MAX: usize = 32;
/// Longest endpoint URL, bytes.
pub const URL_BYTES_MAX: usize = 2048;
/// Most capabilities on one agent.
pub const CAPABILITIES_MAX: usize = 64;
/// Most tags on one capability.
pub const TAGS_MAX: usize = 32;
/// Longest capability name or tag, bytes.
pub const NAME_BYTES_MAX: usize = 128;
/// Longest capability description, bytes.
pub const DESCRIPTION_BYTES_MAX: usize = 1024;
/// Largest `metadata` object, serialized bytes.
pub const METADATA_BYTES_MAX: usize = 16 * 1024;
/// Largest A2A agent `card`, serialized bytes.
pub const CARD_BYTES_MAX: usize = 32 * 1024;
/// Deepest JSON nesting accepted inside `metadata` and `card`.
pub const JSON_DEPTH_MAX: usize = 16;
/// Shortest and longest lease, seconds (30 days).
pub const LEASE_S_MIN: u64 = 1;
pub const LEASE_S_MAX: u64 = 30 * 24 * 3600;
