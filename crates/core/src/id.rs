//! Identifier rules for centers and records. Pure validation, no allocation
//! beyond the error message. Must never decode or rewrite an id: a record id
//! is compared and stored byte for byte as its owner wrote it.

use thiserror::Error;

/// Longest center id, in bytes (`[A-Za-z0-9._-]{1,64}`).
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

/// A record id, in its one canonical form: exactly the path segment that
/// names it in `/v1/agents/{id}`, never percent-decoded. 1–256 bytes drawn from
/// the characters of a DID (`A-Z a-z 0-9 . _ - ~ : @ + =`) and `%XX` escapes,
/// which are part of the id (did:web writes a port's colon as `%3A`). So that
/// one id has one spelling, an escape uses uppercase hex digits and never
/// stands for a character that needs none (`A-Z a-z 0-9 - . _ ~`, RFC 3986
/// §2.3). `.` and `..` are refused: paths cannot name them.
/// `did:web:example.com%3A8080:a1` is valid; whitespace, `/`, `?`, `#`, a bare
/// `%`, `%3a` and `%41` are not.
pub fn validate_record_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() || id.len() > RECORD_ID_BYTES_MAX {
        return Err(IdError(format!("id must be 1 to {RECORD_ID_BYTES_MAX} characters")));
    }
    if id == "." || id == ".." {
        return Err(IdError(format!("id may not be {id:?}")));
    }
    let b = id.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hex = |k: usize| {
                b.get(k)
                    .copied()
                    .filter(|d| d.is_ascii_digit() || (b'A'..=b'F').contains(d))
            };
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(IdError(
                    "id has a '%' not followed by two uppercase hex digits (write %3A, not %3a or %)".into(),
                ));
            };
            let byte = (hex_value(hi) << 4) | hex_value(lo);
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                return Err(IdError(format!(
                    "id escapes {:?}, which is written as itself",
                    char::from(byte)
                )));
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

fn hex_value(d: u8) -> u8 {
    if d.is_ascii_digit() {
        d - b'0'
    } else {
        d - b'A' + 10
    }
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
        assert!(validate_record_id("did:web:example.com%3A8080:a1").is_ok());
        assert!(validate_record_id("a%2Fb%25").is_ok());
        assert!(validate_record_id(".").is_err());
        assert!(validate_record_id("..").is_err());
        assert!(validate_record_id("...").is_ok());
        assert!(validate_record_id("a.b").is_ok());
        assert!(validate_record_id("bad%").is_err());
        assert!(
            validate_record_id("did:web:example.com%3a8080").is_err(),
            "lowercase hex"
        );
        assert!(validate_record_id("%41gent").is_err(), "escaped unreserved");
        assert!(validate_record_id("a%7E").is_err(), "escaped unreserved");
    }
}
