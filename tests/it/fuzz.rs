//! A byte fuzzer, driven by proptest, on the body parser, the registry and the status
//! route. Inputs start from the files of `tests/corpus/` and are mutated (bit flips, byte
//! changes, insertions, deletions, splices of one seed into another, duplications,
//! truncations). Whatever the bytes: no panic, a parse that fails says why, the registry
//! refuses with a 4xx or accepts (and then takes the same bytes again as a repeat), and
//! the route answers every request with a JSON body and a 2xx or 4xx status.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use job_launcher_mock::clock::{Clock, ClockMode};
use job_launcher_mock::config::Validation;
use job_launcher_mock::model::StatusUpdate;
use job_launcher_mock::registry::{Limits, Registry};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use crate::helpers::nonzero;
use crate::shared_app::reset_app;

/// The seeds: every `*.json` file of `tests/corpus/`, by name.
fn corpus() -> &'static [(String, Vec<u8>)] {
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
fn body() -> impl Strategy<Value = Vec<u8>> {
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
fn prelude(job_id: &str) -> Vec<u8> {
    format!(
        r#"{{"jobId":{},"state":"running","startTime":"2025-10-16T19:49:15.106Z",
            "jobConfig":{{"id":"api-test-app_click_signals_aggregation"}}}}"#,
        Value::from(job_id)
    )
    .into_bytes()
}

fn shown(body: &[u8]) -> String {
    body.escape_ascii().to_string()
}

fn registry() -> Registry {
    let limits = Limits {
        max_runs: nonzero(8),
        max_history: nonzero(8),
        max_status_bytes: nonzero(1 << 20),
        validation: Validation::Strict,
    };
    Registry::new(limits, Arc::new(Clock::new(ClockMode::System)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The parser takes any bytes without panicking; the registry refuses what it is
    /// given with a 4xx or accepts it, and then takes the same update again as a repeat.
    /// A refused update changes nothing, so it is refused again with the same code.
    #[test]
    fn the_parser_and_the_registry_take_any_bytes(body in body(), known in any::<bool>()) {
        let registry = registry();
        let parsed = match StatusUpdate::parse(&body) {
            Ok(parsed) => parsed,
            Err(malformed) => {
                prop_assert!(!malformed.0.is_empty(), "{}", shown(&body));
                return Ok(());
            }
        };
        let (update, problems) = parsed;
        let Some(job_id) = update.job_id.clone() else {
            prop_assert!(!problems.is_empty(), "no jobId, yet no problem: {}", shown(&body));
            return Ok(());
        };
        if known {
            let (first, first_problems) = StatusUpdate::parse(&prelude(&job_id)).unwrap();
            registry.apply(job_id.clone(), first, first_problems).unwrap();
        }
        let outcome = registry.apply(job_id.clone(), update.clone(), problems.clone());
        let again = registry.apply(job_id.clone(), update, problems.clone());
        match (outcome, again) {
            (Ok(accepted), Ok(repeated)) => {
                prop_assert!(problems.is_empty(), "accepted with problems: {}", shown(&body));
                prop_assert_eq!(&accepted.job_id, &job_id);
                prop_assert!(repeated.repeat, "not taken as a repeat: {}", shown(&body));
                prop_assert_eq!(repeated.seq, accepted.seq);
            }
            (Err(refusal), Err(again)) => {
                prop_assert!(refusal.status().is_client_error(), "{:?}: {}", refusal, shown(&body));
                prop_assert_eq!(refusal.code(), again.code(), "{}", shown(&body));
            }
            (first, second) => {
                prop_assert!(false, "{:?} then {:?}: {}", first, second, shown(&body));
            }
        }
    }
}

/// What the route must answer: a 2xx or 4xx, with a JSON body; an error body names its
/// status and `code`.
fn check_answer(answer: &crate::helpers::Answer, body: &[u8]) -> Result<(), TestCaseError> {
    let status = answer.status;
    prop_assert!(
        status.is_success() || status.is_client_error(),
        "{} for {}: {}",
        status,
        shown(body),
        answer.text
    );
    let json: Value = serde_json::from_str(&answer.text)
        .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {}", answer.text)))?;
    prop_assert!(json.is_object(), "{}", answer.text);
    if status.is_client_error() {
        prop_assert_eq!(
            &json["status"],
            &Value::from(status.as_u16()),
            "{}",
            answer.text
        );
        prop_assert!(json["code"].is_string(), "{}", answer.text);
    } else {
        prop_assert!(json["seq"].is_u64(), "{}", answer.text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Posted in-process to the status route, any bytes (under any of a few content
    /// types) are answered with a JSON body and a 2xx or 4xx, never a 5xx; posted again,
    /// what was accepted is a repeat.
    #[test]
    fn the_status_route_answers_any_bytes_with_json_and_no_5xx(
        body in body(),
        content_type in prop::sample::select(vec![
            Some("application/json"),
            Some("application/json"),
            Some("application/merge-patch+json; charset=utf-8"),
            Some("text/plain"),
            None,
        ]),
        known in any::<bool>(),
    ) {
        let (runtime, app) = reset_app();
        runtime.block_on(async {
            if known {
                // The run the seeds are mostly about, and whatever this body names.
                let named = StatusUpdate::parse(&body).ok().and_then(|(u, _)| u.job_id);
                for job_id in ["hhzitrwancwv"].into_iter().chain(named.as_deref()) {
                    let answer = app.post_raw(Some("application/json"), prelude(job_id)).await;
                    prop_assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
                }
            }
            let first = app.post_raw(content_type, body.clone()).await;
            check_answer(&first, &body)?;
            let second = app.post_raw(content_type, body.clone()).await;
            check_answer(&second, &body)?;
            if first.status == StatusCode::OK {
                prop_assert_eq!(&second.json["repeat"], &Value::Bool(true), "{}", shown(&body));
            } else {
                prop_assert_eq!(second.status, first.status, "{}", shown(&body));
            }
            Ok(())
        })?;
    }
}
