//! The mock in-process: requests go to the router of
//! [`MockServerBuilder::into_router`] with tower's `oneshot`, no socket.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use job_launcher_mock::{MockServer, MockServerBuilder};
use serde_json::Value;
use tokio::runtime::Runtime;
use tower::ServiceExt;

use super::{STATUS, init_logs};

/// An answer: its status, its `Content-Type`, its body as text and, when it is JSON,
/// as a value.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content_type: String,
    pub text: String,
    pub json: Value,
}

/// The app in-process, with typed requests.
pub struct TestApp {
    router: Router,
}

impl TestApp {
    /// A mock with every default.
    pub fn new() -> Self {
        Self::with(MockServer::builder())
    }

    /// A mock with `builder`'s settings.
    pub fn with(builder: MockServerBuilder) -> Self {
        init_logs();
        TestApp {
            router: builder.into_router(),
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body is readable");
        let text = String::from_utf8(bytes.to_vec()).expect("answers are UTF-8");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            content_type,
            text,
            json,
        }
    }

    pub async fn request(&self, method: Method, path: &str) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("a valid request");
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.request(Method::DELETE, path).await
    }

    /// Sends a JSON body with any method to any path.
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("a valid request");
        self.send(request).await
    }

    /// Posts raw bytes to the status endpoint with the given `Content-Type`.
    pub async fn post_raw(&self, content_type: Option<&str>, body: impl Into<Body>) -> Answer {
        let mut request = Request::builder().method(Method::POST).uri(STATUS);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(body.into()).expect("a valid request"))
            .await
    }

    /// Posts a JSON text as a status update.
    pub async fn post_text(&self, body: &str) -> Answer {
        self.post_raw(Some("application/json"), body.to_owned())
            .await
    }

    /// Posts a JSON value as a status update.
    pub async fn post(&self, body: Value) -> Answer {
        self.post_text(&body.to_string()).await
    }

    /// Posts and insists on a 200.
    pub async fn post_ok(&self, body: Value) -> Answer {
        let answer = self.post(body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer
    }

    pub async fn run(&self, job_id: &str) -> Value {
        let answer = self.get(&format!("/_mock/runs/{job_id}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json
    }

    pub async fn history(&self, job_id: &str) -> Value {
        let answer = self.get(&format!("/_mock/runs/{job_id}/history")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json
    }

    /// Forgets everything, as `POST /_mock/reset` does.
    pub async fn reset(&self) {
        let answer = self.request(Method::POST, "/_mock/reset").await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text);
    }
}

thread_local! {
    static SHARED: &'static (Runtime, TestApp) = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let app = runtime.block_on(async { TestApp::new() });
        // Lives as long as the thread: a test thread ends with its test.
        Box::leak(Box::new((runtime, app)))
    };
}

/// This thread's runtime and app, reset, for properties that run hundreds of cases.
///
/// Building an app's router takes some 20 ms in a debug build, far more than a case's
/// requests, so a property reuses its thread's app and resets it (`POST /_mock/reset`:
/// runs, journal, configs, faults) before each case.
pub fn reset_app() -> &'static (Runtime, TestApp) {
    let shared = SHARED.with(|shared| *shared);
    shared.0.block_on(shared.1.reset());
    shared
}
