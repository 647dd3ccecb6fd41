//! The `/_mock/runs` routes and the health probes.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{STATUS, TestApp, update};

fn job_ids(list: &Value) -> Vec<&str> {
    list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["jobId"].as_str().unwrap())
        .collect()
}

/// Four runs: a (script, finished), b (sql, running), c (script, error), d (no config).
async fn four_runs() -> TestApp {
    let app = TestApp::new();
    let config = |id: &str, kind: &str| json!({"id": id, "type": kind});
    app.post_ok(
        json!({"jobId": "a", "state": "running", "jobConfig": config("nightly", "script")}),
    )
    .await;
    app.post_ok(json!({"jobId": "b", "state": "running", "jobConfig": config("adhoc", "sql")}))
        .await;
    app.post_ok(json!({"jobId": "c", "state": "error", "jobConfig": config("nightly", "script")}))
        .await;
    app.post_ok(update("d", "idle")).await;
    app.post_ok(update("a", "finished")).await;
    app
}

#[tokio::test]
async fn runs_are_listed_in_the_order_they_first_appeared_with_bookkeeping() {
    let app = four_runs().await;
    let list = app.get("/_mock/runs").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(job_ids(&list.json), ["a", "b", "c", "d"]);
    assert_eq!(list.json["total"], 4);
    assert_eq!(list.json["evicted"], 0);

    let a = &list.json["runs"][0];
    assert_eq!(a["status"]["state"], "finished");
    assert_eq!(a["status"]["jobConfig"]["id"], "nightly");
    assert_eq!(a["updateCount"], 2);
    assert_eq!(a["warnings"], json!([]));
    let first = a["firstUpdateAt"].as_str().unwrap();
    let last = a["lastUpdateAt"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(first).is_ok());
    assert!(first <= last, "{first} > {last}");
    assert_eq!(app.run("a").await, *a);
}

#[tokio::test]
async fn runs_filter_by_state_type_and_config_id() {
    let app = four_runs().await;
    let ids = |query: &'static str| {
        let app = &app;
        async move {
            let list = app.get(&format!("/_mock/runs?{query}")).await;
            assert_eq!(list.status, StatusCode::OK, "{}", list.text);
            (
                list.json["total"].as_u64().unwrap(),
                job_ids(&list.json).join(","),
            )
        }
    };
    assert_eq!(ids("state=running").await, (1, "b".into()));
    assert_eq!(ids("state=finished,error").await, (2, "a,c".into()));
    assert_eq!(ids("type=script").await, (2, "a,c".into()));
    assert_eq!(ids("jobConfigId=adhoc").await, (1, "b".into()));
    assert_eq!(ids("type=script&state=error").await, (1, "c".into()));
    assert_eq!(ids("type=none").await, (0, String::new()));
    assert_eq!(
        ids("state=&type=&jobConfigId=").await,
        (4, "a,b,c,d".into())
    );
}

#[tokio::test]
async fn runs_page_with_limit_and_offset_and_total_counts_all_matches() {
    let app = four_runs().await;
    let page = app.get("/_mock/runs?limit=2&offset=1").await;
    assert_eq!(job_ids(&page.json), ["b", "c"]);
    assert_eq!(page.json["total"], 4);
    let page = app.get("/_mock/runs?offset=3&limit=10").await;
    assert_eq!(job_ids(&page.json), ["d"]);
    let page = app.get("/_mock/runs?offset=9").await;
    assert_eq!(job_ids(&page.json), Vec::<&str>::new());
    assert_eq!(page.json["total"], 4);
    let page = app.get("/_mock/runs?limit=0").await;
    assert_eq!(page.json["runs"], json!([]));
}

#[tokio::test]
async fn history_seq_is_one_counter_for_the_whole_registry() {
    let app = TestApp::new();
    for (job, state) in [
        ("x", "starting"),
        ("y", "starting"),
        ("x", "running"),
        ("y", "running"),
    ] {
        app.post_ok(update(job, state)).await;
    }
    let seqs = |history: Value| -> Vec<u64> {
        history["updates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(app.history("x").await), [1, 3]);
    assert_eq!(seqs(app.history("y").await), [2, 4]);
    let history = app.history("x").await;
    assert_eq!(history["jobId"], "x");
    assert_eq!(history["dropped"], 0);
    assert!(history["updates"][0]["receivedAt"].is_string());
}

#[tokio::test]
async fn deleting_a_run_forgets_it_and_only_it() {
    let app = four_runs().await;
    let answer = app.delete("/_mock/runs/b").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(answer.text, "");
    assert_eq!(app.get("/_mock/runs/b").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete("/_mock/runs/b").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(job_ids(&app.get("/_mock/runs").await.json), ["a", "c", "d"]);
    // A forgotten run starts afresh.
    app.post_ok(update("b", "idle")).await;
    assert_eq!(app.run("b").await["updateCount"], 1);
}

#[tokio::test]
async fn deleting_all_runs_empties_both_lists() {
    let app = four_runs().await;
    let answer = app.delete("/_mock/runs").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/_mock/runs").await.json["total"], 0);
    assert_eq!(app.get(STATUS).await.json, json!([]));
    // seq goes on counting after a reset.
    app.post_ok(update("a", "idle")).await;
    assert_eq!(app.history("a").await["updates"][0]["seq"], 6);
}

#[tokio::test]
async fn health_probes_answer_up() {
    let app = TestApp::new();
    for path in [
        "/actuator/health",
        "/actuator/health/liveness",
        "/actuator/health/readiness",
    ] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.json, json!({"status": "UP"}));
        // Every answer carries a request id for finding its log lines.
        let id = answer
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok());
        assert!(id.is_some_and(|id| id.parse::<u64>().is_ok()), "{id:?}");
    }
}
