//! Injected faults: rules that make the Fusion routes misbehave, so a client's retries
//! and timeouts can be tested (docs/contract.md, Faults). Rules are kept, matched and
//! counted here; the api's layers read a request's ids and carry out what a rule says.
//! The mock's own routes never fault.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::{later, past_the_end};
use crate::error::ApiError;
use crate::model::Violation;
use crate::model::time::{parse_utc, rfc3339};
use crate::store::{Store, Write, detached};

/// The longest delay a rule may ask for.
const MAX_DELAY: Duration = Duration::from_secs(3600);

pub struct Faults {
    rules: Mutex<Rules>,
    /// How many rules there are, read without the lock on every request.
    count: AtomicUsize,
    /// Where the rules are saved with `--data-dir`, on every change (not on every hit).
    store: Option<Arc<Store>>,
    /// With a store, one change to the list at a time: from writing the list as it will
    /// be to making it so. Hits go on meanwhile; they are not saved.
    writes: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default, Clone)]
struct Rules {
    list: Vec<Rule>,
    last_id: u64,
}

#[derive(Clone)]
struct Rule {
    id: u64,
    matcher: Matcher,
    action: Action,
    times: Option<u64>,
    probability: f64,
    seed: Option<u64>,
    rng: fastrand::Rng,
    ttl: Option<Duration>,
    expires_at: Option<DateTime<Utc>>,
    fired: u64,
}

/// Which requests a rule is for; `None` fits anything.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Exact, or a prefix when it ends in `*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_config_id: Option<String>,
}

/// What a rule does to a request it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer this status with an `injected_fault` error body, leaving the registry
    /// untouched; `Retry-After` when given.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Serve the request normally after this long.
    Delay(Duration),
    /// Close the connection without an answer.
    Drop,
}

/// What is known of a request when the rules are tried.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub job_id: Option<&'a str>,
    pub job_config_id: Option<&'a str>,
}

/// A rule hit a request.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub rule: u64,
    pub action: Action,
}

/// A rule as `/_mock/faults` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub id: u64,
    #[serde(rename = "match")]
    pub matcher: Matcher,
    /// `{"status", "retryAfter"}`, `{"delay"}` or `{"drop": true}`.
    #[schema(value_type = Object)]
    pub action: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    pub probability: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// When it expires, by the mock's clock; never after 9999-12-31T23:59:59.999Z.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// How many requests it has hit.
    pub fired: u64,
    /// False once spent (`times` hits) or expired (`ttl`).
    pub active: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: Mutex::new(Rules::default()),
            count: AtomicUsize::new(0),
            store: None,
            writes: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

impl Faults {
    /// Whether there is no rule at all: the fast path of every request.
    pub fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Reads, checks and adds a rule; every problem is listed, each naming its field.
    /// With a store, the rule is added once the list with it is on disk.
    pub async fn add(
        self: &Arc<Self>,
        spec: &Value,
        now: DateTime<Utc>,
    ) -> Result<RuleView, ApiError> {
        let parsed = parse(spec).map_err(invalid_rule)?;
        let expires_at = match parsed.ttl {
            None => None,
            Some(ttl) => Some(later(now, ttl).ok_or_else(|| {
                let what = format!("expiring {} from now", crate::duration::format(ttl));
                invalid_rule(vec![past_the_end("ttl", &what, now)])
            })?),
        };
        self.change(move |rules| {
            let rule = Rule::new(rules.last_id + 1, parsed.clone(), expires_at);
            let view = rule.view(now);
            rules.last_id = rule.id;
            rules.list.push(rule);
            view
        })
        .await
    }

    /// Rules that save themselves to `store`, starting with those it saved before.
    pub fn with_store(store: Arc<Store>, saved: Option<&str>) -> Result<Faults, String> {
        let mut faults = Faults::default();
        if let Some(saved) = saved {
            let list: Vec<Value> = serde_json::from_str(saved)
                .map_err(|e| format!("the saved fault rules cannot be read: {e}"))?;
            let rules = crate::sync::get_mut(&mut faults.rules);
            for saved in list {
                let rule = Rule::restored(&saved)
                    .ok_or_else(|| format!("a saved fault rule cannot be read: {saved}"))?;
                rules.last_id = rules.last_id.max(rule.id);
                rules.list.push(rule);
            }
            faults.count.store(rules.list.len(), Ordering::Relaxed);
        }
        faults.store = Some(store);
        Ok(faults)
    }

    /// Makes `change` to the rules; with a store, only once the list as it makes it is on
    /// disk (the change runs to its end even if the caller goes away). The change is made
    /// twice: to a copy of the list to write, then to the list itself, where the hits of
    /// meanwhile are kept.
    async fn change<R: Send + 'static>(
        self: &Arc<Self>,
        change: impl Fn(&mut Rules) -> R + Send + Sync + 'static,
    ) -> Result<R, ApiError> {
        let Some(store) = self.store.clone() else {
            return Ok(self.change_now(&change));
        };
        let faults = Arc::clone(self);
        detached(async move {
            let _one = Arc::clone(&faults.writes).lock_owned().await;
            let document = {
                let mut copy = faults.lock().clone();
                change(&mut copy);
                copy.document()
            };
            store
                .write(document)
                .await
                .map_err(|cause| ApiError::StorageUnavailable(cause.to_string()))?;
            Ok(faults.change_now(&change))
        })
        .await
    }

    fn change_now<R>(&self, change: &impl Fn(&mut Rules) -> R) -> R {
        let mut rules = self.lock();
        let result = change(&mut rules);
        self.count.store(rules.list.len(), Ordering::Relaxed);
        result
    }

    /// What a reset writes, and what it then does once that is durable: every rule gone.
    pub async fn clear_staged(self: &Arc<Self>) -> (Option<Write>, Box<dyn FnOnce() + Send>) {
        let one = Arc::clone(&self.writes).lock_owned().await;
        let write = self.store.as_ref().map(|_| Rules::default().document());
        let faults = Arc::clone(self);
        let then = move || {
            faults.change_now(&|rules: &mut Rules| rules.list.clear());
            drop(one);
        };
        (write, Box::new(then))
    }

    pub fn list(&self, now: DateTime<Utc>) -> Vec<RuleView> {
        self.lock().list.iter().map(|rule| rule.view(now)).collect()
    }

    /// Removes rule `id`; `false` when there is none.
    pub async fn remove(self: &Arc<Self>, id: u64) -> Result<bool, ApiError> {
        self.change(move |rules| {
            let before = rules.list.len();
            rules.list.retain(|rule| rule.id != id);
            rules.list.len() < before
        })
        .await
    }

    pub async fn clear(self: &Arc<Self>) -> Result<(), ApiError> {
        self.change(|rules| rules.list.clear()).await
    }

    /// Whether some active rule fitting this method and path matches on a jobId or a
    /// jobConfigId, which may have to be read from the body.
    pub fn needs_ids(&self, method: &str, path: &str, now: DateTime<Utc>) -> bool {
        self.lock().list.iter().any(|rule| {
            rule.is_active(now)
                && (rule.matcher.job_id.is_some() || rule.matcher.job_config_id.is_some())
                && rule.matcher.fits_route(method, path)
        })
    }

    /// The first active rule that fits the request and wins its draw, which then counts
    /// the hit.
    pub fn check(&self, request: &Request<'_>, now: DateTime<Utc>) -> Option<Hit> {
        let mut rules = self.lock();
        rules.list.iter_mut().find_map(|rule| {
            if !rule.is_active(now) || !rule.matcher.fits(request) {
                return None;
            }
            if rule.probability < 1.0 && rule.rng.f64() >= rule.probability {
                return None;
            }
            rule.fired += 1;
            Some(Hit {
                rule: rule.id,
                action: rule.action,
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        crate::sync::lock(&self.rules)
    }
}

impl Rules {
    /// The write that saves the rules: each as the list shows it, expiry included.
    fn document(&self) -> Write {
        let views: Vec<RuleView> = self
            .list
            .iter()
            .map(|rule| rule.view(DateTime::<Utc>::MIN_UTC))
            .collect();
        Write::Document {
            name: "faults",
            json: serde_json::to_string(&views).unwrap_or_else(|_| "[]".to_owned()),
        }
    }
}

/// The 422 of a rule with these problems.
fn invalid_rule(violations: Vec<Violation>) -> ApiError {
    ApiError::invalid("the fault rule is not valid", violations)
}

impl Rule {
    fn new(id: u64, parsed: Parsed, expires_at: Option<DateTime<Utc>>) -> Rule {
        Rule {
            id,
            rng: parsed
                .seed
                .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            expires_at,
            matcher: parsed.matcher,
            action: parsed.action,
            times: parsed.times,
            probability: parsed.probability,
            seed: parsed.seed,
            ttl: parsed.ttl,
            fired: 0,
        }
    }

    /// A rule as [`Rules::document`] wrote it: its spec read again, then its id, hits and
    /// expiry as they were. A seeded draw starts its sequence over.
    fn restored(saved: &Value) -> Option<Rule> {
        let spec: Map<String, Value> = ["match", "action", "times", "probability", "seed", "ttl"]
            .into_iter()
            .filter_map(|key| saved.get(key).map(|v| (key.to_owned(), v.clone())))
            .collect();
        let parsed = parse(&Value::Object(spec)).ok()?;
        let expires_at = match saved.get("expiresAt").and_then(Value::as_str) {
            // An earlier version could save a year past 9999 (`+13434-...`), which RFC 3339
            // cannot hold: such a rule never expires, as the end of time says.
            Some(text) if text.starts_with('+') => Some(crate::clock::END_OF_TIME),
            Some(text) => Some(parse_utc(text)?),
            None => None,
        };
        let id = saved.get("id")?.as_u64()?;
        let fired = saved.get("fired")?.as_u64()?;
        Some(Rule {
            fired,
            ..Rule::new(id, parsed, expires_at)
        })
    }

    fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.times.is_none_or(|times| self.fired < times)
            && self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    fn view(&self, now: DateTime<Utc>) -> RuleView {
        RuleView {
            id: self.id,
            matcher: self.matcher.clone(),
            action: self.action.to_json(),
            times: self.times,
            probability: self.probability,
            seed: self.seed,
            ttl: self.ttl.map(crate::duration::format),
            expires_at: self.expires_at.map(rfc3339),
            fired: self.fired,
            active: self.is_active(now),
        }
    }
}

impl Matcher {
    fn fits_route(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path
                .as_deref()
                .is_none_or(|p| match p.strip_suffix('*') {
                    Some(prefix) => path.starts_with(prefix),
                    None => path == p,
                })
    }

    fn fits(&self, request: &Request<'_>) -> bool {
        self.fits_route(request.method, request.path)
            && self
                .job_id
                .as_deref()
                .is_none_or(|id| request.job_id == Some(id))
            && self
                .job_config_id
                .as_deref()
                .is_none_or(|id| request.job_config_id == Some(id))
    }
}

impl Action {
    fn to_json(self) -> Value {
        let mut action = Map::new();
        match self {
            Action::Status {
                status,
                retry_after,
            } => {
                action.insert("status".to_owned(), status.into());
                if let Some(retry_after) = retry_after {
                    let text = crate::duration::format(retry_after);
                    action.insert("retryAfter".to_owned(), text.into());
                }
            }
            Action::Delay(delay) => {
                let text = crate::duration::format(delay);
                action.insert("delay".to_owned(), text.into());
            }
            Action::Drop => {
                action.insert("drop".to_owned(), true.into());
            }
        }
        Value::Object(action)
    }
}

/// A JSON number that is a whole number from 0, however it is written (`400`, `400.0`,
/// `4e2`), as JSON Schema's `integer` counts it. Past 2^53 only exact integers count.
fn whole(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let float = value.as_f64()?;
        let exact = float.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&float);
        exact.then_some(float as u64)
    })
}

#[derive(Clone)]
struct Parsed {
    matcher: Matcher,
    action: Action,
    times: Option<u64>,
    probability: f64,
    seed: Option<u64>,
    ttl: Option<Duration>,
}

fn parse(spec: &Value) -> Result<Parsed, Vec<Violation>> {
    let mut problems = Vec::new();
    let mut add = |field: &str, message: String| {
        problems.push(Violation {
            field: field.to_owned().into(),
            message: message.into(),
        });
    };
    let Some(spec) = spec.as_object() else {
        add(
            "body",
            "a fault rule is a JSON object: {\"match\", \"action\", ...}".to_owned(),
        );
        return Err(problems);
    };
    for key in spec.keys() {
        if !matches!(
            key.as_str(),
            "match" | "action" | "times" | "probability" | "seed" | "ttl"
        ) {
            add(
                key,
                format!(
                    "\"{key}\" is not a rule field; use match, action, times, probability, seed, ttl"
                ),
            );
        }
    }
    let mut matcher = Matcher::default();
    match spec.get("match") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (key, value) in fields.iter().filter(|(_, value)| !value.is_null()) {
                let slot = match key.as_str() {
                    "method" => &mut matcher.method,
                    "path" => &mut matcher.path,
                    "jobId" => &mut matcher.job_id,
                    "jobConfigId" => &mut matcher.job_config_id,
                    _ => {
                        add(
                            &format!("match.{key}"),
                            format!(
                                "\"{key}\" is not a match field; use method, path, jobId, jobConfigId"
                            ),
                        );
                        continue;
                    }
                };
                match value.as_str() {
                    Some(text) if !text.is_empty() => *slot = Some(text.to_owned()),
                    _ => add(
                        &format!("match.{key}"),
                        "must be a non-empty string".to_owned(),
                    ),
                }
            }
            if let Some(method) = &mut matcher.method {
                method.make_ascii_uppercase();
            }
        }
        Some(_) => add(
            "match",
            "must be an object of method, path, jobId, jobConfigId".to_owned(),
        ),
    }
    let duration = |value: &Value| value.as_str().and_then(crate::duration::parse);
    let action = match spec.get("action").and_then(Value::as_object) {
        None => {
            add(
                "action",
                "missing or not an object: {\"status\": 503}, {\"delay\": \"2s\"} or {\"drop\": true}".to_owned(),
            );
            None
        }
        Some(action) => {
            let kinds: Vec<&str> = ["status", "delay", "drop"]
                .into_iter()
                .filter(|kind| action.contains_key(*kind))
                .collect();
            for key in action.keys() {
                if !matches!(key.as_str(), "status" | "retryAfter" | "delay" | "drop") {
                    add(
                        &format!("action.{key}"),
                        format!(
                            "\"{key}\" is not an action field; use status (with retryAfter), delay or drop"
                        ),
                    );
                }
            }
            if action.get("retryAfter").is_some_and(|v| !v.is_null())
                && !action.contains_key("status")
            {
                add("action.retryAfter", "goes with status only".to_owned());
            }
            match kinds.as_slice() {
                ["status"] => {
                    let status = action
                        .get("status")
                        .and_then(whole)
                        .filter(|s| (400..=599).contains(s));
                    let retry_after = match action.get("retryAfter") {
                        None | Some(Value::Null) => Some(None),
                        Some(value) => duration(value).map(Some),
                    };
                    if status.is_none() {
                        add(
                            "action.status",
                            "must be an error status, 400 to 599".to_owned(),
                        );
                    }
                    if retry_after.is_none() {
                        add(
                            "action.retryAfter",
                            "must be a duration such as \"2s\"".to_owned(),
                        );
                    }
                    status
                        .zip(retry_after)
                        .map(|(status, retry_after)| Action::Status {
                            status: status as u16,
                            retry_after,
                        })
                }
                // A longer delay is cut to the longest, as a longer wait is.
                ["delay"] => match action.get("delay").and_then(duration) {
                    Some(delay) => Some(Action::Delay(delay.min(MAX_DELAY))),
                    None => {
                        add(
                            "action.delay",
                            "must be a duration such as \"2s\"".to_owned(),
                        );
                        None
                    }
                },
                ["drop"] => match action.get("drop") {
                    Some(Value::Bool(true)) => Some(Action::Drop),
                    _ => {
                        add("action.drop", "must be true".to_owned());
                        None
                    }
                },
                _ => {
                    add(
                        "action",
                        "must be exactly one of {\"status\": N}, {\"delay\": D}, {\"drop\": true}"
                            .to_owned(),
                    );
                    None
                }
            }
        }
    };
    let times = match spec.get("times") {
        None | Some(Value::Null) => Some(None),
        Some(value) => whole(value)
            .filter(|n| *n > 0 && *n <= i32::MAX as u64)
            .map(Some),
    };
    if times.is_none() {
        add(
            "times",
            "must be a whole number of hits, at least 1".to_owned(),
        );
    }
    let probability = match spec.get("probability") {
        None | Some(Value::Null) => Some(1.0),
        Some(value) => value.as_f64().filter(|p| (0.0..=1.0).contains(p)),
    };
    if probability.is_none() {
        add("probability", "must be a number from 0 to 1".to_owned());
    }
    let seed = match spec.get("seed") {
        None | Some(Value::Null) => Some(None),
        Some(value) => whole(value).filter(|s| *s <= i64::MAX as u64).map(Some),
    };
    if seed.is_none() {
        add("seed", "must be a whole number, 0 or more".to_owned());
    }
    let ttl = match spec.get("ttl") {
        None | Some(Value::Null) => Some(None),
        Some(value) => duration(value).map(Some),
    };
    if ttl.is_none() {
        add("ttl", "must be a duration such as \"5m\"".to_owned());
    }
    match (action, times, probability, seed, ttl) {
        (Some(action), Some(times), Some(probability), Some(seed), Some(ttl))
            if problems.is_empty() =>
        {
            Ok(Parsed {
                matcher,
                action,
                times,
                probability,
                seed,
                ttl,
            })
        }
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request<'a>(method: &'a str, path: &'a str, job_id: Option<&'a str>) -> Request<'a> {
        Request {
            method,
            path,
            job_id,
            job_config_id: None,
        }
    }

    fn problems(spec: Value) -> Vec<String> {
        match parse(&spec) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| p.field.to_string()).collect(),
        }
    }

    #[test]
    fn each_way_a_rule_can_be_wrong_is_named() {
        assert_eq!(
            problems(json!({"action": {"status": 503}})),
            Vec::<String>::new()
        );
        assert_eq!(problems(json!([])), ["body"]);
        assert_eq!(problems(json!({})), ["action"]);
        assert_eq!(problems(json!({"action": {}})), ["action"]);
        assert_eq!(
            problems(json!({"action": {"status": 503, "delay": "1s"}})),
            ["action"]
        );
        assert_eq!(
            problems(json!({"action": {"status": 200}})),
            ["action.status"]
        );
        assert_eq!(
            problems(json!({"action": {"status": 503, "retryAfter": "soon"}})),
            ["action.retryAfter"]
        );
        assert_eq!(
            problems(json!({"action": {"delay": "2 h"}})),
            ["action.delay"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": false}})),
            ["action.drop"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": true, "retryAfter": "1s"}})),
            ["action.retryAfter"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": true}, "times": 0})),
            ["times"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": true}, "probability": 1.5})),
            ["probability"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": true}, "seed": -1})),
            ["seed"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": true}, "ttl": 5})),
            ["ttl"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": true}, "match": {"verb": "GET"}})),
            ["match.verb"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": true}, "match": {"path": ""}})),
            ["match.path"]
        );
        assert_eq!(
            problems(json!({"action": {"drop": true}, "when": 1})),
            ["when"]
        );
    }

    #[tokio::test]
    async fn rules_match_on_every_field_given() {
        let faults = Arc::new(Faults::default());
        let now = Utc::now();
        let spec = json!({"match": {"method": "post", "path": "/job-launcher/*", "jobId": "r1"},
                          "action": {"status": 503}});
        faults.add(&spec, now).await.unwrap();
        assert!(
            faults
                .check(
                    &request("GET", "/job-launcher/launcher/status", Some("r1")),
                    now
                )
                .is_none()
        );
        assert!(
            faults
                .check(&request("POST", "/api/spark/jobs", Some("r1")), now)
                .is_none()
        );
        assert!(
            faults
                .check(
                    &request("POST", "/job-launcher/launcher/status", Some("r2")),
                    now
                )
                .is_none()
        );
        assert!(
            faults
                .check(&request("POST", "/job-launcher/launcher/status", None), now)
                .is_none()
        );
        let hit = faults.check(
            &request("POST", "/job-launcher/launcher/status", Some("r1")),
            now,
        );
        assert_eq!(
            hit.map(|h| h.action),
            Some(Action::Status {
                status: 503,
                retry_after: None
            })
        );
    }

    #[tokio::test]
    async fn times_spend_a_rule_and_ttl_expires_it() {
        let faults = Arc::new(Faults::default());
        let now = Utc::now();
        faults
            .add(&json!({"action": {"drop": true}, "times": 2}), now)
            .await
            .unwrap();
        faults
            .add(&json!({"action": {"status": 500}, "ttl": "1m"}), now)
            .await
            .unwrap();
        let any = request("GET", "/x", None);
        let rules: Vec<u64> = (0..4)
            .filter_map(|_| faults.check(&any, now))
            .map(|h| h.rule)
            .collect();
        assert_eq!(rules, [1, 1, 2, 2]);
        let list = faults.list(now);
        assert_eq!((list[0].fired, list[0].active), (2, false));
        let later_on = later(now, Duration::from_secs(60)).unwrap();
        assert!(faults.check(&any, later_on).is_none());
        assert!(!faults.list(later_on)[1].active);
    }

    #[tokio::test]
    async fn a_seed_gives_the_same_hits_in_the_same_order() {
        async fn hits(seed: u64) -> Vec<bool> {
            let faults = Arc::new(Faults::default());
            let now = Utc::now();
            let spec = json!({"action": {"status": 503}, "probability": 0.5, "seed": seed});
            faults.add(&spec, now).await.unwrap();
            (0..64)
                .map(|_| faults.check(&request("GET", "/x", None), now).is_some())
                .collect()
        }
        assert_eq!(hits(7).await, hits(7).await);
        assert_ne!(hits(7).await, hits(8).await);
        let count = hits(7).await.iter().filter(|h| **h).count();
        assert!((16..=48).contains(&count), "{count} of 64 at p = 0.5");
    }

    #[cfg(feature = "persistence")]
    #[tokio::test]
    async fn a_rule_the_store_cannot_write_is_not_added() {
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (store, _) = crate::store::database::flaky::store(&full);
        let faults = Arc::new(Faults::with_store(Arc::new(store), None).unwrap());
        let now = Utc::now();
        faults
            .add(&json!({"action": {"drop": true}}), now)
            .await
            .unwrap();
        full.store(true, Ordering::SeqCst);
        let refused = faults.add(&json!({"action": {"status": 503}}), now).await;
        assert!(
            matches!(refused, Err(ApiError::StorageUnavailable(_))),
            "{refused:?}"
        );
        assert!(matches!(
            faults.clear().await,
            Err(ApiError::StorageUnavailable(_))
        ));
        assert_eq!(faults.list(now).len(), 1);
        assert!(faults.check(&request("GET", "/x", None), now).is_some());
    }
}
