//! Injected faults: each action, `times`, `ttl`, seeded probability, and the routes they
//! never touch.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use job_launcher_mock::MockServer;
use serde_json::{Value, json};

use crate::support::{STATUS, TestApp, manual, update};

async fn add_fault(app: &TestApp, rule: Value) -> Value {
    let answer = app.send_json(Method::POST, "/_mock/faults", &rule).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.json
}

#[tokio::test]
async fn a_status_fault_answers_with_retry_after_and_changes_nothing() {
    let app = TestApp::new();
    let rule = add_fault(
        &app,
        json!({"match": {"method": "POST", "path": STATUS, "jobId": "r1"},
               "action": {"status": 503, "retryAfter": "1500ms"}, "times": 2}),
    )
    .await;
    assert_eq!(rule["id"], 1);
    assert_eq!(rule["fired"], 0);
    assert_eq!(rule["active"], true);

    for _ in 0..2 {
        let answer = app.post(update("r1", "running")).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.text
        );
        assert_eq!(answer.json["code"], "injected_fault");
        assert_eq!(answer.headers["retry-after"], "2", "1.5 s rounded up");
        assert_eq!(
            app.get("/_mock/runs/r1").await.status,
            StatusCode::NOT_FOUND
        );
    }
    // Other runs were never touched; the third post to r1 gets through.
    app.post_ok(update("r2", "running")).await;
    app.post_ok(update("r1", "running")).await;

    let rules = app.get("/_mock/faults").await.json;
    assert_eq!(rules[0]["fired"], 2);
    assert_eq!(rules[0]["active"], false, "spent rules stay listed");
    let journal = app.get("/_mock/requests").await.json;
    let summary: Vec<(Value, Value, Value, Value)> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["jobId"].clone(),
                e["status"].clone(),
                e["code"].clone(),
                e["fault"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!("r1"), json!(503), json!("injected_fault"), json!(1)),
            (json!("r1"), json!(503), json!("injected_fault"), json!(1)),
            (json!("r2"), json!(200), Value::Null, Value::Null),
            (json!("r1"), json!(200), Value::Null, Value::Null),
        ]
    );
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("jlm_updates_accepted_total 2\n"),
        "faulted posts are not updates"
    );
}

#[tokio::test(start_paused = true)]
async fn a_delay_fault_serves_the_request_normally_afterwards() {
    let app = TestApp::new();
    add_fault(
        &app,
        json!({"match": {"path": "/job-launcher/*"}, "action": {"delay": "2s"}}),
    )
    .await;
    let before = tokio::time::Instant::now();
    let answer = app.post(update("slow", "running")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(before.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(app.run("slow").await["state"], "running");
    let entry = &app.get("/_mock/requests").await.json["entries"][0];
    assert_eq!(entry["status"], 200);
    assert_eq!(
        entry["code"], "injected_fault",
        "a faulted request is marked"
    );
    assert_eq!(entry["fault"], 1);
}

#[tokio::test]
async fn a_drop_fault_closes_the_connection_without_an_answer() {
    let server = MockServer::start().await;
    let rule = json!({"match": {"method": "GET"}, "action": {"drop": true}, "times": 1});
    let id = server.add_fault(&rule).await.unwrap();
    assert_eq!(id, 1);
    let client = reqwest::Client::new();
    let url = format!("{}{STATUS}", server.uri());
    let dropped = client.get(&url).send().await;
    assert!(dropped.is_err(), "an answer came: {dropped:?}");
    // The next request is answered: the rule was spent, and the server is fine.
    let answer = client.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let journal = server.requests().await.entries;
    assert_eq!(journal[0].status, None);
    assert_eq!(journal[0].code.as_deref(), Some("injected_fault"));
    assert_eq!(journal[1].status, Some(200));
}

#[tokio::test]
async fn ttl_expires_a_rule_by_the_mocks_clock() {
    let app = TestApp::with(manual());
    add_fault(&app, json!({"action": {"status": 500}, "ttl": "5m"})).await;
    assert_eq!(
        app.get(STATUS).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    app.send_json(Method::POST, "/_mock/clock/advance", &json!({"by": "299s"}))
        .await;
    assert_eq!(
        app.get(STATUS).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    app.send_json(Method::POST, "/_mock/clock/advance", &json!({"by": "1s"}))
        .await;
    assert_eq!(app.get(STATUS).await.status, StatusCode::OK);
    let rules = app.get("/_mock/faults").await.json;
    assert_eq!(
        (rules[0]["fired"].clone(), rules[0]["active"].clone()),
        (json!(2), json!(false))
    );
}

#[tokio::test]
async fn a_seed_gives_the_same_hits_in_the_same_order() {
    let app = TestApp::new();
    let rule = json!({"action": {"status": 502}, "probability": 0.5, "seed": 7});
    let mut runs = Vec::new();
    for _ in 0..2 {
        add_fault(&app, rule.clone()).await;
        let mut hits = Vec::new();
        for _ in 0..40 {
            hits.push(app.get(STATUS).await.status == StatusCode::BAD_GATEWAY);
        }
        assert_eq!(
            app.delete("/_mock/faults").await.status,
            StatusCode::NO_CONTENT
        );
        runs.push(hits);
    }
    assert_eq!(runs[0], runs[1]);
    let count = runs[0].iter().filter(|hit| **hit).count();
    assert!((8..=32).contains(&count), "{count} of 40 at p = 0.5");
}

#[tokio::test]
async fn faults_never_touch_the_mocks_own_routes() {
    let app = TestApp::new();
    add_fault(&app, json!({"action": {"status": 503}})).await;
    for path in [
        "/_mock/runs",
        "/_mock/requests",
        "/_mock/faults",
        "/metrics",
        "/openapi.json",
        "/actuator/health",
    ] {
        assert_eq!(app.get(path).await.status, StatusCode::OK, "{path}");
    }
    for path in [
        STATUS,
        "/api/spark/jobs",
        "/api/apps/a/spark/configurations",
    ] {
        assert_eq!(
            app.get(path).await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
    }
    let delete = app.delete("/_mock/faults/1").await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.delete("/_mock/faults/1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/_mock/faults/x").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(STATUS).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rules_match_on_config_ids_in_bodies_and_paths() {
    let app = TestApp::new();
    add_fault(
        &app,
        json!({"match": {"jobConfigId": "nightly"}, "action": {"status": 429}}),
    )
    .await;
    let mut reported = update("n1", "running");
    reported["jobConfig"] = json!({"id": "nightly", "type": "aggregation"});
    assert_eq!(
        app.post(reported).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let launch = json!({"id": "nightly", "type": "script"});
    let answer = app
        .send_json(Method::POST, "/job-launcher/launcher", &launch)
        .await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    let put = app
        .send_json(
            Method::PUT,
            "/api/apps/a/spark/configurations/nightly",
            &json!({"type": "t"}),
        )
        .await;
    assert_eq!(put.status, StatusCode::TOO_MANY_REQUESTS);
    let other = app
        .send_json(
            Method::PUT,
            "/api/spark/configurations/daily",
            &json!({"type": "t"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_bad_rule_is_refused_naming_each_problem() {
    let app = TestApp::new();
    let answer = app
        .send_json(
            Method::POST,
            "/_mock/faults",
            &json!({"action": {"status": 99}, "times": 0, "probability": 2}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = answer.json["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["action.status", "times", "probability"]);
    assert_eq!(app.get("/_mock/faults").await.json, json!([]));
}

#[tokio::test]
async fn rules_read_the_ids_in_a_body_as_its_route_does_byte_order_mark_and_all() {
    let app = TestApp::new();
    let by_run = json!({"match": {"jobId": "bom"}, "action": {"status": 503}, "times": 1});
    add_fault(&app, by_run).await;
    let by_config =
        json!({"match": {"jobConfigId": "nightly"}, "action": {"status": 502}, "times": 1});
    add_fault(&app, by_config).await;
    // The status route reads a body that starts with a byte order mark, as Fusion's
    // Jackson does, and so does the rule: the run is `bom`.
    let marked = include_bytes!("../corpus/bom.json").to_vec();
    let faulted = app.post_raw(Some("application/json"), marked.clone()).await;
    assert_eq!(
        faulted.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        faulted.text
    );
    let served = app.post_raw(Some("application/json"), marked).await;
    assert_eq!(
        served.status,
        StatusCode::OK,
        "the rule is spent: {}",
        served.text
    );
    // The same for a launched config.
    let launch = |body: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/job-launcher/launcher")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let config = "\u{feff}{\"id\": \"nightly\", \"type\": \"script\"}";
    let faulted = app.send(launch(config)).await;
    assert_eq!(faulted.status, StatusCode::BAD_GATEWAY, "{}", faulted.text);
    assert_eq!(app.send(launch(config)).await.status, StatusCode::OK);
    // A name written twice is read last-wins, by the route and the rule alike.
    let rule = json!({"match": {"jobId": "second"}, "action": {"status": 503}});
    add_fault(&app, rule).await;
    let twice = r#"{"jobId": "first", "jobId": "second", "state": "running"}"#;
    let faulted = app.post_text(twice).await;
    assert_eq!(
        faulted.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        faulted.text
    );
}
