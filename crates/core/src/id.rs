//! Identifier rules for centers and records. Pure validation, no allocation
//! beyond the error message.

use thiserror::Error;

/// Longest center id, in bytes (DESIGN.md: `[A-Za-z0-9._-]{1,64}`).
pub const CENTER_ID_BYTES_MAX: usize = 64;
/// Longest record id, in bytes (document 000 §3.3: agent ID or DID).
pub const RECORD_ID_BYTES_MAX: usize = 256;

/// An identifier was refused. Nothing was changed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct IdError(pub String);

/// A center id: 1–64 bytes of `[A-Za-z0-9._-]`.
pub fn validate_center_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() || id.len() > CENTER_ID_BYTES_MAX {
        return Err(IdError(format!(
            "center id must be 1 to {CENTER_ID_BYTES_MAX} characters"
        )));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError(format!(
            "center id may only contain A-Z a-z 0-9 . _ - (found {c:?})"
        )));
    }
    Ok(())
}

/// A record id: 1–256 bytes drawn from the characters of a DID
/// (`A-Z a-z 0-9 . _ - ~ : @ + = %`), where `%` starts a two-hex-digit escape.
/// `did:web:example.com:a1` is valid; whitespace, `/`, `?`, `#` are not.
pub fn validate_record_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() || id.len() > RECORD_ID_BYTES_MAX {
        return Err(IdError(format!("id must be 1 to {RECORD_ID_BYTES_MAX} characters")));
    }
    let b = id.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(IdError("id has a '%' not followed by two hex digits".into()));
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"._-~:@+=".contains(&c)) {
            return Err(IdError(format!(
                "id may only contain A-Z a-z 0-9 . _ - ~ : @ + = and %XX escapes (found {:?})",
                char::from(c)
            )));
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_ids() {
        assert!(validate_center_id("c1").is_ok());
        assert!(validate_center_id("beijing.cnnic-1_a").is_ok());
        assert!(validate_center_id("").is_err());
        assert!(validate_center_id("a b").is_err());
        assert!(validate_center_id(&"x".repeat(65)).is_err());
    }

    #[test]
    fn record_ids() {
        assert!(validate_record_id("did:web:example.com:a1").is_ok());
        assert!(validate_record_id("agent-7").is_ok());
        assert!(validate_record_id("did:key:z6Mk%3Aab").is_ok());
        assert!(validate_record_id(&"a".repeat(256)).is_ok());
        assert!(validate_record_id(&"a".repeat(257)).is_err());
        assert!(validate_record_id("").is_err());
        assert!(validate_record_id("a/b").is_err());
        assert!(validate_record_id("a b").is_err());
        assert!(validate_record_id("bad%zz").is_err());
        assert!(validate_record_id("bad%4").is_err());
        assert!(validate_record_id("é").is_err());
    }
}
