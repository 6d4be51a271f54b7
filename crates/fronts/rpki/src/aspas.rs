//! Validated ASPA payloads (AS provider attestations, the `rpki` crate's
//! profile: a customer AS and its ordered provider ASes) and their JSON
//! form, the `aspas` member rpki-client 9 writes (`{"customer_asid":
//! 64496, "expires": 1767225600, "providers": [64497, 64498]}`). Pure
//! formatting and merging.
//!
//! One entry per customer AS, as rpki-client keeps them (and as RTR's
//! ASPA PDU carries them): attestations of the same customer are merged,
//! their providers united and the earliest `expires` kept, with the trust
//! anchor of the attestation that set it. `expires` is rpki-client's: the
//! earliest moment the attestation stops being valid — its EE
//! certificate's notAfter, every CA certificate's notAfter up to the trust
//! anchor, and the nextUpdate of every CRL on that chain (the walk in
//! `validate` computes it).
//!
//! Must never: emit a customer AS twice, or a provider twice in one entry.

use std::collections::{BTreeMap, BTreeSet};

/// One validated ASPA.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Aspa {
    pub customer: u32,
    /// Provider ASes, ascending, each once.
    pub providers: Vec<u32>,
    pub ta: String,
    /// When it stops being valid, Unix seconds (see the module doc).
    pub expires_s: i64,
}

/// A validated set: customer AS → its merged attestation.
pub type AspaSet = BTreeMap<u32, Aspa>;

/// Adds `a` to `set`, merged with what the set holds for its customer.
pub fn merge(set: &mut AspaSet, mut a: Aspa) {
    a.providers.sort_unstable();
    a.providers.dedup();
    match set.get_mut(&a.customer) {
        None => {
            set.insert(a.customer, a);
        }
        Some(held) => {
            if a.expires_s < held.expires_s {
                held.expires_s = a.expires_s;
                held.ta = a.ta;
            }
            held.providers.extend(a.providers);
            held.providers.sort_unstable();
            held.providers.dedup();
        }
    }
}

/// The `aspas` member (rpki-client's shape, without the trust anchor:
/// rpki-client has none there).
pub fn to_json(aspas: &AspaSet) -> serde_json::Value {
    serde_json::Value::Array(
        aspas
            .values()
            .map(|a| serde_json::json!({"customer_asid": a.customer, "expires": a.expires_s, "providers": a.providers}))
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

    fn aspa(customer: u32, providers: &[u32], ta: &str, expires_s: i64) -> Aspa {
        Aspa {
            customer,
            providers: providers.to_vec(),
            ta: ta.into(),
            expires_s,
        }
    }

    #[test]
    fn json_round_trips_and_reads_routinator_shape() {
        let mut set = AspaSet::new();
        merge(&mut set, aspa(65000, &[65002, 65001], "lab", 1_800_000_000));
        let text = serde_json::json!({"aspas": to_json(&set)}).to_string();
        assert_eq!(
            text,
            r#"{"aspas":[{"customer_asid":65000,"expires":1800000000,"providers":[65001,65002]}]}"#
        );
        let want: BTreeSet<(u32, Vec<u32>)> = [(65000, vec![65001, 65002])].into();
        assert_eq!(from_json(&text), Some(want.clone()));
        let routinator = r#"{"aspas":[{"customer":"AS65000","providers":["AS65002","AS65001"],"ta":"lab"}]}"#;
        assert_eq!(from_json(routinator), Some(want));
        assert_eq!(from_json(r#"{"roas":[]}"#), None);
    }

    #[test]
    fn one_customer_is_one_entry_with_united_providers_and_the_earliest_expiry() {
        let mut set = AspaSet::new();
        merge(&mut set, aspa(65000, &[65001, 65003], "a", 2_000));
        merge(&mut set, aspa(65000, &[65002, 65001], "b", 1_000));
        merge(&mut set, aspa(65000, &[65004], "c", 3_000));
        merge(&mut set, aspa(64496, &[0], "a", 5_000));
        assert_eq!(set.len(), 2);
        assert_eq!(set[&65000], aspa(65000, &[65001, 65002, 65003, 65004], "b", 1_000));
        assert_eq!(set[&64496], aspa(64496, &[0], "a", 5_000));
    }
}
