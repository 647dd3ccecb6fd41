//! `POST /_mock/verify`: a lifecycle asserted in one call, every failure said in words.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use job_launcher_mock::MockServer;

use crate::support::{Answer, STATUS, TestApp, nonzero};

async fn verify(app: &TestApp, base: &str, expectations: Value) -> Answer {
    app.send_json(Method::POST, &format!("{base}/_mock/verify"), &expectations)
        .await
}

async fn post(app: &TestApp, body: Value) -> StatusCode {
    app.send_json(Method::POST, STATUS, &body).await.status
}

/// Each violation's field and message, in order.
fn violations(answer: &Answer) -> Vec<(String, String)> {
    answer.json["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("no violations: {}", answer.text))
        .iter()
        .map(|v| {
            (
                v["field"].as_str().unwrap().to_owned(),
                v["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// r1 goes starting, running, running (a second report), finished; r2 has a warning;
/// one update is refused.
async fn a_lifecycle(app: &TestApp) {
    for state in ["starting", "running"] {
        assert_eq!(
            post(app, json!({"jobId": "r1", "state": state})).await,
            StatusCode::OK
        );
    }
    let progress = json!({"jobId": "r1", "state": "running", "progress": 50});
    assert_eq!(post(app, progress).await, StatusCode::OK);
    assert_eq!(
        post(app, json!({"jobId": "r1", "state": "finished"})).await,
        StatusCode::OK
    );
    let warned = json!({"jobId": "r2", "state": "running", "result": {"jobRunId": "other"}});
    assert_eq!(post(app, warned).await, StatusCode::OK);
    assert_eq!(
        post(app, json!({"jobId": "r1", "state": "running"})).await,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn expectations_that_hold_are_answered_ok() {
    let app = TestApp::new();
    a_lifecycle(&app).await;
    let held = verify(
        &app,
        "",
        json!({"runs": {"r1": {"states": ["starting", "running", "finished"], "updates": 4},
                        "r2": {"updates": 1}},
               "refused": 1, "warnings": 1}),
    )
    .await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.text);
    assert_eq!(held.json, json!({"ok": true}));
    assert_eq!(verify(&app, "", json!({})).await.json, json!({"ok": true}));
    // A member given as null expects nothing, as one left out (the document allows it).
    let nulls =
        json!({"runs": {"r1": {"states": null, "updates": 4}}, "refused": null, "warnings": null});
    assert_eq!(verify(&app, "", nulls).await.json, json!({"ok": true}));
    // A whole number written as JSON allows.
    let floats = json!({"runs": {"r1": {"updates": 4.0}}, "refused": 1.0});
    assert_eq!(verify(&app, "", floats).await.json, json!({"ok": true}));
}

#[tokio::test]
async fn each_expectation_that_fails_says_what_was_expected_and_what_happened() {
    let app = TestApp::new();
    a_lifecycle(&app).await;
    let failed = verify(
        &app,
        "",
        json!({"runs": {"r1": {"states": ["starting", "finished"], "updates": 3},
                        "r9": {"states": ["running"], "updates": 1}},
               "refused": 0, "warnings": 0}),
    )
    .await;
    assert_eq!(failed.status, StatusCode::CONFLICT, "{}", failed.text);
    assert_eq!(failed.json["code"], "verification_failed");
    assert_eq!(
        violations(&failed),
        [
            (
                "runs.r1.states".to_owned(),
                "expected starting -> finished, got starting -> running -> finished".to_owned()
            ),
            (
                "runs.r1.updates".to_owned(),
                "expected 3 updates, got 4 updates".to_owned()
            ),
            (
                "runs.r9.states".to_owned(),
                "expected running, got no run r9".to_owned()
            ),
            (
                "runs.r9.updates".to_owned(),
                "expected 1 update, got no run r9".to_owned()
            ),
            (
                "refused".to_owned(),
                "expected 0 refused, got 1 (409 invalid_transition)".to_owned()
            ),
            (
                "warnings".to_owned(),
                "expected 0 updates with a warning, got 1 (r2: result.jobRunId)".to_owned()
            ),
        ]
    );
    assert!(
        failed.json["message"]
            .as_str()
            .unwrap()
            .starts_with("6 expectations do not hold"),
        "{}",
        failed.text
    );
}

#[tokio::test]
async fn a_check_that_needs_dropped_entries_fails_and_says_so() {
    let app = TestApp::with(
        MockServer::builder()
            .max_history(nonzero(2))
            .journal_size(nonzero(3)),
    );
    a_lifecycle(&app).await;
    let failed = verify(
        &app,
        "",
        json!({"runs": {"r1": {"states": ["starting", "running", "finished"], "updates": 4}},
               "refused": 1, "warnings": 1}),
    )
    .await;
    assert_eq!(failed.status, StatusCode::CONFLICT, "{}", failed.text);
    let failures = violations(&failed);
    let fields: Vec<&str> = failures.iter().map(|(field, _)| field.as_str()).collect();
    // The update count is kept whatever the history drops: that check holds.
    assert_eq!(fields, ["runs.r1.states", "refused", "warnings"]);
    assert!(
        failures[0].1.contains("--max-history dropped"),
        "{}",
        failures[0].1
    );
    assert!(
        failures[1].1.contains("--journal-size dropped"),
        "{}",
        failures[1].1
    );
}

#[tokio::test]
async fn a_malformed_expectation_is_a_422_naming_each_field() {
    let app = TestApp::new();
    let malformed = verify(
        &app,
        "",
        json!({"runs": {"r1": {"states": ["begun", "running"], "updates": -1, "when": 1},
                        "r2": []},
               "refused": "none", "warned": 0}),
    )
    .await;
    assert_eq!(
        malformed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        malformed.text
    );
    let mut fields: Vec<String> = violations(&malformed).into_iter().map(|(f, _)| f).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "refused",
            "runs.r1.states[0]",
            "runs.r1.updates",
            "runs.r1.when",
            "runs.r2",
            "warned"
        ]
    );
    let not_an_object = verify(&app, "", json!([1])).await;
    assert_eq!(not_an_object.status, StatusCode::UNPROCESSABLE_ENTITY);
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/_mock/verify")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{"))
        .unwrap();
    let not_json = app.send(request).await;
    assert_eq!(
        not_json.status,
        StatusCode::BAD_REQUEST,
        "{}",
        not_json.text
    );
    assert_eq!(not_json.json["code"], "malformed_json");
}

#[tokio::test]
async fn a_session_verifies_its_own_world() {
    let app = TestApp::new();
    let made = app
        .send_json(Method::POST, "/_mock/sessions", &json!({"name": "s"}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    a_lifecycle(&app).await; // at the root
    let session = verify(
        &app,
        "/sessions/s",
        json!({"runs": {"r1": {"updates": 0}}, "refused": 0}),
    )
    .await;
    assert_eq!(session.status, StatusCode::CONFLICT, "{}", session.text);
    assert_eq!(
        violations(&session),
        [(
            "runs.r1.updates".to_owned(),
            "expected 0 updates, got no run r1".to_owned()
        )]
    );
    assert_eq!(session.json["path"], "/sessions/s/_mock/verify");
    let empty = verify(&app, "/sessions/s", json!({"refused": 0, "warnings": 0})).await;
    assert_eq!(empty.json, json!({"ok": true}));
}
