//! What the agent reads from a peer's X.509 certificate: its
//! SubjectPublicKeyInfo (to compare with TLSA 3 1 1, and, once it matched,
//! the Ed25519 key in it: the center's record-signing key) and its dNSName
//! subject alternative names (the center id the mesh knows it by). A
//! minimal DER walk; it checks nothing else.
//!
//! Must never: treat a certificate as valid because it parsed here; read
//! past the input.

/// One DER element: tag, and the content's range in the input.
fn tlv(d: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *d.get(at)?;
    let l0 = *d.get(at + 1)? as usize;
    let (len, start) = if l0 < 0x80 {
        (l0, at + 2)
    } else {
        let n = l0 & 0x7F;
        if n == 0 || n > 3 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = len << 8 | *d.get(at + 2 + i)? as usize;
        }
        (len, at + 2 + n)
    };
    (start + len <= d.len()).then_some((tag, start, start + len))
}

/// The children of the constructed element whose content is `d[s..e]`.
fn children(d: &[u8], s: usize, e: usize) -> Option<Vec<(u8, usize, usize, usize)>> {
    let mut out = Vec::new();
    let mut at = s;
    while at < e {
        let (tag, cs, ce) = tlv(d, at)?;
        out.push((tag, at, cs, ce));
        at = ce;
    }
    Some(out)
}

/// The TBSCertificate's children.
fn tbs(cert: &[u8]) -> Option<Vec<(u8, usize, usize, usize)>> {
    let (_, s, e) = tlv(cert, 0)?;
    let (_, ts, te) = tlv(cert, children(cert, s, e)?.first()?.1)?;
    children(cert, ts, te)
}

/// The DER of the certificate's SubjectPublicKeyInfo.
pub fn spki(cert: &[u8]) -> Option<Vec<u8>> {
    let t = tbs(cert)?;
    // [0] version is optional; SPKI is the 6th field after it.
    let skip = usize::from(t.first()?.0 == 0xA0);
    let (_, at, _, end) = *t.get(skip + 5)?;
    Some(cert[at..end].to_vec())
}

/// SHA-256 of the SPKI: what TLSA 3 1 1 holds.
pub fn spki_sha256(cert: &[u8]) -> Option<Vec<u8>> {
    Some(
        ring::digest::digest(&ring::digest::SHA256, &spki(cert)?)
            .as_ref()
            .to_vec(),
    )
}

/// The Ed25519 public key (OID 1.3.101.112) of the certificate's SPKI, in
/// lower-case hex: a center's record-signing key, the same key its
/// certificate holds. `None` for any other key type.
pub fn ed25519_key_hex(cert: &[u8]) -> Option<String> {
    const ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
    let spki = spki(cert)?;
    let (_, s, e) = tlv(&spki, 0)?;
    let parts = children(&spki, s, e)?;
    let (_, _, algs, alge) = *parts.first()?;
    let (bt, _, bs, be) = *parts.get(1)?;
    if spki.get(algs..alge)? != ED25519 || bt != 0x03 || be - bs != 33 || spki[bs] != 0 {
        return None;
    }
    Some(spki[bs + 1..be].iter().map(|b| format!("{b:02x}")).collect())
}

/// The dNSName entries of the subjectAltName extension.
pub fn dns_names(cert: &[u8]) -> Vec<String> {
    dns_names_opt(cert).unwrap_or_default()
}

fn dns_names_opt(cert: &[u8]) -> Option<Vec<String>> {
    const SAN: &[u8] = &[0x55, 0x1D, 0x11];
    let t = tbs(cert)?;
    let (_, _, es, _) = *t.iter().find(|c| c.0 == 0xA3)?;
    let (_, ls, le) = tlv(cert, es)?;
    for (_, _, xs, xe) in children(cert, ls, le)? {
        let parts = children(cert, xs, xe)?;
        let (_, _, os, oe) = *parts.first()?;
        if &cert[os..oe] != SAN {
            continue;
        }
        let (_, _, vs, _) = *parts.last()?;
        let (_, ns, ne) = tlv(cert, vs)?;
        let names = children(cert, ns, ne)?
            .into_iter()
            .filter(|c| c.0 == 0x82)
            .filter_map(|(_, _, s, e)| String::from_utf8(cert[s..e].to_vec()).ok())
            .collect();
        return Some(names);
    }
    Some(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spki_and_names_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["c7".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        assert_eq!(spki(&der).unwrap(), rcgen::PublicKeyData::subject_public_key_info(&key));
        assert_eq!(dns_names(&der), vec!["c7".to_string()]);
        assert!(spki(&der[..20]).is_none());
        // An ECDSA key is not a record key.
        assert!(ed25519_key_hex(&der).is_none());
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["c8".to_string()])
            .unwrap()
            .self_signed(&ed)
            .unwrap();
        let raw = ed.public_key_raw();
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ed25519_key_hex(cert.der()), Some(hex));
    }
}
