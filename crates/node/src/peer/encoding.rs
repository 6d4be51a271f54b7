//! Optional compression of peer message bodies (DESIGN.md: "peers may
//! negotiate compression"), as plain HTTP content coding: `deflate` (zlib,
//! RFC 9110 §8.4.1.2).
//!
//! - A sender compresses a request body of at least [`COMPRESS_MIN`] bytes
//!   and says `Content-Encoding: deflate`. A peer that cannot read it answers
//!   `415` (with `Accept-Encoding`, RFC 7694); the sender then sends that
//!   peer plain bodies from then on.
//! - Every call says `Accept-Encoding: deflate`; large answers (pull pages)
//!   come back compressed.
//! - Inflating stops at the receiver's body limit, so a small compressed body
//!   cannot expand into an unbounded one.

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use std::io::{Read, Write};

/// Bodies shorter than this are sent as they are.
pub const COMPRESS_MIN: usize = 1024;

/// The content coding regmesh speaks.
pub const DEFLATE: &str = "deflate";

/// Compresses `body` (fast level: bodies are base64 of signed records,
/// whose redundancy is mostly the base64 alphabet).
pub fn deflate(body: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::with_capacity(body.len() / 2), Compression::fast());
    e.write_all(body).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// Inflated, it would exceed the limit.
    TooLarge(usize),
    /// Not a zlib stream.
    Corrupt(String),
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InflateError::TooLarge(n) => write!(f, "body exceeds {n} bytes once inflated"),
            InflateError::Corrupt(e) => write!(f, "body is not valid deflate data: {e}"),
        }
    }
}

/// Inflates `body`, refusing anything larger than `limit` bytes inflated.
pub fn inflate(body: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::with_capacity((body.len() * 3).min(limit));
    let mut d = ZlibDecoder::new(body).take(limit as u64 + 1);
    d.read_to_end(&mut out)
        .map_err(|e| InflateError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(InflateError::TooLarge(limit));
    }
    Ok(out)
}

/// Does an `Accept-Encoding` value admit deflate?
pub fn accepts_deflate(accept: Option<&str>) -> bool {
    accept.is_some_and(|v| {
        v.split(',').any(|t| {
            let mut parts = t.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            coding.eq_ignore_ascii_case(DEFLATE) && !q_zero
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_shrinks_base64() {
        let body: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("\"rec{i}\",").into_bytes())
            .collect();
        let z = deflate(&body);
        assert!(z.len() < body.len() / 2);
        assert_eq!(inflate(&z, body.len()).unwrap(), body);
    }

    #[test]
    fn refuses_bombs_and_garbage() {
        let body = vec![b'a'; 1 << 20];
        let z = deflate(&body);
        assert!(z.len() < 10_000);
        assert_eq!(inflate(&z, (1 << 20) - 1), Err(InflateError::TooLarge((1 << 20) - 1)));
        assert!(matches!(inflate(b"not zlib", 100), Err(InflateError::Corrupt(_))));
    }

    #[test]
    fn reads_accept_encoding() {
        assert!(accepts_deflate(Some("deflate")));
        assert!(accepts_deflate(Some("gzip, Deflate;q=0.5")));
        assert!(!accepts_deflate(Some("deflate;q=0")));
        assert!(!accepts_deflate(Some("gzip")));
        assert!(!accepts_deflate(None));
    }
}
