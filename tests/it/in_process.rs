//! The in-process Rust API, `MockServer`, used as a test suite uses it (with `reqwest`
//! as the code under test, as a user's would). That shutdown ends open waits and event
//! streams is the crate's own test, `src/server/tests.rs`: it waits on the registry.

use std::time::Duration;

use job_launcher_mock::{Error, JobState, MockServer, Run};
use serde_json::{Value, json};

use crate::support::{SEED, STATUS};

#[tokio::test]
async fn the_in_process_api_as_documented() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start().await; // free port, strict validation
    let lenient = MockServer::builder().lenient().start().await;
    let url = format!("{}/job-launcher/launcher/status", server.uri());
    // ... the code under test posts to url ...
    let client = reqwest::Client::new();
    let seed: Value = serde_json::from_str(SEED)?;
    let first = json!({"jobId": "hhzitrwancwv", "state": "running"});
    let waiting = server.wait_for_state("hhzitrwancwv", JobState::Finished, Duration::from_secs(5));
    let posting = async {
        for body in [&first, &seed] {
            let answer = client.post(&url).json(body).send().await?;
            assert_eq!(answer.status(), 200);
        }
        Ok::<_, reqwest::Error>(())
    };
    let (run, posted) = tokio::join!(waiting, posting);
    posted?;
    let run: Run = run?; // Err on timeout
    assert_eq!(run.job_id, "hhzitrwancwv");
    assert_eq!(run.state, JobState::Finished);
    assert_eq!(run.update_count, 2);
    assert_eq!(run.warnings.len(), 1, "the seed's result.jobRunId differs");
    let history = server.history("hhzitrwancwv").await.unwrap();
    let updates: Vec<&Value> = history.updates.iter().map(|e| &e.update).collect();
    assert_eq!(updates, [&first, &seed]);
    assert_eq!(history.updates[1].warnings, run.warnings);
    assert!(history.updates[0].seq < history.updates[1].seq);
    assert!(history.updates[0].received_at <= history.updates[1].received_at);
    let runs = server.runs().await; // current statuses
    let statuses: Vec<&Value> = runs.iter().map(|r| &r.status).collect();
    assert_eq!(statuses, [&seed]);
    let journal = server.requests().await;
    assert_eq!((journal.dropped, journal.entries.len()), (0, 2));
    assert_eq!(journal.entries[1].status, Some(200));

    // The lenient server is another mock: it saw nothing, and takes what strict refuses.
    assert!(lenient.runs().await.is_empty());
    let back = json!({"jobId": "hhzitrwancwv", "state": "running"});
    let lenient_url = format!("{}{STATUS}", lenient.uri());
    for _ in 0..2 {
        client
            .post(&lenient_url)
            .json(&json!({"jobId": "hhzitrwancwv", "state": "finished"}))
            .send()
            .await?;
    }
    assert_eq!(
        client.post(&lenient_url).json(&back).send().await?.status(),
        200
    );
    assert_eq!(client.post(&url).json(&back).send().await?.status(), 409);

    server.reset().await;
    assert!(server.runs().await.is_empty());
    assert!(server.requests().await.entries.is_empty());
    assert_eq!(lenient.runs().await.len(), 1);

    let address = server.address();
    let stopped = server.stopped();
    drop(server); // stops serving
    stopped.await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
    let health = client
        .get(format!("{}/actuator/health", lenient.uri()))
        .send()
        .await?;
    assert_eq!(health.status(), 200, "the other server still serves");
    Ok(())
}

#[tokio::test]
async fn a_wait_that_times_out_is_an_error_saying_what_the_run_is() {
    let server = MockServer::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}{STATUS}", server.uri());
    client
        .post(&url)
        .json(&json!({"jobId": "late", "state": "running"}))
        .send()
        .await
        .unwrap();
    let error = server
        .wait_for_state("late", JobState::Finished, Duration::from_millis(20))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "run late did not reach state finished within 20ms; it is running"
    );
    let Error::Timeout { run, .. } = &error else {
        panic!("a timeout: {error:?}");
    };
    assert_eq!(run.as_ref().map(|run| run.state), Some(JobState::Running));
    let error = server
        .wait_for_end("absent", Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "run absent did not end within 0s; it does not exist"
    );
}

#[tokio::test]
async fn simulated_jobs_scenarios_the_clock_and_faults_from_rust()
-> Result<(), Box<dyn std::error::Error>> {
    let failing = json!({"match": "nightly-*", "steps": [
        {"state": "running", "after": "10m"},
        {"state": "error", "after": "50m", "result": {"exception": {"message": "executor lost"}}}
    ]});
    let server = MockServer::builder()
        .manual_clock()
        .scenario(failing)
        .start()
        .await;
    let started = server.now();
    let launched = server
        .launch(&json!({"id": "nightly-aggregation", "type": "aggregation"}))
        .await?;
    let job_id = launched.job_id;
    assert_eq!(launched.state, JobState::Starting);

    let now = server.advance(Duration::from_secs(3600)).await?; // an hour, in no time
    assert_eq!(now - started, chrono::TimeDelta::hours(1));
    let run = server.wait_for_end(&job_id, Duration::ZERO).await?;
    assert_eq!(run.state, JobState::Error);
    assert_eq!(run.status["duration"], 50 * 60 * 1000);
    let states: Vec<Value> = server
        .history(&job_id)
        .await
        .unwrap()
        .updates
        .iter()
        .map(|entry| entry.update["state"].clone())
        .collect();
    assert_eq!(states, ["starting", "running", "error"]);

    server
        .put_scenario(&json!({"match": "quick", "steps": [{"state": "finished", "after": "1s"}]}))
        .await?;
    let bad = server
        .put_scenario(&json!({"match": "bad", "steps": []}))
        .await;
    assert_eq!(bad.unwrap_err().code(), "validation_failed");

    let fault = json!({"match": {"method": "POST"}, "action": {"status": 503}, "times": 2});
    server.add_fault(&fault).await?;
    let url = format!("{}{STATUS}", server.uri());
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let answer = client
            .post(&url)
            .json(&json!({"jobId": "retry", "state": "running"}))
            .send()
            .await?;
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(
        statuses,
        [503, 503, 200],
        "a client that retries twice gets through"
    );
    assert_eq!(server.faults().await[0]["fired"], 2);

    let system = MockServer::start().await;
    assert!(
        system.advance(Duration::from_secs(1)).await.is_err(),
        "the system clock is not a test's to move"
    );
    Ok(())
}

/// What the code under test posts, to `base` (a server's or a session's URI).
async fn post_states(base: &str, job_id: &str, states: &[&str]) -> Result<(), reqwest::Error> {
    let client = reqwest::Client::new();
    for state in states {
        client
            .post(format!("{base}{STATUS}"))
            .json(&json!({"jobId": job_id, "state": state}))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(())
}

#[tokio::test]
async fn sessions_from_rust_each_have_a_world_of_their_own()
-> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::builder().manual_clock().start().await;
    let a = server.session().await?;
    let b = server
        .session_with(&json!({"name": "b-from-rust", "clock": "system"}))
        .await?;
    assert_eq!(b.id(), "b-from-rust");
    assert_eq!(b.uri(), format!("{}/sessions/b-from-rust", server.uri()));
    assert!(a.uri().starts_with(&format!("{}/sessions/", server.uri())));

    // Runs: each where it was posted, and nowhere else.
    post_states(&server.uri(), "root-run", &["running"]).await?;
    post_states(&a.uri(), "a-run", &["starting", "running", "finished"]).await?;
    let run = a.wait_for_end("a-run", Duration::from_secs(5)).await?;
    assert_eq!(run.update_count, 3);
    let ids = |runs: Vec<Run>| runs.into_iter().map(|run| run.job_id).collect::<Vec<_>>();
    assert_eq!(ids(server.runs().await), ["root-run"]);
    assert_eq!(ids(a.runs().await), ["a-run"]);
    assert!(b.runs().await.is_empty());
    assert!(b.history("a-run").await.is_none());
    assert_eq!(a.requests().await.entries.len(), 3);
    assert_eq!(server.requests().await.entries.len(), 1);

    // Faults: b's refuses b's posts only.
    b.add_fault(&json!({"match": {"method": "POST"}, "action": {"status": 503}}))
        .await?;
    assert_eq!(b.faults().await.len(), 1);
    assert!(a.faults().await.is_empty() && server.faults().await.is_empty());
    assert!(post_states(&b.uri(), "b-run", &["running"]).await.is_err());
    post_states(&a.uri(), "a-second", &["running"]).await?;

    // Clocks: a's is manual as the server's (the builder's --clock), and its own; b's is
    // the system's, as it asked.
    let (root_then, a_then) = (server.now(), a.now());
    a.advance(Duration::from_secs(600)).await?;
    assert_eq!(a.now() - a_then, chrono::TimeDelta::minutes(10));
    assert_eq!(server.now(), root_then, "the root's clock did not move");
    let refused = b.advance(Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(refused.code(), "conflict");

    // Simulated runs and resets: in a, invisible to the root.
    let launched = a
        .launch(&json!({"id": "nightly", "type": "aggregation"}))
        .await?;
    assert!(server.run(&launched.job_id).await.is_none());
    a.reset().await;
    assert!(a.runs().await.is_empty() && a.requests().await.entries.is_empty());
    assert_eq!(ids(server.runs().await), ["root-run"]);
    assert_eq!(b.requests().await.entries.len(), 1, "b's refused post");
    Ok(())
}

#[tokio::test]
async fn verify_from_rust_on_the_server_and_on_a_session() -> Result<(), Box<dyn std::error::Error>>
{
    let server = MockServer::start().await;
    let session = server.session().await?;
    post_states(
        &session.uri(),
        "nightly",
        &["starting", "running", "finished"],
    )
    .await?;
    post_states(&server.uri(), "nightly", &["running"]).await?;
    let lifecycle = json!({
        "runs": {"nightly": {"states": ["starting", "running", "finished"], "updates": 3}},
        "refused": 0,
        "warnings": 0,
    });
    session.verify(&lifecycle).await?;

    let failed = server.verify(&lifecycle).await.unwrap_err();
    let Error::Refused {
        status, violations, ..
    } = &failed
    else {
        panic!("not a refusal: {failed:?}");
    };
    assert_eq!((*status, failed.code()), (409, "verification_failed"));
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["runs.nightly.states", "runs.nightly.updates"]);
    assert!(
        violations[0].message.contains("running"),
        "says what happened: {}",
        violations[0].message
    );

    let malformed = session.verify(&json!({"refused": -1})).await.unwrap_err();
    assert_eq!(malformed.code(), "validation_failed");
    server
        .verify(&json!({"runs": {"nightly": {"updates": 1}}}))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_session_deleted_dropped_or_expired_ends_its_waits()
-> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::builder()
        .manual_clock()
        .session_ttl(Some(Duration::from_secs(60)))
        .start()
        .await;
    let client = reqwest::Client::new();
    // Each wait below would run 30 s, or 10 s, and fail the test, if its session lived on.
    let long = Duration::from_secs(30);

    // Deleted over HTTP: the handle's wait ends at once with a 404. (`join!` polls the
    // wait first, so it is open before the delete is sent.)
    let deleted = server.session().await?;
    let url = format!("{}/_mock/sessions/{}", server.uri(), deleted.id());
    let (waited, answer) = tokio::join!(
        deleted.wait_for_state("never", JobState::Running, long),
        client.delete(&url).send()
    );
    assert_eq!(answer?.status(), 204);
    let ended = waited.unwrap_err();
    assert_eq!(ended.code(), "not_found", "{ended}");

    // Dropped: the session goes, and a wait over HTTP under it answers 404.
    let dropped = server.session().await?;
    let wait_url = format!(
        "{}/_mock/runs/never/wait?state=running&timeout=10s",
        dropped.uri()
    );
    let waiting = client.get(&wait_url).send();
    drop(dropped);
    assert_eq!(waiting.await?.status(), 404);

    // Expired: the server's manual clock, moved past the session's ttl, forgets it.
    let idle = server.session().await?;
    let sessions_url = format!("{}/_mock/sessions", server.uri());
    let listed: Value = client.get(&sessions_url).send().await?.json().await?;
    assert_eq!(listed["sessions"][0]["id"], idle.id());
    // By now the service has settled what making the session woke (the listing was
    // answered on this runtime): only the clock's move can wake the expiry again.
    let (waited, moved) = tokio::join!(
        idle.wait_for_state("never", JobState::Running, long),
        server.advance(Duration::from_secs(120))
    );
    moved?;
    assert_eq!(waited.unwrap_err().code(), "not_found");
    let listed: Value = client.get(&sessions_url).send().await?.json().await?;
    assert_eq!(listed["sessions"], json!([]));
    Ok(())
}
