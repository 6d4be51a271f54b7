//! The DNS wire format, as far as the agent needs it: names (case kept),
//! queries, RFC 2136 UPDATE messages (signed by [`crate::tsig`]), and
//! parsing of answers (compression pointers followed, the
//! RDATA of HSYNC, URI, SVCB, TLSA, NS, DNSKEY read).
//!
//! Pure: no I/O, no clock. Must never: follow a
//! compression pointer forward or loop, read past a message, or accept a
//! name longer than 255 bytes.

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_RRSIG: u16 = 46;
pub const TYPE_DNSKEY: u16 = 48;
pub const TYPE_TLSA: u16 = 52;
pub const TYPE_CDS: u16 = 59;
pub const TYPE_CDNSKEY: u16 = 60;
pub const TYPE_CSYNC: u16 = 62;
pub const TYPE_SVCB: u16 = 64;
pub const TYPE_URI: u16 = 256;
pub const TYPE_TSIG: u16 = 250;
/// HSYNC's type code: tdns's (0x0F9D), see PROTOCOL.md.
pub const TYPE_HSYNC: u16 = 3997;
pub const CLASS_IN: u16 = 1;
pub const CLASS_NONE: u16 = 254;
pub const CLASS_ANY: u16 = 255;

/// Longest name on the wire, bytes.
pub const NAME_BYTES_MAX: usize = 255;
/// Most records read from one message.
pub const RECORDS_MAX: usize = 512;

/// A message could not be parsed or built. Nothing was changed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message truncated at byte {0}")]
    Short(usize),
    #[error("bad name at byte {0}")]
    BadName(usize),
    #[error("name {0:?} is not a valid domain name")]
    BadText(String),
    #[error("too many records")]
    TooMany,
}

/// A domain name in presentation form, absolute (ends in `.`), case as
/// written. Compare with [`same_name`].
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// `name` absolute and checked: labels of 1 to 63 letters, digits, `-`,
/// `_`; 255 bytes at most on the wire.
pub fn check_name(name: &str) -> Result<String, WireError> {
    let bad = || WireError::BadText(name.to_string());
    let t = name.trim_end_matches('.');
    if t.is_empty() {
        return Ok(".".into());
    }
    let mut wire = 1;
    for l in t.split('.') {
        if l.is_empty() || l.len() > 63 || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(bad());
        }
        wire += 1 + l.len();
    }
    if wire > NAME_BYTES_MAX {
        return Err(bad());
    }
    Ok(format!("{t}."))
}

/// `name` on the wire, uncompressed, case kept.
pub fn name_wire(name: &str, out: &mut Vec<u8>) {
    for l in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

fn name_wire_lower(name: &str, out: &mut Vec<u8>) {
    name_wire(&name.to_ascii_lowercase(), out)
}

/// Reads a name at `at` (pointers followed backwards only); returns it and
/// where the name ends in place.
pub fn read_name(m: &[u8], mut at: usize) -> Result<(String, usize), WireError> {
    let mut out = String::new();
    let mut end = None;
    let mut len = 0usize;
    let mut limit = at;
    loop {
        let l = *m.get(at).ok_or(WireError::Short(at))? as usize;
        if l & 0xC0 == 0xC0 {
            let p = ((l & 0x3F) << 8) | *m.get(at + 1).ok_or(WireError::Short(at + 1))? as usize;
            if p >= limit {
                return Err(WireError::BadName(at));
            }
            end.get_or_insert(at + 2);
            limit = p;
            at = p;
            continue;
        }
        if l & 0xC0 != 0 {
            return Err(WireError::BadName(at));
        }
        if l == 0 {
            let end = end.unwrap_or(at + 1);
            if out.is_empty() {
                out.push('.');
            }
            return Ok((out, end));
        }
        let label = m.get(at + 1..at + 1 + l).ok_or(WireError::Short(at + 1))?;
        len += l + 1;
        if len > NAME_BYTES_MAX {
            return Err(WireError::BadName(at));
        }
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
        out.push('.');
        at += 1 + l;
    }
}

/// A query for `name`/`qtype`, recursion desired, EDNS0 with DO and the AD
/// bit set (RFC 6840 §5.7: ask for the AD bit).
pub fn query(id: u16, name: &str, qtype: u16, recursion: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    let flags: u16 = if recursion { 0x0100 | 0x0020 } else { 0x0020 };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    name_wire(name, &mut m);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root name, type 41, payload 1232, ext-rcode 0, version 0, DO.
    m.push(0);
    m.extend_from_slice(&TYPE_OPT.to_be_bytes());
    m.extend_from_slice(&1232u16.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
    m
}

/// One change of an UPDATE: add `rdata` of `rtype` at `name`, or delete
/// that one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub add: bool,
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

/// An RFC 2136 UPDATE of `zone` with `changes` (in order), unsigned.
pub fn update(id: u16, zone: &str, changes: &[Change]) -> Vec<u8> {
    let mut m = Vec::with_capacity(256);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&(5u16 << 11).to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&(changes.len() as u16).to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    name_wire(zone, &mut m);
    m.extend_from_slice(&TYPE_SOA.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    for c in changes {
        name_wire(&c.name, &mut m);
        m.extend_from_slice(&c.rtype.to_be_bytes());
        let (class, ttl) = if c.add { (CLASS_IN, c.ttl) } else { (CLASS_NONE, 0) };
        m.extend_from_slice(&class.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(c.rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&c.rdata);
    }
    m
}

/// A record of a parsed message; `rdata_at` is where its RDATA starts in
/// the message (names in RDATA may point back into it).
#[derive(Debug, Clone)]
pub struct Rr {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata_at: usize,
    pub rdata: Vec<u8>,
}

/// A parsed response: header bits and its records (a TSIG, if any, is the
/// last of `additional`).
#[derive(Debug, Clone)]
pub struct Response {
    pub id: u16,
    pub rcode: u8,
    /// Authenticated data: the resolver validated every record.
    pub ad: bool,
    pub truncated: bool,
    pub answers: Vec<Rr>,
    pub authority: Vec<Rr>,
    /// Glue and the like; where a referral's addresses are.
    pub additional: Vec<Rr>,
    pub msg: Vec<u8>,
}

fn u16_at(m: &[u8], at: usize) -> Result<u16, WireError> {
    Ok(u16::from_be_bytes(
        m.get(at..at + 2)
            .ok_or(WireError::Short(at))?
            .try_into()
            .expect("two bytes"),
    ))
}

/// Parses a response.
pub fn parse(m: Vec<u8>) -> Result<Response, WireError> {
    let id = u16_at(&m, 0)?;
    let flags = u16_at(&m, 2)?;
    let qd = u16_at(&m, 4)? as usize;
    let an = u16_at(&m, 6)? as usize;
    let ns = u16_at(&m, 8)? as usize;
    let ar = u16_at(&m, 10)? as usize;
    if an + ns + ar > RECORDS_MAX {
        return Err(WireError::TooMany);
    }
    let mut at = 12;
    for _ in 0..qd {
        at = read_name(&m, at)?.1 + 4;
    }
    let mut rrs = Vec::with_capacity(an + ns + ar);
    for _ in 0..an + ns + ar {
        let (name, end) = read_name(&m, at)?;
        let rtype = u16_at(&m, end)?;
        let class = u16_at(&m, end + 2)?;
        let ttl = u32::from(u16_at(&m, end + 4)?) << 16 | u32::from(u16_at(&m, end + 6)?);
        let len = u16_at(&m, end + 8)? as usize;
        let rdata_at = end + 10;
        let rdata = m
            .get(rdata_at..rdata_at + len)
            .ok_or(WireError::Short(rdata_at))?
            .to_vec();
        rrs.push(Rr {
            name,
            rtype,
            class,
            ttl,
            rdata_at,
            rdata,
        });
        at = rdata_at + len;
    }
    let additional = rrs.split_off(an + ns);
    let authority = rrs.split_off(an);
    Ok(Response {
        id,
        rcode: (flags & 0x000F) as u8,
        ad: flags & 0x0020 != 0,
        truncated: flags & 0x0200 != 0,
        answers: rrs,
        authority,
        additional,
        msg: m,
    })
}

/// An HSYNC record (the field layout PROTOCOL.md gives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hsync {
    /// 1 ON, 0 OFF.
    pub state: u8,
    /// 1 OWNER, 2 AGENT.
    pub nsmgmt: u8,
    /// 1 SIGN, 0 NOSIGN.
    pub sign: u8,
    pub identity: String,
    pub upstream: String,
}

impl Hsync {
    pub fn parse(rdata: &[u8]) -> Result<Hsync, WireError> {
        if rdata.len() < 5 {
            return Err(WireError::Short(rdata.len()));
        }
        let (identity, end) = read_name(rdata, 3)?;
        let (upstream, end) = read_name(rdata, end)?;
        if end != rdata.len() {
            return Err(WireError::BadName(end));
        }
        Ok(Hsync {
            state: rdata[0],
            nsmgmt: rdata[1],
            sign: rdata[2],
            identity,
            upstream,
        })
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut w = vec![self.state, self.nsmgmt, self.sign];
        name_wire(&self.identity, &mut w);
        name_wire(&self.upstream, &mut w);
        w
    }
}

/// URI RDATA (RFC 7553): priority, weight, target.
pub fn uri_target(rdata: &[u8]) -> Option<String> {
    String::from_utf8(rdata.get(4..)?.to_vec()).ok()
}

/// SVCB RDATA (RFC 9460) as far as used: priority, target, port,
/// ipv4hint addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svcb {
    pub priority: u16,
    pub target: String,
    pub port: Option<u16>,
    pub ipv4: Vec<std::net::Ipv4Addr>,
}

impl Svcb {
    pub fn parse(rdata: &[u8]) -> Result<Svcb, WireError> {
        let priority = u16_at(rdata, 0)?;
        let (target, mut at) = read_name(rdata, 2)?;
        let mut s = Svcb {
            priority,
            target,
            port: None,
            ipv4: Vec::new(),
        };
        while at < rdata.len() {
            let key = u16_at(rdata, at)?;
            let len = u16_at(rdata, at + 2)? as usize;
            let v = rdata.get(at + 4..at + 4 + len).ok_or(WireError::Short(at + 4))?;
            match key {
                3 if len == 2 => s.port = Some(u16::from_be_bytes([v[0], v[1]])),
                4 => s.ipv4.extend(
                    v.chunks_exact(4)
                        .map(|c| std::net::Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                ),
                _ => {}
            }
            at += 4 + len;
        }
        Ok(s)
    }
}

/// TLSA RDATA: usage, selector, matching type, data.
pub fn tlsa(rdata: &[u8]) -> Option<(u8, u8, u8, Vec<u8>)> {
    Some((
        *rdata.first()?,
        *rdata.get(1)?,
        *rdata.get(2)?,
        rdata.get(3..)?.to_vec(),
    ))
}

/// An NS record's target (its RDATA may point back into `msg`).
pub fn ns_target(msg: &[u8], rr: &Rr) -> Result<String, WireError> {
    Ok(read_name(msg, rr.rdata_at)?.0)
}

/// The SHA-256 DS digest of a DNSKEY (RFC 4509): owner (lower case) and
/// RDATA.
pub fn ds_sha256(owner: &str, dnskey_rdata: &[u8]) -> Vec<u8> {
    let mut w = Vec::new();
    name_wire_lower(owner, &mut w);
    w.extend_from_slice(dnskey_rdata);
    ring::digest::digest(&ring::digest::SHA256, &w).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_with_case_and_pointers() {
        let mut m = vec![0u8; 12];
        name_wire("Agent.P1.lab.", &mut m);
        // A pointer to the name at 12, then "x" + pointer.
        m.extend_from_slice(&[1, b'x', 0xC0, 12]);
        assert_eq!(read_name(&m, 12).unwrap(), ("Agent.P1.lab.".into(), 26));
        assert_eq!(read_name(&m, 26).unwrap(), ("x.Agent.P1.lab.".into(), 30));
        // A pointer forward or to itself is refused.
        let looped = vec![0xC0, 0];
        assert!(read_name(&looped, 0).is_err());
        assert_eq!(check_name("a.b").unwrap(), "a.b.");
        assert!(check_name("a..b").is_err() && check_name(&"a.".repeat(200)).is_err());
    }

    #[test]
    fn hsync_and_svcb_rdata() {
        let h = Hsync {
            state: 1,
            nsmgmt: 2,
            sign: 0,
            identity: "Agent.p1.lab.".into(),
            upstream: ".".into(),
        };
        assert_eq!(Hsync::parse(&h.to_wire()).unwrap(), h);
        let mut s = vec![0, 1, 0, 0, 3, 0, 2, 0x1F, 0x90, 0, 4, 0, 4, 127, 0, 0, 1];
        assert_eq!(
            Svcb::parse(&s).unwrap(),
            Svcb {
                priority: 1,
                target: ".".into(),
                port: Some(8080),
                ipv4: vec![std::net::Ipv4Addr::LOCALHOST]
            }
        );
        s.truncate(12);
        assert!(Svcb::parse(&s).is_err());
    }
}
