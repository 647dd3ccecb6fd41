//! What handlers take from a request: the world it acts on ([`Scope`]), and bodies and
//! query parameters whose rejections are [`ApiError`]s, so a bad request gets the same
//! JSON error body as every other refusal.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderValue};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::app::{AppState, BodyLimit};
use crate::error::ApiError;
use crate::model::{Problem, ProblemKind, Violation};
use crate::routes;
use crate::sessions::Session;
use crate::world::World;

/// A request body read whole within `--max-body-bytes`, and what its `Content-Type` said.
///
/// A body that is not declared as JSON is still read: the contract's order (Validation) puts
/// a malformed body (400) before a wrong media type (415), and a 415 lists the body's
/// other problems too.
pub struct JsonBody {
    pub bytes: Bytes,
    content_type: Option<HeaderValue>,
}

impl JsonBody {
    /// The body as a JSON value, declared as JSON: 400 before 415, as for updates.
    pub fn value(&self) -> Result<serde_json::Value, ApiError> {
        let bytes = self
            .bytes
            .strip_prefix("\u{feff}".as_bytes())
            .unwrap_or(&self.bytes);
        let value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::MalformedJson(format!("the body is not JSON: {e}")))?;
        if let Some(problem) = self.media_type_problem() {
            return Err(ApiError::refusal(vec![problem]));
        }
        Ok(value)
    }

    /// The 415 problem, when the body is not declared as JSON.
    pub fn media_type_problem(&self) -> Option<Problem> {
        let declared = self.content_type.as_ref();
        if declared.is_some_and(|v| v.to_str().is_ok_and(is_json_media_type)) {
            return None;
        }
        let message = match declared {
            Some(declared) => format!(
                "Content-Type {} is not JSON; send application/json or application/*+json",
                String::from_utf8_lossy(declared.as_bytes())
            ),
            None => "Content-Type is missing; send application/json".to_owned(),
        };
        Some(Problem::new(
            ProblemKind::MediaType,
            "Content-Type",
            message,
        ))
    }
}

impl<S> FromRequest<S> for JsonBody
where
    S: Send + Sync,
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(CONTENT_TYPE).cloned();
        let BodyLimit(limit) = BodyLimit::from_ref(state);
        let bytes = read_body(request.into_body(), limit).await?;
        Ok(JsonBody {
            bytes,
            content_type,
        })
    }
}

/// Reads a whole body of at most `limit` bytes (`--max-body-bytes`). A body that
/// arrives in one piece, as most do, is kept as it came, not copied; and unlike axum's
/// `Bytes` extractor this needs no `DefaultBodyLimit` in the request's extensions, a
/// few allocations on every request.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the body is larger than the limit of {limit} bytes (--max-body-bytes)"
        ))
    };
    // A declared length over the limit is refused before any of it is read.
    if usize::try_from(body.size_hint().lower()).map_or(true, |declared| declared > limit) {
        return Err(too_large());
    }
    let mut chunks = body.into_data_stream();
    let mut whole = Bytes::new();
    let mut joined: Option<Vec<u8>> = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::MalformedJson(format!("the body could not be read: {e}")))?;
        let length = joined.as_ref().map_or(whole.len(), Vec::len) + chunk.len();
        if length > limit {
            return Err(too_large());
        }
        match &mut joined {
            Some(joined) => joined.extend_from_slice(&chunk),
            None if whole.is_empty() => whole = chunk,
            None => {
                let mut both = Vec::with_capacity(length);
                both.extend_from_slice(&whole);
                both.extend_from_slice(&chunk);
                joined = Some(both);
            }
        }
    }
    Ok(joined.map_or(whole, Bytes::from))
}

/// `application/json`, or any `application/*+json`, with any parameters.
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let suffix = subtype
        .len()
        .checked_sub("+json".len())
        .and_then(|at| subtype.get(at..));
    let suffixed =
        subtype.len() > "+json".len() && suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json"));
    kind.eq_ignore_ascii_case("application") && (subtype.eq_ignore_ascii_case("json") || suffixed)
}

/// The world a request acts on: its runs, journal, configs, scenarios, simulated runs,
/// faults and clock. Every handler that reads or changes any of those takes this, and
/// the layers ask [`Scope::of`], so which world a request acts on is decided here, once:
/// a session's, for a request that came under `/sessions/{id}` ([`InSession`]), else the
/// service's own.
pub struct Scope(Arc<World>);

impl Scope {
    /// The world of a request with these extensions.
    pub fn of<'a>(state: &'a AppState, extensions: &'a Extensions) -> &'a Arc<World> {
        match extensions.get::<InSession>() {
            Some(InSession(session)) => &session.world,
            None => state.world(),
        }
    }
}

/// On a request that came under `/sessions/{id}`, once its path is the rest: its
/// session.
#[derive(Clone)]
pub struct InSession(pub Arc<Session>);

/// `/sessions/{id}/rest`: the session's id, and the rest (`/` when there is none); `None`
/// for a path not under a session.
pub fn under_session(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix(routes::SESSION_PREFIX)?;
    let (id, rest) = match after.find('/') {
        Some(at) => after.split_at(at),
        None => (after, "/"),
    };
    (!id.is_empty()).then_some((id, rest))
}

/// Takes `request`'s `/sessions/{id}` off its path (the query stays), so it is routed
/// as the same request to the root would be; gives the session's id, and the path as it
/// came, for the error body. A path not under a session is left as it is.
pub fn enter_session(request: &mut Request) -> Option<(Arc<str>, Box<str>)> {
    let uri = request.uri();
    let (id, rest) = under_session(uri.path())?;
    let id: Arc<str> = Arc::from(id);
    let original: Box<str> = uri.path().into();
    let rewritten = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    if let Ok(path) = axum::http::uri::PathAndQuery::try_from(rewritten) {
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(path);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    Some((id, original))
}

impl std::ops::Deref for Scope {
    type Target = Arc<World>;

    fn deref(&self) -> &Arc<World> {
        &self.0
    }
}

impl FromRequestParts<AppState> for Scope {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(Scope(Arc::clone(Scope::of(state, &parts.extensions))))
    }
}

/// Query parameters; a parameter that cannot be read is a 400 naming it, with a
/// violation whose `field` is the parameter, as every other refusal of a parameter.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::parse(parts.uri.query().unwrap_or_default())
    }
}

impl<T: DeserializeOwned> Query<T> {
    /// Reads a query string as axum's `Query` does (serde_urlencoded), keeping the path
    /// to the parameter that failed, which axum's rejection has only in its text.
    fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = form_urlencoded::parse(query.as_bytes());
        let deserializer = serde_urlencoded::Deserializer::new(pairs);
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let field = error.path().to_string();
                let reason = error.inner().to_string();
                let given = form_urlencoded::parse(query.as_bytes())
                    .find(|(name, _)| *name == field)
                    .map(|(_, value)| value.into_owned());
                let (field, message) = match given {
                    Some(value) => {
                        let message = format!("{field}={value:?} cannot be read: {reason}");
                        (field, message)
                    }
                    // Not one parameter's fault (`.` is the whole query string).
                    None => (
                        "query".to_owned(),
                        format!("the query string cannot be read: {reason}"),
                    ),
                };
                ApiError::BadRequest {
                    violations: vec![Violation {
                        field: field.into(),
                        message: message.clone().into(),
                    }],
                    message,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::{ApiError, Query, is_json_media_type};

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)] // read only by `Debug`
    struct Paging {
        limit: Option<i32>,
        status: Option<u16>,
        job_id: Option<String>,
    }

    /// The message and the violations' fields of a refused query string.
    fn refusal(query: &str) -> (String, Vec<String>) {
        match Query::<Paging>::parse(query) {
            Err(ApiError::BadRequest {
                message,
                violations,
            }) => (
                message,
                violations.iter().map(|v| v.field.to_string()).collect(),
            ),
            other => panic!("{query}: not a 400: {:?}", other.map(|q| q.0)),
        }
    }

    #[test]
    fn a_query_parameter_that_cannot_be_read_is_named_with_its_value() {
        assert_eq!(
            refusal("limit=many"),
            (
                r#"limit="many" cannot be read: invalid digit found in string"#.to_owned(),
                vec!["limit".to_owned()]
            )
        );
        let (message, fields) = refusal("jobId=x&status=teapot");
        assert_eq!(fields, ["status"]);
        assert!(
            message.starts_with(r#"status="teapot" cannot be read"#),
            "{message}"
        );
        let (message, fields) = refusal("status=70000");
        assert_eq!(fields, ["status"]);
        assert!(message.contains("too large"), "{message}");
        let (message, fields) = refusal("limit=1&limit=2");
        assert_eq!(fields, ["query"], "{message}");
        assert!(message.contains("limit"), "{message}");
        assert!(Query::<Paging>::parse("limit=2&status=200&jobId=a%20b&other=x").is_ok());
    }

    #[test]
    fn json_media_types_are_recognised() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/hal+json",
            "application/vnd.spring-boot.actuator.v3+json",
        ] {
            assert!(is_json_media_type(yes), "{yes}");
        }
        for no in [
            "text/json",
            "text/plain",
            "application/jsonx",
            "",
            "json",
            "application/",
        ] {
            assert!(!is_json_media_type(no), "{no}");
        }
    }
}
