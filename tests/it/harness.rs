//! The test-harness routes: wait, the journal, events, reset, metrics. (The tests that
//! synchronize on the registry's own count of waiters, or feed it directly, are the
//! crate's: `src/server/tests.rs`.)

use std::time::Duration;

use axum::http::StatusCode;
use job_launcher_mock::{JobState, MockServer};
use serde_json::{Value, json};

use crate::support::events::EventReader;
use crate::support::http::Client;
use crate::support::{SEED, STATUS, TestApp, lenient, nonzero, serve, update};

#[tokio::test]
async fn a_wait_for_what_already_is_answers_at_once() {
    let app = TestApp::new();
    app.post_ok(serde_json::from_str(SEED).unwrap()).await;
    for query in ["", "?state=finished", "?state=finished&timeout=0s"] {
        let answer = app
            .get(&format!("/_mock/runs/hhzitrwancwv/wait{query}"))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.text);
        assert_eq!(answer.json["state"], "finished");
    }
}

#[tokio::test(start_paused = true)]
async fn a_wait_times_out_with_the_run_as_it_is() {
    let app = TestApp::new();
    app.post_ok(update("slow", "running")).await;
    let answer = app
        .get("/_mock/runs/slow/wait?state=finished&timeout=300ms")
        .await;
    assert_eq!(
        answer.status,
        StatusCode::REQUEST_TIMEOUT,
        "{}",
        answer.text
    );
    assert_eq!(answer.json["code"], "timeout");
    assert_eq!(
        answer.json["message"],
        "run slow did not reach state finished within 300ms; it is running"
    );
    assert_eq!(answer.json["run"]["state"], "running");
    assert_eq!(answer.json["run"]["status"], update("slow", "running"));

    let answer = app.get("/_mock/runs/never/wait?timeout=2m").await;
    assert_eq!(
        answer.status,
        StatusCode::REQUEST_TIMEOUT,
        "{}",
        answer.text
    );
    assert_eq!(
        answer.json["message"],
        "run never did not end within 2m; it does not exist"
    );
    assert!(answer.json.get("run").is_none(), "{}", answer.text);
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.lines().any(|line| line == "jlm_waiters 0"),
        "{metrics}"
    );
}

/// `--max-wait` (`MockServerBuilder::max_wait`) cuts a longer `timeout`, and the default
/// one, to itself.
#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_max_wait_is_cut_to_it() {
    let app = TestApp::with(MockServer::builder().max_wait(Duration::from_secs(2)));
    for query in ["?timeout=1h", ""] {
        let started = tokio::time::Instant::now();
        let answer = app.get(&format!("/_mock/runs/never/wait{query}")).await;
        assert_eq!(
            answer.status,
            StatusCode::REQUEST_TIMEOUT,
            "{}",
            answer.text
        );
        assert_eq!(
            answer.json["message"], "run never did not end within 2s; it does not exist",
            "{query}"
        );
        let took = started.elapsed();
        assert!(
            (Duration::from_secs(2)..Duration::from_secs(3)).contains(&took),
            "{query}: {took:?}"
        );
    }
}

#[tokio::test]
async fn a_wait_with_a_bad_state_or_timeout_is_a_400_naming_it() {
    let app = TestApp::new();
    for (query, field) in [
        ("state=done", "state"),
        ("timeout=5", "timeout"),
        ("timeout=abc", "timeout"),
        ("timeout=-1s", "timeout"),
        ("timeout=1m30s", "timeout"),
    ] {
        let answer = app.get(&format!("/_mock/runs/x/wait?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.json["code"], "validation_failed", "{query}");
        assert_eq!(answer.json["violations"][0]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn the_journal_records_every_fusion_request_and_no_mock_request() {
    let app = TestApp::with(lenient());
    app.post_ok(serde_json::from_str(SEED).unwrap()).await;
    app.post(update("hhzitrwancwv", "running")).await; // lenient: a warning
    app.post_text("{\"jobId\": ").await;
    app.post(json!({"jobId": "j2"})).await;
    app.get(STATUS).await;
    app.get("/job-launcher/nowhere").await;
    app.get("/_mock/runs").await;
    app.get("/actuator/health").await;
    app.get("/metrics").await;

    let journal = app.get("/_mock/requests").await;
    assert_eq!(journal.status, StatusCode::OK);
    assert_eq!(journal.json["dropped"], 0);
    let entries = journal.json["entries"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str, u64, Value, Value)> = entries
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["method"].as_str().unwrap(),
                e["path"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
                e["jobId"].clone(),
                e["code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "POST", STATUS, 200, json!("hhzitrwancwv"), Value::Null),
            (2, "POST", STATUS, 200, json!("hhzitrwancwv"), Value::Null),
            (3, "POST", STATUS, 400, Value::Null, json!("malformed_json")),
            (
                4,
                "POST",
                STATUS,
                422,
                json!("j2"),
                json!("validation_failed")
            ),
            (5, "GET", STATUS, 200, Value::Null, Value::Null),
            (
                6,
                "GET",
                "/job-launcher/nowhere",
                404,
                Value::Null,
                json!("not_found")
            ),
        ]
    );
    // The seed's result.jobRunId differs from its jobId: a warning on the first entry;
    // the second, a finished run going back to running, warns of the transition too.
    assert_eq!(entries[0]["warnings"][0]["field"], "result.jobRunId");
    assert!(
        entries[1]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["field"] == "state")
    );
    assert!(entries.iter().all(|e| e["time"].as_str().is_some()));

    let filtered = |query: &str| {
        let app = &app;
        let query = query.to_owned();
        async move {
            let answer = app.get(&format!("/_mock/requests?{query}")).await;
            assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.text);
            answer.json["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(filtered("jobId=hhzitrwancwv").await, [1, 2]);
    assert_eq!(filtered("status=200").await, [1, 2, 5]);
    assert_eq!(filtered("code=validation_failed").await, [4]);
    assert_eq!(filtered("since=4").await, [5, 6]);
    assert_eq!(filtered("since=1&status=200").await, [2, 5]);
    let bad = app.get("/_mock/requests?status=teapot").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        app.delete("/_mock/requests").await.status,
        StatusCode::NO_CONTENT
    );
    let journal = app.get("/_mock/requests").await;
    assert_eq!(journal.json["entries"], json!([]));
    // The runs are untouched; seq goes on counting.
    assert_eq!(app.get("/_mock/runs").await.json["total"], 1);
    app.get(STATUS).await;
    assert_eq!(filtered("").await, [7]);
}

#[tokio::test]
async fn the_journal_is_bounded_and_counts_what_it_dropped() {
    let app = TestApp::with(MockServer::builder().journal_size(nonzero(3)));
    for i in 0..5 {
        app.post_ok(update(&format!("b{i}"), "running")).await;
    }
    let journal = app.get("/_mock/requests").await.json;
    assert_eq!(journal["dropped"], 2);
    let ids: Vec<&str> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b2", "b3", "b4"]);
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("jlm_journal_dropped_total 2\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn reset_forgets_runs_and_empties_the_journal() {
    let app = TestApp::new();
    app.post_ok(update("r1", "running")).await;
    let answer = app.request(axum::http::Method::POST, "/_mock/reset").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/_mock/runs").await.json["total"], 0);
    assert_eq!(app.get("/_mock/requests").await.json["entries"], json!([]));
}

/// Posts `body`, which must be accepted; gives its `seq`.
async fn post(client: &Client, body: &Value) -> u64 {
    let (status, answer) = client.post_status(body).await;
    assert_eq!(status, 200, "{answer}");
    answer["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn events_deliver_accepted_updates_and_resume_from_last_event_id() {
    let server = serve(MockServer::builder()).await;
    let client = Client::of(&server);
    let mut live = EventReader::open(&client.base, None).await;
    let seed: Value = serde_json::from_str(SEED).unwrap();
    let s1 = post(&client, &update("e1", "running")).await;
    let s2 = post(&client, &update("e2", "starting")).await;
    // A refused update and an exact repeat are not events.
    let (refused, _) = client.post_status(&update("e1", "idle")).await;
    assert!((400..500).contains(&refused), "{refused}");
    post(&client, &update("e2", "starting")).await;
    let s3 = post(&client, &seed).await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(live.next_update().await);
    }
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [s1, s2, s3]);
    assert_eq!(seen[0]["jobId"], "e1");
    assert_eq!(seen[0]["update"], update("e1", "running"));
    // The update as posted, not as re-written.
    assert_eq!(seen[2]["update"], seed);
    let history = server.history("hhzitrwancwv").await.unwrap();
    let updates: Vec<&Value> = history.updates.iter().map(|e| &e.update).collect();
    assert_eq!(updates, [&seed]);

    // Resuming after s1 gives s2 and s3 from history, then what happens next.
    let mut resumed = EventReader::open(&client.base, Some(s1)).await;
    let s4 = post(&client, &update("e1", "finished")).await;
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(resumed.next_update().await["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [s2, s3, s4]);
    assert_eq!(live.next_update().await["seq"], s4);

    let bad = client
        .http()
        .get(client.url("/_mock/events"))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn metrics_count_updates_runs_waiters_and_latency() {
    let app = TestApp::new();
    app.post_ok(update("m1", "running")).await;
    app.post_ok(update("m2", "finished")).await;
    app.post(update("m2", "running")).await;
    app.post_text("nope").await;
    let answer = app.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .content_type
            .starts_with("application/openmetrics-text")
    );
    let text = answer.text;
    for line in [
        "jlm_updates_accepted_total 2",
        "jlm_updates_refused_total{code=\"invalid_transition\"} 1",
        "jlm_updates_refused_total{code=\"malformed_json\"} 1",
        "jlm_runs{state=\"running\"} 1",
        "jlm_runs{state=\"finished\"} 1",
        "jlm_runs{state=\"idle\"} 0",
        "jlm_runs_evicted_total 0",
        "jlm_journal_dropped_total 0",
        "jlm_waiters 0",
        "jlm_event_subscribers 0",
        "jlm_http_request_duration_seconds_count{route=\"/job-launcher/launcher/status\",method=\"POST\"} 4",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_has_an_update_by_the_time_a_waiter_sees_it() {
    let server = serve(MockServer::builder()).await;
    let client = Client::of(&server);
    for i in 0..100 {
        let job_id = format!("seen{i}");
        let waiting = server.wait_for_state(&job_id, JobState::Running, Duration::from_secs(5));
        let update = update(&job_id, "running");
        let posting = client.post_status(&update);
        let (run, (posted, _)) = tokio::join!(waiting, posting);
        run.unwrap();
        let requests = server.requests().await;
        assert!(
            requests
                .entries
                .iter()
                .any(|e| e.job_id.as_deref() == Some(job_id.as_str())),
            "no journal entry for {job_id} though its waiter saw it"
        );
        assert_eq!(posted, 200);
    }
}

#[tokio::test]
async fn the_journal_names_a_jobid_that_is_not_well_formed() {
    let app = TestApp::new();
    let answer = app.post(update("j4 bad", "running")).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let journal = app.get("/_mock/requests?jobId=j4%20bad").await.json;
    assert_eq!(
        journal["entries"][0]["code"], "validation_failed",
        "{journal}"
    );
}

#[tokio::test]
async fn odd_methods_share_one_latency_series() {
    let app = TestApp::new();
    for method in ["XA", "XB", "XC"] {
        let method = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
        app.request(method, STATUS).await;
    }
    let text = app.get("/metrics").await.text;
    assert!(!text.contains("method=\"XA\""), "{text}");
    assert!(
        text.contains("jlm_http_request_duration_seconds_count{route=\"/job-launcher/launcher/status\",method=\"other\"} 3"),
        "{text}"
    );
}
