//! The dashboard: one page, served by the binary, no build step.
//!
//! - `GET /_mock/ui`: the page
//! - `GET /`: redirects to it
//!
//! Under `/sessions/{id}` the page shows that session, and a picker goes from one to
//! another.

use axum::Extension;
use axum::extract::RawQuery;
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::InSession;
use crate::app::AppState;
use crate::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dashboard))
        .routes(routes!(home))
}

const PAGE: &str = include_str!("ui/index.html");

/// The dashboard: the runs, newest first, their histories, live updates.
#[utoipa::path(get, path = routes::UI, tag = "mock",
    params(("access_token" = Option<String>, Query, description = "The admin token, when --admin-token is set")),
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
async fn dashboard() -> impl IntoResponse {
    // The page builds its DOM from the API, with text nodes only; it needs no more.
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
        )],
        Html(PAGE),
    )
}

/// Redirects to the dashboard, keeping the query (an access token).
#[utoipa::path(get, path = "/", tag = "mock",
    responses((status = 303, description = "To /_mock/ui")))]
async fn home(session: Option<Extension<InSession>>, RawQuery(query): RawQuery) -> Redirect {
    // Under a session, to that session's page.
    let base = session.map_or(String::new(), |Extension(InSession(session))| {
        format!("{}{}", routes::SESSION_PREFIX, session.id)
    });
    match query {
        Some(query) => Redirect::to(&format!("{base}{}?{query}", routes::UI)),
        None => Redirect::to(&format!("{base}{}", routes::UI)),
    }
}
