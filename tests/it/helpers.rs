//! Shared test helpers: an in-process app with typed requests, and a served one.

use std::num::NonZeroUsize;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
pub use job_launcher_mock::Config;
use job_launcher_mock::config::Validation;
use job_launcher_mock::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Fusion's own example body for the update endpoint.
pub const SEED: &str = include_str!("../fixtures/seed-status-update.json");

pub const STATUS: &str = "/job-launcher/launcher/status";

/// Prints the service's logs when `TEST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        job_launcher_mock::telemetry::init(job_launcher_mock::config::LogFormat::Pretty);
    }
}

pub fn config() -> Config {
    Config {
        port: 0,
        ..Config::default()
    }
}

/// A config with a manual clock: simulated runs move only when the test advances it.
pub fn manual() -> Config {
    Config {
        clock: job_launcher_mock::config::ClockMode::Manual,
        ..config()
    }
}

pub fn lenient() -> Config {
    Config {
        validation: Validation::Lenient,
        ..config()
    }
}

pub fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

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

/// The app in-process: requests go straight to the router, no socket.
pub struct TestApp {
    router: Router,
    /// The app's state, for what a test must observe without HTTP (e.g. waiters).
    pub state: AppState,
}

impl TestApp {
    pub fn new() -> Self {
        Self::with(config())
    }

    pub fn with(config: Config) -> Self {
        Self::with_state(AppState::new(&config).expect("the test's config is valid"))
    }

    pub fn with_state(state: AppState) -> Self {
        init_logs();
        TestApp {
            router: app(state.clone()),
            state,
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
}

/// A well-formed update for `job_id` in `state`.
pub fn update(job_id: &str, state: &str) -> Value {
    json!({"jobId": job_id, "state": state})
}

/// The `update` members of a run's history, in order.
pub fn posted(history: &Value) -> Vec<Value> {
    history["updates"]
        .as_array()
        .map(|updates| updates.iter().map(|u| u["update"].clone()).collect())
        .unwrap_or_default()
}

/// The `field` of each violation or warning in a list.
pub fn fields(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| items.iter().filter_map(|v| v["field"].as_str()).collect())
        .unwrap_or_default()
}
