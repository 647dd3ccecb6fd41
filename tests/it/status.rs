//! `POST /job-launcher/launcher/status` accepted: storing, merging, reading back, repeats,
//! lenient validation.

use axum::http::StatusCode;
use job_launcher_mock::JobState;
use serde_json::{Value, json};

use crate::support::{SEED, STATUS, TestApp, fields, lenient, posted, update};

#[tokio::test]
async fn seed_body_is_accepted_and_reads_back_unchanged_through_both_get_routes() {
    let app = TestApp::new();
    let seed: Value = serde_json::from_str(SEED).unwrap();

    let answer = app.post_text(SEED).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.content_type, "application/json");

    let list = app.get(STATUS).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json, json!([seed]));

    let run = app.run("hhzitrwancwv").await;
    assert_eq!(run["status"], seed);
    assert_eq!(run["updateCount"], 1);
    let history = app.history("hhzitrwancwv").await;
    assert_eq!(posted(&history), [seed]);
    assert_eq!(history["updates"][0]["seq"], 1);
    // Its jobRunId differs from its jobId: accepted, with a warning.
    assert_eq!(
        run["warnings"],
        json!([{"field": "result.jobRunId",
                "message": "result.jobRunId \"sjnamxwxsyhq\" differs from jobId \"hhzitrwancwv\""}])
    );
    assert_eq!(history["updates"][0]["warnings"], run["warnings"]);
    // The answer says where the update went and what it raised.
    assert_eq!(
        answer.json,
        json!({"jobId": "hhzitrwancwv", "state": "finished", "seq": 1, "repeat": false,
               "warnings": run["warnings"]})
    );
}

#[tokio::test]
async fn values_read_back_byte_for_byte_as_posted() {
    let app = TestApp::new();
    let config = r#"{"id":"cfg","huge":123456789012345678901234567890,"tenth":0.1,"exp":1E+2,"esc":"tab\tquote\"slash\\\u00e9\ud83d\ude00","text":"日本語 ✓","nested":{"b":1,"a":[{}]}}"#;
    let body = format!(
        r#"{{"jobId":"r1","state":"running","jobConfig":{config},"startTime":"2025-10-16T21:49:15.1066+02:00","custom":[null,true]}}"#
    );
    assert_eq!(app.post_text(&body).await.status, StatusCode::OK);

    let list = app.get(STATUS).await;
    assert_eq!(list.text, format!("[{body}]"));
    let run = app.get("/_mock/runs/r1").await;
    assert!(
        run.text.contains(&format!(r#""status":{body}"#)),
        "{}",
        run.text
    );
    let history = app.get("/_mock/runs/r1/history").await;
    assert!(
        history.text.contains(&format!(r#""update":{body}"#)),
        "{}",
        history.text
    );
}

#[tokio::test]
async fn partial_updates_merge_at_the_top_level() {
    let app = TestApp::new();
    let first = json!({"jobId": "r1", "state": "starting", "hostname": "h1",
                       "jobConfig": {"id": "cfg", "type": "script", "x": [1]}});
    app.post_ok(first.clone()).await;
    let second = json!({"jobId": "r1", "state": "running", "startTime": "2025-01-01T00:00:00Z"});
    app.post_ok(second.clone()).await;
    let third = json!({"jobId": "r1", "state": "finished", "hostname": "h2",
                       "endTime": "2025-01-01T00:00:02Z", "duration": 2000});
    app.post_ok(third.clone()).await;

    let expected = json!({"jobId": "r1", "state": "finished", "hostname": "h2",
        "jobConfig": {"id": "cfg", "type": "script", "x": [1]},
        "startTime": "2025-01-01T00:00:00Z", "endTime": "2025-01-01T00:00:02Z", "duration": 2000});
    assert_eq!(app.run("r1").await["status"], expected);
    assert_eq!(posted(&app.history("r1").await), [first, second, third]);
}

#[tokio::test]
async fn null_neither_erases_nor_counts_but_is_stored_as_sent() {
    let app = TestApp::new();
    app.post_ok(json!({"jobId": "r1", "state": "running", "hostname": "h1"}))
        .await;
    // A null endTime on a running run is no timing problem: it counts as absent.
    let with_nulls = json!({"jobId": "r1", "state": "running", "hostname": null,
                            "endTime": null, "result": null});
    app.post_ok(with_nulls.clone()).await;

    let status = &app.run("r1").await["status"];
    assert_eq!(status["hostname"], "h1");
    let keys: Vec<&String> = status.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["hostname", "jobId", "state"], "a null was merged in");
    assert_eq!(posted(&app.history("r1").await)[1], with_nulls);
}

#[tokio::test]
async fn exact_repeat_is_answered_200_without_a_history_entry() {
    let app = TestApp::new();
    app.post_text(r#"{"jobId":"r1","state":"running","n":1.0}"#)
        .await;
    let retry = app
        .post_text("{ \"n\" : 1.0 ,\n \"state\":\"running\", \"jobId\":\"r1\" }")
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.json["repeat"], true);
    assert_eq!(retry.json["seq"], 1);

    let run = app.run("r1").await;
    assert_eq!(run["updateCount"], 1);
    assert_eq!(
        app.history("r1").await["updates"].as_array().map(Vec::len),
        Some(1)
    );

    // Not a repeat: a value differs.
    app.post_ok(json!({"jobId": "r1", "state": "running", "n": 2}))
        .await;
    assert_eq!(app.run("r1").await["updateCount"], 2);
}

#[tokio::test]
async fn ended_run_accepts_a_repeat_of_its_last_update_only() {
    let app = TestApp::new();
    let first = app.post_text(SEED).await;
    assert_eq!(first.status, StatusCode::OK);
    let retry = app.post_text(SEED).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(app.run("hhzitrwancwv").await["updateCount"], 1);
    // A retry is answered as the update it repeats was, warnings included.
    let mut expected = first.json.clone();
    expected["repeat"] = json!(true);
    assert_eq!(retry.json, expected);

    let mut changed: Value = serde_json::from_str(SEED).unwrap();
    changed["hostname"] = json!("elsewhere");
    let answer = app.post(changed).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.json["code"], "invalid_transition");
}

#[tokio::test]
async fn lenient_mode_accepts_rule_violations_and_records_warnings() {
    let app = TestApp::with(lenient());
    app.post_ok(json!({"jobId": "r1", "state": "finished", "jobConfig": {"id": "a"}}))
        .await;
    let answer = app
        .post(
            json!({"jobId": "r1", "state": "running", "jobConfig": {"id": "b"},
                     "duration": 5}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);

    let history = app.history("r1").await;
    assert_eq!(
        fields(&history["updates"][1]["warnings"]),
        ["state", "jobConfig.id", "duration"]
    );
    assert_eq!(
        app.run("r1").await["warnings"],
        history["updates"][1]["warnings"]
    );
}

#[tokio::test]
async fn lenient_mode_still_refuses_malformed_updates() {
    let app = TestApp::with(lenient());
    let answer = app.post(json!({"jobId": "r1", "state": "done"})).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/_mock/runs/r1").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_state_may_start_a_run_and_transitions_follow_the_table() {
    let app = TestApp::new();
    for state in JobState::ALL.map(JobState::as_str) {
        app.post_ok(update(&format!("new-{state}"), state)).await;
    }
    let path = [
        "idle",
        "starting",
        "running",
        "finishing",
        "cancelling",
        "finished",
    ];
    for state in path {
        app.post_ok(update("r1", state)).await;
    }
    // An unknown run may start in any state, ended ones included.
    app.post_ok(update("r2", "skipped")).await;
    let answer = app.post(update("r2", "starting")).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn application_star_plus_json_is_accepted() {
    let app = TestApp::new();
    let answer = app
        .post_raw(
            Some("application/hal+json; charset=UTF-8"),
            r#"{"jobId":"r1","state":"idle"}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[tokio::test]
async fn offsets_are_honoured_and_start_time_may_be_rewritten_at_another_offset() {
    let app = TestApp::new();
    app.post_ok(json!({"jobId": "r1", "state": "running",
                       "startTime": "2025-01-01T12:00:00+02:00"}))
        .await;
    let answer = app
        .post(
            json!({"jobId": "r1", "state": "finished", "startTime": "2025-01-01T10:00:00Z",
                     "endTime": "2025-01-01T10:00:01.5Z", "duration": 1500}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // The stored value is the one posted last, as written.
    assert_eq!(
        app.run("r1").await["status"]["startTime"],
        "2025-01-01T10:00:00Z"
    );
}

#[tokio::test]
async fn numbers_with_enormous_exponents_are_compared_not_overflowed() {
    let app = TestApp::new();
    app.post_text(r#"{"jobId":"r1","state":"running","x":1}"#)
        .await;
    let huge = format!(r#"{{"jobId":"r1","state":"running","x":10e{}}}"#, i128::MAX);
    let answer = app.post_text(&huge).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["repeat"], false);
    // serde_json's Value cannot hold the number, so read the text.
    let run = app.get("/_mock/runs/r1").await;
    assert!(run.text.contains(r#""updateCount":2"#), "{}", run.text);
}

#[tokio::test]
async fn a_repeated_key_is_read_last_wins_with_a_warning_naming_it() {
    for app in [TestApp::new(), TestApp::with(lenient())] {
        let body = r#"{"jobId":"dup","state":"starting","state":"running",
            "jobConfig":{"id":"a","type":"t","id":"b","sql":"1","sql":"2","params":{"x":1,"x":2}},
            "result":{"jobRunId":"dup","state":"running","state":"running","state":"running"}}"#;
        let answer = app.post_text(body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let warnings = json!([
            {"field": "state", "message": "\"state\" appears 2 times; the last value is used"},
            {"field": "jobConfig.id",
             "message": "\"jobConfig.id\" appears 2 times; the last value is used"},
            {"field": "result.state",
             "message": "\"result.state\" appears 3 times; the last value is used"},
        ]);
        // What the mock keeps as sent and never reads (`jobConfig.sql`, deeper objects)
        // is not looked at.
        assert_eq!(answer.json["warnings"], warnings, "{}", answer.text);
        // Last wins, as Jackson reads it: the run is running, of config b.
        let run = app.run("dup").await;
        assert_eq!(run["state"], "running");
        assert_eq!(run["status"]["jobConfig"]["id"], "b");
        assert_eq!(run["warnings"], warnings);
        // The history keeps the update exactly as posted, both keys included.
        let history = app.get("/_mock/runs/dup/history").await;
        assert!(
            history
                .text
                .contains(r#""state":"starting","state":"running""#),
            "{}",
            history.text
        );
        assert_eq!(history.json["updates"][0]["warnings"], warnings);
        let journal = app.get("/_mock/requests").await.json;
        assert_eq!(journal["entries"][0]["warnings"], warnings);

        // A key written once raises nothing.
        let again = app.post(update("dup", "running")).await;
        assert_eq!(again.json["warnings"], json!([]), "{}", again.text);
    }
}

#[tokio::test]
async fn a_repeated_key_is_noticed_on_the_parsers_slow_path_too() {
    let app = TestApp::new();
    // An escaped `jobConfig` sends a body past the one-pass parser, to the two passes;
    // an escaped name elsewhere does not.
    for (job_id, config) in [("slow", "jobConfig"), ("slower", "job\\u0043onfig")] {
        let body = format!(
            r#"{{"jobId":"{job_id}","st\u0061te":"bogus","state":"running",
                "{config}":{{"id":"a","id":"b"}}}}"#
        );
        let answer = app.post_text(&body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(fields(&answer.json["warnings"]), ["state", "jobConfig.id"]);
        let run = app.run(job_id).await;
        assert_eq!(run["state"], "running");
        assert_eq!(run["status"]["jobConfig"]["id"], "b");
    }
}
