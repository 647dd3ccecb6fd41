//! docs/faults.md's Rust test: `a_client_retries_twice` is the page's text.

use job_launcher_mock::{Error, MockServer};
use serde_json::json;

#[tokio::test]
async fn a_client_retries_twice() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start().await;
    let status_url = format!("{}/job-launcher/launcher/status", server.uri());
    let rule = json!({
        "match": {"method": "POST", "path": "/job-launcher/launcher/status"},
        "action": {"status": 503, "retryAfter": "2s"},
        "times": 2,
    });
    let id = server.add_fault(&rule).await?;

    let client = reqwest::Client::new();
    let update = json!({"jobId": "r1", "state": "running"});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let answer = client.post(&status_url).json(&update).send().await?;
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(statuses, [503, 503, 200]);
    let journal = server.requests().await;
    let faulted = journal.entries.iter().filter(|e| e.fault == Some(id));
    assert_eq!(faulted.count(), 2);

    // A rule that is not valid is refused, each problem named.
    let bad = server.add_fault(&json!({"action": {"status": 200}})).await;
    assert!(matches!(bad, Err(Error::Refused { status: 422, .. })));
    server.clear_faults().await;
    Ok(())
}
