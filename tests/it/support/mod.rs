//! What the tests share: the mock in-process (`app`), the built binary in a process of
//! its own (`process`), and an HTTP client for a served mock (`http`); and the bodies
//! and small readers every kind of test uses.

pub mod app;
pub mod events;
pub mod http;
pub mod json_values;
pub mod process;

use std::num::NonZeroUsize;
use std::sync::Once;

use job_launcher_mock::{MockServer, MockServerBuilder};
use serde_json::{Value, json};

pub use app::{Answer, TestApp};

/// Fusion's own example body for the update endpoint.
pub const SEED: &str = include_str!("../../fixtures/seed-status-update.json");

pub const STATUS: &str = "/job-launcher/launcher/status";

/// Prints the service's logs when `TEST_LOG` is set (filtered by `RUST_LOG`, `info`
/// unless set), for the mocks of this test process.
pub fn init_logs() {
    static ONCE: Once = Once::new();
    if std::env::var_os("TEST_LOG").is_some() {
        ONCE.call_once(|| {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        });
    }
}

/// Starts `builder`'s mock on a free loopback port, with logs when `TEST_LOG` is set.
pub async fn serve(builder: MockServerBuilder) -> MockServer {
    init_logs();
    builder.start().await
}

/// A mock with a manual clock: simulated runs move only when the test advances it.
pub fn manual() -> MockServerBuilder {
    MockServer::builder().manual_clock()
}

/// A mock that accepts rule violations with warnings.
pub fn lenient() -> MockServerBuilder {
    MockServer::builder().lenient()
}

pub fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// A well-formed update for `job_id` in `state`.
pub fn update(job_id: &str, state: &str) -> Value {
    json!({"jobId": job_id, "state": state})
}

/// The `update` members of a run's history, in order.
pub fn posted(history: &Value) -> Vec<Value> {
    history["updates"]
        .as_array()
        .map(|updates| updates.iter().map(|u| u["update"].clone()).collect())
        .unwrap_or_default()
}

/// The `field` of each violation or warning in a list.
pub fn fields(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| items.iter().filter_map(|v| v["field"].as_str()).collect())
        .unwrap_or_default()
}
