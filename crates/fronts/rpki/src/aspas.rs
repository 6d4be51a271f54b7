//! Validated ASPA payloads (AS provider attestations, the `rpki` crate's
//! profile: a customer AS and its ordered provider ASes) and their JSON
//! form, the `aspas` member rpki-client 9 writes (`{"customer_asid":
//! 64496, "providers": [64497, 64498]}`). Pure formatting.
//!
//! Must never: emit an attestation twice (the set is ordered and unique).

use std::collections::BTreeSet;

/// One validated ASPA.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Aspa {
    pub customer: u32,
    /// Provider ASes, ascending.
    pub providers: Vec<u32>,
    pub ta: String,
}

/// A validated set.
pub type AspaSet = BTreeSet<Aspa>;

/// The `aspas` member (rpki-client's shape, without the trust anchor:
/// rpki-client has none there).
pub fn to_json(aspas: &AspaSet) -> serde_json::Value {
    serde_json::Value::Array(
        aspas
            .iter()
            .map(|a| serde_json::json!({"customer_asid": a.customer, "providers": a.providers}))
            .collect(),
    )
}

fn asn(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Number(n) => u32::try_from(n.as_u64()?).ok(),
        serde_json::Value::String(s) => s.strip_prefix("AS").unwrap_or(s).parse().ok(),
        _ => None,
    }
}

/// Reads the `aspas` member of a JSON output — ours and rpki-client's
/// (`customer_asid`), or Routinator's (`customer`, `"AS…"` strings) — as
/// (customer, providers) pairs, for comparisons. None if it has none.
pub fn from_json(text: &str) -> Option<BTreeSet<(u32, Vec<u32>)>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut out = BTreeSet::new();
    for a in v.get("aspas")?.as_array()? {
        let customer = asn(a.get("customer_asid").or_else(|| a.get("customer"))?)?;
        let mut providers = a
            .get("providers")?
            .as_array()?
            .iter()
            .map(asn)
            .collect::<Option<Vec<u32>>>()?;
        providers.sort_unstable();
        out.insert((customer, providers));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_reads_routinator_shape() {
        let set: AspaSet = [Aspa {
            customer: 65000,
            providers: vec![65001, 65002],
            ta: "lab".into(),
        }]
        .into();
        let text = serde_json::json!({"aspas": to_json(&set)}).to_string();
        assert_eq!(text, r#"{"aspas":[{"customer_asid":65000,"providers":[65001,65002]}]}"#);
        let want: BTreeSet<(u32, Vec<u32>)> = [(65000, vec![65001, 65002])].into();
        assert_eq!(from_json(&text), Some(want.clone()));
        let routinator = r#"{"aspas":[{"customer":"AS65000","providers":["AS65002","AS65001"],"ta":"lab"}]}"#;
        assert_eq!(from_json(routinator), Some(want));
        assert_eq!(from_json(r#"{"roas":[]}"#), None);
    }
}
