//! job-launcher-mock's image in a Rust test, with the `testcontainers` crate.
//!
//! The container's port 8083 is published on a free host port; the test waits for the line
//! the mock prints on stdout once it is ready, posts Fusion's example status update and
//! reads it back. The container (and its anonymous /data volume) is removed at the end:
//! `rm()` here, and testcontainers' drop otherwise, so a failing test cleans up too. The
//! Rust crate needs no reaper container (Ryuk).

use std::time::Duration;

use serde_json::Value;
use testcontainers::{
    GenericImage, ImageExt,
    core::{IntoContainerPort, WaitFor},
    runners::AsyncRunner,
};

const SEED: &str = include_str!("../../../tests/fixtures/seed-status-update.json");

#[tokio::test]
async fn fusions_example_update_is_stored_as_posted() -> Result<(), Box<dyn std::error::Error>> {
    let image = std::env::var("JLM_IMAGE").unwrap_or_else(|_| "job-launcher-mock:latest".into());
    let (name, tag) = image.rsplit_once(':').unwrap_or((&image, "latest"));

    let mock = GenericImage::new(name, tag)
        .with_exposed_port(8083.tcp())
        .with_wait_for(WaitFor::message_on_stdout("job-launcher-mock listening on"))
        .with_startup_timeout(Duration::from_secs(60))
        .start()
        .await?;
    let base_url = format!(
        "http://{}:{}",
        mock.get_host().await?,
        mock.get_host_port_ipv4(8083.tcp()).await?
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let health: Value = http
        .get(format!("{base_url}/actuator/health"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(health, serde_json::json!({"status": "UP"}));

    let answer = http
        .post(format!("{base_url}/job-launcher/launcher/status"))
        .header("content-type", "application/json")
        .body(SEED)
        .send()
        .await?;
    assert_eq!(answer.status(), 200, "{}", answer.text().await?);

    let runs: Vec<Value> = http
        .get(format!("{base_url}/job-launcher/launcher/status"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let seed: Value = serde_json::from_str(SEED)?;
    let stored: Vec<&Value> = runs
        .iter()
        .filter(|run| run["jobId"] == "hhzitrwancwv")
        .collect();
    assert_eq!(stored, [&seed]);

    let id = mock.id().to_owned();
    mock.rm().await?;
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")])
        .output()?;
    assert!(left.stdout.is_empty(), "container {id} is still there");
    Ok(())
}
