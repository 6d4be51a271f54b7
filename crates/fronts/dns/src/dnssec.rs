//! The multi-signer records an agent keeps in step across providers
//! (RFC 8901 model 2, RFC 7344/8078, RFC 7477): DNSKEY RDATA in text and
//! wire form, key tags, the CDS and CDNSKEY a KSK publishes, the key tag an
//! RRSIG was made with, the CSYNC record asking the parent to copy NS and
//! glue, and which names are inside a zone (those need glue).
//!
//! Pure: no I/O. Must never: accept a DNSKEY that is not protocol 3 or has
//! no key, or produce a CDS for a key without the SEP flag.

use crate::wire::{self, WireError};
use base64::Engine;

/// DNSKEY flags: zone key.
pub const FLAG_ZONE: u16 = 0x0100;
/// DNSKEY flags: secure entry point (a KSK).
pub const FLAG_SEP: u16 = 0x0001;
/// CSYNC flags: immediate (RFC 7477 §2.1.1.2), without soaminimum: the
/// child's serials differ per provider.
pub const CSYNC_IMMEDIATE: u16 = 1;
/// Longest DNSKEY RDATA accepted, bytes (a 4096-bit RSA key fits).
pub const DNSKEY_BYTES_MAX: usize = 1024;

/// DNSKEY RDATA from its text form `FLAGS 3 ALGORITHM BASE64`.
pub fn dnskey_from_text(text: &str) -> Result<Vec<u8>, WireError> {
    let bad = || WireError::BadText(text.to_string());
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() < 4 {
        return Err(bad());
    }
    let flags: u16 = f[0].parse().map_err(|_| bad())?;
    let proto: u8 = f[1].parse().map_err(|_| bad())?;
    let alg: u8 = f[2].parse().map_err(|_| bad())?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(f[3..].concat())
        .map_err(|_| bad())?;
    if proto != 3 || key.is_empty() || flags & FLAG_ZONE == 0 || key.len() + 4 > DNSKEY_BYTES_MAX {
        return Err(bad());
    }
    let mut r = Vec::with_capacity(4 + key.len());
    r.extend_from_slice(&flags.to_be_bytes());
    r.push(proto);
    r.push(alg);
    r.extend_from_slice(&key);
    Ok(r)
}

/// The text form of DNSKEY (or CDNSKEY) RDATA.
pub fn dnskey_to_text(rdata: &[u8]) -> String {
    if rdata.len() < 5 {
        return format!("\\# {}", hex(rdata));
    }
    format!(
        "{} {} {} {}",
        u16::from_be_bytes([rdata[0], rdata[1]]),
        rdata[2],
        rdata[3],
        base64::engine::general_purpose::STANDARD.encode(&rdata[4..])
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Whether DNSKEY RDATA has the SEP flag (a KSK).
pub fn is_sep(rdata: &[u8]) -> bool {
    rdata.len() >= 2 && u16::from_be_bytes([rdata[0], rdata[1]]) & FLAG_SEP != 0
}

/// The key tag of DNSKEY RDATA (RFC 4034 Appendix B; not algorithm 1).
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 { u32::from(*b) } else { u32::from(*b) << 8 };
    }
    ac += (ac >> 16) & 0xFFFF;
    (ac & 0xFFFF) as u16
}

/// The CDS RDATA (digest type 2, SHA-256) of the KSK `rdata` at `owner`,
/// or `None` for a key without the SEP flag.
pub fn cds_of(owner: &str, rdata: &[u8]) -> Option<Vec<u8>> {
    if !is_sep(rdata) || rdata.len() < 5 {
        return None;
    }
    let mut r = key_tag(rdata).to_be_bytes().to_vec();
    r.push(rdata[3]);
    r.push(2);
    r.extend_from_slice(&wire::ds_sha256(owner, rdata));
    Some(r)
}

/// The type an RRSIG covers and the key tag it was made with.
pub fn rrsig_signer(rdata: &[u8]) -> Option<(u16, u16)> {
    let covered = u16::from_be_bytes([*rdata.first()?, *rdata.get(1)?]);
    let tag = u16::from_be_bytes([*rdata.get(16)?, *rdata.get(17)?]);
    Some((covered, tag))
}

/// CSYNC RDATA: serial 0 (ignored without soaminimum), immediate, and the
/// types the parent copies: A, NS, AAAA.
pub fn csync_rdata() -> Vec<u8> {
    let mut r = 0u32.to_be_bytes().to_vec();
    r.extend_from_slice(&CSYNC_IMMEDIATE.to_be_bytes());
    // Window 0, 4 bytes: bit 1 (A), bit 2 (NS), bit 28 (AAAA).
    r.extend_from_slice(&[0, 4, 0x60, 0, 0, 0x08]);
    r
}

/// RDATA of the types the agent keeps, in text form (for the API).
pub fn rdata_text(rtype: u16, rdata: &[u8]) -> String {
    match rtype {
        wire::TYPE_A if rdata.len() == 4 => std::net::Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).to_string(),
        wire::TYPE_NS => wire::read_name(rdata, 0).map(|(n, _)| n).unwrap_or_default(),
        wire::TYPE_DNSKEY | wire::TYPE_CDNSKEY => dnskey_to_text(rdata),
        wire::TYPE_CDS if rdata.len() > 4 => format!(
            "{} {} {} {}",
            u16::from_be_bytes([rdata[0], rdata[1]]),
            rdata[2],
            rdata[3],
            hex(&rdata[4..])
        ),
        wire::TYPE_CSYNC if rdata.len() >= 6 => format!(
            "{} {} A NS AAAA",
            u32::from_be_bytes([rdata[0], rdata[1], rdata[2], rdata[3]]),
            u16::from_be_bytes([rdata[4], rdata[5]])
        ),
        _ => format!("\\# {} {}", rdata.len(), hex(rdata)),
    }
}

/// Whether `name` is `zone` or below it (a nameserver there needs glue).
pub fn in_zone(name: &str, zone: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let z = zone.trim_end_matches('.').to_ascii_lowercase();
    z.is_empty() || n == z || n.ends_with(&format!(".{z}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A KSK Knot 3.2 made in the lab, and the key tag its RRSIG over the
    /// DNSKEY RRset named.
    const KSK: &str =
        "257 3 13 ejwjqrTk0/qiSekneedeYr2xIvFpanqYKqZv9UidqBiBboReZO4+PoBoa7hN1QI/7TWOAmOKB3w0cAE2XP+rAw==";

    #[test]
    fn dnskeys_round_trip_and_their_tag_matches_knots() {
        let k = dnskey_from_text(KSK).unwrap();
        assert_eq!(dnskey_to_text(&k), KSK);
        assert_eq!(key_tag(&k), 59293);
        assert!(is_sep(&k));
        let cds = cds_of("example.lab.", &k).unwrap();
        assert_eq!(&cds[..4], &[0xE7, 0x9D, 13, 2]);
        assert_eq!(cds.len(), 4 + 32);
        let zsk = dnskey_from_text(&KSK.replacen("257", "256", 1)).unwrap();
        assert!(cds_of("example.lab.", &zsk).is_none());
        for bad in ["257 2 13 AAAA", "257 3 13", "257 3 13 !!", "1 3 13 AAAA"] {
            assert!(dnskey_from_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csync_and_zone_membership() {
        assert_eq!(rdata_text(wire::TYPE_CSYNC, &csync_rdata()), "0 1 A NS AAAA");
        assert!(in_zone("ns1.Example.lab.", "example.lab."));
        assert!(!in_zone("ns1.p1.lab.", "example.lab."));
        assert!(!in_zone("xexample.lab.", "example.lab."));
    }
}
