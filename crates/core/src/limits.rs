//! Documented default limits that hold for every kind. Every one is
//! configurable where the config says so; none of them is unbounded. Limits of
//! one kind's fields live with that kind (the agent's in `regmesh-front-agent`).

/// Largest encoded record (envelope + body), bytes. Document 000 §3.3 puts a
/// full agent with capabilities at 3–5 KiB; 64 KiB leaves room for an A2A card.
pub const RECORD_BYTES_MAX: usize = 64 * 1024;
/// Longest visibility group name, bytes.
pub const GROUP_BYTES_MAX: usize = 64;
