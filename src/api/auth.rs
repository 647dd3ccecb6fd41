//! Access control (`--basic-auth`, `--api-key`, `--admin-token`): credentials for the
//! Fusion routes, a token for the mock's own. Secrets are compared in constant time and never logged or journaled.

use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use utoipa::openapi::OpenApi;

use crate::config::{Config, Credentials, Secret};
use crate::error::{ApiError, Challenge};
use crate::routes::{self, Surface};

/// Who may call what; nothing set means anyone may call anything.
#[derive(Debug, Clone, Default)]
pub struct Access {
    basic: Option<Credentials>,
    api_key: Option<Secret>,
    admin_token: Option<Secret>,
}

impl Access {
    pub fn new(config: &Config) -> Access {
        Access {
            basic: config.basic_auth.clone(),
            api_key: config.api_key.clone(),
            admin_token: config.admin_token.clone(),
        }
    }

    /// Whether any route needs credentials.
    pub fn guards_anything(&self) -> bool {
        self.guards_fusion() || self.admin_token.is_some()
    }

    /// Whether the Fusion routes need credentials.
    fn guards_fusion(&self) -> bool {
        self.basic.is_some() || self.api_key.is_some()
    }

    /// A Fusion request carries valid credentials: either kind is enough.
    fn admits_client(&self, headers: &HeaderMap) -> bool {
        let by_key = self.api_key.as_ref().is_some_and(|key| {
            headers
                .get("x-api-key")
                .is_some_and(|given| same(given.as_bytes(), key.expose().as_bytes()))
        });
        let by_password = self.basic.as_ref().is_some_and(|credentials| {
            authorization(headers, "Basic")
                .and_then(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()
                })
                .is_some_and(|decoded| {
                    let expected =
                        format!("{}:{}", credentials.user, credentials.password.expose());
                    same(&decoded, expected.as_bytes())
                })
        });
        by_key || by_password
    }

    /// A `/_mock` request carries the admin token: as a bearer token, or, for the
    /// dashboard and the event stream (a browser's EventSource cannot send headers), as
    /// `?access_token=`.
    fn admits_admin(&self, token: &Secret, request: &Request) -> bool {
        let bearer = authorization(request.headers(), "Bearer")
            .is_some_and(|given| same(given.as_bytes(), token.expose().as_bytes()));
        let path = request.uri().path();
        let in_query = (path == routes::UI || path == routes::EVENTS)
            && request.uri().query().is_some_and(|query| {
                query.split('&').any(|pair| {
                    pair.strip_prefix("access_token=")
                        .is_some_and(|given| same(given.as_bytes(), token.expose().as_bytes()))
                })
            });
        bearer || in_query
    }
}

/// The credentials of an `Authorization: <scheme> <credentials>` header.
fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credentials) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credentials.trim())
}

/// Equal, in time that does not depend on where they differ.
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

/// The 401 for a request to `surface` without the credentials it needs; `None` when it
/// may go on.
pub fn refusal(access: &Access, surface: Surface, request: &Request) -> Option<Response> {
    let path = request.uri().path();
    if surface.takes_client_credentials()
        && access.guards_fusion()
        && !access.admits_client(request.headers())
    {
        let message = match (&access.basic, &access.api_key) {
            (Some(_), Some(_)) => "send HTTP basic credentials or an x-api-key",
            (Some(_), None) => "send HTTP basic credentials",
            _ => "send an x-api-key",
        };
        return Some(
            ApiError::Unauthorized {
                message: format!("{path} needs credentials: {message}"),
                challenge: Challenge::Basic,
            }
            .into_response(),
        );
    }
    if surface == Surface::Mock
        && let Some(token) = &access.admin_token
        && !access.admits_admin(token, request)
    {
        return Some(
            ApiError::Unauthorized {
                message: format!(
                    "{path} needs the admin token: send Authorization: Bearer <token>"
                ),
                challenge: Challenge::Bearer,
            }
            .into_response(),
        );
    }
    None
}

/// Says in `document` what this process's flags guard: the schemes set (`basicAuth`,
/// `apiKey`, `adminToken`), on each guarded operation the credentials it takes (any one
/// of them) and its 401. Without flags the document is left as it is: everything is open.
pub fn document(access: &Access, document: &mut OpenApi) {
    use utoipa::openapi::security::{
        ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
    };

    let mut client = Vec::new();
    let mut schemes = Vec::new();
    if access.basic.is_some() {
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some("The user and password of --basic-auth".to_owned());
        schemes.push(("basicAuth", SecurityScheme::Http(basic)));
        client.push(SecurityRequirement::new("basicAuth", Vec::<String>::new()));
    }
    if access.api_key.is_some() {
        let key = ApiKeyValue::with_description("x-api-key", "The key of --api-key");
        schemes.push(("apiKey", SecurityScheme::ApiKey(ApiKey::Header(key))));
        client.push(SecurityRequirement::new("apiKey", Vec::<String>::new()));
    }
    let admin = access.admin_token.as_ref().map(|_| {
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "The token of --admin-token; the dashboard and /_mock/events also take it \
             as ?access_token="
                .to_owned(),
        );
        schemes.push(("adminToken", SecurityScheme::Http(bearer)));
        vec![SecurityRequirement::new("adminToken", Vec::<String>::new())]
    });
    if schemes.is_empty() {
        return;
    }
    let components = document.components.get_or_insert_with(Default::default);
    for (name, scheme) in schemes {
        components.add_security_scheme(name, scheme);
    }
    for (path, item) in document.paths.paths.iter_mut() {
        let surface = Surface::of(path);
        let (requirements, challenge, refused) =
            if surface.takes_client_credentials() && !client.is_empty() {
                (
                    &client,
                    Challenge::Basic,
                    "The credentials are missing or wrong",
                )
            } else if let Some(admin) = admin.as_ref().filter(|_| surface == Surface::Mock) {
                (
                    admin,
                    Challenge::Bearer,
                    "The admin token is missing or wrong",
                )
            } else {
                continue;
            };
        for operation in super::operations_mut(item) {
            operation.security = Some(requirements.clone());
            operation
                .responses
                .responses
                .insert("401".to_owned(), unauthorized(refused, challenge).into());
        }
    }
}

/// A documented 401: the error body, and the challenge in `WWW-Authenticate`.
fn unauthorized(description: &str, challenge: Challenge) -> utoipa::openapi::Response {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{Content, Header, Ref, ResponseBuilder};

    let mut header = Header::new(ObjectBuilder::new().schema_type(Type::String));
    header.description = Some(challenge.header_value().to_owned());
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .header("WWW-Authenticate", header)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let access = Access {
            basic: None,
            api_key: Some(Secret::new("hunter2")),
            admin_token: Some(Secret::new("s3cret")),
        };
        let shown = format!("{access:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
