//! Mutations of byte strings (bit flips, truncations, insertions, huge
//! lengths, splices, removals) shared by the structured random tests.

use proptest::prelude::*;

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
