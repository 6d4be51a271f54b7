//! Shared by the structured random tests: mutations of byte strings (bit
//! flips, truncations, insertions, huge lengths, splices, removals), text of
//! every kind, and any JSON value.

use proptest::prelude::*;
use serde_json::{json, Value};

/// One change to a byte string.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip bit `bit` of the byte at `at` (modulo the length).
    Flip { at: usize, bit: u8 },
    /// Keep only the first `at` bytes (modulo the length + 1).
    Truncate { at: usize },
    /// Insert bytes at `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Overwrite up to 8 bytes at `at` with `0xff` (a huge length field).
    Huge { at: usize, n: u8 },
    /// Replace the bytes from `at` on by the tail of `other` from `from` on.
    Splice { at: usize, other: Vec<u8>, from: usize },
    /// Remove `n` bytes at `at`.
    Remove { at: usize, n: u8 },
}

pub fn mutation(pool: Vec<Vec<u8>>) -> impl Strategy<Value = Mutation> {
    let pool = if pool.is_empty() { vec![Vec::new()] } else { pool };
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                Just(vec![0xff, 0xfe]),
                Just(vec![0xc3]),
                Just(b"\"".to_vec()),
                Just(b"\\u0000".to_vec()),
                Just(b"\\ud800".to_vec()),
                Just(b"%".to_vec()),
                Just(b".".to_vec()),
                Just("é".as_bytes().to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1u8..9).prop_map(|(at, n)| Mutation::Huge { at, n }),
        (any::<usize>(), proptest::sample::select(pool), any::<usize>())
            .prop_map(|(at, other, from)| Mutation::Splice { at, other, from }),
        (any::<usize>(), 1u8..16).prop_map(|(at, n)| Mutation::Remove { at, n }),
    ]
}

pub fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        match m {
            Mutation::Flip { at, bit } => {
                if !b.is_empty() {
                    let i = at % b.len();
                    b[i] ^= 1 << bit;
                }
            }
            Mutation::Truncate { at } => b.truncate(at % (b.len() + 1)),
            Mutation::Insert { at, bytes } => {
                let i = at % (b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Huge { at, n } => {
                if !b.is_empty() {
                    let i = at % b.len();
                    let end = (i + *n as usize).min(b.len());
                    b[i..end].fill(0xff);
                }
            }
            Mutation::Splice { at, other, from } => {
                let i = at % (b.len() + 1);
                let j = from % (other.len() + 1);
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            Mutation::Remove { at, n } => {
                if !b.is_empty() {
                    let i = at % b.len();
                    let end = (i + *n as usize).min(b.len());
                    b.drain(i..end);
                }
            }
        }
    }
    b
}

/// Text of every kind: ASCII, non-ASCII, control characters, quotes.
pub fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(&format!("[a-z0-9:._%-]{{0,{max}}}")).unwrap(),
        proptest::collection::vec(any::<char>(), 0..max.min(24)).prop_map(|c| c.into_iter().collect()),
        Just("\"\\\u{0}\u{7f}\u{2028}é".to_string()),
    ]
}

pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(u64::MAX)),
    ]
}

pub fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text(40).prop_map(Value::String),
    ]
}

/// Any JSON value, nested up to 24 levels.
pub fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(24, 128, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text(12), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
