//! `/openapi.json` is true to the router: every route documented, every documented
//! operation served, every schema reference resolved.

use std::collections::BTreeSet;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use job_launcher_mock::{MockServer, MockServerBuilder};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::access::guarded;
use crate::support::TestApp;

async fn document() -> Value {
    document_of(&MockServer::builder()).await
}

/// `/openapi.json` as a mock with `mock`'s settings (a process with its flags) serves it.
async fn document_of(mock: &MockServerBuilder) -> Value {
    let answer = TestApp::with(mock.clone()).get("/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "application/json");
    answer.json
}

/// Every `(METHOD, path)` the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item");
            methods
                .keys()
                .filter(|m| !matches!(m.as_str(), "parameters" | "summary" | "description"))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

/// Calls every operation the document of a mock with `mock`'s settings describes, with
/// no credentials, and checks that each is routed and answers a status its documentation
/// lists; returns the operations that answered 401.
async fn answers_as_documented(mock: &MockServerBuilder) -> BTreeSet<(String, String)> {
    let doc = document_of(mock).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let router = mock.clone().into_router();
    let mut refused = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let mut uri = path
            .replace("{jobId}", "some-run")
            .replace("{app}", "some-app")
            .replace("{id}", "some-id")
            .replace("{match}", "some-match");
        if uri.ends_with("/wait") {
            uri.push_str("?timeout=0s");
        }
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        // Each answer's status is one the document lists for the operation.
        let documented = &doc["paths"][&path][method.to_lowercase()]["responses"];
        assert!(
            documented.get(status.as_str()).is_some(),
            "{method} {path} answered {status}, which its documentation does not list"
        );
        if status == StatusCode::UNAUTHORIZED {
            refused.insert((method, path));
            continue;
        }
        if uri == "/_mock/events" {
            continue; // a stream that does not end
        }
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("no route for"),
            "{method} {path} is documented but not routed: {text}"
        );
    }
    refused
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let refused = answers_as_documented(&MockServer::builder()).await;
    assert!(refused.is_empty(), "{refused:?}");
    let doc = document().await;
    assert!(doc["components"].get("securitySchemes").is_none());
    for (method, path) in operations(&doc) {
        let operation = &doc["paths"][&path][method.to_lowercase()];
        assert!(operation.get("security").is_none(), "{method} {path}");
    }
}

/// Started with access flags, the document names the credentials each guarded operation
/// takes, and exactly those operations refuse a call without them, with a documented 401.
#[tokio::test]
async fn a_guarded_process_documents_the_credentials_each_route_needs() {
    let guarded = guarded();
    let doc = document_of(&guarded).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basicAuth"]["type"], "http", "{schemes}");
    assert_eq!(schemes["basicAuth"]["scheme"], "basic");
    assert_eq!(schemes["apiKey"]["type"], "apiKey");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["apiKey"]["name"], "x-api-key");
    assert_eq!(schemes["adminToken"]["type"], "http");
    assert_eq!(schemes["adminToken"]["scheme"], "bearer");
    for secret in ["s3cret:pass", "key-123", "tok-5b2d"] {
        assert!(
            !doc.to_string().contains(secret),
            "{secret} in the document"
        );
    }

    let refused = answers_as_documented(&guarded).await;
    let mut declared = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let operation = &doc["paths"][&path][method.to_lowercase()];
        let Some(security) = operation.get("security") else {
            continue;
        };
        let expected = if path.starts_with("/_mock") {
            json!([{"adminToken": []}])
        } else {
            json!([{"basicAuth": []}, {"apiKey": []}])
        };
        assert_eq!(security, &expected, "{method} {path}");
        declared.insert((method, path));
    }
    assert_eq!(declared, refused, "declared security vs. answered 401");
    assert!(declared.contains(&(
        "POST".to_owned(),
        "/job-launcher/launcher/status".to_owned()
    )));
    assert!(declared.contains(&("GET".to_owned(), "/_mock/runs".to_owned())));
    assert!(
        !declared
            .iter()
            .any(|(_, path)| path.starts_with("/actuator")
                || path == "/metrics"
                || path == "/openapi.json")
    );

    // One credential set, one scheme: the mock's own routes stay open.
    let key_only = MockServer::builder().api_key("key-123");
    let doc = document_of(&key_only).await;
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes.keys().collect::<Vec<_>>(), ["apiKey"]);
    let status = &doc["paths"]["/job-launcher/launcher/status"]["post"];
    assert_eq!(status["security"], json!([{"apiKey": []}]));
    assert!(status["responses"].get("401").is_some());
    assert!(doc["paths"]["/_mock/runs"]["get"].get("security").is_none());
}

/// Routes are only ever added through `routes!` on an annotated handler, which gives the
/// router and the document the same method and path; this fails when one is added any
/// other way, or when an annotated handler is left out of the router.
#[tokio::test]
async fn every_route_is_added_with_its_documentation() {
    let sources: Vec<(String, String)> = std::fs::read_dir("src/api")
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path.display().to_string(), text)
        })
        .collect();
    for (file, text) in &sources {
        // The documented router, wrapped whole in the middleware, adds no route.
        let text = text
            .replace("OpenApiRouter::new()", "")
            .replace("Router::new().fallback_service(stack)", "");
        for bypass in [
            ".route(",
            ".route_service(",
            ".nest_service(",
            "Router::new()",
        ] {
            assert!(
                !text.contains(bypass),
                "{file} adds a route with {bypass}, which the OpenAPI document cannot see; \
                 use routes!(handler) on a #[utoipa::path] handler"
            );
        }
    }
    // The Spark routes are served, and documented, under two prefixes.
    let annotated: usize = sources
        .iter()
        .map(|(file, text)| {
            let served = if file.ends_with("spark.rs") { 2 } else { 1 };
            served * text.matches("#[utoipa::path(").count()
        })
        .sum();
    let doc = document().await;
    assert_eq!(
        operations(&doc).len(),
        annotated,
        "every annotated handler, and only those, is in the document"
    );
}

#[tokio::test]
async fn the_answers_each_route_can_give_are_documented() {
    let doc = document().await;
    let codes = |method: &str, path: &str| -> BTreeSet<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has responses"))
            .keys()
            .cloned()
            .collect()
    };
    let expect = |method: &str, path: &str, want: &[&str]| {
        let have = codes(method, path);
        for code in want {
            assert!(
                have.contains(*code),
                "{method} {path} lacks {code}: {have:?}"
            );
        }
    };
    expect(
        "post",
        "/job-launcher/launcher/status",
        &["200", "400", "409", "413", "415", "422", "507"],
    );
    expect("get", "/job-launcher/launcher/status", &["200"]);
    expect("get", "/_mock/runs/{jobId}", &["200", "404"]);
    expect("delete", "/_mock/runs/{jobId}", &["204", "404"]);
    expect("get", "/_mock/runs/{jobId}/wait", &["200", "400", "408"]);
    expect("get", "/_mock/requests", &["200", "400"]);
    expect("get", "/_mock/events", &["200", "400"]);
    let events = &doc["paths"]["/_mock/events"]["get"]["responses"]["200"]["content"];
    assert!(events.get("text/event-stream").is_some(), "{events}");
}

#[tokio::test]
async fn every_schema_reference_resolves() {
    let doc = document().await;
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 10, "{refs:?}");
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("a local reference");
        assert!(
            doc.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    for field in [
        "timestamp",
        "status",
        "error",
        "message",
        "path",
        "code",
        "violations",
    ] {
        assert!(error.get(field).is_some(), "ErrorBody lacks {field}");
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                refs.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}
