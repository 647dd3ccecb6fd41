//! Access control: each credential right, wrong and missing, on each kind of route.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use job_launcher_mock::{MockServer, MockServerBuilder};

use crate::support::{Answer, STATUS, TestApp, update};

/// All three flags set: `--basic-auth fusion:s3cret:pass --api-key key-123
/// --admin-token tok-5b2d`.
pub fn guarded() -> MockServerBuilder {
    MockServer::builder()
        .basic_auth("fusion", "s3cret:pass")
        .api_key("key-123")
        .admin_token("tok-5b2d")
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

async fn call(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder().method(method.clone()).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = if method == Method::POST {
        request = request.header(header::CONTENT_TYPE, "application/json");
        Body::from(update("acc1", "running").to_string())
    } else {
        Body::empty()
    };
    app.send(request.body(body).unwrap()).await
}

#[tokio::test]
async fn the_fusion_routes_take_either_credential() {
    let app = TestApp::with(guarded());
    let good_basic = basic("fusion", "s3cret:pass");
    for (method, path) in [
        (Method::POST, STATUS),
        (Method::GET, STATUS),
        (Method::GET, "/api/spark/jobs"),
        (Method::GET, "/api/apps/shop/spark/configurations"),
    ] {
        for headers in [
            vec![("authorization", good_basic.as_str())],
            vec![("x-api-key", "key-123")],
            vec![
                ("x-api-key", "wrong"),
                ("authorization", good_basic.as_str()),
            ],
        ] {
            let answer = call(&app, method.clone(), path, &headers).await;
            assert!(
                answer.status.is_success(),
                "{method} {path} {headers:?}: {}",
                answer.text
            );
        }
        let wrong_basic = basic("fusion", "nope");
        let wrong_user = basic("root", "s3cret:pass");
        for headers in [
            vec![],
            vec![("authorization", wrong_basic.as_str())],
            vec![("authorization", wrong_user.as_str())],
            vec![("authorization", "Basic !!!not-base64")],
            vec![("authorization", "Bearer tok-5b2d")],
            vec![("x-api-key", "key-12")],
            vec![("x-api-key", "key-1234")],
        ] {
            let answer = call(&app, method.clone(), path, &headers).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {headers:?}"
            );
            assert_eq!(answer.json["code"], "unauthorized");
            let challenge = answer.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Basic "), "{challenge}");
        }
    }
}

#[tokio::test]
async fn the_mock_routes_take_the_admin_token() {
    let app = TestApp::with(guarded());
    for path in [
        "/_mock/runs",
        "/_mock/requests",
        "/_mock/faults",
        "/_mock/clock",
        "/_mock/ui",
    ] {
        let answer = call(
            &app,
            Method::GET,
            path,
            &[("authorization", "Bearer tok-5b2d")],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
        for headers in [
            vec![],
            vec![("authorization", "Bearer admin-to")],
            vec![("authorization", "Basic YWRtaW4tdG9r")],
            vec![("x-api-key", "key-123")],
        ] {
            let answer = call(&app, Method::GET, path, &headers).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{path} {headers:?}"
            );
            assert_eq!(answer.json["code"], "unauthorized");
            let challenge = answer.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
    }
    // The dashboard and the event stream also take it in the query; nothing else does.
    let page = call(&app, Method::GET, "/_mock/ui?access_token=tok-5b2d", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type.starts_with("text/html"));
    let wrong = call(&app, Method::GET, "/_mock/ui?access_token=nope", &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let runs = call(&app, Method::GET, "/_mock/runs?access_token=tok-5b2d", &[]).await;
    assert_eq!(runs.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_metrics_and_the_document_stay_open() {
    let app = TestApp::with(guarded());
    for path in [
        "/actuator/health",
        "/actuator/health/readiness",
        "/metrics",
        "/openapi.json",
    ] {
        assert_eq!(
            call(&app, Method::GET, path, &[]).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    let home = call(&app, Method::GET, "/", &[]).await;
    assert!(home.status.is_redirection());
    assert_eq!(home.headers[header::LOCATION], "/_mock/ui");
}

#[tokio::test]
async fn no_secret_reaches_the_journal() {
    let app = TestApp::with(guarded());
    call(&app, Method::POST, STATUS, &[("x-api-key", "key-123")]).await;
    call(&app, Method::POST, STATUS, &[("x-api-key", "guess")]).await;
    let journal = call(
        &app,
        Method::GET,
        "/_mock/requests",
        &[("authorization", "Bearer tok-5b2d")],
    )
    .await;
    let entries = journal.json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["code"], "unauthorized");
    for secret in ["key-123", "guess", "tok-5b2d", "s3cret"] {
        assert!(
            !journal.text.contains(secret),
            "{secret} in {}",
            journal.text
        );
    }
}

#[tokio::test]
async fn without_flags_anyone_may_call() {
    let app = TestApp::new();
    assert_eq!(
        call(&app, Method::POST, STATUS, &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, Method::GET, "/_mock/runs", &[]).await.status,
        StatusCode::OK
    );
}

/// The builder refuses what the flags refuse, at once, rather than a mock that lets
/// everyone in or no one.
#[test]
fn credentials_the_flags_would_refuse_are_refused_by_the_builder() {
    let refused = |make: fn() -> MockServerBuilder| std::panic::catch_unwind(make).is_err();
    assert!(refused(|| MockServer::builder().api_key("")));
    assert!(refused(|| MockServer::builder().admin_token("")));
    assert!(refused(|| MockServer::builder().basic_auth("", "pass")));
    assert!(refused(|| MockServer::builder().basic_auth("user", "")));
    assert!(refused(|| MockServer::builder().basic_auth("us:er", "pass")));
    assert!(!refused(
        || MockServer::builder().basic_auth("user", "pa:ss")
    ));
}
