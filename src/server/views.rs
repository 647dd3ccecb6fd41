//! What a [`MockServer`](super::MockServer) gives back: the mock's views, typed, the same
//! JSON the `/_mock` routes answer. Each is `Deserialize`, so a test that talks to a
//! shared mock over HTTP can read the routes' answers into them too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::JobState;

/// A run, as `GET /_mock/runs/{jobId}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Run {
    pub job_id: String,
    /// Its current state.
    pub state: JobState,
    /// Its current status: every update merged at the top level, each value as posted
    /// (parsed here; for the exact bytes, read the route).
    pub status: Value,
    /// When its first update arrived, by the mock's clock.
    pub first_update_at: DateTime<Utc>,
    /// When its last update arrived, by the mock's clock.
    pub last_update_at: DateTime<Utc>,
    /// How many updates it accepted (repeats aside).
    pub update_count: u64,
    /// What the rules warned of, each once.
    pub warnings: Vec<Warning>,
}

/// A run's history, as `GET /_mock/runs/{jobId}/history` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct History {
    pub job_id: String,
    /// Entries dropped by `--max-history`: when not 0, `updates` is not all there was.
    pub dropped: u64,
    /// Oldest first.
    pub updates: Vec<HistoryEntry>,
}

/// One accepted update of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HistoryEntry {
    /// Its place among every update the mock accepted, in order.
    pub seq: u64,
    /// When it arrived, by the mock's clock.
    pub received_at: DateTime<Utc>,
    /// The update as it was posted.
    pub update: Value,
    pub warnings: Vec<Warning>,
}

/// The journal, as `GET /_mock/requests` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Journal {
    /// Entries dropped by `--journal-size`: when not 0, `entries` is not all there was.
    pub dropped: u64,
    /// Oldest first.
    pub entries: Vec<JournalEntry>,
}

/// One request to the Fusion routes, accepted or refused, or one simulated step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct JournalEntry {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub method: String,
    pub path: String,
    /// The run it was about, when one could be read from it.
    pub job_id: Option<String>,
    /// The answer's status; `None` when a fault dropped the connection.
    pub status: Option<u16>,
    /// The error `code` of a refusal, or `injected_fault`.
    pub code: Option<String>,
    pub warnings: Vec<Warning>,
    /// A step of a simulated run rather than a client's request.
    #[serde(default)]
    pub simulated: bool,
    /// The id of the fault rule that hit it.
    #[serde(default)]
    pub fault: Option<u64>,
}

/// A warning, or a violation in an error body: the field at fault, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Warning {
    /// e.g. `state`, `jobConfig.id`.
    pub field: String,
    pub message: String,
}
