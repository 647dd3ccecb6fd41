//! A test as a user of the library writes it: start a mock, let the code under test talk
//! to it, wait for what it should have reported, read back what it sent.

use std::time::Duration;

use job_launcher_mock::{JobState, MockServer};

#[tokio::test]
async fn the_code_under_test_reports_its_run() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start().await;
    let url = format!("{}/job-launcher/launcher/status", server.uri());
    let client = reqwest::Client::new();
    for state in ["running", "finished"] {
        let update = serde_json::json!({"jobId": "hhzitrwancwv", "state": state});
        client.post(&url).json(&update).send().await?.error_for_status()?;
    }
    let run = server
        .wait_for_state("hhzitrwancwv", JobState::Finished, Duration::from_secs(5))
        .await?;
    assert_eq!(run.update_count, 2);
    let history = server.history("hhzitrwancwv").await.ok_or("no history")?;
    assert_eq!(history.updates[0].update["state"], "running");
    let refused = client
        .post(&url)
        .json(&serde_json::json!({"jobId": "hhzitrwancwv", "state": "running"}))
        .send()
        .await?;
    assert_eq!(refused.status(), 409);
    assert_eq!(server.requests().await.entries.len(), 3);
    Ok(())
}

#[tokio::test]
async fn two_tests_share_one_server_through_sessions() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start().await;
    let (mine, theirs) = (server.session().await?, server.session().await?);
    let url = format!("{}/job-launcher/launcher/status", mine.uri());
    let client = reqwest::Client::new();
    for state in ["starting", "running", "finished"] {
        let update = serde_json::json!({"jobId": "nightly", "state": state});
        client.post(&url).json(&update).send().await?.error_for_status()?;
    }
    mine.verify(&serde_json::json!({
        "runs": {"nightly": {"states": ["starting", "running", "finished"], "updates": 3}},
        "refused": 0,
    }))
    .await?;
    assert!(theirs.runs().await.is_empty() && server.runs().await.is_empty());
    let failed = theirs
        .verify(&serde_json::json!({"runs": {"nightly": {"updates": 3}}}))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), "verification_failed");
    Ok(())
}
