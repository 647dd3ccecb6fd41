//! A client of a served mock (a `MockServer`, or the binary), over a real socket.

use job_launcher_mock::{History, Journal, MockServer, Run};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::STATUS;

/// A client of the mock at `base` (`http://127.0.0.1:PORT`), with typed helpers for the
/// routes tests use most. Answers are read as JSON, `Value::Null` when they are not.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// A client of an in-process server.
    pub fn of(server: &MockServer) -> Client {
        Client::new(&server.uri())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The underlying client, for what the helpers do not cover (headers, streams).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `body` as JSON with `method` to `path`; the status and the JSON answer.
    pub async fn send(&self, method: Method, path: &str, body: &Value) -> (u16, Value) {
        let answer = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the service answers");
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// Sends `method` to `path` with no body; the status and the JSON answer.
    pub async fn call(&self, method: Method, path: &str) -> (u16, Value) {
        let answer = self
            .http
            .request(method, self.url(path))
            .send()
            .await
            .expect("the service answers");
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// Posts a status update.
    pub async fn post_status(&self, body: &Value) -> (u16, Value) {
        self.send(Method::POST, STATUS, body).await
    }

    /// `GET path`: the status and the JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET path`: the status and the answer as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let answer = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("the service answers");
        let status = answer.status().as_u16();
        (status, answer.text().await.expect("a readable answer"))
    }

    /// `GET path`, which must answer 200 with JSON that reads as a `T`.
    pub async fn get_ok<T: DeserializeOwned>(&self, path: &str) -> T {
        let (status, answer) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        serde_json::from_value(answer).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A run as `GET /_mock/runs/{jobId}` answers it; `None` on a 404.
    pub async fn run(&self, job_id: &str) -> Option<Run> {
        self.typed_or_404(&format!("/_mock/runs/{job_id}")).await
    }

    /// A run's history as `GET /_mock/runs/{jobId}/history` answers it; `None` on a 404.
    pub async fn history(&self, job_id: &str) -> Option<History> {
        self.typed_or_404(&format!("/_mock/runs/{job_id}/history"))
            .await
    }

    /// The journal, as `GET /_mock/requests` answers it.
    pub async fn requests(&self) -> Journal {
        self.get_ok("/_mock/requests").await
    }

    async fn typed_or_404<T: DeserializeOwned>(&self, path: &str) -> Option<T> {
        let (status, answer) = self.get(path).await;
        match status {
            404 => None,
            200 => Some(serde_json::from_value(answer).unwrap_or_else(|e| panic!("{path}: {e}"))),
            _ => panic!("GET {path}: {status} {answer}"),
        }
    }
}
