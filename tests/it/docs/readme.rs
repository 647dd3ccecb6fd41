//! README.md's Rust test, "In a Rust test, in-process": from `use std::time::Duration;`
//! to the end of `reports_the_run`, this file is the README's text.

use std::time::Duration;

use job_launcher_mock::{JobState, MockServer};

#[tokio::test]
async fn reports_the_run() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start().await; // a free port, strict validation
    let status_url = format!("{}/job-launcher/launcher/status", server.uri());

    // The code under test reports a run...
    let driver = tokio::spawn(report_run(status_url, "hhzitrwancwv"));
    // ...and the test waits for what it expects; Err(Error::Timeout) says where the run was.
    let run = server
        .wait_for_state("hhzitrwancwv", JobState::Finished, Duration::from_secs(5))
        .await?;
    driver.await??;
    assert_eq!(run.update_count, 2);
    assert_eq!(run.status["jobConfig"]["id"], "nightly-aggregation");

    let history = server.history("hhzitrwancwv").await.ok_or("no such run")?;
    assert_eq!(history.updates[0].update["state"], "running");
    let journal = server.requests().await; // every request, refused ones too
    assert!(journal.entries.iter().all(|e| e.status == Some(200)));
    Ok(())
}

/// Stands in for the code under test: a Spark driver reporting its run to Fusion.
async fn report_run(status_url: String, job_id: &'static str) -> Result<(), reqwest::Error> {
    let client = reqwest::Client::new();
    let config = serde_json::json!({"id": "nightly-aggregation", "type": "aggregation"});
    let updates = [
        serde_json::json!({"jobId": job_id, "state": "running", "jobConfig": config}),
        serde_json::json!({"jobId": job_id, "state": "finished"}),
    ];
    for update in updates {
        client
            .post(&status_url)
            .json(&update)
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(())
}
