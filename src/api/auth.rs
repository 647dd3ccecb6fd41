//! The 401s of access control: a request without the credentials its surface needs is
//! answered here, and the OpenAPI document says which credentials each route takes.
//! What the credentials are and who may call what, `access` decides.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::OpenApi;

use super::document::operations_mut;
use crate::access::{Access, Denied};
use crate::error::{ApiError, Challenge};
use crate::routes::Surface;

/// The 401 for a request to `surface` without the credentials it needs; `None` when it
/// may go on.
pub fn refusal(access: &Access, surface: Surface, request: &Request) -> Option<Response> {
    let uri = request.uri();
    let denied = access
        .check(surface, uri.path(), uri.query(), request.headers())
        .err()?;
    let path = uri.path();
    let (message, challenge) = match denied {
        Denied::Client(what) => (
            format!("{path} needs credentials: {what}"),
            Challenge::Basic,
        ),
        Denied::Admin => (
            format!("{path} needs the admin token: send Authorization: Bearer <token>"),
            Challenge::Bearer,
        ),
    };
    Some(ApiError::Unauthorized { message, challenge }.into_response())
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
    if access.takes_basic() {
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some("The user and password of --basic-auth".to_owned());
        schemes.push(("basicAuth", SecurityScheme::Http(basic)));
        client.push(SecurityRequirement::new("basicAuth", Vec::<String>::new()));
    }
    if access.takes_api_key() {
        let key = ApiKeyValue::with_description("x-api-key", "The key of --api-key");
        schemes.push(("apiKey", SecurityScheme::ApiKey(ApiKey::Header(key))));
        client.push(SecurityRequirement::new("apiKey", Vec::<String>::new()));
    }
    let admin = access.takes_admin_token().then(|| {
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
        for operation in operations_mut(item) {
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
