//! A byte fuzzer, driven by proptest, on the status route, in-process: inputs are the
//! corpus's mutations (`tests/corpus/mutations.rs`). Whatever the bytes, the route
//! answers every request with a JSON body and a 2xx or 4xx status, and takes what it
//! accepted again as a repeat. (The parser's and the registry's fuzzer, on the same
//! mutations, is the crate's own: `src/updates.rs`.)

use axum::http::StatusCode;
use proptest::prelude::*;
use serde_json::Value;

#[path = "../corpus/mutations.rs"]
mod mutations;

use mutations::{body, prelude, shown};

use crate::support::app::reset_app;

/// The `jobId` a body names, when it is JSON (a byte order mark allowed, as the route
/// allows it) and the id is one the contract accepts: 1 to 128 of `A-Z a-z 0-9 . _ -`,
/// not `.` or `..`.
fn named_job_id(body: &[u8]) -> Option<String> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let value: Value = serde_json::from_slice(body).ok()?;
    let id = value.get("jobId")?.as_str()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let valid = (1..=128).contains(&id.len()) && id.chars().all(allowed) && id != "." && id != "..";
    valid.then(|| id.to_owned())
}

/// What the route must answer: a 2xx or 4xx, with a JSON body; an error body names its
/// status and `code`.
fn check_answer(answer: &crate::support::Answer, body: &[u8]) -> Result<(), TestCaseError> {
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
    #[ignore = "slow (1 s): a fuzzer, 1,500 cases; CI runs it with --include-ignored"]
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
                let named = named_job_id(&body);
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
