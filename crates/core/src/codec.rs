//! Canonical binary encoding of records: the bytes that are signed, stored and
//! (later) sent to peers. One encoding for all three, so what was signed is
//! exactly what is kept.
//!
//! Layout, format version 1 (all integers big-endian):
//!
//! ```text
//! u8  format (=1)
//! u8  len, kind            u16 len, id            u8 len, origin
//! u64 version.wall_ms      u32 version.logical    u64 seq
//! u8  has_expiry, [u64 expires_at_ms]
//! u8  visibility (0 public, 1 authorized, 2 local), [u8 len, group]
//! u8  deleted (0/1)
//! u32 len, body (canonical JSON, UTF-8)
//! ---- end of the signed part ----
//! [64] signature                       (only in the signed form)
//! ```
//!
//! Decoding checks the format byte first; a future format 2 will be decoded
//! here and lifted to the current [`Record`] (decode-forward). Unknown formats
//! are refused, never guessed.

use crate::hlc::Hlc;
use crate::record::{Record, Visibility};
use serde_json::Value;
use thiserror::Error;

/// Current encoding format.
pub const FORMAT_V1: u8 = 1;
/// Signature length in the signed form.
pub const SIG_BYTES: usize = 64;

/// Bytes could not be decoded. Nothing was changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record is truncated")]
    Truncated,
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    #[error("record field {0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("record has invalid {0}")]
    Invalid(&'static str),
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
}

/// Encoding of everything but the signature: the bytes the origin signs.
pub fn encode_unsigned(r: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + r.kind.len() + r.id.len() + r.origin.len() + r.body.len());
    write_unsigned(r, &mut out);
    out
}

/// Signed form: [`encode_unsigned`] followed by the 64-byte signature.
pub fn encode(r: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + r.kind.len() + r.id.len() + r.origin.len() + r.body.len());
    write_unsigned(r, &mut out);
    out.extend_from_slice(&r.sig);
    out
}

fn write_unsigned(r: &Record, out: &mut Vec<u8>) {
    assert!(r.kind.len() <= u8::MAX as usize, "kind name too long");
    assert!(r.id.len() <= u16::MAX as usize, "id too long");
    assert!(r.origin.len() <= u8::MAX as usize, "origin too long");
    assert!(r.body.len() <= u32::MAX as usize, "body too long");
    out.push(FORMAT_V1);
    out.push(r.kind.len() as u8);
    out.extend_from_slice(r.kind.as_bytes());
    out.extend_from_slice(&(r.id.len() as u16).to_be_bytes());
    out.extend_from_slice(r.id.as_bytes());
    out.push(r.origin.len() as u8);
    out.extend_from_slice(r.origin.as_bytes());
    out.extend_from_slice(&r.version.wall_ms.to_be_bytes());
    out.extend_from_slice(&r.version.logical.to_be_bytes());
    out.extend_from_slice(&r.seq.to_be_bytes());
    match r.expires_at_ms {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_be_bytes());
        }
        None => out.push(0),
    }
    match &r.visibility {
        Visibility::Public => out.push(0),
        Visibility::Authorized(g) => {
            assert!(g.len() <= u8::MAX as usize, "group too long");
            out.push(1);
            out.push(g.len() as u8);
            out.extend_from_slice(g.as_bytes());
        }
        Visibility::Local => out.push(2),
    }
    out.push(r.deleted as u8);
    out.extend_from_slice(&(r.body.len() as u32).to_be_bytes());
    out.extend_from_slice(r.body.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn str(&mut self, n: usize, field: &'static str) -> Result<String, DecodeError> {
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8(field))
    }
}

/// Decodes the signed form. Does not verify the signature (see [`crate::sign`]).
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader { b: bytes };
    let format = r.u8()?;
    if format != FORMAT_V1 {
        return Err(DecodeError::UnknownFormat(format));
    }
    let n = r.u8()? as usize;
    let kind = r.str(n, "kind")?;
    let n = r.u16()? as usize;
    let id = r.str(n, "id")?;
    let n = r.u8()? as usize;
    let origin = r.str(n, "origin")?;
    let version = Hlc::new(r.u64()?, r.u32()?);
    let seq = r.u64()?;
    let expires_at_ms = match r.u8()? {
        0 => None,
        1 => Some(r.u64()?),
        _ => return Err(DecodeError::Invalid("expiry flag")),
    };
    let visibility = match r.u8()? {
        0 => Visibility::Public,
        1 => {
            let n = r.u8()? as usize;
            Visibility::Authorized(r.str(n, "group")?)
        }
        2 => Visibility::Local,
        _ => return Err(DecodeError::Invalid("visibility")),
    };
    let deleted = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::Invalid("deleted flag")),
    };
    let n = r.u32()? as usize;
    let body = r.str(n, "body")?;
    let sig: [u8; SIG_BYTES] = r.take(SIG_BYTES)?.try_into().unwrap();
    if !r.b.is_empty() {
        return Err(DecodeError::Trailing(r.b.len()));
    }
    Ok(Record {
        kind,
        id,
        origin,
        version,
        seq,
        expires_at_ms,
        visibility,
        deleted,
        body,
        sig,
    })
}

/// Canonical JSON text: object keys sorted by their UTF-8 bytes, no
/// insignificant white space, numbers and strings as serde_json writes them.
/// Independent of serde_json's map ordering features.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": "s"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"s","z":[1,{"x":3,"y":2}]},"b":1}"#);
    }

    #[test]
    fn refuses_unknown_format_and_trailing_bytes() {
        assert_eq!(decode(&[9]), Err(DecodeError::UnknownFormat(9)));
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
        let r = Record {
            kind: "agent".into(),
            id: "a".into(),
            origin: "c1".into(),
            version: Hlc::new(1, 0),
            seq: 1,
            expires_at_ms: None,
            visibility: Visibility::Public,
            deleted: false,
            body: "{}".into(),
            sig: [0; 64],
        };
        let mut b = encode(&r);
        assert_eq!(decode(&b).unwrap(), r);
        b.push(0);
        assert_eq!(decode(&b), Err(DecodeError::Trailing(1)));
    }
}
