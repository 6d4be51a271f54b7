//! TSIG (RFC 8945, hmac-sha256 only): signing the agent's requests to a
//! primary or the parent, and checking that each answer is signed with the
//! same key over the request's MAC (§4.3.1, §5.3.2). An answer without a
//! valid TSIG is refused: it may not come from the server the key is shared
//! with.
//!
//! Pure: no I/O, no clock (the time is given). Must never: accept an answer
//! whose MAC does not verify, that names another key or algorithm, or that
//! was signed more than the fudge away from now; read past a message.

use crate::wire::{name_wire, read_name, WireError, CLASS_ANY, TYPE_TSIG};
use ring::hmac;

/// A TSIG key: its name and hmac-sha256 secret.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TsigKey({})", self.name)
    }
}

/// The only algorithm signed and accepted.
pub const ALGORITHM: &str = "hmac-sha256.";
/// Seconds a signature's time may differ from ours (RFC 8945 §10: 300).
pub const FUDGE_S: u16 = 300;
/// The MAC length of hmac-sha256; shorter (truncated) MACs are refused.
pub const MAC_BYTES: usize = 32;

/// Why an answer's TSIG was refused. Nothing was changed here; the server
/// may have acted on the request (the answer is what is not trusted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsigError {
    #[error("the answer carries no TSIG record (unsigned)")]
    Unsigned,
    #[error("the answer's TSIG names key {got}, not {want}")]
    WrongKey { got: String, want: String },
    #[error("the answer's TSIG uses algorithm {0}, not {ALGORITHM}")]
    WrongAlgorithm(String),
    #[error("the server refused our TSIG: {}", rcode_name(*.0))]
    Server(u16),
    #[error("the answer's TSIG MAC does not verify (another secret, or altered)")]
    BadMac,
    #[error("the answer's TSIG is {mac_bytes} bytes, not {MAC_BYTES}")]
    Truncated { mac_bytes: usize },
    #[error("the answer was signed at {signed_s}, more than {FUDGE_S} s from now ({now_s})")]
    BadTime { signed_s: u64, now_s: u64 },
    #[error("the answer's TSIG is malformed: {0}")]
    Malformed(#[from] WireError),
}

fn rcode_name(e: u16) -> String {
    match e {
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        22 => "BADTRUNC".into(),
        e => format!("error {e}"),
    }
}

fn lower_wire(name: &str, out: &mut Vec<u8>) {
    name_wire(&name.to_ascii_lowercase(), out)
}

/// The TSIG variables after the message (§4.3.3), canonical form.
fn variables(key_name: &str, alg: &str, time: &[u8], fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    lower_wire(key_name, &mut v);
    v.extend_from_slice(&CLASS_ANY.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    lower_wire(alg, &mut v);
    v.extend_from_slice(time);
    v.extend_from_slice(&fudge.to_be_bytes());
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

/// The MAC over (the request's MAC, length-prefixed, for an answer), the
/// message as it was before its TSIG was added, and the variables.
fn mac(key: &TsigKey, request_mac: Option<&[u8]>, msg: &[u8], vars: &[u8]) -> hmac::Tag {
    let k = hmac::Key::new(hmac::HMAC_SHA256, &key.secret);
    let mut ctx = hmac::Context::with_key(&k);
    if let Some(r) = request_mac {
        ctx.update(&(r.len() as u16).to_be_bytes());
        ctx.update(r);
    }
    ctx.update(msg);
    ctx.update(vars);
    ctx.sign()
}

/// Signs `m` (a complete message) at `now_s`: appends the TSIG record and
/// counts it in ARCOUNT. `request_mac` is given when `m` answers a signed
/// request. Returns the MAC, which the answer's TSIG must cover.
pub fn sign(m: &mut Vec<u8>, key: &TsigKey, now_s: u64, request_mac: Option<&[u8]>) -> Vec<u8> {
    let id = [m[0], m[1]];
    let time = &now_s.to_be_bytes()[2..];
    let vars = variables(&key.name, ALGORITHM, time, FUDGE_S, 0, &[]);
    let tag = mac(key, request_mac, m, &vars);
    let mac = tag.as_ref();
    let mut rdata = Vec::with_capacity(64);
    name_wire(ALGORITHM, &mut rdata);
    rdata.extend_from_slice(time);
    rdata.extend_from_slice(&FUDGE_S.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&id);
    rdata.extend_from_slice(&[0, 0, 0, 0]);
    lower_wire(&key.name, m);
    m.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    m.extend_from_slice(&CLASS_ANY.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(&rdata);
    let ar = u16::from_be_bytes([m[10], m[11]]) + 1;
    m[10..12].copy_from_slice(&ar.to_be_bytes());
    mac.to_vec()
}

fn u16_at(m: &[u8], at: usize) -> Result<u16, WireError> {
    m.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(WireError::Short(at))
}

fn bytes(m: &[u8], at: usize, n: usize) -> Result<&[u8], WireError> {
    m.get(at..at + n).ok_or(WireError::Short(at))
}

/// Where the last record of `m` starts, if it has any additional record.
fn last_additional(m: &[u8]) -> Result<Option<usize>, WireError> {
    let counts: Vec<usize> = (0..4)
        .map(|i| u16_at(m, 4 + 2 * i).map(usize::from))
        .collect::<Result<_, _>>()?;
    if counts[3] == 0 {
        return Ok(None);
    }
    let mut at = 12;
    for _ in 0..counts[0] {
        at = read_name(m, at)?.1 + 4;
    }
    let mut last = at;
    for _ in 0..counts[1] + counts[2] + counts[3] {
        last = at;
        let end = read_name(m, at)?.1;
        at = end + 10 + usize::from(u16_at(m, end + 8)?);
    }
    if at != m.len() {
        return Err(WireError::Short(at));
    }
    Ok(Some(last))
}

/// Checks that the answer `m` to a request signed with `request_mac` is
/// signed with `key` within [`FUDGE_S`] of `now_s`.
pub fn verify(m: &[u8], key: &TsigKey, request_mac: &[u8], now_s: u64) -> Result<(), TsigError> {
    let Some(at) = last_additional(m)? else {
        return Err(TsigError::Unsigned);
    };
    let (owner, end) = read_name(m, at)?;
    if u16_at(m, end)? != TYPE_TSIG {
        return Err(TsigError::Unsigned);
    }
    if !crate::wire::same_name(&owner, &key.name) {
        return Err(TsigError::WrongKey {
            got: owner,
            want: key.name.clone(),
        });
    }
    let r = end + 10;
    let (alg, a) = read_name(m, r)?;
    if !crate::wire::same_name(&alg, ALGORITHM) {
        return Err(TsigError::WrongAlgorithm(alg));
    }
    let time = bytes(m, a, 6)?;
    let fudge = u16_at(m, a + 6)?;
    let mac_len = usize::from(u16_at(m, a + 8)?);
    let got = bytes(m, a + 10, mac_len)?;
    let o = a + 10 + mac_len;
    let original_id = bytes(m, o, 2)?;
    let error = u16_at(m, o + 2)?;
    let other_len = usize::from(u16_at(m, o + 4)?);
    let other = bytes(m, o + 6, other_len)?;
    if error != 0 {
        return Err(TsigError::Server(error));
    }
    if mac_len != MAC_BYTES {
        return Err(TsigError::Truncated { mac_bytes: mac_len });
    }
    // The message as signed: without its TSIG, ARCOUNT one less, the
    // original id.
    let mut unsigned = m[..at].to_vec();
    unsigned[..2].copy_from_slice(original_id);
    let ar = u16_at(m, 10)? - 1;
    unsigned[10..12].copy_from_slice(&ar.to_be_bytes());
    let vars = variables(&key.name, ALGORITHM, time, fudge, error, other);
    let k = hmac::Key::new(hmac::HMAC_SHA256, &key.secret);
    let mut data = Vec::with_capacity(2 + request_mac.len() + unsigned.len() + vars.len());
    data.extend_from_slice(&(request_mac.len() as u16).to_be_bytes());
    data.extend_from_slice(request_mac);
    data.extend_from_slice(&unsigned);
    data.extend_from_slice(&vars);
    hmac::verify(&k, &data, got).map_err(|_| TsigError::BadMac)?;
    let signed_s = time.iter().fold(0u64, |t, b| t << 8 | u64::from(*b));
    if signed_s.abs_diff(now_s) > u64::from(fudge) {
        return Err(TsigError::BadTime { signed_s, now_s });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, b: u8) -> TsigKey {
        TsigKey {
            name: name.into(),
            secret: vec![b; 32],
        }
    }

    /// An answer to `req`: the header with QR set, signed by `k` over
    /// `req_mac`.
    fn answer(req: &[u8], k: &TsigKey, req_mac: &[u8], now_s: u64) -> Vec<u8> {
        let mut a = req[..12].to_vec();
        a[2] |= 0x80;
        a[4..12].copy_from_slice(&[0; 8]);
        sign(&mut a, k, now_s, Some(req_mac));
        a
    }

    #[test]
    fn an_answer_verifies_only_with_the_key_request_and_time_it_was_signed_with() {
        let k = key("p1", 1);
        let mut req = crate::wire::update(7, "example.lab.", &[]);
        let req_mac = sign(&mut req, &k, 1_700_000_000, None);
        assert_eq!(u16::from_be_bytes([req[10], req[11]]), 1);
        let a = answer(&req, &k, &req_mac, 1_700_000_001);
        assert_eq!(verify(&a, &k, &req_mac, 1_700_000_002), Ok(()));
        assert_eq!(
            verify(&a, &key("p1", 2), &req_mac, 1_700_000_002),
            Err(TsigError::BadMac)
        );
        assert_eq!(verify(&a, &k, &[0; 32], 1_700_000_002), Err(TsigError::BadMac));
        assert!(matches!(
            verify(&a, &key("p2", 1), &req_mac, 1_700_000_002),
            Err(TsigError::WrongKey { .. })
        ));
        assert!(matches!(
            verify(&a, &k, &req_mac, 1_700_001_000),
            Err(TsigError::BadTime { .. })
        ));
        let mut altered = a.clone();
        altered[3] |= 5; // rcode REFUSED
        assert_eq!(verify(&altered, &k, &req_mac, 1_700_000_002), Err(TsigError::BadMac));
        let mut unsigned = a[..12].to_vec();
        unsigned[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(verify(&unsigned, &k, &req_mac, 0), Err(TsigError::Unsigned));
        assert!(matches!(
            verify(&a[..a.len() - 1], &k, &req_mac, 0),
            Err(TsigError::Malformed(_))
        ));
    }
}
