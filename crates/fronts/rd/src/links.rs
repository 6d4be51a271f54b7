//! Limited Link Format (RFC 9176 §6 and Appendix C, a subset of RFC 6690):
//! parsing a registration's payload into normalized links, resolving their
//! targets and anchors against a base URI, and writing links back out.
//!
//! Pure: no I/O. Must never accept a relative reference other than an
//! absolute path (`/...`), which Limited Link Format forbids.

use serde::{Deserialize, Serialize};

/// Most links in one registration.
pub const LINKS_MAX: usize = 256;
/// Most attributes on one link.
pub const LINK_ATTRS_MAX: usize = 32;
/// Longest URI reference or attribute value, bytes.
pub const VALUE_BYTES_MAX: usize = 255;

/// One link: its target reference as written, and its attributes in order
/// (a value of None is a flag such as `obs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    pub attrs: Vec<(String, Option<String>)>,
}

impl Link {
    /// The values of attribute `name` (several if repeated).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attrs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

/// A payload is not Limited Link Format. Nothing was stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("link format: {0}")]
pub struct LinkFormatError(pub String);

fn bad(m: impl Into<String>) -> LinkFormatError {
    LinkFormatError(m.into())
}

/// True for an absolute URI `scheme://authority...` or `scheme:...`.
pub fn is_absolute_uri(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// A reference Limited Link Format allows: an absolute path or an absolute URI.
fn check_ref(what: &str, r: &str) -> Result<(), LinkFormatError> {
    if r.len() > VALUE_BYTES_MAX {
        return Err(bad(format!("{what} is longer than {VALUE_BYTES_MAX} bytes")));
    }
    if r.chars().any(|c| c.is_control() || c.is_whitespace() || c == '"') {
        return Err(bad(format!(
            "{what} {r:?} has white space, quotes or control characters"
        )));
    }
    if r.starts_with("//") || !(r.starts_with('/') || is_absolute_uri(r)) {
        return Err(bad(format!(
            "{what} {r:?} must be an absolute path (/...) or an absolute URI (Limited Link Format)"
        )));
    }
    if r.split(['?', '#'])
        .next()
        .unwrap_or("")
        .split('/')
        .any(|s| s == "." || s == "..")
    {
        return Err(bad(format!("{what} {r:?} has dot segments")));
    }
    Ok(())
}

fn valid_attr_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_' | '*'))
        && !n.ends_with('*')
}

/// Parses a link-format payload. An empty payload is no links.
pub fn parse(payload: &str) -> Result<Vec<Link>, LinkFormatError> {
    let b = payload.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if i == b.len() {
        return Ok(out);
    }
    loop {
        skip_ws(&mut i);
        if b.get(i) != Some(&b'<') {
            return Err(bad(format!("expected '<' at byte {i}")));
        }
        let end = payload[i + 1..].find('>').ok_or_else(|| bad("a '<' without its '>'"))? + i + 1;
        let href = &payload[i + 1..end];
        check_ref("target", href)?;
        i = end + 1;
        let mut link = Link {
            href: href.to_string(),
            attrs: Vec::new(),
        };
        loop {
            skip_ws(&mut i);
            if b.get(i) != Some(&b';') {
                break;
            }
            i += 1;
            skip_ws(&mut i);
            let start = i;
            while i < b.len() && !matches!(b[i], b'=' | b';' | b',' | b' ') {
                i += 1;
            }
            let name = payload[start..i].to_ascii_lowercase();
            if !valid_attr_name(&name) {
                return Err(bad(format!("attribute name {name:?} is not a valid parameter name")));
            }
            skip_ws(&mut i);
            let value = if b.get(i) == Some(&b'=') {
                i += 1;
                skip_ws(&mut i);
                if b.get(i) == Some(&b'"') {
                    let mut v = String::new();
                    i += 1;
                    loop {
                        match b.get(i) {
                            None => return Err(bad("an unterminated quoted value")),
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(b'\\') if i + 1 < b.len() => {
                                v.push(b[i + 1] as char);
                                i += 2;
                            }
                            Some(_) => {
                                let c = payload[i..].chars().next().unwrap_or('\0');
                                v.push(c);
                                i += c.len_utf8();
                            }
                        }
                    }
                    Some(v)
                } else {
                    let start = i;
                    while i < b.len() && !matches!(b[i], b';' | b',') {
                        i += 1;
                    }
                    let v = payload[start..i].trim_end();
                    if v.is_empty() || v.contains(['"', '<', '>', ' ']) {
                        return Err(bad(format!("attribute {name} has an invalid unquoted value")));
                    }
                    Some(v.to_string())
                }
            } else {
                None
            };
            if let Some(v) = &value {
                if v.len() > VALUE_BYTES_MAX || v.chars().any(char::is_control) {
                    return Err(bad(format!(
                        "attribute {name}: value too long or with control characters"
                    )));
                }
            }
            if name == "anchor" {
                check_ref("anchor", value.as_deref().unwrap_or(""))?;
            }
            if link.attrs.len() >= LINK_ATTRS_MAX {
                return Err(bad(format!("more than {LINK_ATTRS_MAX} attributes on one link")));
            }
            link.attrs.push((name, value));
        }
        out.push(link);
        if out.len() > LINKS_MAX {
            return Err(bad(format!("more than {LINKS_MAX} links")));
        }
        skip_ws(&mut i);
        match b.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(c) => return Err(bad(format!("unexpected {:?} at byte {i}", *c as char))),
        }
    }
}

/// `reference` resolved against `base` (`scheme://authority[/path]`): an
/// absolute URI stays, an absolute path replaces the base's path.
pub fn resolve(base: &str, reference: &str) -> String {
    if is_absolute_uri(reference) {
        return reference.to_string();
    }
    let origin_end = base
        .find("://")
        .map(|p| p + 3 + base[p + 3..].find('/').unwrap_or(base.len() - p - 3))
        .unwrap_or(base.len());
    format!("{}{}", &base[..origin_end], reference)
}

/// The base's scheme and authority only (the default anchor).
pub fn origin_of(base: &str) -> &str {
    match base.find("://") {
        Some(p) => {
            let rest = &base[p + 3..];
            &base[..p + 3 + rest.find('/').unwrap_or(rest.len())]
        }
        None => base,
    }
}

/// Writes one attribute `;name="value"` (bare for flags and numbers).
pub fn write_attr(out: &mut String, name: &str, value: Option<&str>) {
    out.push(';');
    out.push_str(name);
    if let Some(v) = value {
        out.push('=');
        if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) {
            out.push_str(v);
        } else {
            out.push('"');
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9176_registration_payload() {
        // RFC 9176 §5.3's example registration payload.
        let l = parse(
            "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\n</sensors/light>;rt=\"light-lux\";if=\"sensor\"",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].href, "/sensors/temp");
        assert_eq!(l[1].values("rt").collect::<Vec<_>>(), ["light-lux"]);
        // Appendix C-style: a link with an absolute anchor, flags, bare values.
        let l = parse("</t>;anchor=\"coap://[2001:db8::1]/x\";obs;ct=41").unwrap();
        assert_eq!(l[0].attrs[1], ("obs".into(), None));
        assert_eq!(l[0].attrs[2], ("ct".into(), Some("41".into())));
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn not_limited_link_format() {
        for p in [
            "<sensors/temp>",
            "<../x>",
            "</a/../b>",
            "<//host/x>",
            "</x>;anchor=\"rel\"",
            "</x>;rt=\"open",
            "</x",
            "x",
            "</x>;=1",
            "</x> </y>",
        ] {
            assert!(parse(p).is_err(), "{p}");
        }
        let many = vec!["</x>"; LINKS_MAX + 1].join(",");
        assert!(parse(&many).is_err());
    }

    #[test]
    fn resolution() {
        let b = "coap://[2001:db8:3::123]:61616";
        assert_eq!(resolve(b, "/temp"), "coap://[2001:db8:3::123]:61616/temp");
        assert_eq!(resolve("coap://h/base/path", "/t"), "coap://h/t");
        assert_eq!(resolve(b, "coap://other/x"), "coap://other/x");
        assert_eq!(origin_of("coap://h:1/a/b"), "coap://h:1");
        let mut s = String::new();
        write_attr(&mut s, "rt", Some("a \"b\""));
        write_attr(&mut s, "ct", Some("41"));
        write_attr(&mut s, "obs", None);
        assert_eq!(s, ";rt=\"a \\\"b\\\"\";ct=41;obs");
    }
}
