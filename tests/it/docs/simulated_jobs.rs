//! docs/simulated-jobs.md's Rust test, "The clock": `an_hour_long_job_in_no_time` is the
//! page's text.

use std::time::Duration;

use job_launcher_mock::{JobState, MockServer};
use serde_json::json;

#[tokio::test]
async fn an_hour_long_job_in_no_time() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::builder()
        .manual_clock()
        .scenario(json!({"match": "nightly-*", "steps": [
            {"state": "running", "after": "10m"},
            {"state": "finished", "after": "50m"},
        ]}))
        .start()
        .await;
    let config = json!({"id": "nightly-aggregation", "type": "aggregation"});
    let run = server.launch(&config).await?;
    assert_eq!(run.state, JobState::Starting);

    server.advance(Duration::from_secs(3600)).await?; // every step due in the hour
    let run = server.wait_for_end(&run.job_id, Duration::ZERO).await?;
    assert_eq!(run.state, JobState::Finished);
    assert_eq!(run.status["duration"], 50 * 60 * 1000);
    Ok(())
}
