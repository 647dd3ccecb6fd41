//! Sessions: worlds of their own on one service, isolated route by route; their
//! lifetimes (delete, expiry on the manual clock, --max-sessions), access, persistence.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use job_launcher_mock::MockServer;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::events::EventReader;
use crate::support::http::Client;
use crate::support::process::{TempDir, start};
use crate::support::{Answer, STATUS, TestApp, manual, serve};

async fn make(app: &TestApp, body: Value) -> Answer {
    app.send_json(Method::POST, "/_mock/sessions", &body).await
}

/// A session that never expires, whatever a test does to the service's clock.
async fn made(app: &TestApp, name: &str) -> String {
    let answer = make(app, json!({"name": name, "ttl": null})).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    format!("/sessions/{name}")
}

async fn post(app: &TestApp, base: &str, update: Value) -> Answer {
    app.send_json(Method::POST, &format!("{base}{STATUS}"), &update)
        .await
}

fn ids(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|item| item[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn two_sessions_and_the_root_keep_every_kind_of_state_apart() {
    let app = TestApp::with(manual());
    let worlds = ["".to_owned(), made(&app, "a").await, made(&app, "b").await];

    // Each world: a run of its own name, a config, a scenario, a fault rule on one path,
    // and its clock moved by a different span.
    for (i, base) in worlds.iter().enumerate() {
        let name = if base.is_empty() { "root" } else { &base[10..] };
        let run = json!({"jobId": format!("run-{name}"), "state": "running"});
        assert_eq!(post(&app, base, run).await.status, StatusCode::OK);
        let config = json!({"type": "aggregation"});
        let put = app
            .send_json(
                Method::PUT,
                &format!("{base}/api/spark/configurations/cfg-{name}"),
                &config,
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
        let scenario = json!({"steps": [{"state": "finished", "after": "1s"}]});
        let put = app
            .send_json(
                Method::PUT,
                &format!("{base}/_mock/scenarios/only-{name}"),
                &scenario,
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
        let rule = json!({"match": {"path": format!("/only-{name}")}, "action": {"status": 503}});
        let added = app
            .send_json(Method::POST, &format!("{base}/_mock/faults"), &rule)
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
        let by = json!({"by": format!("{}h", i + 1)});
        let advanced = app
            .send_json(Method::POST, &format!("{base}/_mock/clock/advance"), &by)
            .await;
        assert_eq!(advanced.status, StatusCode::OK, "{}", advanced.text);
    }

    let mut clocks = Vec::new();
    for base in &worlds {
        let name = if base.is_empty() { "root" } else { &base[10..] };
        let runs = app.get(&format!("{base}/_mock/runs")).await.json;
        assert_eq!(
            ids(&runs, "runs", "jobId"),
            [format!("run-{name}")],
            "{base}"
        );
        let journal = app.get(&format!("{base}/_mock/requests")).await.json;
        let paths = ids(&journal, "entries", "path");
        assert_eq!(
            paths,
            [
                STATUS.to_owned(),
                format!("/api/spark/configurations/cfg-{name}")
            ],
            "{base}: the routes' paths, not the session's"
        );
        assert_eq!(journal["entries"][0]["jobId"], format!("run-{name}"));
        let configs = app
            .get(&format!("{base}/api/spark/configurations"))
            .await
            .json;
        let configs: Vec<&str> = configs
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        assert_eq!(configs, [format!("cfg-{name}")], "{base}");
        let scenarios = app.get(&format!("{base}/_mock/scenarios")).await.json;
        let patterns: Vec<&str> = scenarios
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["match"].as_str())
            .collect();
        assert_eq!(patterns, [format!("only-{name}")], "{base}");
        let faults = app.get(&format!("{base}/_mock/faults")).await.json;
        let paths: Vec<&str> = faults
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["match"]["path"].as_str())
            .collect();
        assert_eq!(paths, [format!("/only-{name}")], "{base}");
        clocks.push(app.get(&format!("{base}/_mock/clock")).await.json["now"].clone());
    }
    assert!(
        clocks[0] != clocks[1] && clocks[1] != clocks[2],
        "each clock moved by its own span: {clocks:?}"
    );

    // A fault in one hits only its own world.
    let rule = json!({"match": {"path": STATUS}, "action": {"status": 503}});
    app.send_json(Method::POST, "/sessions/a/_mock/faults", &rule)
        .await;
    let again = json!({"jobId": "second", "state": "running"});
    assert_eq!(
        post(&app, "/sessions/a", again.clone()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        post(&app, "/sessions/b", again.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(post(&app, "", again).await.status, StatusCode::OK);

    // A reset in one empties only its own world.
    let reset = app.request(Method::POST, "/sessions/b/_mock/reset").await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/sessions/b/_mock/runs").await.json["total"], 0);
    assert_eq!(
        app.get("/sessions/b/_mock/requests").await.json["entries"],
        json!([])
    );
    assert_eq!(app.get("/sessions/a/_mock/runs").await.json["total"], 1);
    assert_eq!(app.get("/_mock/runs").await.json["total"], 2);
    let listed = app.get("/_mock/sessions").await.json;
    assert_eq!(ids(&listed, "sessions", "id"), ["a", "b"]);
    let runs: Vec<u64> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["runs"].as_u64().unwrap())
        .collect();
    assert_eq!(runs, [1, 0]);
}

#[tokio::test]
async fn a_wait_in_one_session_is_answered_by_its_own_runs_only() {
    let app = TestApp::new();
    made(&app, "a").await;
    made(&app, "b").await;
    let waiting = app.get("/sessions/a/_mock/runs/r1/wait?state=running&timeout=30s");
    let posting = async {
        // The same jobId reported to the root and to b: neither is a's.
        for base in ["", "/sessions/b"] {
            let update = json!({"jobId": "r1", "state": "running", "from": base});
            assert_eq!(post(&app, base, update).await.status, StatusCode::OK);
        }
        let update = json!({"jobId": "r1", "state": "running", "from": "a"});
        assert_eq!(
            post(&app, "/sessions/a", update).await.status,
            StatusCode::OK
        );
    };
    let (waited, ()) = tokio::join!(waiting, posting);
    assert_eq!(waited.status, StatusCode::OK, "{}", waited.text);
    assert_eq!(waited.json["status"]["from"], "a");
    assert_eq!(waited.json["updateCount"], 1);
}

#[tokio::test]
async fn sessions_are_named_bounded_and_refused_clearly() {
    let app = TestApp::with(manual().max_sessions(2));
    let made = make(&app, json!({})).await;
    assert_eq!(made.status, StatusCode::CREATED);
    let id = made.json["id"].as_str().unwrap();
    assert_eq!(id.len(), 12);
    assert!(id.bytes().all(|b| b.is_ascii_lowercase()), "{id}");
    assert!(
        made.json["baseUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/sessions/{id}"))
    );
    assert!(
        made.json["expiresAt"].is_string(),
        "the default ttl: {}",
        made.json
    );

    let nulls = make(&app, json!({"name": null, "clock": null})).await;
    assert_eq!(
        nulls.status,
        StatusCode::CREATED,
        "null members are left out: {}",
        nulls.text
    );
    app.delete(&format!(
        "/_mock/sessions/{}",
        nulls.json["id"].as_str().unwrap()
    ))
    .await;
    let null = make(&app, Value::Null).await;
    assert_eq!(
        null.status,
        StatusCode::CREATED,
        "a null body is no body: {}",
        null.text
    );
    app.delete(&format!(
        "/_mock/sessions/{}",
        null.json["id"].as_str().unwrap()
    ))
    .await;
    let forever = make(&app, json!({"name": "kept", "ttl": null})).await;
    assert_eq!(forever.status, StatusCode::CREATED, "{}", forever.text);
    assert_eq!(forever.json["expiresAt"], Value::Null);
    let full = make(&app, json!({"name": "third"})).await;
    assert_eq!(
        full.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        full.text
    );
    assert_eq!(full.json["code"], "storage_full");

    app.delete("/_mock/sessions/kept").await;
    let taken = make(&app, json!({"name": id})).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    assert_eq!(taken.json["code"], "conflict");

    let bad = make(
        &app,
        json!({"name": "a/b", "ttl": "soon", "clock": "hourly", "owner": "me"}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    let mut fields: Vec<&str> = bad.json["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["clock", "owner"],
        "members checked first: {}",
        bad.text
    );
    let bad = make(&app, json!({"name": "a/b"})).await;
    assert_eq!(bad.json["violations"][0]["field"], "name", "{}", bad.text);
    let bad = make(&app, json!({"ttl": "soon"})).await;
    assert_eq!(bad.json["violations"][0]["field"], "ttl", "{}", bad.text);

    let nested = app.get(&format!("/sessions/{id}/_mock/sessions")).await;
    assert_eq!(nested.status, StatusCode::NOT_FOUND, "{}", nested.text);
    let unknown = app.get("/sessions/nobody/_mock/runs").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.json["message"]
            .as_str()
            .unwrap()
            .contains("no session nobody")
    );
    assert_eq!(unknown.json["path"], "/sessions/nobody/_mock/runs");
    let gone = app.delete("/_mock/sessions/nobody").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unused_session_expires_by_the_services_manual_clock() {
    let app = TestApp::with(manual());
    let made = make(&app, json!({"name": "idle", "ttl": "10m"})).await;
    assert_eq!(made.status, StatusCode::CREATED);
    made_with_ttl(&app, "busy", "10m").await;
    let advance = |by: &str| {
        let body = json!({"by": by});
        let app = &app;
        async move {
            let answer = app
                .send_json(Method::POST, "/_mock/clock/advance", &body)
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        }
    };
    advance("6m").await;
    // Used: its ten minutes start again.
    assert_eq!(
        app.get("/sessions/busy/_mock/runs").await.status,
        StatusCode::OK
    );
    advance("6m").await;
    assert_eq!(
        app.get("/sessions/idle/_mock/runs").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/sessions/busy/_mock/runs").await.status,
        StatusCode::OK
    );
    let listed = app.get("/_mock/sessions").await.json;
    assert_eq!(ids(&listed, "sessions", "id"), ["busy"]);
    advance("11m").await;
    assert!(app.get("/_mock/sessions").await.json["sessions"] == json!([]));
    // A session's own manual clock does not age it.
    made_with_ttl(&app, "own-clock", "10m").await;
    let own = json!({"by": "1h"});
    app.send_json(
        Method::POST,
        "/sessions/own-clock/_mock/clock/advance",
        &own,
    )
    .await;
    assert_eq!(
        app.get("/sessions/own-clock/_mock/runs").await.status,
        StatusCode::OK
    );
}

async fn made_with_ttl(app: &TestApp, name: &str, ttl: &str) {
    let made = make(app, json!({"name": name, "ttl": ttl, "clock": "manual"})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
}

#[tokio::test]
async fn the_admin_token_and_client_credentials_guard_sessions_as_the_root() {
    let app = TestApp::with(MockServer::builder().admin_token("adm").api_key("key"));
    let refused = make(&app, json!({"name": "s"})).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let request =
        |method: Method, path: &str, header: Option<(&str, &str)>, body: Option<Value>| {
            let mut builder = axum::http::Request::builder().method(method).uri(path);
            if let Some((name, value)) = header {
                builder = builder.header(name, value);
            }
            let body = match body {
                Some(body) => {
                    builder = builder.header("content-type", "application/json");
                    axum::body::Body::from(body.to_string())
                }
                None => axum::body::Body::empty(),
            };
            builder.body(body).unwrap()
        };
    let bearer = Some(("authorization", "Bearer adm"));
    let made = app
        .send(request(
            Method::POST,
            "/_mock/sessions",
            bearer,
            Some(json!({"name": "s"})),
        ))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let unguarded = app
        .send(request(Method::GET, "/sessions/s/_mock/runs", None, None))
        .await;
    assert_eq!(unguarded.status, StatusCode::UNAUTHORIZED);
    let guarded = app
        .send(request(Method::GET, "/sessions/s/_mock/runs", bearer, None))
        .await;
    assert_eq!(guarded.status, StatusCode::OK);
    let update = json!({"jobId": "r1", "state": "running"});
    let no_key = app
        .send(request(
            Method::POST,
            "/sessions/s/job-launcher/launcher/status",
            None,
            Some(update.clone()),
        ))
        .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    let key = Some(("x-api-key", "key"));
    let posted = app
        .send(request(
            Method::POST,
            "/sessions/s/job-launcher/launcher/status",
            key,
            Some(update),
        ))
        .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.text);

    // Which sessions exist is not told to a client without credentials.
    let probe = app
        .send(request(
            Method::GET,
            "/sessions/nope/_mock/runs",
            None,
            None,
        ))
        .await;
    assert_eq!(probe.status, StatusCode::UNAUTHORIZED, "{}", probe.text);
    let unknown = app
        .send(request(
            Method::GET,
            "/sessions/nope/_mock/runs",
            bearer,
            None,
        ))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
}

#[tokio::test]
async fn the_metrics_count_live_sessions_and_sum_every_worlds_runs() {
    let app = TestApp::new();
    made(&app, "one").await;
    made(&app, "two").await;
    post(
        &app,
        "/sessions/one",
        json!({"jobId": "r1", "state": "running"}),
    )
    .await;
    post(&app, "", json!({"jobId": "r1", "state": "running"})).await;
    let metrics = app.get("/metrics").await.text;
    assert!(metrics.contains("\njlm_sessions 2\n"), "{metrics}");
    assert!(
        metrics.contains("jlm_runs{state=\"running\"} 2\n"),
        "{metrics}"
    );
    app.delete("/_mock/sessions/two").await;
    let metrics = app.get("/metrics").await.text;
    assert!(metrics.contains("\njlm_sessions 1\n"), "{metrics}");
}

#[tokio::test]
async fn the_dashboard_of_a_session_is_under_its_path() {
    let app = TestApp::new();
    made(&app, "ui").await;
    let home = app.get("/sessions/ui/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.headers["location"], "/sessions/ui/_mock/ui");
    let page = app.get("/sessions/ui/_mock/ui").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("id=\"session\""));
}

#[tokio::test]
async fn an_event_stream_carries_its_own_sessions_updates_and_ends_with_it() {
    let server = serve(MockServer::builder()).await;
    let root = Client::of(&server);
    for name in ["a", "b"] {
        let (made, answer) = root
            .send(Method::POST, "/_mock/sessions", &json!({"name": name}))
            .await;
        assert_eq!(made, 201, "{answer}");
    }
    let a = Client::new(&format!("{}/sessions/a", server.uri()));
    let mut stream = EventReader::open(&a.base, None).await;
    for (base, job_id) in [
        ("", "root-run"),
        ("/sessions/b", "b-run"),
        ("/sessions/a", "a-run"),
    ] {
        let client = Client::new(&format!("{}{base}", server.uri()));
        let update = json!({"jobId": job_id, "state": "running"});
        assert_eq!(client.post_status(&update).await.0, 200);
    }
    let first = stream.next_update().await;
    assert_eq!(
        first["jobId"], "a-run",
        "the first event a's stream carries is a's"
    );
    assert_eq!(first["seq"], 1, "a's own seq");
    let (deleted, _) = root.call(Method::DELETE, "/_mock/sessions/a").await;
    assert_eq!(deleted, 204);
    assert!(
        stream.next().await.is_none(),
        "the stream ends with its session"
    );
}

#[tokio::test]
async fn sessions_and_their_worlds_are_kept_across_a_restart() {
    let dir = TempDir::new("sessions");
    let args = ["--port", "0", "--data-dir", dir.path()];
    let (child, base) = start(&args, &[]);
    let root = Client::new(&base);
    let kept = Client::new(&format!("{base}/sessions/kept"));
    let session = json!({"name": "kept", "ttl": "2h"});
    assert_eq!(
        root.send(Method::POST, "/_mock/sessions", &session).await.0,
        201
    );
    let sends = [
        (
            &kept,
            Method::POST,
            STATUS,
            json!({"jobId": "r1", "state": "running"}),
        ),
        (
            &kept,
            Method::PUT,
            "/api/spark/configurations/nightly",
            json!({"type": "aggregation"}),
        ),
        (
            &kept,
            Method::PUT,
            "/_mock/scenarios/nightly",
            json!({"steps": [{"state": "finished"}]}),
        ),
        (
            &kept,
            Method::POST,
            "/_mock/faults",
            json!({"action": {"status": 503}, "match": {"path": "/x"}}),
        ),
        (
            &root,
            Method::POST,
            STATUS,
            json!({"jobId": "root-run", "state": "running"}),
        ),
    ];
    for (client, method, path, body) in sends {
        let (status, answer) = client.send(method, path, &body).await;
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
    }
    child.signal(Signal::SIGTERM);
    assert_eq!(child.exit_within(Duration::from_secs(20)).0.code(), Some(0));

    let (child, base) = start(&args, &[]);
    let root = Client::new(&base);
    let kept = Client::new(&format!("{base}/sessions/kept"));
    let listed: Value = root.get_ok("/_mock/sessions").await;
    assert_eq!(ids(&listed, "sessions", "id"), ["kept"]);
    let runs: Value = kept.get_ok("/_mock/runs").await;
    assert_eq!(ids(&runs, "runs", "jobId"), ["r1"]);
    let runs: Value = root.get_ok("/_mock/runs").await;
    assert_eq!(ids(&runs, "runs", "jobId"), ["root-run"]);
    let config: Value = kept.get_ok("/api/spark/configurations/nightly").await;
    assert_eq!(config["type"], "aggregation");
    let scenario: Value = kept.get_ok("/_mock/scenarios/nightly").await;
    assert_eq!(scenario["match"], "nightly");
    let faults: Value = kept.get_ok("/_mock/faults").await;
    assert_eq!(faults[0]["match"]["path"], "/x");
    let (_, next) = kept
        .post_status(&json!({"jobId": "r2", "state": "running"}))
        .await;
    assert_eq!(next["seq"], 2, "the session's seq goes on");

    let (deleted, _) = root.call(Method::DELETE, "/_mock/sessions/kept").await;
    assert_eq!(deleted, 204);
    child.signal(Signal::SIGTERM);
    assert_eq!(child.exit_within(Duration::from_secs(20)).0.code(), Some(0));
    let (_child, base) = start(&args, &[]);
    let root = Client::new(&base);
    let listed: Value = root.get_ok("/_mock/sessions").await;
    assert_eq!(listed, json!({"sessions": []}));
    assert_eq!(root.get("/sessions/kept/_mock/runs").await.0, 404);
    let runs: Value = root.get_ok("/_mock/runs").await;
    assert_eq!(ids(&runs, "runs", "jobId"), ["root-run"]);
}
