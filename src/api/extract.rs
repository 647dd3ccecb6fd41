//! Extractors whose rejections are [`ApiError`]s, so a bad request gets the same JSON
//! error body as every other refusal.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::BodyLimit;
use crate::error::ApiError;
use crate::model::{Problem, ProblemKind};

/// A request body read whole within `--max-body-bytes`, and what its `Content-Type` said.
///
/// A body that is not declared as JSON is still read: the order of API.md section 3 puts
/// a malformed body (400) before a wrong media type (415), and a 415 lists the body's
/// other problems too.
pub struct JsonBody {
    pub bytes: Bytes,
    content_type: Option<HeaderValue>,
}

impl JsonBody {
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
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    let BodyLimit(limit) = BodyLimit::from_ref(state);
                    ApiError::PayloadTooLarge(format!(
                        "the body is larger than the limit of {limit} bytes (--max-body-bytes)"
                    ))
                } else {
                    ApiError::MalformedJson(format!("the body could not be read: {rejection}"))
                }
            })?;
        Ok(JsonBody {
            bytes,
            content_type,
        })
    }
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

/// Query parameters; a parameter that cannot be read is a 400 naming it.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::BadRequest {
                message: rejection.body_text(),
                violations: Vec::new(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_media_type;

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
