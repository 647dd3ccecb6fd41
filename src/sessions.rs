//! Sessions: worlds of their own on one running service, so tests that share an instance
//! (parallel workers, several pipelines, a staging container) do not see each other.
//!
//! Under `/sessions/{id}`, every route serves that session's world: its runs, history,
//! journal, events, configs, scenarios, faults and clock (the contract, "Sessions"). The
//! root paths are the service's own world, which is no session and never expires.
//!
//! A session unused for its `ttl` is forgotten, by the service's clock (so a manual one
//! expires sessions as it is advanced). With `--data-dir`, a session is made and
//! forgotten only once that is on disk, and its world is kept in tables of its own.
//! This module keeps the sessions and their lifetimes; which world a request acts on,
//! the api decides (`Scope`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::clock::{Clock, ClockMode, later};
use crate::error::ApiError;
use crate::metrics::{LiveSources, WorldReadings};
use crate::model::Violation;
use crate::model::time::rfc3339;
use crate::model::update::is_valid_job_id;
use crate::store::{RestoredSession, Store, Write};
use crate::sync::{read, write};
use crate::world::{Blueprint, World};

/// The longest name a session may have.
pub const MAX_NAME: usize = 64;

/// The live sessions, and how new ones are made.
pub struct Sessions {
    /// The service's own world: the root paths'. Not a session; listed nowhere.
    root: Arc<World>,
    live: std::sync::RwLock<IndexMap<Arc<str>, Arc<Session>>>,
    blueprint: Blueprint,
    settings: Settings,
    /// The service's clock: sessions' times and their expiry are by it.
    clock: Arc<Clock>,
    store: Option<Arc<Store>>,
    /// One session made or forgotten at a time, so the store and the map agree.
    changes: tokio::sync::Mutex<()>,
    /// Wakes the sweeper: a session was made, or the clock moved.
    sweep: Arc<Notify>,
    sweeper_started: AtomicBool,
}

/// `--max-sessions` and `--session-ttl`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max: usize,
    /// A session's ttl when it names none; `None`: sessions never expire.
    pub ttl: Option<Duration>,
    /// `--clock`: a session's clock when it names none.
    pub clock: ClockMode,
}

/// One session: its world, and when it was made and last used.
pub struct Session {
    pub id: Arc<str>,
    pub world: Arc<World>,
    pub created_at: DateTime<Utc>,
    /// Unused this long, it is forgotten; `None`: never.
    pub ttl: Option<Duration>,
    /// When a request last came for it, in milliseconds since the epoch, by the
    /// service's clock.
    last_used: AtomicI64,
}

/// What `POST /_mock/sessions` takes; every member optional.
#[derive(Debug, Default)]
pub struct Wanted {
    pub name: Option<String>,
    /// A duration (`2h`), or `None` for never; absent, `--session-ttl`.
    pub ttl: Option<Option<String>>,
    pub clock: Option<ClockMode>,
}

/// A session as `/_mock/sessions` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    /// Where its routes are: `http://HOST:PORT/sessions/{id}`, the host as the request
    /// that asked named it.
    pub base_url: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it is forgotten if it is not used before; `null`: never.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_used_at: String,
    /// How many runs it holds.
    pub runs: usize,
}

/// How a session was made, as the store keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kept {
    id: String,
    created_at: DateTime<Utc>,
    /// Milliseconds; absent: never.
    ttl_ms: Option<u64>,
    clock: ClockMode,
}

impl Wanted {
    /// Reads `{"name", "ttl", "clock"}`; every problem named. `null`, which the document
    /// allows for an optional body, is no body.
    pub fn read(body: &Value) -> Result<Wanted, ApiError> {
        if body.is_null() {
            return Ok(Wanted::default());
        }
        let Some(members) = body.as_object() else {
            return Err(refused(vec![Violation::new(
                "body",
                "must be an object: {\"name\", \"ttl\", \"clock\"}, every member optional",
            )]));
        };
        let mut wanted = Wanted::default();
        let mut problems = Vec::new();
        // A member given as `null` is one left out (`ttl`'s null, which means never, aside).
        let given = members
            .iter()
            .filter(|(key, value)| *key == "ttl" || !value.is_null());
        for (key, value) in given {
            match (key.as_str(), value) {
                ("name", Value::String(name)) => wanted.name = Some(name.clone()),
                ("name", _) => problems.push(Violation::new("name", "must be a string")),
                ("ttl", Value::Null) => wanted.ttl = Some(None),
                ("ttl", Value::String(ttl)) => wanted.ttl = Some(Some(ttl.clone())),
                ("ttl", _) => problems.push(Violation::new(
                    "ttl",
                    "must be a duration such as 2h, or null for never",
                )),
                ("clock", Value::String(clock)) if clock == "manual" => {
                    wanted.clock = Some(ClockMode::Manual);
                }
                ("clock", Value::String(clock)) if clock == "system" => {
                    wanted.clock = Some(ClockMode::System);
                }
                ("clock", _) => {
                    problems.push(Violation::new("clock", "must be manual or system"));
                }
                (other, _) => problems.push(Violation::new(
                    other,
                    "is not a member; use name, ttl or clock",
                )),
            }
        }
        if problems.is_empty() {
            Ok(wanted)
        } else {
            Err(refused(problems))
        }
    }
}

impl Sessions {
    /// The sessions of a service whose own world is `root`; with a store, those it
    /// kept.
    pub fn new(
        root: Arc<World>,
        blueprint: Blueprint,
        settings: Settings,
        clock: Arc<Clock>,
        store: Option<(Arc<Store>, Vec<RestoredSession>)>,
    ) -> Result<Sessions, String> {
        let mut live = IndexMap::new();
        let now = clock.now().timestamp_millis();
        let store = match store {
            Some((store, restored)) => {
                for kept in restored {
                    let how: Kept = serde_json::from_str(&kept.meta)
                        .map_err(|e| format!("session {} cannot be read: {e}", kept.id))?;
                    let world = World::build(
                        &blueprint,
                        Arc::new(Clock::new(how.clock)),
                        Some((Arc::new(store.scoped(&how.id)), kept.data)),
                    )
                    .map_err(|e| format!("session {}: {e}", how.id))?;
                    let id: Arc<str> = Arc::from(how.id.as_str());
                    // Its idle time starts again with the service.
                    let session = Session {
                        id: Arc::clone(&id),
                        world: Arc::new(world),
                        created_at: how.created_at,
                        ttl: how.ttl_ms.map(Duration::from_millis),
                        last_used: AtomicI64::new(now),
                    };
                    live.insert(id, Arc::new(session));
                }
                Some(store)
            }
            None => None,
        };
        Ok(Sessions {
            root,
            live: std::sync::RwLock::new(live),
            blueprint,
            settings,
            clock,
            store,
            changes: tokio::sync::Mutex::new(()),
            sweep: Arc::new(Notify::new()),
            sweeper_started: AtomicBool::new(false),
        })
    }

    /// The service's own world.
    pub fn root(&self) -> &Arc<World> {
        &self.root
    }

    /// Session `id`, marked used now; `None` when there is none (or it has expired).
    pub fn find(&self, id: &str) -> Option<Arc<Session>> {
        let session = read(&self.live).get(id).cloned()?;
        let now = self.clock.now();
        if session.expired(now) {
            // The sweeper forgets it; meanwhile it is gone for requests.
            self.sweep.notify_one();
            return None;
        }
        session
            .last_used
            .store(now.timestamp_millis(), Ordering::Relaxed);
        Some(session)
    }

    /// Makes a session as `wanted` says.
    pub async fn create(&self, wanted: Wanted) -> Result<Arc<Session>, ApiError> {
        let id: Arc<str> = match &wanted.name {
            Some(name) => {
                check_name(name)?;
                Arc::from(name.as_str())
            }
            None => self.fresh_id(),
        };
        let ttl = match wanted.ttl {
            None => self.settings.ttl,
            Some(None) => None,
            Some(Some(text)) => Some(crate::duration::parse(&text).ok_or_else(|| {
                invalid(
                    "ttl",
                    &format!("{text:?} is not a duration: a number and ms, s, m or h"),
                )
            })?),
        };
        let now = self.clock.now();
        if let Some(ttl) = ttl
            && later(now, ttl).is_none()
        {
            return Err(invalid(
                "ttl",
                "would expire past 9999-12-31T23:59:59.999Z, the latest time the mock can hold",
            ));
        }
        let clock = wanted.clock.unwrap_or(self.settings.clock);
        let _one = self.changes.lock().await;
        {
            let live = read(&self.live);
            if live.contains_key(&id) {
                return Err(ApiError::Conflict {
                    message: format!("a session named {id} exists"),
                    violations: vec![Violation::new("name", &format!("{id} is in use"))],
                });
            }
            if live.len() >= self.settings.max {
                return Err(ApiError::SessionsFull {
                    max_sessions: self.settings.max,
                });
            }
        }
        let scoped = self.store.as_ref().map(|store| Arc::new(store.scoped(&id)));
        if let Some(store) = &self.store {
            let kept = Kept {
                id: id.to_string(),
                created_at: now,
                ttl_ms: ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
                clock,
            };
            let json = serde_json::to_string(&kept).unwrap_or_default();
            store
                .write(Write::SessionCreated {
                    id: id.to_string(),
                    json,
                })
                .await
                .map_err(|cause| ApiError::StorageUnavailable(cause.to_string()))?;
        }
        let persisted = scoped.map(|store| (store, Default::default()));
        let world = World::build(&self.blueprint, Arc::new(Clock::new(clock)), persisted)
            .map_err(ApiError::Internal)?;
        let session = Arc::new(Session {
            id: Arc::clone(&id),
            world: Arc::new(world),
            created_at: now,
            ttl,
            last_used: AtomicI64::new(now.timestamp_millis()),
        });
        write(&self.live).insert(id, Arc::clone(&session));
        self.sweep.notify_one();
        Ok(session)
    }

    /// Forgets session `id` and everything its world held: its waits answer 404 and its
    /// event streams end. `false` when there is none.
    pub async fn delete(&self, id: &str) -> Result<bool, ApiError> {
        let _one = self.changes.lock().await;
        if !read(&self.live).contains_key(id) {
            return Ok(false);
        }
        self.forget(id).await?;
        Ok(true)
    }

    async fn forget(&self, id: &str) -> Result<(), ApiError> {
        if let Some(store) = &self.store {
            store
                .write(Write::SessionDeleted { id: id.to_owned() })
                .await
                .map_err(|cause| ApiError::StorageUnavailable(cause.to_string()))?;
        }
        let session = write(&self.live).shift_remove(id);
        if let Some(session) = session {
            session.world.close();
        }
        Ok(())
    }

    /// Every live session, in the order they were made.
    pub fn list(&self) -> Vec<Arc<Session>> {
        let now = self.clock.now();
        read(&self.live)
            .values()
            .filter(|session| !session.expired(now))
            .cloned()
            .collect()
    }

    /// How many sessions are live.
    pub fn count(&self) -> usize {
        read(&self.live).len()
    }

    /// Forgets every session unused for its ttl; gives the earliest time another may
    /// expire.
    pub async fn sweep(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let expired: Vec<Arc<str>> = read(&self.live)
            .values()
            .filter(|session| session.expired(now))
            .map(|session| Arc::clone(&session.id))
            .collect();
        for id in expired {
            let _one = self.changes.lock().await;
            // Used since it was found expired? Then it is not.
            let still = read(&self.live)
                .get(&id)
                .is_some_and(|session| session.expired(self.clock.now()));
            if still && let Err(e) = self.forget(&id).await {
                // Kept, and tried again at the next sweep.
                tracing::warn!(session = %id, error = %e, "an expired session could not be forgotten");
            }
        }
        read(&self.live)
            .values()
            .filter_map(|session| session.expires_at())
            .min()
    }

    /// Forgets expired sessions as they expire, until `sessions` is gone: with the system
    /// clock by sleeping until the next may expire; with a manual one when it moves.
    pub fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let sweep = Arc::clone(&self.sweep);
        tokio::spawn(async move {
            loop {
                let woken = sweep.notified();
                let Some(sessions) = weak.upgrade() else {
                    return;
                };
                tokio::pin!(woken);
                woken.as_mut().enable();
                let next = sessions.sweep().await;
                let wait = match (next, sessions.clock.mode()) {
                    (Some(next), ClockMode::System) => (next - Utc::now()).to_std().ok(),
                    _ => None,
                };
                drop(sessions);
                match wait {
                    Some(wait) => {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = &mut woken => {}
                        }
                    }
                    None => woken.await,
                }
            }
        });
    }

    /// The service's clock moved (a manual clock advanced): expiries are due again.
    pub fn clock_moved(&self) {
        self.sweep.notify_one();
    }

    /// Twelve lowercase letters no session has.
    fn fresh_id(&self) -> Arc<str> {
        loop {
            let id: String = std::iter::repeat_with(fastrand::lowercase)
                .take(12)
                .collect();
            if !read(&self.live).contains_key(id.as_str()) {
                return Arc::from(id);
            }
        }
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        // Lets the sweeper see that it has nothing left to sweep.
        self.sweep.notify_one();
    }
}

impl Session {
    fn last_used(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.last_used.load(Ordering::Relaxed))
            .unwrap_or(self.created_at)
    }

    /// When it is forgotten unless used before; `None`: never.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.ttl
            .map(|ttl| later(self.last_used(), ttl).unwrap_or(crate::clock::END_OF_TIME))
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at().is_some_and(|at| at <= now)
    }

    /// The session as `/_mock/sessions` shows it, its routes under `http://{host}`.
    pub fn view(&self, host: &str) -> SessionView {
        SessionView {
            id: self.id.to_string(),
            base_url: format!("http://{host}/sessions/{}", self.id),
            created_at: rfc3339(self.created_at),
            expires_at: self.expires_at().map(rfc3339),
            last_used_at: rfc3339(self.last_used()),
            runs: self.world.registry.held(),
        }
    }
}

impl LiveSources for Sessions {
    fn each_world(&self, reading: &mut dyn FnMut(WorldReadings<'_>)) {
        reading(WorldReadings {
            registry: &self.root.registry,
            journal: &self.root.journal,
        });
        for session in read(&self.live).values() {
            reading(WorldReadings {
                registry: &session.world.registry,
                journal: &session.world.journal,
            });
        }
    }

    fn sessions(&self) -> usize {
        self.count()
    }
}

/// A session's name follows the jobId rule, at most [`MAX_NAME`] characters.
fn check_name(name: &str) -> Result<(), ApiError> {
    if name.len() <= MAX_NAME && is_valid_job_id(name) {
        return Ok(());
    }
    Err(invalid(
        "name",
        &format!(
            "{name:?} is not a session name: 1 to {MAX_NAME} of A-Z a-z 0-9 . _ -, not . or .."
        ),
    ))
}

fn invalid(field: &str, message: &str) -> ApiError {
    refused(vec![Violation::new(field, message)])
}

/// 422: the session cannot be made, the first problem in the message.
fn refused(violations: Vec<Violation>) -> ApiError {
    ApiError::invalid("the session cannot be made", violations)
}
