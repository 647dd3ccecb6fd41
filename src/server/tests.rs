//! Waits and event streams, through a [`MockServer`] and its router, synchronized on the
//! registry's own count of open waiters (which only the crate can see), or fed straight
//! through the registry so that updates come faster than any subscriber reads them.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

use super::MockServer;

// The integration tests' event reader, one file for both.
#[path = "../../tests/it/support/events.rs"]
mod events;
use crate::app::AppState;
use crate::config::Config;
use crate::model::StatusUpdate;
use crate::routes::STATUS;
use events::EventReader;

/// Resolves once `count` waiters are open; fails the test after 5 s rather than hang.
async fn until_waiters(waiters: &mut watch::Receiver<usize>, count: usize) {
    let reached = tokio::time::timeout(Duration::from_secs(5), waiters.wait_for(|n| *n == count));
    assert!(
        matches!(reached.await, Ok(Ok(_))),
        "the open waiters never became {count}"
    );
}

/// The service in-process, and the state it serves, to watch its waiters.
struct App {
    state: AppState,
    router: axum::Router,
}

impl App {
    fn new() -> App {
        let state = AppState::with_scenarios(&Config::default(), Vec::new());
        App {
            router: crate::api::app(state.clone()),
            state,
        }
    }

    fn waiters(&self) -> watch::Receiver<usize> {
        self.state.world().registry.waiters()
    }

    /// The status and JSON answer of `GET path`.
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        self.call(request).await
    }

    /// The status and JSON answer of `method path`, with `body` as JSON if given.
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
        self.call(request.body(body).unwrap()).await
    }

    /// Posts `update`, which must be accepted.
    async fn post_ok(&self, update: Value) {
        let request = Request::post(STATUS)
            .header("content-type", "application/json")
            .body(Body::from(update.to_string()))
            .unwrap();
        let (status, answer) = self.call(request).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let answer = self.router.clone().oneshot(request).await.unwrap();
        let status = answer.status();
        let body = to_bytes(answer.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

fn update(job_id: &str, state: &str) -> Value {
    json!({"jobId": job_id, "state": state})
}

/// Applies `body` straight to the registry, past HTTP, the journal and the event
/// stream's task: nothing else runs in between.
fn apply(state: &AppState, body: &Value) {
    let (parsed, problems) = StatusUpdate::parse(body.to_string().as_bytes()).unwrap();
    let job_id = parsed.job_id.clone().unwrap();
    state
        .world()
        .registry
        .apply(job_id, parsed, problems)
        .unwrap();
}

#[tokio::test]
async fn a_wait_is_woken_by_the_update_it_waits_for() {
    let app = App::new();
    app.post_ok(update("w1", "running")).await;
    let mut waiters = app.waiters();
    let wait = app.get("/_mock/runs/w1/wait?state=finished&timeout=10s");
    let post = async {
        // Only once the waiter is registered, so it is the update that wakes it.
        until_waiters(&mut waiters, 1).await;
        app.post_ok(update("w1", "finishing")).await;
        app.post_ok(update("w1", "finished")).await;
    };
    let ((status, answer), ()) = tokio::join!(wait, post);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["jobId"], "w1");
    assert_eq!(answer["state"], "finished");
    assert_eq!(answer["status"]["state"], "finished");
    assert_eq!(answer["updateCount"], 3);
    assert_eq!(*app.waiters().borrow(), 0);
}

#[tokio::test]
async fn a_wait_for_a_run_that_does_not_exist_yet_answers_when_it_appears() {
    let app = App::new();
    let mut waiters = app.waiters();
    // No state: wait for the run to end.
    let wait = app.get("/_mock/runs/later/wait?timeout=10s");
    let post = async {
        until_waiters(&mut waiters, 1).await;
        app.post_ok(update("later", "running")).await;
        app.post_ok(update("other", "finished")).await;
        app.post_ok(update("later", "error")).await;
    };
    let ((status, answer), ()) = tokio::join!(wait, post);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["jobId"], "later");
    assert_eq!(answer["state"], "error");
}

#[tokio::test]
async fn a_wait_counts_a_state_the_run_only_passed_through() {
    let app = App::new();
    app.post_ok(update("quick", "starting")).await;
    let mut waiters = app.waiters();
    let wait = app.get("/_mock/runs/quick/wait?state=running&timeout=10s");
    let post = async {
        until_waiters(&mut waiters, 1).await;
        // Two updates applied back to back, before the waiter can look in between.
        for state in ["running", "finished"] {
            apply(&app.state, &update("quick", state));
        }
    };
    let ((status, answer), ()) = tokio::join!(wait, post);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["state"], "finished", "the run as it is now");
}

#[tokio::test]
async fn a_client_that_hangs_up_frees_its_waiter() {
    use tokio::io::AsyncWriteExt;

    let server = MockServer::start().await;
    let mut waiters = server.state.world().registry.waiters();
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

#[tokio::test]
async fn shutdown_ends_open_waits_and_event_streams() {
    let server = MockServer::start().await;
    let client = reqwest::Client::new();
    let events = client
        .get(format!("{}/_mock/events", server.uri()))
        .send()
        .await
        .unwrap();
    let mut waiters = server.state.world().registry.waiters();
    let wait = tokio::spawn(
        client
            .get(format!("{}/_mock/runs/never/wait?timeout=1h", server.uri()))
            .send(),
    );
    until_waiters(&mut waiters, 1).await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown does not wait for an hour-long wait or an endless stream");
    let wait = wait.await.unwrap().unwrap();
    assert_eq!(wait.status(), 408);
    assert!(events.bytes().await.is_ok(), "the stream ended cleanly");
}

#[tokio::test]
async fn a_slow_subscriber_never_slows_writers_and_is_told_it_lagged() {
    let server = MockServer::start().await;
    let mut slow = EventReader::open(&server.uri(), None).await;
    // Far more updates than the stream buffers, while the subscriber reads nothing.
    // Straight to the registry, so the test is quick; each still goes through `apply`.
    for i in 0..3000 {
        apply(&server.state, &update(&format!("lag{i}"), "running"));
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
    let mut resumed = EventReader::open(&server.uri(), Some(last)).await;
    assert_eq!(resumed.next_update().await["seq"], last + 1);
}

#[tokio::test]
async fn a_resuming_subscriber_gets_a_long_backlog_page_by_page() {
    let server = MockServer::start().await;
    for i in 0..700 {
        let state = if i < 7 { "starting" } else { "running" };
        apply(
            &server.state,
            &json!({"jobId": format!("page{}", i % 7), "state": state, "n": i}),
        );
    }
    let mut resumed = EventReader::open(&server.uri(), Some(3)).await;
    let mut expected = 4;
    while expected <= 700 {
        assert_eq!(resumed.next_update().await["seq"], expected);
        expected += 1;
    }
}

#[tokio::test]
async fn deleting_a_session_answers_its_waits_and_forgets_all_it_held() {
    let app = App::new();
    let session = json!({"name": "gone", "ttl": null});
    let (made, answer) = app
        .send(Method::POST, "/_mock/sessions", Some(session.clone()))
        .await;
    assert_eq!(made, StatusCode::CREATED, "{answer}");
    let (posted, answer) = app
        .send(
            Method::POST,
            "/sessions/gone/job-launcher/launcher/status",
            Some(update("r1", "running")),
        )
        .await;
    assert_eq!(posted, StatusCode::OK, "{answer}");
    let mut waiters = app.state.sessions.list()[0].world.registry.waiters();
    let waiting = app.get("/sessions/gone/_mock/runs/r1/wait?state=finished&timeout=1h");
    let deleting = async {
        until_waiters(&mut waiters, 1).await;
        app.send(Method::DELETE, "/_mock/sessions/gone", None).await
    };
    let ((waited, answer), (deleted, _)) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(waiting, deleting)
    })
    .await
    .expect("the wait ends when its session goes");
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    assert_eq!(waited, StatusCode::NOT_FOUND, "{answer}");
    assert!(answer.to_string().contains("session"), "{answer}");
    assert_eq!(
        app.get("/sessions/gone/_mock/runs/r1").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/_mock/sessions").await.1, json!({"sessions": []}));
    // The name is free again, for a world that starts empty.
    let (made, answer) = app
        .send(Method::POST, "/_mock/sessions", Some(session))
        .await;
    assert_eq!(made, StatusCode::CREATED, "{answer}");
    assert_eq!(app.get("/sessions/gone/_mock/runs").await.1["total"], 0);
}
