//! The paths the service answers, by class: Fusion's job-launcher, the Spark jobs API, the
//! mock's own `/_mock` routes, and the service's own surface (`/metrics`,
//! `/openapi.json`, `/actuator`). The one place that knows which path is which: access
//! control, the journal, the fault matcher and the update path all ask here.
//!
//! Each handler declares its own route (`#[utoipa::path]`), so the router and the OpenAPI
//! document agree; a path that other code must name is a constant here, which the
//! handler's declaration uses too. Nothing here reads a request or knows a handler.

/// `POST` a run's status; `GET` every run's (Fusion's job-launcher).
pub const STATUS: &str = "/job-launcher/launcher/status";
/// `POST` a config to launch a run of it (Fusion's job-launcher).
pub const LAUNCH: &str = "/job-launcher/launcher";
/// The prefix of Fusion's job-launcher routes.
const FUSION: &str = "/job-launcher";

/// The Spark jobs API of the default Fusion app.
pub const SPARK: &str = "/api";
/// The Spark jobs API of a named Fusion app (the same registry).
pub const SPARK_APP: &str = "/api/apps/{app}";
/// The prefixes the Spark routes are nested under.
pub const SPARK_PREFIXES: [&str; 2] = [SPARK, SPARK_APP];
/// The Spark routes under a prefix that name a config: `.../{id}`.
const SPARK_BY_CONFIG: [&str; 2] = ["/spark/jobs/", "/spark/configurations/"];

/// The mock's own routes, for tests.
pub const MOCK: &str = "/_mock";
/// Every route again, for a session's world: `/sessions/{id}/...`.
pub const SESSION_PREFIX: &str = "/sessions/";
/// The sessions themselves (the service's own world only).
pub const SESSIONS: &str = "/_mock/sessions";
/// The dashboard, which also takes the admin token as `?access_token=`.
pub const UI: &str = "/_mock/ui";
/// The event stream, which also takes the admin token as `?access_token=`.
pub const EVENTS: &str = "/_mock/events";
/// The journal, whose `DELETE` empties what `--data-dir` never keeps.
pub const JOURNAL: &str = "/_mock/requests";
/// A long poll until a run reaches a state, which the server answers beside hyper to
/// hold less memory while it waits (`serve/lean.rs`).
pub const WAIT: &str = "/_mock/runs/{jobId}/wait";

/// Whether `path` (without a query) is [`WAIT`]'s for some `jobId`, at the root or under
/// a session.
pub fn is_wait(path: &str) -> bool {
    let path = match path.strip_prefix(SESSION_PREFIX) {
        Some(after) => match after.find('/') {
            Some(0) | None => return false,
            Some(end) => &after[end..],
        },
        None => path,
    };
    let Some((before, after)) = WAIT.split_once("{jobId}") else {
        return false;
    };
    path.strip_prefix(before)
        .and_then(|rest| rest.strip_suffix(after))
        .is_some_and(|job_id| !job_id.is_empty() && !job_id.contains('/'))
}

/// The service's own routes besides `/_mock`: health, metrics, the OpenAPI document.
const SERVICE: [&str; 3] = ["/metrics", "/openapi.json", "/actuator"];

/// The class of a path: who may call it, and whether the journal and faults see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Fusion's job-launcher, `/job-launcher/...`: client credentials, journaled, faulted.
    Fusion,
    /// The Spark jobs API, `/api/...`: as [`Surface::Fusion`].
    Spark,
    /// `/_mock/...`: the admin token; never journaled, never faulted.
    Mock,
    /// `/metrics`, `/openapi.json`, `/actuator/...`: open; never journaled, never
    /// faulted.
    Service,
    /// Anything else (`/`, a path no route has): open, journaled and faulted as a
    /// client's request, since a client may send it.
    Other,
}

impl Surface {
    pub fn of(path: &str) -> Surface {
        // The busiest path first: a status update is Fusion's.
        if under(path, FUSION) {
            Surface::Fusion
        } else if under(path, SPARK) {
            Surface::Spark
        } else if under(path, MOCK) {
            Surface::Mock
        } else if SERVICE.iter().any(|prefix| under(path, prefix)) {
            Surface::Service
        } else {
            Surface::Other
        }
    }

    /// Whether `--basic-auth` and `--api-key` guard it: Fusion's surfaces.
    pub fn takes_client_credentials(self) -> bool {
        matches!(self, Surface::Fusion | Surface::Spark)
    }

    /// Whether it is the mock's own surface, which the journal does not record (it keeps
    /// what the code under test asked of Fusion, not what the test asked of the mock)
    /// and fault rules never hit.
    pub fn is_own(self) -> bool {
        matches!(self, Surface::Mock | Surface::Service)
    }
}

/// `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The config id a Spark route's path names:
/// `[/api|/api/apps/{app}]/spark/{jobs|configurations}/{id}`.
pub fn spark_config_id(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(SPARK)?;
    let rest = match rest.strip_prefix("/apps/") {
        Some(app_and_rest) => &app_and_rest[app_and_rest.find('/')?..],
        None => rest,
    };
    SPARK_BY_CONFIG
        .iter()
        .find_map(|prefix| rest.strip_prefix(prefix))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_one_class() {
        for (path, surface) in [
            (STATUS, Surface::Fusion),
            (LAUNCH, Surface::Fusion),
            ("/job-launcher", Surface::Fusion),
            ("/api", Surface::Spark),
            ("/api/spark/jobs", Surface::Spark),
            ("/api/apps/shop/spark/jobs/nightly", Surface::Spark),
            ("/_mock", Surface::Mock),
            ("/_mock/runs", Surface::Mock),
            (UI, Surface::Mock),
            ("/metrics", Surface::Service),
            ("/openapi.json", Surface::Service),
            ("/actuator/health", Surface::Service),
            ("/", Surface::Other),
            ("/apis", Surface::Other),
            ("/_mockery", Surface::Other),
            ("/metricsx", Surface::Other),
            ("/job-launchers", Surface::Other),
        ] {
            assert_eq!(Surface::of(path), surface, "{path}");
        }
    }

    #[test]
    fn only_fusions_surfaces_take_client_credentials_and_only_the_mocks_own_are_unjournaled() {
        let guarded = [Surface::Fusion, Surface::Spark];
        let own = [Surface::Mock, Surface::Service];
        for surface in [
            Surface::Fusion,
            Surface::Spark,
            Surface::Mock,
            Surface::Service,
            Surface::Other,
        ] {
            assert_eq!(
                surface.takes_client_credentials(),
                guarded.contains(&surface)
            );
            assert_eq!(surface.is_own(), own.contains(&surface));
        }
    }

    #[test]
    fn spark_paths_name_their_config() {
        for (path, id) in [
            ("/api/spark/jobs/nightly", Some("nightly")),
            (
                "/api/apps/shop/spark/configurations/nightly",
                Some("nightly"),
            ),
            ("/api/spark/jobs", None),
            ("/api/spark/jobs/", None),
            ("/api/spark/jobs/a/b", None),
            ("/api/apps/shop", None),
            ("/api/apps/shop/spark/jobs/x", Some("x")),
            (STATUS, None),
        ] {
            assert_eq!(spark_config_id(path), id, "{path}");
        }
    }
}
