//! `--max-runs` and `--max-history`: eviction, refusal when full, dropped history.

use axum::http::StatusCode;
use serde_json::json;

use job_launcher_mock::MockServer;

use crate::support::{TestApp, lenient, nonzero, posted, update};

#[tokio::test]
async fn a_new_run_evicts_the_ended_run_whose_last_update_is_oldest() {
    let app = TestApp::with(MockServer::builder().max_runs(nonzero(3)));
    app.post_ok(update("old", "finished")).await;
    app.post_ok(update("live", "running")).await;
    app.post_ok(update("newer", "running")).await;
    app.post_ok(update("newer", "error")).await;

    app.post_ok(update("fresh", "starting")).await;
    let list = app.get("/_mock/runs").await.json;
    let ids: Vec<_> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["jobId"].clone())
        .collect();
    assert_eq!(ids, [json!("live"), json!("newer"), json!("fresh")]);
    assert_eq!(list["evicted"], 1);

    app.post_ok(update("fresher", "starting")).await;
    assert_eq!(
        app.get("/_mock/runs/newer").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/_mock/runs").await.json["evicted"], 2);
}

#[tokio::test]
async fn a_registry_full_of_live_runs_refuses_a_new_run_with_507() {
    let app = TestApp::with(MockServer::builder().max_runs(nonzero(2)));
    app.post_ok(update("a", "running")).await;
    app.post_ok(update("b", "starting")).await;
    let before = app.get("/_mock/runs").await.json;

    let answer = app.post(update("c", "starting")).await;
    assert_eq!(answer.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(answer.json["code"], "storage_full");
    insta::assert_json_snapshot!("storage_full", answer.json, {".timestamp" => "[timestamp]"});
    assert_eq!(app.get("/_mock/runs").await.json, before);

    // Known runs still take updates, and once one ends there is room again.
    app.post_ok(update("a", "finished")).await;
    app.post_ok(update("c", "starting")).await;
    assert_eq!(app.get("/_mock/runs").await.json["evicted"], 1);
}

#[tokio::test]
async fn history_past_max_history_drops_the_oldest_and_counts_them() {
    let app = TestApp::with(MockServer::builder().max_history(nonzero(2)));
    let updates: Vec<_> = (0..5)
        .map(|n| json!({"jobId": "r1", "state": "running", "step": n}))
        .collect();
    for body in &updates {
        app.post_ok(body.clone()).await;
    }
    let history = app.history("r1").await;
    assert_eq!(history["dropped"], 3);
    assert_eq!(posted(&history), updates[3..]);
    let run = app.run("r1").await;
    assert_eq!(run["updateCount"], 5);
    assert_eq!(run["status"]["step"], 4);
    // The last update is still known, so its repeat is still recognised.
    app.post_ok(updates[4].clone()).await;
    assert_eq!(app.run("r1").await["updateCount"], 5);
}

#[tokio::test]
async fn a_run_that_left_its_ended_state_is_not_evicted() {
    let app = TestApp::with(lenient().max_runs(nonzero(2)));
    app.post_ok(update("a", "finished")).await;
    app.post_ok(update("b", "running")).await;
    // Lenient: a finished run may be reported running again, and is then live.
    app.post_ok(update("a", "running")).await;
    let answer = app.post(update("c", "starting")).await;
    assert_eq!(
        answer.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        answer.text
    );
    assert_eq!(app.run("a").await["status"]["state"], "running");
}

#[tokio::test]
async fn a_run_keeps_its_100_latest_distinct_warnings() {
    let app = TestApp::new();
    for n in 0..=100 {
        let body = json!({"jobId": "r1", "state": "running", "result": {"jobRunId": format!("other-{n}")}});
        app.post_ok(body).await;
    }
    let warnings = app.run("r1").await["warnings"].clone();
    let warnings = warnings.as_array().unwrap();
    assert_eq!(warnings.len(), 100);
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("\"other-1\"")
    );
    assert!(
        warnings[99]["message"]
            .as_str()
            .unwrap()
            .contains("\"other-100\"")
    );
}

#[tokio::test]
async fn a_merged_status_may_not_outgrow_the_body_limit() {
    let app = TestApp::with(MockServer::builder().max_body_bytes(nonzero(200)));
    let field =
        |n: usize| json!({"jobId": "r1", "state": "running", format!("f{n}"): "x".repeat(60)});
    app.post_ok(field(1)).await;
    app.post_ok(field(2)).await;
    // Each update is small, but a third new field would take the status past 200 bytes.
    let before = app.history("r1").await;
    let answer = app.post(field(3)).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.text
    );
    assert_eq!(answer.json["code"], "payload_too_large");
    assert_eq!(app.history("r1").await, before);
    // Replacing a field keeps the size, and is accepted.
    app.post_ok(json!({"jobId": "r1", "state": "running", "f1": "y".repeat(60)}))
        .await;
}

#[tokio::test]
async fn repeating_a_key_cannot_sneak_a_status_past_the_bound() {
    let app = TestApp::with(MockServer::builder().max_body_bytes(nonzero(400)));
    let body = |big: &str| {
        format!(
            r#"{{"jobId":"r","state":"running",{}"pad":"{}","{big}":"{}"}}"#,
            r#""pad":1,"#.repeat(10),
            "p".repeat(100),
            "b".repeat(160)
        )
    };
    app.post_ok(json!({"jobId": "r", "state": "running", "pad": "p".repeat(100)}))
        .await;
    let second = body("big1");
    assert!(second.len() <= 400);
    assert_eq!(app.post_text(&second).await.status, StatusCode::OK);
    // Another 160-byte field would take the status past 400 bytes, however often the
    // update repeats a key it replaces.
    let answer = app.post_text(&body("big2")).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.text
    );
    // The run is not stuck: it can still end.
    app.post_ok(update("r", "finished")).await;
}
