//! Shared by the randomised tests of the parsers that read outside input (PROXY headers, the
//! WebSocket upgrade, password and ACL files, the config, store records): a fixed case count and
//! seed, and text mutations that keep the input mostly well-formed so the parsers get past their
//! first line.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

/// A fixed number of cases and a fixed seed, so a CI run takes a known time and replays the same
/// inputs (a failing input is also saved under `proptest-regressions/`).
/// `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=<n>` explore further by hand.
pub(crate) fn fuzz_config(cases: u32, seed: u64) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if matches!(config.rng_seed, RngSeed::Random) {
        config.rng_seed = RngSeed::Fixed(seed);
    }
    config
}

/// One edit of a text or byte input.
#[derive(Debug, Clone)]
pub(crate) enum Edit {
    /// Replace one byte.
    Set(Index, u8),
    /// Flip one bit.
    Flip(Index, u8),
    /// Insert bytes (often one of the input's own special characters).
    Insert(Index, Vec<u8>),
    /// Delete up to n bytes.
    Delete(Index, u8),
    /// Copy a range elsewhere (duplicated lines, keys, fields).
    Duplicate(Index, Index, u8),
    /// Cut the input short.
    Truncate(Index),
}

/// Edits biased towards the characters text formats are built from.
pub(crate) fn edit() -> impl Strategy<Value = Edit> {
    let special = prop_oneof![
        proptest::sample::select(
            &b" \t\r\n:=#$[]{}\",.'/+%\\-0123456789abcxyzAZ\x00\x7f\xc3\xa9\xff"[..]
        )
        .prop_map(|b| vec![b]),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    prop_oneof![
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        3 => (any::<Index>(), special).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<Index>(), 1u8..6).prop_map(|(i, n)| Edit::Delete(i, n)),
        2 => (any::<Index>(), any::<Index>(), 1u8..40).prop_map(|(a, b, n)| Edit::Duplicate(a, b, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ]
}

pub(crate) fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    let len = bytes.len();
    match e {
        Edit::Insert(i, b) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        _ if len == 0 => {}
        Edit::Set(i, b) => bytes[i.index(len)] = *b,
        Edit::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Edit::Delete(i, n) => {
            let at = i.index(len);
            bytes.drain(at..(at + usize::from(*n)).min(len));
        }
        Edit::Duplicate(from, to, n) => {
            let start = from.index(len);
            let copy = bytes[start..(start + usize::from(*n)).min(len)].to_vec();
            let at = to.index(len + 1);
            bytes.splice(at..at, copy);
        }
        Edit::Truncate(i) => bytes.truncate(i.index(len)),
    }
}

/// `bytes` after 1-4 edits.
pub(crate) fn mutated(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(edit(), 1..5).prop_map(move |edits| {
        let mut b = bytes.clone();
        for e in &edits {
            apply(&mut b, e);
        }
        b
    })
}

/// `text` after 1-4 edits, made valid UTF-8 again (the file parsers take `&str`; invalid UTF-8
/// is refused when the file is read, before any parser runs).
pub(crate) fn mutated_text(text: String) -> impl Strategy<Value = String> {
    mutated(text.into_bytes()).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}
