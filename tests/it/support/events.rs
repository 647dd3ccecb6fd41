//! Server-Sent Events read from a served mock's `/_mock/events`: for the integration
//! tests (`support::events`), and for the crate's own, which include this file
//! (`src/server/tests.rs`), so that there is one reader.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;

/// One Server-Sent Event: its `event`, `id` and joined `data`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sse {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// Reads the events of `/_mock/events` as they come, skipping comments (keep-alives).
pub struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

/// The longest [`EventReader::next`] waits for an event before it fails the test.
const EVENT_PATIENCE: Duration = Duration::from_secs(30);

impl EventReader {
    /// Opens the stream of the mock (or session) at `base`, resuming after
    /// `last_event_id` when given; it must answer 200 with `text/event-stream`. Its
    /// headers come once the mock has subscribed it, so no update after this returns is
    /// missed.
    pub async fn open(base: &str, last_event_id: Option<u64>) -> EventReader {
        let mut request = reqwest::Client::new().get(format!("{base}/_mock/events"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("the service answers");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream");
        EventReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the stream ends. Fails the test when none comes
    /// within 30 s.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Sse::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value));
                    } else if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event.event = Some(value.trim().to_owned());
                    }
                }
                if data.is_empty() && event.id.is_none() {
                    continue; // a comment: keep-alive
                }
                event.data = data.join("\n");
                return Some(event);
            }
            let chunk = tokio::time::timeout(EVENT_PATIENCE, self.response.chunk())
                .await
                .expect("an event within the patience")
                .expect("the stream reads")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("events are UTF-8"));
        }
    }

    /// The next event's data, which must be an update whose `id` is its `seq`.
    pub async fn next_update(&mut self) -> Value {
        let event = self.next().await.expect("an event");
        assert_eq!(event.event, None);
        let data: Value = serde_json::from_str(&event.data).expect("event data is JSON");
        assert_eq!(event.id.as_deref(), Some(data["seq"].to_string().as_str()));
        data
    }
}
