//! Prometheus metrics, in the OpenMetrics text format Prometheus scrapes.
//!
//! Counters and the latency histogram are kept as requests happen; what the registry,
//! journal and store already know (runs by state, evictions, drops, waiters,
//! subscribers, store failures) is read from them at each scrape rather than kept twice.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::error::ErrorCode;
use crate::journal::Journal;
use crate::model::JobState;
use crate::registry::Registry;
use crate::store::Store;
use crate::sync::{read, write};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets, in seconds: from a fast update (tens of microseconds) to a long wait.
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    /// What the live readings are read from, once the worlds exist.
    sources: Arc<OnceLock<Arc<dyn LiveSources>>>,
    registry: prometheus_client::registry::Registry,
    updates_accepted: Counter,
    updates_refused: Family<CodeLabel, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// The latency histogram of each route and method, by route, then method.
    routes: RwLock<HashMap<String, HashMap<String, Histogram>>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    /// The route's path template, e.g. `/_mock/runs/{job_id}`, so runs do not each
    /// make a series.
    route: String,
    method: String,
}

impl Metrics {
    /// Metrics whose live readings come from `sources` once it is set
    /// ([`Metrics::read_from`]): the worlds exist only after the metrics they count with.
    pub fn new(store: Option<Arc<Store>>) -> Self {
        let mut registry = prometheus_client::registry::Registry::with_prefix("jlm");
        let updates_accepted = Counter::default();
        registry.register(
            "updates_accepted",
            "Status updates accepted (answered 200), repeats included",
            updates_accepted.clone(),
        );
        let updates_refused = Family::<CodeLabel, Counter>::default();
        registry.register(
            "updates_refused",
            "Status updates refused, by error code",
            updates_refused.clone(),
        );
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by route and method",
            latency.clone(),
        );
        let sources = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(Live {
            sources: Arc::clone(&sources),
            store,
        }));
        Metrics {
            sources,
            registry,
            updates_accepted,
            updates_refused,
            latency,
            routes: RwLock::new(HashMap::new()),
        }
    }

    /// Where the live readings come from: every world, and the sessions.
    pub fn read_from(&self, sources: Arc<dyn LiveSources>) {
        let _ = self.sources.set(sources);
    }

    pub fn update_accepted(&self) {
        self.updates_accepted.inc();
    }

    pub fn update_refused(&self, code: ErrorCode) {
        let code = code.as_str();
        self.updates_refused
            .get_or_create(&CodeLabel { code })
            .inc();
    }

    pub fn observe(&self, route: &str, method: &str, seconds: f64) {
        self.latency_of(route, method).observe(seconds);
    }

    /// The latency histogram of a route and method. The family's own lookup needs owned
    /// labels; the handles it gives share their histogram, so one kept per route and
    /// method spares every request two allocations.
    pub fn latency_of(&self, route: &str, method: &str) -> Histogram {
        let known = read(&self.routes)
            .get(route)
            .and_then(|methods| methods.get(method).cloned());
        known.unwrap_or_else(|| {
            let labels = RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            };
            let histogram = self.latency.get_or_create(&labels).clone();
            write(&self.routes)
                .entry(route.to_owned())
                .or_default()
                .insert(method.to_owned(), histogram.clone());
            histogram
        })
    }

    /// Every metric as OpenMetrics text.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// What the live readings are read from: every world (the service's and each
/// session's), summed, so no series is per session.
pub trait LiveSources: Send + Sync {
    fn each_world(&self, reading: &mut dyn FnMut(WorldReadings<'_>));
    fn sessions(&self) -> usize;
}

/// One world's parts the metrics read.
pub struct WorldReadings<'a> {
    pub registry: &'a Registry,
    pub journal: &'a Journal,
}

/// The metrics read from the worlds and the store at each scrape.
struct Live {
    sources: Arc<OnceLock<Arc<dyn LiveSources>>>,
    store: Option<Arc<Store>>,
}

/// What the worlds hold, summed.
#[derive(Default)]
struct Totals {
    by_state: Vec<(Option<JobState>, usize)>,
    evicted: u64,
    journal_dropped: u64,
    waiters: usize,
    subscribers: usize,
    sessions: usize,
}

impl Live {
    fn totals(&self) -> Totals {
        let mut totals = Totals {
            by_state: JobState::ALL
                .iter()
                .map(|state| (Some(*state), 0))
                .chain([(None, 0)])
                .collect(),
            ..Totals::default()
        };
        let Some(sources) = self.sources.get() else {
            return totals;
        };
        sources.each_world(&mut |world| {
            for (state, count) in world.registry.count_by_state() {
                if let Some(total) = totals.by_state.iter_mut().find(|(s, _)| *s == state) {
                    total.1 += count;
                }
            }
            totals.evicted += world.registry.evicted_total();
            totals.journal_dropped += world.journal.dropped_total();
            totals.waiters += *world.registry.waiters().borrow();
            totals.subscribers += world.registry.subscribers();
        });
        totals.sessions = sources.sessions();
        totals
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Live")
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let totals = self.totals();
        let counts = totals.by_state;
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "runs",
            "Runs held, by current state (none: no update has named one yet)",
            None,
            gauge.metric_type(),
        )?;
        for (state, count) in counts {
            let label = StateLabel {
                state: state.map_or("none", |s| s.as_str()),
            };
            ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
                .encode(family.encode_family(&label)?)?;
        }
        let counters = [
            (
                "runs_evicted",
                "Ended runs evicted by --max-runs to make room",
                totals.evicted,
            ),
            (
                "journal_dropped",
                "Journal entries dropped by --journal-size",
                totals.journal_dropped,
            ),
            (
                "store_errors",
                "Commits to --data-dir that failed (a full disk, an I/O error); each refused \
                 its changes with 503 storage_unavailable",
                self.store.as_ref().map_or(0, |store| store.errors()),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "waiters",
                "Requests waiting on /_mock/runs/{jobId}/wait",
                totals.waiters,
            ),
            (
                "event_subscribers",
                "Clients subscribed to /_mock/events",
                totals.subscribers,
            ),
            (
                "sessions",
                "Sessions live (POST /_mock/sessions), the service's own world aside",
                totals.sessions,
            ),
            (
                "store_down",
                "1 while --data-dir cannot be written (changes are refused), else 0",
                usize::from(
                    self.store
                        .as_ref()
                        .is_some_and(|store| store.down().is_some()),
                ),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}
