//! Sessions: worlds of their own on one shared service (the contract, "Sessions"). Made
//! and listed at the root paths only; under `/sessions/{id}` every other route serves
//! the session's world (the layers route it there).
//!
//! - `POST   /_mock/sessions`: make one (`{"name", "ttl", "clock"}`, every member optional)
//! - `GET    /_mock/sessions`: the live ones
//! - `DELETE /_mock/sessions/{id}`: forget one and everything it held

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::{Path, Request, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{InSession, JsonBody};
use crate::app::AppState;
use crate::clock::ClockMode;
use crate::error::{ApiError, ErrorBody};
use crate::routes;
use crate::sessions::{SessionView, Wanted};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_session, list_sessions))
        .routes(routes!(delete_session))
}

/// What `POST /_mock/sessions` takes: every member optional; an empty body is `{}`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documentation only: read by `sessions::Wanted::read`
pub struct NewSession {
    /// Its id: 1 to 64 of `A-Z a-z 0-9 . _ -`, not `.` or `..`; absent, 12 fresh
    /// lowercase letters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^([A-Za-z0-9_-][A-Za-z0-9._-]*|\\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.\\.[A-Za-z0-9._-]+)$"
    )]
    name: Option<String>,
    /// Forgotten after this long unused (`2h`); `null`, never; absent, `--session-ttl`.
    #[schema(nullable = true, pattern = "^[0-9]{1,9}(ms|s|m|h)$")]
    ttl: Option<String>,
    /// `manual`: a clock of its own that moves only by its `/_mock/clock/advance`;
    /// absent, as `--clock` says.
    clock: Option<ClockMode>,
}

/// A session made: where its routes are, and when it expires.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionMade {
    id: String,
    /// `http://HOST:PORT/sessions/{id}`, the host this request named.
    base_url: String,
    #[schema(format = DateTime)]
    created_at: String,
    /// When it is forgotten if unused until then; `null`: never.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// The live sessions.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionView>,
}

/// Makes a session: a world of its own, served under `baseUrl`.
#[utoipa::path(post, path = routes::SESSIONS, tag = "sessions",
    request_body(content = Option<NewSession>, content_type = "application/json"),
    responses(
        (status = 201, description = "Made", body = SessionMade),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "Asked under a session: sessions are made at the root", body = ErrorBody),
        (status = 409, description = "A session of that name exists", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "A member cannot be read; each problem named", body = ErrorBody),
        (status = 507, description = "--max-sessions are live", body = ErrorBody),
    ))]
async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    at_the_root(&request)?;
    let body = JsonBody::from_request(request, &state).await?;
    let wanted = if body.bytes.iter().all(u8::is_ascii_whitespace) {
        Wanted::default()
    } else {
        Wanted::read(&body.value()?)?
    };
    let session = state.sessions.create(wanted).await?;
    let view = session.view(&host(&headers));
    let made = SessionMade {
        id: view.id,
        base_url: view.base_url,
        created_at: view.created_at,
        expires_at: view.expires_at,
    };
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

/// The live sessions, in the order they were made.
#[utoipa::path(get, path = routes::SESSIONS, tag = "sessions",
    responses(
        (status = 200, description = "The live sessions", body = SessionList),
        (status = 404, description = "Asked under a session: sessions are listed at the root", body = ErrorBody),
    ))]
async fn list_sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<SessionList>, ApiError> {
    at_the_root(&request)?;
    let host = host(&headers);
    let sessions = state.sessions.list();
    Ok(Json(SessionList {
        sessions: sessions.iter().map(|session| session.view(&host)).collect(),
    }))
}

/// Forgets a session and everything its world held: its open waits answer 404, its
/// event streams end.
#[utoipa::path(delete, path = "/_mock/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 404, description = "No such session (or asked under one)", body = ErrorBody),
    ))]
async fn delete_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    at_the_root(&request)?;
    if state.sessions.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no session {id}")))
    }
}

/// Sessions are made, listed and deleted at the root paths only.
fn at_the_root(request: &Request) -> Result<(), ApiError> {
    match request.extensions().get::<InSession>() {
        None => Ok(()),
        Some(InSession(session)) => Err(ApiError::NotFound(format!(
            "sessions are made at the root paths: {} is not a route of session {}",
            routes::SESSIONS,
            session.id
        ))),
    }
}

/// The host a client named, for the URLs it is given back.
fn host(headers: &HeaderMap) -> String {
    headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| !host.is_empty())
        .unwrap_or("localhost")
        .to_owned()
}
