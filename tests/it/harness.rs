//! The test-harness routes: wait, the journal, events, reset, metrics.

use std::time::Duration;

use axum::http::StatusCode;
use job_launcher_mock::MockServer;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{SEED, STATUS, TestApp, config, nonzero, update};

/// Resolves once `count` waiters are open; fails the test after 5 s rather than hang.
async fn until_waiters(waiters: &mut watch::Receiver<usize>, count: usize) {
    let reached = tokio::time::timeout(Duration::from_secs(5), waiters.wait_for(|n| *n == count));
    assert!(
        matches!(reached.await, Ok(Ok(_))),
        "the open waiters never became {count}"
    );
}

#[tokio::test]
async fn a_wait_is_woken_by_the_update_it_waits_for() {
    let app = TestApp::new();
    app.post_ok(update("w1", "running")).await;
    let mut waiters = app.state.world().registry.waiters();
    let wait = app.get("/_mock/runs/w1/wait?state=finished&timeout=10s");
    let post = async {
        // Only once the waiter is registered, so it is the update that wakes it.
        until_waiters(&mut waiters, 1).await;
        app.post_ok(update("w1", "finishing")).await;
        app.post_ok(update("w1", "finished")).await;
    };
    let (answer, ()) = tokio::join!(wait, post);
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["jobId"], "w1");
    assert_eq!(answer.json["state"], "finished");
    assert_eq!(answer.json["status"]["state"], "finished");
    assert_eq!(answer.json["updateCount"], 3);
    assert_eq!(*app.state.world().registry.waiters().borrow(), 0);
}

#[tokio::test]
async fn a_wait_for_a_run_that_does_not_exist_yet_answers_when_it_appears() {
    let app = TestApp::new();
    let mut waiters = app.state.world().registry.waiters();
    // No state: wait for the run to end.
    let wait = app.get("/_mock/runs/later/wait?timeout=10s");
    let post = async {
        until_waiters(&mut waiters, 1).await;
        app.post_ok(update("later", "running")).await;
        app.post_ok(update("other", "finished")).await;
        app.post_ok(update("later", "error")).await;
    };
    let (answer, ()) = tokio::join!(wait, post);
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["jobId"], "later");
    assert_eq!(answer.json["state"], "error");
}

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
    assert_eq!(*app.state.world().registry.waiters().borrow(), 0);
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
async fn a_client_that_hangs_up_frees_its_waiter() {
    use tokio::io::AsyncWriteExt;

    let server = MockServer::start().await;
    let mut waiters = server_waiters(&server).await;
    let mut sockets = Vec::new();
    for i in 0..50 {
        let mut socket = tokio::net::TcpStream::connect(server.address())
            .await
            .unwrap();
        let request =
            format!("GET /_mock/runs/gone-{i}/wait?timeout=1h HTTP/1.1\r\nHost: mock\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        sockets.push(socket);
    }
    until_waiters(&mut waiters, 50).await;
    drop(sockets);
    until_waiters(&mut waiters, 0).await;
}

/// The waiter count of a served mock, read from its own registry through the state
/// the server was started with.
async fn server_waiters(server: &MockServer) -> watch::Receiver<usize> {
    server.state().world().registry.waiters()
}

#[tokio::test]
async fn the_journal_records_every_fusion_request_and_no_mock_request() {
    let app = TestApp::with(job_launcher_mock::Config {
        validation: job_launcher_mock::config::Validation::Lenient,
        ..config()
    });
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
    let app = TestApp::with(job_launcher_mock::Config {
        journal_size: nonzero(3),
        ..config()
    });
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

/// One Server-Sent Event: its `event`, `id` and joined `data`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Sse {
    event: Option<String>,
    id: Option<String>,
    data: String,
}

/// Reads events from an open `text/event-stream` answer, skipping comments.
struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

impl EventReader {
    async fn open(server: &MockServer, last_event_id: Option<u64>) -> EventReader {
        let mut request = reqwest::Client::new().get(format!("{}/_mock/events", server.uri()));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream");
        EventReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the stream ends. Fails the test after 5 s.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Sse::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value));
                    } else if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event.event = Some(value.trim().to_owned());
                    }
                }
                if data.is_empty() && event.id.is_none() {
                    continue; // a comment: keep-alive
                }
                event.data = data.join("\n");
                return Some(event);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
                .await
                .expect("an event within 5 s")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event's data, which must be an update with id = seq.
    async fn next_update(&mut self) -> Value {
        let event = self.next().await.expect("an event");
        assert_eq!(event.event, None);
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(event.id.as_deref(), Some(data["seq"].to_string().as_str()));
        data
    }
}

async fn post(server: &MockServer, body: &Value) -> u64 {
    let answer = reqwest::Client::new()
        .post(format!("{}{STATUS}", server.uri()))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json::<Value>().await.unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn events_deliver_accepted_updates_and_resume_from_last_event_id() {
    let server = MockServer::start().await;
    let mut live = EventReader::open(&server, None).await;
    let seed: Value = serde_json::from_str(SEED).unwrap();
    let s1 = post(&server, &update("e1", "running")).await;
    let s2 = post(&server, &update("e2", "starting")).await;
    // A refused update and an exact repeat are not events.
    reqwest::Client::new()
        .post(format!("{}{STATUS}", server.uri()))
        .json(&update("e1", "idle"))
        .send()
        .await
        .unwrap();
    post(&server, &update("e2", "starting")).await;
    let s3 = post(&server, &seed).await;

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
    let mut resumed = EventReader::open(&server, Some(s1)).await;
    let s4 = post(&server, &update("e1", "finished")).await;
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(resumed.next_update().await["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [s2, s3, s4]);
    assert_eq!(live.next_update().await["seq"], s4);

    let bad = reqwest::Client::new()
        .get(format!("{}/_mock/events", server.uri()))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_slow_subscriber_never_slows_writers_and_is_told_it_lagged() {
    let server = MockServer::start().await;
    let mut slow = EventReader::open(&server, None).await;
    // Far more updates than the stream buffers, while the subscriber reads nothing.
    // Straight to the registry, so the test is quick; each still goes through `apply`.
    let registry = &server.state().world().registry;
    for i in 0..3000 {
        let body = update(&format!("lag{i}"), "running").to_string();
        let (parsed, problems) =
            job_launcher_mock::model::StatusUpdate::parse(body.as_bytes()).unwrap();
        let job_id = parsed.job_id.clone().unwrap();
        registry.apply(job_id, parsed, problems).unwrap();
    }
    let mut lagged = None;
    let mut delivered = 0;
    while let Some(event) = slow.next().await {
        if event.event.as_deref() == Some("lagged") {
            lagged = Some(event);
        } else {
            delivered += 1;
        }
    }
    let lagged = lagged.expect("a lagged event before the stream ended");
    let data: Value = serde_json::from_str(&lagged.data).unwrap();
    assert!(data["missed"].as_u64().unwrap() > 0, "{data}");
    assert!(delivered < 3000);
    // It can resume from the last event it saw: what it missed is still in history.
    let last = data["lastEventId"].as_u64().unwrap();
    let mut resumed = EventReader::open(&server, Some(last)).await;
    assert_eq!(resumed.next_update().await["seq"], last + 1);
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

#[tokio::test]
async fn a_wait_counts_a_state_the_run_only_passed_through() {
    let app = TestApp::new();
    app.post_ok(update("quick", "starting")).await;
    let mut waiters = app.state.world().registry.waiters();
    let wait = app.get("/_mock/runs/quick/wait?state=running&timeout=10s");
    let post = async {
        until_waiters(&mut waiters, 1).await;
        // Two updates applied back to back, before the waiter can look in between.
        let registry = &app.state.world().registry;
        for state in ["running", "finished"] {
            let body = update("quick", state).to_string();
            let (parsed, problems) =
                job_launcher_mock::model::StatusUpdate::parse(body.as_bytes()).unwrap();
            registry.apply("quick".into(), parsed, problems).unwrap();
        }
    };
    let (answer, ()) = tokio::join!(wait, post);
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["state"], "finished", "the run as it is now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_has_an_update_by_the_time_a_waiter_sees_it() {
    let server = MockServer::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}{STATUS}", server.uri());
    for i in 0..100 {
        let job_id = format!("seen{i}");
        let waiting = server.wait_for_state(
            &job_id,
            job_launcher_mock::JobState::Running,
            Duration::from_secs(5),
        );
        let posting = client.post(&url).json(&update(&job_id, "running")).send();
        let (run, posted) = tokio::join!(waiting, posting);
        run.unwrap();
        let requests = server.requests().await;
        assert!(
            requests
                .entries
                .iter()
                .any(|e| e.job_id.as_deref() == Some(job_id.as_str())),
            "no journal entry for {job_id} though its waiter saw it"
        );
        assert_eq!(posted.unwrap().status(), 200);
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

#[tokio::test]
async fn a_resuming_subscriber_gets_a_long_backlog_page_by_page() {
    let server = MockServer::start().await;
    let registry = &server.state().world().registry;
    for i in 0..700 {
        let state = if i < 7 { "starting" } else { "running" };
        let body = json!({"jobId": format!("page{}", i % 7), "state": state, "n": i}).to_string();
        let (parsed, problems) =
            job_launcher_mock::model::StatusUpdate::parse(body.as_bytes()).unwrap();
        let job_id = parsed.job_id.clone().unwrap();
        registry.apply(job_id, parsed, problems).unwrap();
    }
    let mut resumed = EventReader::open(&server, Some(3)).await;
    let mut expected = 4;
    while expected <= 700 {
        assert_eq!(resumed.next_update().await["seq"], expected);
        expected += 1;
    }
}
