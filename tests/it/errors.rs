//! Every refusal: its status, its code, its Spring-style body (snapshotted, so the wire
//! format cannot drift unnoticed), and that it changed nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use job_launcher_mock::MockServer;
use serde_json::json;

use crate::support::{Answer, STATUS, TestApp, fields, nonzero, update};

/// Snapshots an error body, with its clock reading blanked out.
macro_rules! assert_error_snapshot {
    ($name:expr, $answer:expr) => {
        insta::assert_json_snapshot!($name, $answer.json, {".timestamp" => "[timestamp]"})
    };
}

fn assert_error_shape(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.content_type, "application/json");
    let body = &answer.json;
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["error"], status.canonical_reason().unwrap());
    assert_eq!(body["code"], code);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["violations"].is_array());
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
        "{timestamp}"
    );
}

/// Posts `body`, expects the refusal, and checks that the registry did not change.
async fn refused(app: &TestApp, body: &str, status: StatusCode, code: &str) -> Answer {
    let before = app.get("/_mock/runs").await.json;
    let answer = app.post_text(body).await;
    assert_error_shape(&answer, status, code);
    assert_eq!(answer.json["path"], STATUS);
    assert_eq!(
        app.get("/_mock/runs").await.json,
        before,
        "a refusal changed the registry"
    );
    answer
}

#[tokio::test]
async fn finished_run_refuses_running_with_409() {
    let app = TestApp::new();
    app.post_ok(json!({"jobId": "hhzitrwancwv", "state": "finished"}))
        .await;
    let answer = refused(
        &app,
        r#"{"jobId":"hhzitrwancwv","state":"running"}"#,
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
    assert_error_snapshot!("invalid_transition", answer);
}

#[tokio::test]
async fn changing_config_id_or_start_time_is_a_conflict() {
    let app = TestApp::new();
    app.post_ok(
        json!({"jobId": "r1", "state": "running", "jobConfig": {"id": "a"},
                       "startTime": "2025-01-01T00:00:00Z"}),
    )
    .await;
    let answer = refused(
        &app,
        r#"{"jobId":"r1","state":"running","jobConfig":{"id":"b"},"startTime":"2025-01-01T00:00:01Z"}"#,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert_error_snapshot!("identity_conflict", answer);
}

#[tokio::test]
async fn times_that_do_not_add_up_are_refused_with_422() {
    let app = TestApp::new();
    let answer = refused(
        &app,
        r#"{"jobId":"r1","state":"finished","startTime":"2025-01-01T00:00:10Z","endTime":"2025-01-01T00:00:05Z","duration":100}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_error_snapshot!("timing", answer);
}

#[tokio::test]
async fn every_malformed_field_is_listed_in_one_422() {
    let app = TestApp::new();
    let answer = refused(
        &app,
        r#"{"jobId":"../etc","state":"Running","jobConfig":{"id":""},"result":"ok","startTime":"2025-13-01","endTime":"now","duration":-1}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(answer.json["violations"].as_array().map(Vec::len), Some(7));
    assert_error_snapshot!("malformed_fields", answer);

    let missing = refused(
        &app,
        "{}",
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_error_snapshot!("missing_fields", missing);
    let not_object = refused(
        &app,
        r#"{"jobId":"r1","state":"idle","jobConfig":[]}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(not_object.json["violations"][0]["field"], "jobConfig");
}

#[tokio::test]
async fn the_first_kind_decides_and_every_problem_is_listed() {
    let app = TestApp::new();
    app.post_ok(
        json!({"jobId": "r1", "state": "finished", "jobConfig": {"id": "a"},
                       "startTime": "2025-01-01T00:00:00Z"}),
    )
    .await;
    // Transition, identity and timing at once (the endTime is before the carried-over
    // startTime): the transition decides.
    let answer = refused(
        &app,
        r#"{"jobId":"r1","state":"running","jobConfig":{"id":"b"},"endTime":"2024-01-01T00:00:00Z"}"#,
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
    assert_error_snapshot!("mixed_kinds", answer);

    // A malformed field comes before all of them.
    let answer = refused(
        &app,
        r#"{"jobId":"r1","state":"running","duration":"long"}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&answer.json["violations"]), ["duration", "state"]);
}

#[tokio::test]
async fn malformed_json_is_a_400_with_line_and_column() {
    let app = TestApp::new();
    let answer = refused(
        &app,
        "{\"jobId\": \"r1\",\n \"state\": }",
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    assert_error_snapshot!("malformed_json", answer);

    for body in ["", "[]", "\"r1\"", "{} {}", "{\"a\":1,}"] {
        let answer = refused(&app, body, StatusCode::BAD_REQUEST, "malformed_json").await;
        let message = answer.json["message"].as_str().unwrap();
        assert!(
            message.contains(" at line 1 column "),
            "{body:?}: {message}"
        );
    }
}

#[tokio::test]
async fn invalid_utf8_is_a_400_with_its_position() {
    let app = TestApp::new();
    let answer = app
        .post_raw(
            Some("application/json"),
            b"{\"jobId\":\"r\xc3\x28\"}".to_vec(),
        )
        .await;
    assert_error_shape(&answer, StatusCode::BAD_REQUEST, "malformed_json");
    assert_eq!(
        answer.json["message"],
        "malformed JSON: body is not valid UTF-8 at line 1 column 12"
    );
}

#[tokio::test]
async fn nesting_past_128_levels_is_a_400_and_128_is_fine() {
    let app = TestApp::new();
    let nested = |depth: usize| {
        format!(
            r#"{{"jobId":"r1","state":"running","deep":{}{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    let answer = refused(
        &app,
        &nested(129),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    // The object is level 1, so the 128th bracket opens level 129.
    let column = r#"{"jobId":"r1","state":"running","deep":"#.len() + 128;
    let expected = format!("deeper than 128 levels at line 1 column {column}");
    let message = answer.json["message"].as_str().unwrap();
    assert!(message.contains(&expected), "{message}");
    assert_eq!(app.post_text(&nested(128)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = TestApp::with(MockServer::builder().max_body_bytes(nonzero(64)));
    let body = json!({"jobId": "r1", "state": "running", "pad": "x".repeat(64)}).to_string();
    let answer = refused(
        &app,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_error_snapshot!("payload_too_large", answer);
    let small = update("r1", "running").to_string();
    assert_eq!(app.post_text(&small).await.status, StatusCode::OK);
}

/// A body sent in pieces, with no declared length: read whole when within the limit,
/// refused once the pieces pass it.
#[tokio::test]
async fn a_body_in_pieces_is_joined_and_held_to_the_limit() {
    let app = TestApp::with(MockServer::builder().max_body_bytes(nonzero(64)));
    let streamed = |pieces: Vec<String>| {
        let pieces = pieces
            .into_iter()
            .map(|piece| Ok::<_, std::io::Error>(axum::body::Bytes::from(piece)));
        streamed_post(STATUS, futures_util::stream::iter(pieces))
    };
    let body = r#"{"jobId":"p1","state":"running"}"#;
    let pieces = vec![
        body[..5].to_owned(),
        body[5..20].to_owned(),
        body[20..].to_owned(),
    ];
    let answer = app.send(streamed(pieces)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let history = app.get("/_mock/runs/p1/history").await;
    assert_eq!(
        history.json["updates"][0]["update"],
        json!({"jobId": "p1", "state": "running"})
    );

    let over = vec![body.to_owned(), " ".repeat(40)];
    let answer = app.send(streamed(over)).await;
    assert_error_shape(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn a_body_not_declared_as_json_is_a_415() {
    let app = TestApp::new();
    let body = r#"{"jobId":"r1","state":"running"}"#;
    let answer = app.post_raw(Some("text/plain"), body).await;
    assert_error_shape(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_error_snapshot!("unsupported_media_type", answer);

    let answer = app.post_raw(None, body).await;
    assert_error_shape(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // A malformed body comes first, whatever it claims to be.
    let answer = app.post_raw(Some("text/plain"), "{").await;
    assert_error_shape(&answer, StatusCode::BAD_REQUEST, "malformed_json");
    assert_eq!(
        app.get("/_mock/runs/r1").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_routes_and_runs_are_404_and_wrong_methods_405() {
    let app = TestApp::new();
    let answer = app.get("/job-launcher/launcher/nope").await;
    assert_error_shape(&answer, StatusCode::NOT_FOUND, "not_found");
    assert_error_snapshot!("no_route", answer);

    let answer = app.request(Method::PUT, STATUS).await;
    assert_error_shape(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error_snapshot!("method_not_allowed", answer);

    for path in ["/_mock/runs/ghost", "/_mock/runs/ghost/history"] {
        let answer = app.get(path).await;
        assert_error_shape(&answer, StatusCode::NOT_FOUND, "not_found");
        assert_eq!(answer.json["path"], path);
    }
    let answer = app.delete("/_mock/runs/ghost").await;
    assert_error_shape(&answer, StatusCode::NOT_FOUND, "not_found");
    assert_error_snapshot!("no_run", answer);
}

/// A status update goes to its handler past the router (`api::Dispatch`): only a POST to
/// the status path itself, as the router would match it, goes that way.
#[tokio::test]
async fn a_status_update_is_a_post_to_the_status_path_and_nothing_else() {
    let app = TestApp::new();
    let answer = app
        .send_json(
            Method::POST,
            &format!("{STATUS}?from=query"),
            &update("q1", "running"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(app.run("q1").await["state"], "running");

    for path in [format!("{STATUS}/"), STATUS.to_uppercase()] {
        let answer = app
            .send_json(Method::POST, &path, &update("q2", "running"))
            .await;
        assert_error_shape(&answer, StatusCode::NOT_FOUND, "not_found");
    }
    let answer = app
        .send_json(Method::PATCH, STATUS, &update("q2", "running"))
        .await;
    assert_error_shape(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_eq!(answer.headers[header::ALLOW], "POST,GET,HEAD");
    assert_eq!(
        app.get("/_mock/runs/q2").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_query_parameters_are_a_400_naming_them() {
    let app = TestApp::new();
    for (path, field) in [
        ("/_mock/runs?limit=many", "limit"),
        ("/_mock/runs?offset=1.5", "offset"),
        ("/_mock/runs?limit=99999999999", "limit"),
        ("/_mock/requests?since=yesterday", "since"),
        ("/_mock/requests?status=teapot", "status"),
        ("/_mock/requests?status=-1", "status"),
    ] {
        let answer = app.get(path).await;
        assert_error_shape(&answer, StatusCode::BAD_REQUEST, "validation_failed");
        let message = answer.json["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}=")),
            "{path}: {message}"
        );
        assert_eq!(
            answer.json["violations"],
            json!([{"field": field, "message": message}]),
            "{path}"
        );
    }
    let answer = app.get("/_mock/runs?limit=many").await;
    assert_eq!(
        answer.json["message"],
        r#"limit="many" cannot be read: invalid digit found in string"#
    );
    // Read, then refused for its value: the same shape.
    let answer = app.get("/_mock/runs?offset=-1").await;
    assert_eq!(answer.json["violations"][0]["field"], "offset");

    let answer = app.get("/_mock/runs?state=running,done").await;
    assert_error_shape(&answer, StatusCode::BAD_REQUEST, "validation_failed");
    assert_error_snapshot!("bad_state_filter", answer);
}

#[tokio::test]
async fn error_answers_keep_the_request_id() {
    let app = TestApp::new();
    let request = Request::builder()
        .method(Method::POST)
        .uri(STATUS)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "abc-123")
        .body(Body::from("nope"))
        .unwrap();
    let answer = app.send(request).await;
    assert_error_shape(&answer, StatusCode::BAD_REQUEST, "malformed_json");
    assert_eq!(answer.headers["x-request-id"], "abc-123");
}

/// A JSON `POST` to `path` whose body is `pieces`, as they come.
fn streamed_post(
    path: &str,
    pieces: impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send + 'static,
) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(pieces))
        .unwrap()
}

fn app_with_request_timeout(timeout: std::time::Duration) -> TestApp {
    TestApp::with(MockServer::builder().request_timeout(timeout))
}

#[tokio::test]
async fn a_request_past_the_request_timeout_is_a_408() {
    let app = app_with_request_timeout(std::time::Duration::from_millis(20));
    // A body that never arrives keeps the handler waiting until the timeout answers: the
    // timer is armed when the handler first waits. The status update has a path of its
    // own; the launch is a route the router runs.
    for path in [STATUS, "/job-launcher/launcher"] {
        let never = futures_util::stream::pending();
        let answer = app.send(streamed_post(path, never)).await;
        assert_error_shape(&answer, StatusCode::REQUEST_TIMEOUT, "timeout");
        if path == STATUS {
            assert_error_snapshot!("timeout", answer);
        }
    }
}

#[tokio::test]
async fn a_body_that_comes_after_a_wait_within_the_request_timeout_is_answered() {
    // Long enough that a busy machine cannot make it pass between two polls.
    let app = app_with_request_timeout(std::time::Duration::from_secs(30));
    // The handler waits for the body (so the timer is armed), which comes at once after.
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    let body = serde_json::to_vec(&update("late", "running")).unwrap();
    let late = futures_util::stream::once(async move {
        let _ = receiver.await;
        Ok::<_, std::io::Error>(axum::body::Bytes::from(body))
    });
    let (answer, ()) = tokio::join!(app.send(streamed_post(STATUS, late)), async move {
        tokio::task::yield_now().await;
        let _ = sender.send(());
    });
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["jobId"], "late");
}
