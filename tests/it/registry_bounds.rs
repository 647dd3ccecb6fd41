//! `--max-runs` and `--max-history`: eviction, refusal when full, dropped history.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{Config, TestApp, config, nonzero, posted, update};

#[tokio::test]
async fn a_new_run_evicts_the_ended_run_whose_last_update_is_oldest() {
    let app = TestApp::with(Config {
        max_runs: nonzero(3),
        ..config()
    });
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
    let app = TestApp::with(Config {
        max_runs: nonzero(2),
        ..config()
    });
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
    let app = TestApp::with(Config {
        max_history: nonzero(2),
        ..config()
    });
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
