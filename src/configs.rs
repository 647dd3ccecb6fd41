//! Job configs known by id: put with the Spark API (`PUT /api/spark/configurations/{id}`),
//! named by a status update's `jobConfig`, or launched. Each is kept as it was posted,
//! in the order it became known; with `--data-dir` the list is saved as one document,
//! and a change the store cannot keep is not made.
//!
//! What a config must be (the contract, Simulated runs: an `id` of a letter, then
//! letters, digits, `_` and `-`, at most 63; a string `type`) is checked here. Configs
//! launch nothing: the simulation does.

use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::model::json::{self, RawJson};
use crate::model::{Problem, Violation};
use crate::store::{Saved, SavedLock, Store, Unavailable, Write};

/// Configs by id, in the order they became known.
type Known = IndexMap<String, RawJson>;

pub struct Configs {
    known: Saved<Known>,
}

impl Default for Configs {
    fn default() -> Self {
        Configs {
            known: Saved::new(IndexMap::new(), render),
        }
    }
}

/// A config an update names, staged to be written with the update: installed once that
/// write is durable, dropped otherwise.
pub struct Remembered {
    lock: SavedLock<Known>,
    known: Known,
}

impl Remembered {
    pub fn install(self) {
        self.lock.install(self.known);
    }
}

impl Configs {
    /// Configs saved to `store` on every change, starting with those it saved before.
    pub fn persisted(store: Arc<Store>, saved: Option<&str>) -> Result<Configs, String> {
        let mut known = IndexMap::new();
        if let Some(saved) = saved {
            let saved: Vec<&RawValue> = serde_json::from_str(saved)
                .map_err(|e| format!("the saved configs cannot be read: {e}"))?;
            for config in saved {
                let id = ConfigBody::read(config.get().as_bytes())
                    .ok()
                    .and_then(|c| c.id())
                    .ok_or_else(|| format!("a saved config has no id: {}", config.get()))?;
                known.insert(id, RawJson::whole(Arc::from(config.get())));
            }
        }
        Ok(Configs {
            known: Saved::persisted(known, store, "configs", render),
        })
    }

    /// Config `id`, as it was posted.
    pub fn get(&self, id: &str) -> Option<RawJson> {
        self.known.read().get(id).cloned()
    }

    /// Every config, in the order they became known.
    pub fn list(&self) -> Vec<Box<RawValue>> {
        self.known
            .read()
            .values()
            .map(RawJson::to_raw_value)
            .collect()
    }

    /// Whether config `id` is known exactly as `config`.
    pub fn knows(&self, id: &str, config: &RawJson) -> bool {
        self.known
            .read()
            .get(id)
            .is_some_and(|known| known.as_str() == config.as_str())
    }

    /// Remembers `config` as `id`, at once: without a store.
    pub fn remember_now(&self, id: String, config: &RawJson) {
        self.known
            .change_now(|known| known.insert(id, config.detached()));
    }

    /// What remembering `config` as `id` writes (`None` without a store), and the
    /// change to install once it is durable. Holds the right to change the configs
    /// until then.
    pub async fn remember_staged(
        &self,
        id: String,
        config: &RawJson,
    ) -> (Option<Write>, Remembered) {
        let lock = self.known.lock().await;
        let mut known = lock.value();
        known.insert(id, config.detached());
        let write = lock.document(&known).map(|(_, write)| write);
        (write, Remembered { lock, known })
    }

    /// Creates or replaces config `id`; `true` when it created it. The body's `id`, when
    /// given, must be `id`; it is added when missing.
    pub async fn put(
        &self,
        id: &str,
        body: &[u8],
        media_type: Option<Problem>,
    ) -> Result<(bool, Box<RawValue>), ApiError> {
        let config = ConfigBody::read(body)?;
        if let Some(problem) = media_type {
            return Err(ApiError::refusal(vec![problem]));
        }
        let mut violations = check_id(id);
        match config.member("id") {
            None => {}
            Some(given) if json::as_string(given).is_some_and(|given| given == id) => {}
            Some(given) => violations.push(Violation::new(
                "id",
                &format!("the body's id {given} differs from the path's \"{id}\""),
            )),
        }
        violations.extend(config.check_type());
        if !violations.is_empty() {
            return Err(invalid(violations));
        }
        let text = config.with_id(id);
        let raw = RawJson::whole(Arc::from(text.as_str()));
        let id = id.to_owned();
        let created = self
            .known
            .change(move |known| known.insert(id, raw).is_none())
            .await
            .map_err(not_stored)?;
        Ok((created, json::raw_value(text)))
    }

    /// Forgets config `id`; `false` when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, ApiError> {
        let id = id.to_owned();
        self.known
            .change(move |known| known.shift_remove(&id).is_some())
            .await
            .map_err(not_stored)
    }

    /// What a reset writes, and what it then does once that is durable: every config
    /// forgotten.
    pub async fn clear_staged(&self) -> (Option<Write>, Box<dyn FnOnce() + Send>) {
        let lock = self.known.lock().await;
        let write = lock.document(&IndexMap::new()).map(|(_, write)| write);
        (write, Box::new(move || lock.install(IndexMap::new())))
    }
}

/// A config posted to be launched (`POST /job-launcher/launcher`), checked: its id and
/// the config as written.
pub fn read_launched(
    body: &[u8],
    media_type: Option<Problem>,
) -> Result<(String, RawJson), ApiError> {
    let config = ConfigBody::read(body)?;
    if let Some(problem) = media_type {
        return Err(ApiError::refusal(vec![problem]));
    }
    let id = config.member("id").map(json::as_string);
    let mut violations = match &id {
        Some(Some(id)) => check_id(id),
        Some(None) => vec![Violation::new("id", "must be a string: the config's name")],
        None => vec![Violation::new("id", "missing: the config's name")],
    };
    violations.extend(config.check_type());
    match id {
        Some(Some(id)) if violations.is_empty() => Ok((
            id.into_owned(),
            RawJson::whole(Arc::from(config.text.as_str())),
        )),
        _ => Err(invalid(violations)),
    }
}

/// The `id` of a config posted to be launched, read as the launch reads it; `None` when
/// it has none (or is not a config at all).
pub fn launched_id(body: &[u8]) -> Option<String> {
    ConfigBody::read(body).ok()?.id()
}

/// Fusion's rule for a config id: a letter, then letters, digits, `_` and `-`, at most
/// 63 characters in all.
fn check_id(id: &str) -> Vec<Violation> {
    let mut chars = id.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && id.len() <= 63;
    if well_formed {
        Vec::new()
    } else {
        vec![Violation::new(
            "id",
            &format!(
                "{} is not a config id: a letter, then letters, digits, _ and -, at most 63 in all",
                Value::from(id)
            ),
        )]
    }
}

/// A job config as posted: one JSON object, kept as written (a number too large for a
/// float is kept, as in a status update), its members read one level deep.
struct ConfigBody {
    text: String,
    /// Each member's name and raw value; a name written twice counts with its last.
    members: Vec<(String, String)>,
}

impl ConfigBody {
    fn read(body: &[u8]) -> Result<ConfigBody, ApiError> {
        let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::MalformedJson(format!("the body is not UTF-8: {e}")))?;
        if json::find_too_deep(body).is_some() {
            return Err(ApiError::MalformedJson(
                "the body is nested more than 128 levels deep".to_owned(),
            ));
        }
        let members = json::object_members(text).map_err(|e| {
            ApiError::MalformedJson(format!("the body must be one JSON object: {e}"))
        })?;
        let members = members
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value.get().to_owned()))
            .collect();
        Ok(ConfigBody {
            text: text.trim().to_owned(),
            members,
        })
    }

    fn member(&self, name: &str) -> Option<&str> {
        let found = self.members.iter().rev().find(|(n, _)| n == name);
        found.map(|(_, value)| value.as_str())
    }

    /// Its `id`, when that is a string.
    fn id(&self) -> Option<String> {
        self.member("id")
            .and_then(json::as_string)
            .map(|id| id.into_owned())
    }

    fn check_type(&self) -> Vec<Violation> {
        match self.member("type").map(json::as_string) {
            Some(Some(t)) if !t.is_empty() => Vec::new(),
            Some(_) => vec![Violation::new(
                "type",
                "must be a non-empty string, e.g. \"custom_python_job\"",
            )],
            None => vec![Violation::new(
                "type",
                "missing: the job type, e.g. \"custom_python_job\"",
            )],
        }
    }

    /// The config as written, with `"id"` added first when it has none.
    fn with_id(&self, id: &str) -> String {
        if self.member("id").is_some() {
            return self.text.clone();
        }
        let rest = self.text.trim_start_matches('{').trim_start();
        let separator = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"id\":{}{separator}{rest}", Value::from(id))
    }
}

fn invalid(violations: Vec<Violation>) -> ApiError {
    let first = violations.first().map_or("", |v| &*v.message);
    ApiError::ValidationFailed {
        message: format!("the job config is not valid: {first}"),
        violations,
    }
}

/// A change the store could not keep: 503.
fn not_stored(cause: Unavailable) -> ApiError {
    ApiError::StorageUnavailable(cause.to_string())
}

/// The configs as the store keeps them: a JSON array, each as posted.
fn render(known: &Known) -> String {
    let listed: Vec<&RawJson> = known.values().collect();
    serde_json::to_string(&listed).unwrap_or_else(|_| "[]".to_owned())
}
