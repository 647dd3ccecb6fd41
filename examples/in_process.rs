//! A Rust test's view of job-launcher-mock: start it in-process, let the code under test
//! report a run's status to it, wait for the run to finish, and look at what was sent.
//!
//! Run with `cargo run --example in_process`.

use std::time::Duration;

use job_launcher_mock::{JobState, MockServer};
use serde_json::json;

/// Stands in for the code under test: a Spark driver that reports its run to Fusion.
async fn report_run(fusion: &str, job_id: &str) -> Result<(), reqwest::Error> {
    let client = reqwest::Client::new();
    let url = format!("{fusion}/job-launcher/launcher/status");
    let config = json!({"id": "nightly-aggregation", "type": "aggregation"});
    let updates = [
        json!({"jobId": job_id, "state": "starting", "jobConfig": config}),
        json!({"jobId": job_id, "state": "running", "startTime": "2026-11-29T10:00:00Z"}),
        json!({"jobId": job_id, "state": "finished", "endTime": "2026-11-29T10:07:30Z",
               "duration": 450_000}),
    ];
    for update in updates {
        client
            .post(&url)
            .json(&update)
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start().await; // a free port, strict validation
    println!("mock listening on {}", server.uri());

    let fusion = server.uri();
    let driver = tokio::spawn(async move { report_run(&fusion, "hhzitrwancwv").await });

    // No sleeping and guessing: this returns the moment the run finishes.
    let run = server
        .wait_for_state("hhzitrwancwv", JobState::Finished, Duration::from_secs(5))
        .await?;
    driver.await??;
    println!("run finished: {}", run.status);

    let history = server.history("hhzitrwancwv").await.ok_or("no such run")?;
    let states: Vec<_> = history
        .updates
        .iter()
        .map(|entry| entry.update["state"].clone())
        .collect();
    println!("states reported, in order: {states:?}");
    assert_eq!(states, ["starting", "running", "finished"]);

    // The current status merges every update: the jobConfig of the first is still there.
    let runs = server.runs().await;
    assert_eq!(runs[0].status["jobConfig"]["id"], "nightly-aggregation");

    server.reset().await;
    assert!(server.runs().await.is_empty());
    Ok(())
}
