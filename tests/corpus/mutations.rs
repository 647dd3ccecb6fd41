//! The fuzzing corpus's mutations: every `*.json` file of `tests/corpus/` (the seeds),
//! mutated by proptest (bit flips, byte changes, insertions, deletions, splices of one
//! seed into another, duplications, truncations, a member's value replaced).
//!
//! Two fuzzers use it: the status route's, in-process (`tests/it/fuzz.rs`), and the
//! parser's and the registry's, inside the crate (`src/updates.rs`'s tests), each with
//! `#[path]`: this file is the corpus's, not either test's.

use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// The seeds: every `*.json` file of `tests/corpus/`, by name.
pub fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .expect("tests/corpus is readable")
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (
                    name,
                    std::fs::read(&path).expect("a corpus file is readable"),
                )
            })
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 12, "the corpus has gone: {seeds:?}");
        seeds
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Inserts a piece of another seed.
    Splice {
        at: Index,
        seed: Index,
        from: Index,
        len: usize,
    },
    /// Repeats a piece of the input right after itself.
    Duplicate(Index, usize),
    Truncate(Index),
    /// Replaces the value of the first member at or after a point with another JSON
    /// value: the body stays well-formed more often, so the rules get fuzzed too.
    Replace(Index, &'static str),
}

/// Values to put in place of a member's value.
const VALUES: &[&str] = &[
    "null",
    "\"\"",
    "0",
    "-1",
    "1.5",
    "1e999",
    "18446744073709551616",
    "true",
    "[]",
    "{}",
    "{\"id\":\"\"}",
    "{\"id\":\"other\",\"type\":7}",
    "\"running\"",
    "\"finished\"",
    "\"idle\"",
    "\"..\"",
    "\"2025-10-16T19:49:15Z\"",
    "\"2025-10-16T21:49:15.106+02:00\"",
    "\"2025-10-16T19:49:42.276000000000000001Z\"",
    "\"\\u0000\\ud800\"",
    "\"é😀\"",
];

/// Bytes that mean something to a JSON parser or to UTF-8.
const INTERESTING: &[u8] =
    b"{}[]\":,\\ \n0123-+.eEnultrfu\x00\x1f\x7f\x80\xbf\xc3\xe2\xed\xef\xf0\xf4\xff";

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(INTERESTING.to_vec()),
        1 => any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        1 => (any::<Index>(), byte()).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        1 => (any::<Index>(), prop::collection::vec(byte(), 1..5))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(at, n)| Mutation::Delete(at, n)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>(), 1usize..48)
            .prop_map(|(at, seed, from, len)| Mutation::Splice { at, seed, from, len }),
        1 => (any::<Index>(), 1usize..32).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        5 => (any::<Index>(), prop::sample::select(VALUES))
            .prop_map(|(at, value)| Mutation::Replace(at, value)),
    ]
}

/// Where the JSON value starting at `start` (after any whitespace) ends, if it does.
fn value_end(input: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = start;
    while i < input.len() && input[i].is_ascii_whitespace() {
        i += 1;
    }
    let scalar = !matches!(input.get(i), Some(b'{' | b'[' | b'"'));
    while i < input.len() {
        let b = input[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        } else if scalar {
            if matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace() {
                return Some(i);
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn mutate(input: &mut Vec<u8>, mutation: &Mutation) {
    let len = input.len();
    match mutation {
        Mutation::FlipBit(at, bit) if len > 0 => input[at.index(len)] ^= 1 << bit,
        Mutation::SetByte(at, byte) if len > 0 => input[at.index(len)] = *byte,
        Mutation::Insert(at, bytes) => {
            let at = at.index(len + 1);
            input.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete(at, n) if len > 0 => {
            let at = at.index(len);
            input.drain(at..(at + n).min(len));
        }
        Mutation::Splice {
            at,
            seed,
            from,
            len: n,
        } => {
            let seeds = corpus();
            let other = &seeds[seed.index(seeds.len())].1;
            if !other.is_empty() {
                let from = from.index(other.len());
                let piece = &other[from..(from + n).min(other.len())];
                let at = at.index(len + 1);
                input.splice(at..at, piece.iter().copied());
            }
        }
        Mutation::Duplicate(at, n) if len > 0 => {
            let at = at.index(len);
            let end = (at + n).min(len);
            let piece = input[at..end].to_vec();
            input.splice(end..end, piece);
        }
        Mutation::Truncate(at) if len > 0 => input.truncate(at.index(len)),
        Mutation::Replace(at, value) if len > 0 => {
            let from = at.index(len);
            let Some(colon) = input[from..].iter().position(|&b| b == b':') else {
                return;
            };
            let start = from + colon + 1;
            if let Some(end) = value_end(input, start) {
                input.splice(start..end, value.bytes());
            }
        }
        _ => {}
    }
}

/// A seed, mutated a few times (or not at all: the seeds themselves are inputs too).
pub fn body() -> impl Strategy<Value = Vec<u8>> {
    let mutations = prop_oneof![
        2 => prop::collection::vec(mutation(), 0..2),
        1 => prop::collection::vec(mutation(), 2..6),
    ];
    (any::<Index>(), mutations).prop_map(|(seed, mutations)| {
        let seeds = corpus();
        let mut body = seeds[seed.index(seeds.len())].1.clone();
        for mutation in &mutations {
            mutate(&mut body, mutation);
        }
        body
    })
}

/// An update that makes run `job_id` known before the fuzzed one comes, with the seed's
/// config id and start time, so that the rules of a known run get exercised too.
pub fn prelude(job_id: &str) -> Vec<u8> {
    format!(
        r#"{{"jobId":{},"state":"running","startTime":"2025-10-16T19:49:15.106Z",
            "jobConfig":{{"id":"api-test-app_click_signals_aggregation"}}}}"#,
        Value::from(job_id)
    )
    .into_bytes()
}

pub fn shown(body: &[u8]) -> String {
    body.escape_ascii().to_string()
}
