//! Simulated runs: launch, scenarios, the manual clock, polls, cancel, the Spark API.
//! No test here waits on the real clock: the manual one moves when told to.

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::{Answer, STATUS, TestApp, manual, update};

const LAUNCH: &str = "/job-launcher/launcher";

fn config(id: &str) -> Value {
    json!({"id": id, "type": "custom_python_job", "script": "print(1)"})
}

async fn launch(app: &TestApp, id: &str) -> Answer {
    let answer = app.send_json(Method::POST, LAUNCH, &config(id)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer
}

async fn advance(app: &TestApp, by: &str) -> Value {
    let answer = app
        .send_json(Method::POST, "/_mock/clock/advance", &json!({"by": by}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json
}

async fn put_scenario(app: &TestApp, scenario: Value) -> Answer {
    let pattern = scenario["match"].as_str().unwrap().to_owned();
    app.send_json(
        Method::PUT,
        &format!("/_mock/scenarios/{pattern}"),
        &scenario,
    )
    .await
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("a time: {value}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// The states of a run's history, oldest first.
async fn states(app: &TestApp, job_id: &str) -> Vec<String> {
    let history = app.history(job_id).await;
    history["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["update"]["state"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_launch_answers_as_fusion_does() {
    let app = TestApp::with(manual());
    let answer = launch(&app, "my-python-job").await;
    assert_eq!(answer.content_type, "application/hal+json");
    let status = answer.json;
    let job_id = status["jobId"].as_str().unwrap();
    assert_eq!(job_id.len(), 12);
    assert!(job_id.bytes().all(|b| b.is_ascii_lowercase()), "{job_id}");
    assert_eq!(status["state"], "starting");
    assert_eq!(status["jobConfig"], config("my-python-job"));
    assert!(status["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(
        status["result"],
        json!({"jobConfigId": "my-python-job", "jobRunId": job_id})
    );
    assert!(status.get("startTime").is_none(), "no times yet: {status}");
    // The run is in the registry like a reported one, and in the journal.
    assert_eq!(app.run(job_id).await["status"], status);
    let journal = app.get("/_mock/requests").await.json;
    let paths: Vec<&str> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&LAUNCH), "{journal}");
    let other = launch(&app, "my-python-job").await.json;
    assert_ne!(
        other["jobId"], status["jobId"],
        "a fresh jobId every launch"
    );
}

#[tokio::test]
async fn a_launch_refuses_a_config_fusion_would_refuse() {
    let app = TestApp::with(manual());
    for (body, field) in [
        (json!({"type": "script"}), "id"),
        (json!({"id": "", "type": "script"}), "id"),
        (json!({"id": 7, "type": "script"}), "id"),
        (json!({"id": "9lives", "type": "script"}), "id"),
        (json!({"id": "has space", "type": "script"}), "id"),
        (json!({"id": "a".repeat(64), "type": "script"}), "id"),
        (json!({"id": "ok"}), "type"),
        (json!({"id": "ok", "type": 3}), "type"),
    ] {
        let answer = app.send_json(Method::POST, LAUNCH, &body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.json["code"], "validation_failed");
        assert_eq!(answer.json["violations"][0]["field"], field, "{body}");
    }
    let longest = json!({"id": format!("a{}", "-".repeat(62)), "type": "script"});
    let answer = app.send_json(Method::POST, LAUNCH, &longest).await;
    assert_eq!(answer.status, StatusCode::OK, "63 characters is allowed");
    let answer = app.post_raw(None, "x").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(LAUNCH)
        .header("content-type", "text/plain")
        .body(axum::body::Body::from(config("ok").to_string()))
        .unwrap();
    assert_eq!(
        app.send(request).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // Only the one good launch made a run.
    assert_eq!(app.get("/_mock/runs").await.json["total"], 1);
}

#[tokio::test]
async fn the_default_scenario_moves_by_the_manual_clock_only() {
    let app = TestApp::with(manual());
    let clock = app.get("/_mock/clock").await.json;
    assert_eq!(clock["mode"], "manual");
    let start = time(&clock["now"]);
    let job_id = launch(&app, "nightly").await.json["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.run(&job_id).await["state"], "starting");
    assert_eq!(time(&app.get("/_mock/clock").await.json["now"]), start);

    advance(&app, "99ms").await;
    assert_eq!(app.run(&job_id).await["state"], "starting");
    advance(&app, "1ms").await;
    let run = app.run(&job_id).await;
    assert_eq!(run["state"], "running");
    let started = time(&run["status"]["startTime"]);
    assert_eq!(started - start, chrono::TimeDelta::milliseconds(100));

    let clock = advance(&app, "1h").await;
    assert_eq!(
        time(&clock["now"]) - start,
        chrono::TimeDelta::milliseconds(100 + 3_600_000)
    );
    let run = app.run(&job_id).await;
    assert_eq!(run["state"], "finished");
    let status = &run["status"];
    assert_eq!(
        time(&status["endTime"]) - started,
        chrono::TimeDelta::milliseconds(1100)
    );
    assert_eq!(status["duration"], 1100);
    assert_eq!(
        states(&app, &job_id).await,
        ["starting", "running", "finishing", "finished"]
    );
    // Each step was received at its own due time, not at the end of the advance.
    let history = app.history(&job_id).await;
    let received: Vec<i64> = history["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (time(&u["receivedAt"]) - start).num_milliseconds())
        .collect();
    assert_eq!(received, [0, 100, 1100, 1200]);
}

#[tokio::test]
async fn one_advance_moves_several_runs_through_several_steps_in_due_order() {
    let app = TestApp::with(manual());
    let slow = json!({"match": "slow-*", "steps": [
        {"state": "running", "after": "10m"},
        {"state": "finished", "after": "20m", "result": {"docsWritten": 42}}
    ]});
    let failing = json!({"match": "failing", "steps": [
        {"state": "running", "after": "5m"},
        {"state": "error", "after": "10m",
         "result": {"exception": {"message": "Job aborted: executor lost"}}}
    ]});
    assert_eq!(put_scenario(&app, slow).await.status, StatusCode::CREATED);
    assert_eq!(
        put_scenario(&app, failing).await.status,
        StatusCode::CREATED
    );
    let a = launch(&app, "slow-aggregation").await.json["jobId"].clone();
    advance(&app, "1m").await;
    let b = launch(&app, "failing").await.json["jobId"].clone();
    let c = launch(&app, "other").await.json["jobId"].clone(); // the default scenario
    advance(&app, "1h").await;

    let (a, b, c) = (
        a.as_str().unwrap(),
        b.as_str().unwrap(),
        c.as_str().unwrap(),
    );
    assert_eq!(states(&app, a).await, ["starting", "running", "finished"]);
    assert_eq!(states(&app, b).await, ["starting", "running", "error"]);
    assert_eq!(
        states(&app, c).await,
        ["starting", "running", "finishing", "finished"]
    );
    let a_status = app.run(a).await["status"].clone();
    assert_eq!(a_status["result"]["docsWritten"], 42);
    assert_eq!(
        a_status["result"]["jobRunId"], a,
        "the launch's result is kept"
    );
    assert_eq!(a_status["duration"], 20 * 60 * 1000);
    let b_status = app.run(b).await["status"].clone();
    assert_eq!(
        b_status["result"]["exception"]["message"],
        "Job aborted: executor lost"
    );

    // The steps went through the registry in the order they fell due, whatever run.
    let journal = app.get("/_mock/requests").await.json;
    let simulated: Vec<(String, String)> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["simulated"] == true && e["time"].as_str().is_some())
        .map(|e| {
            (
                e["time"].as_str().unwrap().to_owned(),
                e["jobId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sorted = simulated.clone();
    sorted.sort_by(|x, y| x.0.cmp(&y.0)); // stable: equal times keep their order
    assert_eq!(simulated, sorted, "journaled in due order");
    let order: Vec<&str> = simulated.iter().map(|(_, id)| id.as_str()).collect();
    // c's steps at +1m +100ms, +1m 1.1s, +1m 1.2s; b's at +6m, +16m; a's at +10m, +30m.
    assert_eq!(order, [a, b, c, c, c, c, b, a, b, a]);
}

#[tokio::test]
async fn a_run_that_ends_without_running_has_no_duration() {
    let app = TestApp::with(manual());
    let skip = json!({"match": "skipper", "steps": [{"state": "skipped", "after": "1s"}]});
    put_scenario(&app, skip).await;
    let job_id = launch(&app, "skipper").await.json["jobId"].clone();
    advance(&app, "5s").await;
    let status = app.run(job_id.as_str().unwrap()).await["status"].clone();
    assert_eq!(status["state"], "skipped");
    assert_eq!(status["startTime"], status["endTime"]);
    assert_eq!(status["duration"], 0);
}

#[tokio::test]
async fn a_polls_scenario_moves_one_step_per_poll() {
    let app = TestApp::with(manual());
    let scenario = json!({"match": "polled", "progression": "polls", "steps": [
        {"state": "running"}, {"state": "finishing"}, {"state": "finished"}
    ]});
    put_scenario(&app, scenario).await;
    let job_id = launch(&app, "polled").await.json["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Time does not move it.
    advance(&app, "1h").await;
    assert_eq!(app.run(&job_id).await["state"], "starting");
    // Each poll applies the next step, then answers.
    let polled = app.get("/api/spark/jobs/polled").await;
    assert_eq!(polled.json["state"], "running", "{}", polled.text);
    let all = app.get(STATUS).await.json;
    assert_eq!(all[0]["state"], "finishing");
    let list = app.get("/api/apps/shop/spark/jobs").await.json;
    assert_eq!(list[0]["state"], "finished");
    assert_eq!(
        app.get("/api/spark/jobs/polled").await.json["state"],
        "finished"
    );
    // Reading the mock's own view is not a poll.
    assert_eq!(
        states(&app, &job_id).await,
        ["starting", "running", "finishing", "finished"]
    );
}

#[tokio::test]
async fn scenarios_are_checked_when_given_and_managed_by_match() {
    let app = TestApp::with(manual());
    let bad = json!({"match": "bad", "steps": [{"state": "running"}, {"state": "idle"}]});
    let answer = put_scenario(&app, bad).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = answer.json["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["steps[1].state", "steps[1].state"],
        "{}",
        answer.text
    );
    let mismatch = json!({"match": "other", "steps": [{"state": "finished"}]});
    let answer = app
        .send_json(Method::PUT, "/_mock/scenarios/mine", &mismatch)
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.json["violations"][0]["field"], "match");

    let wild = json!({"match": "job-*", "steps": [{"state": "error"}]});
    let wilder = json!({"match": "job*", "steps": [{"state": "skipped"}]});
    let exact = json!({"match": "job-7", "steps": [{"state": "cancelled"}]});
    for scenario in [&wild, &wilder, &exact] {
        assert_eq!(
            put_scenario(&app, scenario.clone()).await.status,
            StatusCode::CREATED
        );
    }
    let replaced = json!({"match": "job-*", "steps": [{"state": "finished"}]});
    let answer = put_scenario(&app, replaced).await;
    assert_eq!(answer.status, StatusCode::OK);
    let listed: Vec<Value> = app
        .get("/_mock/scenarios")
        .await
        .json
        .as_array()
        .unwrap()
        .clone();
    let order: Vec<&str> = listed
        .iter()
        .map(|s| s["match"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["job-*", "job*", "job-7"],
        "a replaced scenario keeps its turn"
    );
    let one = app.get("/_mock/scenarios/job-7").await;
    assert_eq!(
        one.json["steps"][0],
        json!({"state": "cancelled", "after": "0s"})
    );
    assert_eq!(one.json["progression"], "time");

    // An exact id beats a wildcard; wildcards are tried in the order they were added.
    let ended = |id: &'static str| {
        let app = &app;
        async move {
            let job_id = launch(app, id).await.json["jobId"].clone();
            advance(app, "1s").await;
            app.run(job_id.as_str().unwrap()).await["state"].clone()
        }
    };
    assert_eq!(ended("job-7").await, "cancelled");
    assert_eq!(ended("job-8").await, "finished");
    assert_eq!(ended("jobless").await, "skipped");

    assert_eq!(
        app.delete("/_mock/scenarios/job-*").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/_mock/scenarios/job-*").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(ended("job-8").await, "skipped");
    assert_eq!(
        app.get("/_mock/scenarios/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn cancel_moves_an_active_run_to_cancelling_then_cancelled() {
    let app = TestApp::with(manual());
    let slow = json!({"match": "slow", "steps": [
        {"state": "running", "after": "1m"},
        {"state": "finishing", "after": "1m"},
        {"state": "finished", "after": "1m"}
    ]});
    put_scenario(&app, slow).await;
    // Cancel in each active state the scenario passes through.
    for (advance_first, state) in [("0s", "starting"), ("1m", "running"), ("2m", "finishing")] {
        let job_id = launch(&app, "slow").await.json["jobId"].clone();
        let job_id = job_id.as_str().unwrap();
        advance(&app, advance_first).await;
        assert_eq!(app.run(job_id).await["state"], state);
        let cancelled = app.delete("/api/spark/jobs/slow").await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
        assert_eq!(cancelled.json["state"], "cancelling");
        assert_eq!(cancelled.json["jobId"], job_id);
        // Again while cancelling: the same answer.
        let again = app.delete("/api/apps/shop/spark/jobs/slow").await;
        assert_eq!(again.json["state"], "cancelling");
        advance(&app, "99ms").await;
        assert_eq!(app.run(job_id).await["state"], "cancelling");
        advance(&app, "1ms").await;
        let run = app.run(job_id).await;
        assert_eq!(run["state"], "cancelled");
        assert!(run["status"]["endTime"].is_string());
        // The scenario's own steps do not come back.
        advance(&app, "1h").await;
        assert_eq!(app.run(job_id).await["state"], "cancelled");
        // An ended run cannot be cancelled.
        let ended = app.delete("/api/spark/jobs/slow").await;
        assert_eq!(ended.status, StatusCode::CONFLICT);
        assert_eq!(ended.json["code"], "conflict");
    }
    assert_eq!(
        app.delete("/api/spark/jobs/never").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_spark_api_answers_under_both_prefixes_on_one_registry() {
    let app = TestApp::with(manual());
    for prefix in ["/api", "/api/apps/shop"] {
        let id = if prefix == "/api" { "plain" } else { "in-app" };
        let path = format!("{prefix}/spark/configurations/{id}");
        let body = json!({"type": "sql_template", "sql": "SELECT 1"});
        let created = app.send_json(Method::PUT, &path, &body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(
            created.json,
            json!({"type": "sql_template", "sql": "SELECT 1", "id": id})
        );
        let replaced = app
            .send_json(Method::PUT, &path, &json!({"id": id, "type": "script"}))
            .await;
        assert_eq!(replaced.status, StatusCode::OK);
        assert_eq!(app.get(&path).await.json["type"], "script");
        let never = app.get(&format!("{prefix}/spark/jobs/{id}")).await;
        assert_eq!(never.status, StatusCode::NOT_FOUND);
        let started = app
            .request(Method::POST, &format!("{prefix}/spark/jobs/{id}"))
            .await;
        assert_eq!(started.status, StatusCode::OK, "{}", started.text);
        assert_eq!(started.json["state"], "starting");
        assert_eq!(started.json["jobConfig"]["id"], id);
        let latest = app.get(&format!("{prefix}/spark/jobs/{id}")).await;
        assert_eq!(latest.json["jobId"], started.json["jobId"]);
    }
    let wrong_id = app
        .send_json(
            Method::PUT,
            "/api/spark/configurations/a",
            &json!({"id": "b", "type": "t"}),
        )
        .await;
    assert_eq!(wrong_id.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_id = app
        .send_json(
            Method::PUT,
            "/api/spark/configurations/_x",
            &json!({"type": "t"}),
        )
        .await;
    assert_eq!(bad_id.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app.request(Method::POST, "/api/spark/jobs/unknown").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // One registry: both prefixes and the job-launcher routes see the same runs.
    assert_eq!(
        app.get("/api/spark/jobs")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        app.get("/api/apps/x/spark/jobs")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(app.get(STATUS).await.json.as_array().unwrap().len(), 2);

    // A config becomes known when a run of it is launched or reported.
    launch(&app, "launched").await;
    let mut reported = update("r1", "running");
    reported["jobConfig"] = json!({"id": "reported", "type": "aggregation"});
    app.post_ok(reported).await;
    let configs = app.get("/api/spark/configurations").await.json;
    let ids: Vec<&str> = configs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["plain", "in-app", "launched", "reported"]);
    assert_eq!(
        app.get("/api/spark/jobs/reported").await.json["jobId"],
        "r1"
    );
    let second = app.request(Method::POST, "/api/spark/jobs/reported").await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/spark/jobs/reported").await.json["jobId"],
        second.json["jobId"]
    );

    assert_eq!(
        app.delete("/api/spark/configurations/plain").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/spark/configurations/plain").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/api/spark/configurations/plain").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_system_clock_cannot_be_advanced() {
    let app = TestApp::new();
    let answer = app
        .send_json(Method::POST, "/_mock/clock/advance", &json!({"by": "1m"}))
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert_eq!(app.get("/_mock/clock").await.json["mode"], "system");
    let manual_app = TestApp::with(manual());
    for body in [json!({}), json!({"by": "soon"}), json!({"by": 5})] {
        let answer = manual_app
            .send_json(Method::POST, "/_mock/clock/advance", &body)
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.json["violations"][0]["field"], "by");
    }
}

#[tokio::test]
async fn with_a_manual_clock_no_reported_time_passes_but_by_advance() {
    let app = TestApp::with(manual());
    let now = app.get("/_mock/clock").await.json["now"].clone();
    app.post_ok(update("t1", "running")).await;
    let run = app.run("t1").await;
    assert_eq!(run["firstUpdateAt"], now);
    let refused = app.post(update("t1", "idle")).await;
    assert_eq!(refused.json["timestamp"], now);
    let journal = app.get("/_mock/requests").await.json;
    assert_eq!(journal["entries"][0]["time"], now);
    advance(&app, "2s").await;
    app.post_ok(update("t1", "finished")).await;
    let last = time(&app.run("t1").await["lastUpdateAt"]);
    assert_eq!(last - time(&now), chrono::TimeDelta::seconds(2));
}

#[tokio::test]
async fn reset_forgets_runs_configs_and_simulations_but_keeps_the_clock() {
    let app = TestApp::with(manual());
    launch(&app, "nightly").await;
    advance(&app, "1m").await;
    let now = app.get("/_mock/clock").await.json["now"].clone();
    put_scenario(
        &app,
        json!({"match": "x", "steps": [{"state": "finished"}]}),
    )
    .await;
    app.request(Method::POST, "/_mock/reset").await;
    assert_eq!(app.get("/_mock/runs").await.json["total"], 0);
    assert_eq!(app.get("/api/spark/configurations").await.json, json!([]));
    assert_eq!(app.get("/_mock/scenarios").await.json, json!([]));
    assert_eq!(app.get("/_mock/clock").await.json["now"], now);
}

/// The scenario file of docs/simulated-jobs.md, as a user would load it with `--scenarios`.
const NIGHTLY: &str = include_str!("../../examples/scenarios/nightly.json");

#[tokio::test]
async fn the_readme_nightly_aggregation_fails_on_its_second_run() {
    let scenarios: Vec<Value> = serde_json::from_str(NIGHTLY).unwrap();
    let app = TestApp::with(
        scenarios
            .into_iter()
            .fold(manual(), |mock, s| mock.scenario(s)),
    );
    let mut ended = Vec::new();
    for _ in 0..3 {
        let started = app
            .request(Method::POST, "/api/spark/jobs/nightly-aggregation")
            .await;
        if started.status == StatusCode::NOT_FOUND {
            app.send_json(
                Method::PUT,
                "/api/spark/configurations/nightly-aggregation",
                &json!({"type": "aggregation"}),
            )
            .await;
            continue;
        }
        let job_id = started.json["jobId"].as_str().unwrap().to_owned();
        advance(&app, "1h").await;
        let status = app.run(&job_id).await["status"].clone();
        ended.push((status["state"].clone(), status["duration"].clone()));
    }
    // The first POST met an unknown config; the runs: ok, failed.
    assert_eq!(
        ended,
        [
            (json!("finished"), json!(45 * 60_000)),
            (json!("error"), json!(12 * 60_000))
        ]
    );
    let third = app
        .request(Method::POST, "/api/spark/jobs/nightly-aggregation")
        .await;
    let job_id = third.json["jobId"].as_str().unwrap().to_owned();
    advance(&app, "1h").await;
    assert_eq!(
        app.run(&job_id).await["state"],
        "finished",
        "the third night is fine again"
    );
}

#[tokio::test]
async fn a_config_is_kept_as_posted_whatever_its_numbers() {
    let app = TestApp::with(manual());
    let body = r#"{"id":"big","type":"t","e":1E400,"n":0.10}"#;
    let request = |method: Method, path: &str| {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let launched = app.send(request(Method::POST, LAUNCH)).await;
    assert_eq!(launched.status, StatusCode::OK, "{}", launched.text);
    assert!(
        launched
            .text
            .contains(r#""jobConfig":{"id":"big","type":"t","e":1E400,"n":0.10}"#),
        "{}",
        launched.text
    );
    let put = app
        .send(request(Method::PUT, "/api/spark/configurations/big"))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let no_id = r#"{ "type" : "t", "e":1E400 }"#;
    let request = axum::http::Request::builder()
        .method(Method::PUT)
        .uri("/api/spark/configurations/fresh")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(no_id))
        .unwrap();
    let created = app.send(request).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.text, r#"{"id":"fresh","type" : "t", "e":1E400 }"#);
}

#[tokio::test]
async fn a_forgotten_run_stays_forgotten_when_its_steps_fall_due() {
    let app = TestApp::with(manual());
    let launched = launch(&app, "my-python-job").await.json;
    let job_id = launched["jobId"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/_mock/runs/{job_id}")).await.status,
        StatusCode::NO_CONTENT
    );
    // The default scenario's three steps fall due within the hour.
    advance(&app, "1h").await;
    assert_eq!(
        app.get(&format!("/_mock/runs/{job_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let journal = app.get("/_mock/requests").await.json;
    let about_it = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["jobId"] == job_id)
        .count();
    // The launch's own two (its first status, its request), no step after the delete.
    assert_eq!(about_it, 2, "{journal}");
}
