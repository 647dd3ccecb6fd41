//! [`MockSession`]: a session of a [`MockServer`](super::MockServer), driven from the
//! test's own process as the server is.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::convert::{to_value, typed, unreadable};
use super::error::Error;
use super::views::{History, Journal, Run};
use crate::journal::JournalFilter;
use crate::model::JobState;
use crate::registry::{RunFilter, Until};
use crate::sessions::{Session, Sessions};
use crate::verify::Expectations;
use crate::world::World;

/// A session on a [`MockServer`](super::MockServer): a world of its own (runs, history,
/// journal, configs, scenarios, faults, clock) that requests under [`MockSession::uri`]
/// act on, and that nothing at the root or in another session sees. It has the server's
/// methods, on its own world; dropping it deletes the session.
///
/// ```
/// use std::time::Duration;
/// use job_launcher_mock::{JobState, MockServer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = MockServer::start().await;
/// let (a, b) = (server.session().await?, server.session().await?);
///
/// // The code under test is pointed at a session's URI, not the server's...
/// let client = reqwest::Client::new();
/// for state in ["starting", "running", "finished"] {
///     let update = serde_json::json!({"jobId": "nightly", "state": state});
///     let url = format!("{}/job-launcher/launcher/status", a.uri());
///     client.post(&url).json(&update).send().await?.error_for_status()?;
/// }
///
/// // ...so its runs are that session's alone.
/// a.wait_for_state("nightly", JobState::Finished, Duration::from_secs(5)).await?;
/// assert!(b.runs().await.is_empty() && server.runs().await.is_empty());
/// a.verify(&serde_json::json!({
///     "runs": {"nightly": {"states": ["starting", "running", "finished"]}},
///     "refused": 0,
/// }))
/// .await?;
/// a.delete().await?;
/// # Ok(())
/// # }
/// ```
pub struct MockSession {
    uri: String,
    session: Arc<Session>,
    sessions: Arc<Sessions>,
    /// Set once [`MockSession::delete`] has run, so that dropping deletes nothing.
    deleted: bool,
}

impl MockSession {
    pub(super) fn new(server: &str, session: Arc<Session>, sessions: Arc<Sessions>) -> Self {
        MockSession {
            uri: format!("{server}/sessions/{}", session.id),
            session,
            sessions,
            deleted: false,
        }
    }

    /// The session's base URI, `{server}/sessions/{id}`, to which Fusion's paths and
    /// the `/_mock` routes are added.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// The session's id: the name it was given, or twelve fresh lowercase letters.
    pub fn id(&self) -> &str {
        &self.session.id
    }

    world_methods!();

    /// Deletes the session, as `DELETE /_mock/sessions/{id}` does: everything it held is
    /// forgotten, its open waits end (404) and its event streams end.
    ///
    /// # Errors
    ///
    /// Not with the in-memory store [`MockServer`](super::MockServer) keeps; the type is
    /// the route's.
    pub async fn delete(mut self) -> Result<(), Error> {
        self.deleted = true;
        self.sessions.delete(&self.session.id).await?;
        Ok(())
    }

    /// The session's world; marks the session used, as a request under its URI does,
    /// so that a session driven only through its handle does not expire.
    fn world(&self) -> &Arc<World> {
        // `None` once it expired or was deleted: the methods then act on a world nobody
        // else sees, closed.
        let _ = self.sessions.find(&self.session.id);
        &self.session.world
    }

    fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}

impl Drop for MockSession {
    /// Deletes the session, on the runtime the handle is dropped in (outside of one, it
    /// stays until its ttl or the server ends).
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sessions = Arc::clone(&self.sessions);
        let id = Arc::clone(&self.session.id);
        runtime.spawn(async move {
            // An error leaves it to its ttl; there is no one to tell.
            let _ = sessions.delete(&id).await;
        });
    }
}

impl std::fmt::Debug for MockSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockSession")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}
