//! Bounds: no time the mock holds or computes passes 9999-12-31T23:59:59.999Z (the clock,
//! a fault rule's expiry, a scenario's due times), and a fault's delay ends with
//! `--request-timeout`. What would pass a bound is refused, naming its field, and
//! changes nothing.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use job_launcher_mock::{MockServer, MockServerBuilder};
use serde_json::json;

use crate::support::http::Client;
use crate::support::process::{TempDir, binary, start};
use crate::support::{Answer, STATUS, TestApp, manual, update};

const END: &str = "9999-12-31T23:59:59.999Z";
const LAUNCH: &str = "/job-launcher/launcher";

macro_rules! assert_error_snapshot {
    ($name:expr, $answer:expr) => {
        insta::assert_json_snapshot!($name, $answer.json, {".timestamp" => "[timestamp]"})
    };
}

fn end() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(END)
        .unwrap()
        .with_timezone(&Utc)
}

async fn advance(app: &TestApp, by: &str) -> Answer {
    app.send_json(Method::POST, "/_mock/clock/advance", &json!({"by": by}))
        .await
}

async fn now(app: &TestApp) -> String {
    let clock = app.get("/_mock/clock").await.json;
    clock["now"].as_str().unwrap().to_owned()
}

/// Moves a manual clock to `margin` before the end of time, in durations the API reads
/// (at most nine digits each).
async fn advance_to_the_end_less(app: &TestApp, margin: Duration) {
    let now = DateTime::parse_from_rfc3339(&now(app).await).unwrap();
    let room = (end() - now.with_timezone(&Utc)).to_std().unwrap() - margin;
    let room = u64::try_from(room.as_millis()).unwrap();
    for by in [
        format!("{}h", room / 3_600_000),
        format!("{}ms", room % 3_600_000),
    ] {
        let answer = advance(app, &by).await;
        assert_eq!(answer.status, StatusCode::OK, "{by}: {}", answer.text);
    }
}

fn fields(answer: &Answer) -> Vec<&str> {
    answer.json["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_clock_stops_at_the_end_of_time_and_an_advance_past_it_changes_nothing() {
    let app = TestApp::with(manual());
    let scenario = json!({"steps": [{"state": "running", "after": "1m"},
                                     {"state": "finished", "after": "1m"}]});
    let put = app
        .send_json(Method::PUT, "/_mock/scenarios/nightly", &scenario)
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    let launched = app
        .send_json(
            Method::POST,
            LAUNCH,
            &json!({"id": "nightly", "type": "aggregation"}),
        )
        .await;
    let job_id = launched.json["jobId"].as_str().unwrap().to_owned();
    let before = now(&app).await;

    // The longest durations the API reads, from today: past year 9999, by far.
    for by in ["999999999h", "99999999h"] {
        let answer = advance(&app, by).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.text
        );
        assert_eq!(answer.json["code"], "validation_failed");
        assert_eq!(fields(&answer), ["by"]);
    }
    // Nothing moved: not the clock, not the run's steps that were due within the span.
    assert_eq!(now(&app).await, before);
    assert_eq!(app.run(&job_id).await["state"], "starting");

    // To the last millisecond, with the steps applied on the way; then not one more.
    advance_to_the_end_less(&app, Duration::ZERO).await;
    assert_eq!(now(&app).await, END);
    assert_eq!(app.run(&job_id).await["state"], "finished");
    assert_eq!(advance(&app, "0s").await.status, StatusCode::OK);
    let answer = advance(&app, "1ms").await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_snapshot!("advance_past_the_end", answer);
    assert_eq!(now(&app).await, END);
    // What the mock reports at the end of time is still RFC 3339.
    let posted = app.post_ok(update("last", "running")).await;
    assert_eq!(posted.json["state"], "running");
    assert_eq!(app.run("last").await["lastUpdateAt"], END);
}

#[tokio::test]
async fn a_fault_ttl_that_would_expire_past_the_end_of_time_is_refused() {
    let app = TestApp::with(manual());
    let rule = json!({"action": {"status": 503}, "ttl": "999999999h"});
    let answer = app.send_json(Method::POST, "/_mock/faults", &rule).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert_eq!(fields(&answer), ["ttl"]);
    assert_eq!(app.get("/_mock/faults").await.json, json!([]));
    assert_eq!(app.get(STATUS).await.status, StatusCode::OK, "no rule");

    // Within the bound, to the last millisecond.
    advance_to_the_end_less(&app, Duration::from_secs(60)).await;
    let fits = json!({"action": {"status": 503}, "ttl": "1m"});
    let added = app.send_json(Method::POST, "/_mock/faults", &fits).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    assert_eq!(added.json["expiresAt"], END);
    let over = json!({"action": {"status": 503}, "ttl": "60001ms"});
    let answer = app.send_json(Method::POST, "/_mock/faults", &over).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_snapshot!("ttl_past_the_end", answer);
    let rules = app.get("/_mock/faults").await.json;
    assert_eq!(rules.as_array().map(Vec::len), Some(1), "{rules}");
}

#[tokio::test]
async fn a_scenario_whose_steps_could_never_come_is_refused_when_given() {
    let app = TestApp::with(manual());
    for (scenario, field) in [
        (
            json!({"steps": [{"state": "running", "after": "1s"},
                             {"state": "finished", "after": "999999999h"}]}),
            "steps[1].after",
        ),
        // Each step fits, but not all of them one after the other.
        (
            json!({"runs": [{"steps": [{"state": "finished"}]},
                            {"steps": [{"state": "running", "after": "60000000h"},
                                       {"state": "finished", "after": "60000000h"}]}]}),
            "runs[1].steps[1].after",
        ),
    ] {
        let answer = app
            .send_json(Method::PUT, "/_mock/scenarios/far", &scenario)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.text
        );
        assert_eq!(fields(&answer), [field]);
        assert_eq!(
            app.get("/_mock/scenarios/far").await.status,
            StatusCode::NOT_FOUND
        );
    }
    // By polls, `after` gives no due time.
    let polls = json!({"progression": "polls",
                       "steps": [{"state": "finished", "after": "999999999h"}]});
    let answer = app
        .send_json(Method::PUT, "/_mock/scenarios/far", &polls)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
}

#[tokio::test]
async fn a_launch_whose_steps_would_pass_the_end_of_time_is_refused_and_creates_nothing() {
    let app = TestApp::with(manual());
    let scenario = json!({"steps": [{"state": "running", "after": "1h"},
                                     {"state": "finished", "after": "1h"}]});
    let put = app
        .send_json(Method::PUT, "/_mock/scenarios/nightly", &scenario)
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    let config = json!({"id": "nightly", "type": "aggregation"});
    let known = app
        .send_json(Method::PUT, "/api/spark/configurations/nightly", &config)
        .await;
    assert_eq!(known.status, StatusCode::CREATED, "{}", known.text);
    // The scenario was fine when given; the clock has moved on since.
    advance_to_the_end_less(&app, Duration::from_secs(90 * 60)).await;
    for launch in [
        app.send_json(Method::POST, LAUNCH, &config).await,
        app.request(Method::POST, "/api/spark/jobs/nightly").await,
    ] {
        assert_eq!(
            launch.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            launch.text
        );
        assert_eq!(launch.json["code"], "validation_failed");
        assert_eq!(fields(&launch), ["steps[1].after"]);
    }
    assert_eq!(app.get("/_mock/runs").await.json["total"], 0);
    assert_eq!(
        app.get("/api/spark/jobs/nightly").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_cancel_at_the_end_of_time_ends_the_run_there() {
    let app = TestApp::with(manual());
    advance_to_the_end_less(&app, Duration::from_millis(50)).await;
    // A driver's run, cancelled through the Spark route by its config id.
    app.post_ok(json!({"jobId": "late", "state": "running", "jobConfig": {"id": "late-job"}}))
        .await;
    let cancelling = app.delete("/api/spark/jobs/late-job").await;
    assert_eq!(cancelling.status, StatusCode::OK, "{}", cancelling.text);
    assert_eq!(cancelling.json["state"], "cancelling");
    // 100 ms would pass the end: `cancelled` comes at the end, 50 ms later.
    assert_eq!(advance(&app, "49ms").await.status, StatusCode::OK);
    assert_eq!(app.run("late").await["state"], "cancelling");
    assert_eq!(advance(&app, "1ms").await.status, StatusCode::OK);
    let run = app.run("late").await;
    assert_eq!(run["state"], "cancelled");
    assert_eq!(run["status"]["endTime"], END);
}

#[test]
fn a_scenarios_file_whose_steps_could_never_come_stops_the_start() {
    let scenarios =
        json!([{"match": "far", "steps": [{"state": "finished", "after": "999999999h"}]}]);
    let (_dir, path) = TempDir::with_file("far.json", &scenarios.to_string());
    let output = binary()
        .args(["--port", "0", "--scenarios"])
        .arg(&path)
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "it never said it was listening");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("steps[0].after"), "{error}");
    assert!(error.contains(END), "{error}");
}

fn short_timeout() -> MockServerBuilder {
    MockServer::builder().request_timeout(Duration::from_millis(50))
}

#[tokio::test(start_paused = true)]
async fn a_fault_delay_longer_than_the_request_timeout_ends_as_the_timeout_does() {
    let app = TestApp::with(short_timeout());
    let rule = json!({"match": {"path": STATUS}, "action": {"delay": "1h"}});
    let added = app.send_json(Method::POST, "/_mock/faults", &rule).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);

    let started = tokio::time::Instant::now();
    let answer = app.post(update("held", "running")).await;
    let took = started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::REQUEST_TIMEOUT,
        "{}",
        answer.text
    );
    assert_eq!(answer.json["code"], "timeout");
    assert_eq!(
        answer.json["message"],
        "POST /job-launcher/launcher/status took longer than the server's request timeout"
    );
    assert!(
        (Duration::from_millis(50)..Duration::from_secs(1)).contains(&took),
        "{took:?}"
    );
    // Unserved: no run; the journal marks the fault.
    assert_eq!(
        app.get("/_mock/runs/held").await.status,
        StatusCode::NOT_FOUND
    );
    let entry = &app.get("/_mock/requests").await.json["entries"][0];
    assert_eq!(
        (&entry["status"], &entry["code"], &entry["fault"]),
        (&json!(408), &json!("injected_fault"), &json!(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_fault_delay_shorter_than_the_request_timeout_is_served_after_it() {
    let app = TestApp::with(short_timeout());
    let rule = json!({"match": {"path": STATUS}, "action": {"delay": "40ms"}});
    let added = app.send_json(Method::POST, "/_mock/faults", &rule).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let started = tokio::time::Instant::now();
    let answer = app.post(update("served", "running")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_eq!(app.run("served").await["state"], "running");
}

#[tokio::test]
async fn over_a_socket_a_delayed_request_gets_the_timeouts_408_when_the_timeout_ends() {
    let (_server, base) = start(&["--port", "0", "--request-timeout", "300ms"], &[]);
    let client = Client::new(&base);
    let rule = json!({"match": {"path": STATUS}, "action": {"delay": "1h"}});
    let (added, _) = client.send(Method::POST, "/_mock/faults", &rule).await;
    assert_eq!(added, 201);
    let started = std::time::Instant::now();
    let held = update("held", "running");
    let posted = client.post_status(&held);
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), posted)
        .await
        .expect("an answer well within the hour");
    let took = started.elapsed();
    assert_eq!(status, 408);
    assert_eq!(body["code"], "timeout");
    assert!(took >= Duration::from_millis(300), "{took:?}");
}
