//! The journal: every request to the Fusion surface, accepted or refused, so a test can
//! see exactly what a client sent and what it was told. Bounded by `--journal-size`; the
//! oldest entries go first, and are counted. It records what it is told (by the update
//! path and the api's layers); it judges nothing.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::ErrorCode;
use crate::model::Warning;

pub struct Journal {
    inner: Mutex<Inner>,
    capacity: NonZeroUsize,
    /// Entries dropped since the start, for the metrics, which never go down.
    dropped_total: AtomicU64,
}

struct Inner {
    entries: VecDeque<JournalEntry>,
    /// The last `seq` given; the journal's own count, never reset.
    last_seq: u64,
    /// Entries dropped by the bound since the start or the last clear.
    dropped: u64,
}

/// One request as the journal keeps it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    pub seq: u64,
    #[serde(serialize_with = "crate::model::time::serialize_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: DateTime<Utc>,
    #[schema(value_type = String)]
    pub method: Cow<'static, str>,
    #[schema(value_type = String)]
    pub path: Cow<'static, str>,
    /// The run the request was about, when one could be read from it.
    #[schema(value_type = Option<String>)]
    pub job_id: Option<Arc<str>>,
    /// The answer's status; `null` when an injected fault dropped the connection.
    pub status: Option<u16>,
    /// The error `code` of a refusal, `injected_fault` for any request a fault rule hit;
    /// `null` for an answer that is not an error.
    pub code: Option<ErrorCode>,
    pub warnings: Vec<Warning>,
    /// Present and `true` for a step of a simulated run rather than a client's request.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
    /// The id of the fault rule that hit the request, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<u64>,
}

/// What the journal is told of a request; it adds the `seq`.
#[derive(Debug, Clone)]
pub struct Record {
    pub time: DateTime<Utc>,
    pub method: Cow<'static, str>,
    pub path: Cow<'static, str>,
    pub job_id: Option<Arc<str>>,
    pub status: Option<u16>,
    pub code: Option<ErrorCode>,
    pub warnings: Vec<Warning>,
    pub simulated: bool,
    pub fault: Option<u64>,
}

/// Which entries a listing shows; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    pub job_id: Option<String>,
    pub status: Option<u16>,
    pub code: Option<String>,
    /// Only entries with a greater `seq`.
    pub since: Option<u64>,
}

/// The journal as `GET /_mock/requests` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JournalView {
    /// Entries dropped by `--journal-size` since the start or the last clear: when it is
    /// not 0, the entries shown may not be all there were.
    pub dropped: u64,
    pub entries: Vec<JournalEntry>,
}

impl Journal {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Journal {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                last_seq: 0,
                dropped: 0,
            }),
            capacity,
            dropped_total: AtomicU64::new(0),
        }
    }

    /// Adds an entry; gives its `seq`.
    pub fn record(&self, record: Record) -> u64 {
        let mut inner = self.lock();
        inner.last_seq += 1;
        let entry = JournalEntry {
            seq: inner.last_seq,
            time: record.time,
            method: record.method,
            path: record.path,
            job_id: record.job_id,
            status: record.status,
            code: record.code,
            warnings: record.warnings,
            simulated: record.simulated,
            fault: record.fault,
        };
        if inner.entries.len() == self.capacity.get() {
            inner.entries.pop_front();
            inner.dropped += 1;
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
        inner.entries.push_back(entry);
        inner.last_seq
    }

    /// Marks entry `seq` as hit by fault rule `rule`, if it is still held.
    pub fn mark_fault(&self, seq: u64, rule: u64) {
        let mut inner = self.lock();
        let at = inner.entries.partition_point(|e| e.seq < seq);
        if let Some(entry) = inner.entries.get_mut(at).filter(|e| e.seq == seq) {
            entry.code = Some(ErrorCode::InjectedFault);
            entry.fault = Some(rule);
        }
    }

    /// The entries matching `filter`, oldest first.
    pub fn view(&self, filter: &JournalFilter) -> JournalView {
        let inner = self.lock();
        let entries = inner
            .entries
            .iter()
            .filter(|entry| filter.matches(entry))
            .cloned()
            .collect();
        JournalView {
            dropped: inner.dropped,
            entries,
        }
    }

    /// Empties the journal and its drop count; `seq` goes on counting.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.dropped = 0;
    }

    /// Entries dropped by the bound since the start, clears included.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }
}

impl JournalFilter {
    fn matches(&self, entry: &JournalEntry) -> bool {
        self.since.is_none_or(|since| entry.seq > since)
            && self
                .status
                .is_none_or(|status| entry.status == Some(status))
            && self
                .job_id
                .as_deref()
                .is_none_or(|id| entry.job_id.as_deref() == Some(id))
            && self
                .code
                .as_deref()
                .is_none_or(|code| entry.code.map(ErrorCode::as_str) == Some(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16, job_id: Option<&str>) -> Record {
        Record {
            time: Utc::now(),
            method: Cow::Borrowed("POST"),
            path: Cow::Borrowed("/job-launcher/launcher/status"),
            job_id: job_id.map(Arc::from),
            status: Some(status),
            code: (status >= 400).then_some(ErrorCode::InvalidTransition),
            warnings: Vec::new(),
            simulated: false,
            fault: None,
        }
    }

    #[test]
    fn keeps_the_newest_entries_and_counts_the_rest() {
        let journal = Journal::new(NonZeroUsize::new(3).unwrap());
        for _ in 0..5 {
            journal.record(record(200, Some("a")));
        }
        let view = journal.view(&JournalFilter::default());
        assert_eq!(view.dropped, 2);
        let seqs: Vec<u64> = view.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        journal.clear();
        let view = journal.view(&JournalFilter::default());
        assert_eq!((view.dropped, view.entries.len()), (0, 0));
        assert_eq!(journal.dropped_total(), 2);
        journal.record(record(200, None));
        assert_eq!(journal.view(&JournalFilter::default()).entries[0].seq, 6);
    }

    #[test]
    fn filters_combine() {
        let journal = Journal::new(NonZeroUsize::new(10).unwrap());
        journal.record(record(200, Some("a")));
        journal.record(record(409, Some("a")));
        journal.record(record(409, Some("b")));
        journal.record(record(400, None));
        let seqs = |filter: JournalFilter| -> Vec<u64> {
            journal
                .view(&filter)
                .entries
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        let by_run = JournalFilter {
            job_id: Some("a".to_owned()),
            ..JournalFilter::default()
        };
        assert_eq!(seqs(by_run), [1, 2]);
        let refused_after_1 = JournalFilter {
            status: Some(409),
            since: Some(2),
            ..JournalFilter::default()
        };
        assert_eq!(seqs(refused_after_1), [3]);
        let by_code = JournalFilter {
            code: Some("invalid_transition".to_owned()),
            ..JournalFilter::default()
        };
        assert_eq!(seqs(by_code), [2, 3, 4]);
    }
}
