//! The one error type of the service, its status codes, and its Spring-style JSON body
//! (docs/contract.md, Errors).
//!
//! A handler returns an [`ApiError`]; its response carries an [`ErrorReport`] and no body
//! yet. The middleware, through [`render`], which knows the request's method and path,
//! writes the body. It also turns every other error response (the router's 404 and 405,
//! the timeout's 408, an extractor's plain-text rejection) into the same shape, so no
//! error leaves the service in any other form.

use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::clock::Clock;
use crate::model::time::rfc3339;
use crate::model::{Problem, ProblemKind, Violation};

/// Everything a request can run into.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not one JSON object (syntax, UTF-8, depth), or cannot be read.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 400: a query parameter or a path segment cannot be read.
    #[error("{message}")]
    BadRequest {
        message: String,
        violations: Vec<Violation>,
    },
    /// 404: no such run, or no such route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the request took longer than the server allows.
    #[error("{0}")]
    Timeout(String),
    /// 408: a wait ran out before the run got where it was awaited; `run` is the run as
    /// it was then, when it exists.
    #[error("{message}")]
    WaitTimedOut {
        message: String,
        run: Option<Box<RawValue>>,
    },
    /// 409 `invalid_transition`: the transition table forbids the new state.
    #[error("{message}")]
    InvalidTransition {
        message: String,
        violations: Vec<Violation>,
    },
    /// 409 `conflict`: the update changes what identifies the run.
    #[error("{message}")]
    Conflict {
        message: String,
        violations: Vec<Violation>,
    },
    /// 413: the body is larger than `--max-body-bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not declared as JSON.
    #[error("{message}")]
    UnsupportedMediaType {
        message: String,
        violations: Vec<Violation>,
    },
    /// 422: a field is missing or malformed, or the times do not add up.
    #[error("{message}")]
    ValidationFailed {
        message: String,
        violations: Vec<Violation>,
    },
    /// 507: the registry is full of runs that have not ended, so none can be evicted.
    #[error(
        "the registry holds {max_runs} runs (--max-runs) and none has ended, so none can be \
         evicted for a new run"
    )]
    StorageFull { max_runs: usize },
    /// 409: `/_mock/verify` found expectations that do not hold; a violation for each.
    #[error("{message}")]
    VerificationFailed {
        message: String,
        violations: Vec<Violation>,
    },
    /// 507: `--max-sessions` sessions are live; one must go before another is made.
    #[error(
        "{max_sessions} sessions are live (--max-sessions); delete one, or let one expire, \
         before making another"
    )]
    SessionsFull { max_sessions: usize },
    /// 503: `--data-dir` cannot be written (a full disk, an I/O error, lost permission),
    /// so the change was made neither on disk nor in memory; the message says why.
    #[error("the change was not made: {0}")]
    StorageUnavailable(String),
    /// A fault rule's status: `injected_fault`, with `Retry-After` when the rule says.
    #[error("injected fault: rule {rule} answers {status} (see /_mock/faults)")]
    InjectedFault {
        rule: u64,
        status: StatusCode,
        retry_after: Option<std::time::Duration>,
    },
    /// 401: the route needs credentials the request lacks.
    #[error("{message}")]
    Unauthorized {
        message: String,
        challenge: Challenge,
    },
    /// 500: a bug; the message says what.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// 422 `validation_failed` with these violations, the message `what` and the first
    /// of them: `the fault rule is not valid: times: must be at least 1`.
    pub fn invalid(what: &str, violations: Vec<Violation>) -> ApiError {
        let first = violations
            .first()
            .map_or(String::new(), |v| format!("{}: {}", v.field, v.message));
        ApiError::ValidationFailed {
            message: format!("{what}: {first}"),
            violations,
        }
    }

    /// The refusal of an update with these problems: the first kind decides the status and
    /// `code`, the first problem of that kind the message, and every problem is listed.
    pub fn refusal(mut problems: Vec<Problem>) -> ApiError {
        problems.sort_by_key(|p| p.kind);
        let Some(first) = problems.first() else {
            return ApiError::Internal("an update was refused without a problem".to_owned());
        };
        let (kind, mut message) = (first.kind, first.headline().to_owned());
        if problems.len() > 1 {
            message.push_str(&format!(" ({} problems in all)", problems.len()));
        }
        let violations = problems.into_iter().map(|p| p.violation).collect();
        match kind {
            ProblemKind::MediaType => ApiError::UnsupportedMediaType {
                message,
                violations,
            },
            ProblemKind::Form | ProblemKind::Timing => ApiError::ValidationFailed {
                message,
                violations,
            },
            ProblemKind::Transition => ApiError::InvalidTransition {
                message,
                violations,
            },
            ProblemKind::Identity => ApiError::Conflict {
                message,
                violations,
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    pub fn code(&self) -> ErrorCode {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, ErrorCode::MalformedJson),
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, ErrorCode::ValidationFailed),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed)
            }
            ApiError::Timeout(_) | ApiError::WaitTimedOut { .. } => {
                (StatusCode::REQUEST_TIMEOUT, ErrorCode::Timeout)
            }
            ApiError::InvalidTransition { .. } => {
                (StatusCode::CONFLICT, ErrorCode::InvalidTransition)
            }
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::VerificationFailed { .. } => {
                (StatusCode::CONFLICT, ErrorCode::VerificationFailed)
            }
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
            }
            ApiError::UnsupportedMediaType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            ApiError::ValidationFailed { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationFailed,
            ),
            ApiError::StorageFull { .. } | ApiError::SessionsFull { .. } => {
                (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::StorageFull)
            }
            ApiError::StorageUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StorageUnavailable,
            ),
            ApiError::InjectedFault { status, .. } => (*status, ErrorCode::InjectedFault),
            ApiError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
        }
    }

    pub(crate) fn violations(&self) -> Vec<Violation> {
        let one = |field: &str| {
            vec![Violation {
                field: field.to_owned().into(),
                message: self.to_string().into(),
            }]
        };
        match self {
            ApiError::BadRequest { violations, .. }
            | ApiError::InvalidTransition { violations, .. }
            | ApiError::Conflict { violations, .. }
            | ApiError::UnsupportedMediaType { violations, .. }
            | ApiError::ValidationFailed { violations, .. }
            | ApiError::VerificationFailed { violations, .. } => violations.clone(),
            ApiError::MalformedJson(_) | ApiError::PayloadTooLarge(_) => one("body"),
            ApiError::StorageFull { .. } => one("jobId"),
            ApiError::SessionsFull { .. } => one("name"),
            ApiError::NotFound(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::Timeout(_)
            | ApiError::WaitTimedOut { .. }
            | ApiError::InjectedFault { .. }
            | ApiError::Unauthorized { .. }
            | ApiError::StorageUnavailable(_)
            | ApiError::Internal(_) => Vec::new(),
        }
    }

    /// The error for a response some other layer made: the router's 404 and 405, the
    /// timeout's 408, a rejection's plain text.
    fn for_foreign(status: StatusCode, method: &Method, path: &str, text: String) -> ApiError {
        let text = if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text.trim().to_owned()
        };
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound(format!("no route for {method} {path}")),
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::MethodNotAllowed(format!("{method} is not allowed on {path}"))
            }
            StatusCode::REQUEST_TIMEOUT => ApiError::Timeout(format!(
                "{method} {path} took longer than the server's request timeout"
            )),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(text),
            s if s.is_client_error() => ApiError::BadRequest {
                message: text,
                violations: Vec::new(),
            },
            _ => ApiError::Internal(text),
        }
    }
}

/// How a 401 asks for credentials (`WWW-Authenticate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer,
}

impl Challenge {
    /// The `WWW-Authenticate` value.
    pub fn header_value(self) -> &'static str {
        match self {
            Challenge::Basic => "Basic realm=\"job-launcher-mock\", charset=\"UTF-8\"",
            Challenge::Bearer => "Bearer realm=\"job-launcher-mock\"",
        }
    }
}

/// What an [`ApiError`] leaves on its response for [`render`] to write out.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    pub code: ErrorCode,
    pub message: String,
    pub violations: Vec<Violation>,
    /// The run a timed-out wait was waiting on, as it was then.
    pub run: Option<Box<RawValue>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let report = ErrorReport {
            code: self.code(),
            message: self.to_string(),
            violations: self.violations(),
            run: match &self {
                ApiError::WaitTimedOut { run, .. } => run.clone(),
                _ => None,
            },
        };
        let mut response = self.status().into_response();
        if let ApiError::InjectedFault {
            retry_after: Some(retry_after),
            ..
        } = &self
        {
            let seconds = retry_after_seconds(*retry_after);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let ApiError::Unauthorized { challenge, .. } = &self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge.header_value()),
            );
        }
        response.extensions_mut().insert(report);
        response
    }
}

/// `Retry-After` in whole seconds, rounded up.
fn retry_after_seconds(retry_after: std::time::Duration) -> u64 {
    retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)
}

/// The body of every error answer: Spring Boot's fields, then ours (the contract, Errors).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// When the answer was made, RFC 3339.
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The HTTP status code.
    pub status: u16,
    /// The status code's reason phrase.
    pub error: String,
    pub message: String,
    /// The request's path.
    pub path: String,
    pub code: ErrorCode,
    /// Every problem found, not only the first.
    pub violations: Vec<Violation>,
    /// On a timed-out wait, the run as it was then (absent when it does not exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub run: Option<Box<RawValue>>,
}

/// The `code` of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    UnsupportedMediaType,
    PayloadTooLarge,
    ValidationFailed,
    InvalidTransition,
    Conflict,
    NotFound,
    MethodNotAllowed,
    Unauthorized,
    StorageFull,
    StorageUnavailable,
    InjectedFault,
    Timeout,
    VerificationFailed,
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::MalformedJson,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ValidationFailed,
        ErrorCode::InvalidTransition,
        ErrorCode::Conflict,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Unauthorized,
        ErrorCode::StorageFull,
        ErrorCode::StorageUnavailable,
        ErrorCode::InjectedFault,
        ErrorCode::Timeout,
        ErrorCode::VerificationFailed,
        ErrorCode::InternalError,
    ];

    /// The code as the error body spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::InjectedFault => "injected_fault",
            ErrorCode::Timeout => "timeout",
            ErrorCode::VerificationFailed => "verification_failed",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

/// How much of a foreign error body is read to use as its message.
const FOREIGN_BODY_LIMIT: usize = 16 * 1024;

/// Whether an answer is an error, whose body [`render`] writes.
pub fn is_refusal(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<OwnBody>().is_none()
}

/// On an answer with an error status whose body is the route's own and must be sent as
/// it is: a health probe's `DOWN`, in Spring Boot's shape rather than an error body.
#[derive(Debug, Clone, Copy)]
pub struct OwnBody;

/// Writes the JSON body of an error answer to `method path` (see the module docs); any
/// other answer is given back as it is.
pub async fn render(clock: &Clock, method: &Method, path: &str, response: Response) -> Response {
    if !is_refusal(&response) {
        return response;
    }
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    let report = match parts.extensions.remove::<ErrorReport>() {
        Some(report) => report,
        None => {
            let text = to_bytes(body, FOREIGN_BODY_LIMIT)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let error = ApiError::for_foreign(status, method, path, text);
            let mut report = ErrorReport {
                code: error.code(),
                message: error.to_string(),
                violations: error.violations(),
                run: None,
            };
            if let Some(allow) = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
            {
                report.message.push_str(&format!("; allowed: {allow}"));
            }
            report
        }
    };
    tracing::info!(
        %method,
        path,
        status = status.as_u16(),
        code = report.code.as_str(),
        reason = %report.message,
        violations = %serde_json::to_string(&report.violations).unwrap_or_default(),
        "refused"
    );
    let body = ErrorBody {
        timestamp: rfc3339(clock.now()),
        status: status.as_u16(),
        error: status.canonical_reason().unwrap_or("Error").to_owned(),
        message: report.message.clone(),
        path: path.to_owned(),
        code: report.code,
        violations: report.violations.clone(),
        run: report.run.clone(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    // Left on the answer for the journal, which records its code.
    parts.extensions.insert(report);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{ErrorCode, retry_after_seconds};

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::ZERO), 0);
    }

    #[test]
    fn codes_are_spelled_the_same_everywhere() {
        for code in ErrorCode::ALL {
            let serialized = serde_json::to_value(code).ok();
            assert_eq!(
                serialized.as_ref().and_then(|v| v.as_str()),
                Some(code.as_str())
            );
        }
    }
}
