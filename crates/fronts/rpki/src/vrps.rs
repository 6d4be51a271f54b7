//! Validated ROA payloads and the two text forms operators read: the JSON
//! rpki-client writes (`{"roas":[{"asn":"AS64496","prefix":"192.0.2.0/24",
//! "maxLength":24,"ta":"name"}]}`) and Routinator's CSV (`ASN,IP
//! Prefix,Max Length,Trust Anchor`). Pure formatting.
//!
//! Must never: emit a VRP twice (the set is ordered and unique) or a prefix
//! with host bits set.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

/// One VRP. Ordered by (ASN, address family, prefix, length, max length, TA).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vrp {
    pub asn: u32,
    pub addr: IpAddr,
    pub len: u8,
    pub max_len: u8,
    pub ta: String,
}

impl Vrp {
    pub fn prefix(&self) -> String {
        format!("{}/{}", self.addr, self.len)
    }
}

/// A validated set.
pub type VrpSet = BTreeSet<Vrp>;

/// rpki-client's JSON shape (the `roas` member; counts in `metadata`).
pub fn to_json(vrps: &VrpSet, generated_s: u64) -> String {
    to_json_with(vrps, &Default::default(), generated_s)
}

/// rpki-client's JSON shape with its `aspas` member too.
pub fn to_json_with(vrps: &VrpSet, aspas: &crate::aspas::AspaSet, generated_s: u64) -> String {
    let roas: Vec<serde_json::Value> = vrps
        .iter()
        .map(|v| {
            serde_json::json!({
                "asn": format!("AS{}", v.asn),
                "prefix": v.prefix(),
                "maxLength": v.max_len,
                "ta": v.ta,
            })
        })
        .collect();
    serde_json::json!({
        "metadata": {"buildtime": generated_s, "vrps": vrps.len(), "aspas": aspas.len()},
        "roas": roas,
        "aspas": crate::aspas::to_json(aspas),
    })
    .to_string()
}

/// Routinator's CSV.
pub fn to_csv(vrps: &VrpSet) -> String {
    let mut s = String::from("ASN,IP Prefix,Max Length,Trust Anchor\n");
    for v in vrps {
        let _ = writeln!(s, "AS{},{},{},{}", v.asn, v.prefix(), v.max_len, v.ta);
    }
    s
}

/// Reads an rpki-client JSON output (either `"asn": 64496` or
/// `"asn": "AS64496"`) into a set, for comparisons. None if it is not one.
pub fn from_json(text: &str) -> Option<VrpSet> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut out = VrpSet::new();
    for r in v.get("roas")?.as_array()? {
        let asn = match r.get("asn")? {
            serde_json::Value::Number(n) => u32::try_from(n.as_u64()?).ok()?,
            serde_json::Value::String(s) => s.strip_prefix("AS").unwrap_or(s).parse().ok()?,
            _ => return None,
        };
        let (addr, len) = r.get("prefix")?.as_str()?.split_once('/')?;
        out.insert(Vrp {
            asn,
            addr: addr.parse().ok()?,
            len: len.parse().ok()?,
            max_len: u8::try_from(r.get("maxLength")?.as_u64()?).ok()?,
            ta: r.get("ta")?.as_str()?.to_string(),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_csv_have_the_shapes_operators_parse() {
        let mut set = VrpSet::new();
        set.insert(Vrp {
            asn: 64496,
            addr: "192.0.2.0".parse().unwrap(),
            len: 24,
            max_len: 24,
            ta: "lab".into(),
        });
        set.insert(Vrp {
            asn: 64497,
            addr: "2001:db8::".parse().unwrap(),
            len: 32,
            max_len: 48,
            ta: "lab".into(),
        });
        let j = to_json(&set, 1);
        assert!(
            j.contains(r#"{"asn":"AS64496","maxLength":24,"prefix":"192.0.2.0/24","ta":"lab"}"#),
            "{j}"
        );
        assert_eq!(from_json(&j).unwrap(), set);
        assert_eq!(
            to_csv(&set),
            "ASN,IP Prefix,Max Length,Trust Anchor\nAS64496,192.0.2.0/24,24,lab\nAS64497,2001:db8::/32,48,lab\n"
        );
        let numeric = r#"{"roas":[{"asn":64496,"prefix":"192.0.2.0/24","maxLength":24,"ta":"lab","expires":1}]}"#;
        assert_eq!(from_json(numeric).unwrap().len(), 1);
        assert!(from_json("{}").is_none());
    }
}
