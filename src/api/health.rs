//! Spring Boot's health probes, as Fusion's container answers them.
//!
//! - `GET /actuator/health`
//! - `GET /actuator/health/liveness`
//! - `GET /actuator/health/readiness`
//!
//! With `--data-dir`, health and readiness are `DOWN` (503) while the store cannot write,
//! with the reason, so an orchestrator stops sending changes it would refuse; liveness
//! stays `UP`, as a restart would not help and reads still work.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::OwnBody;
use crate::store::Store;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_health))
        .routes(routes!(get_liveness))
        .routes(routes!(get_readiness))
}

/// Spring Boot's health body: `{"status":"UP"}`, or `DOWN` with the failing component.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `UP`, or `DOWN` while `--data-dir` cannot be written.
    #[schema(example = "UP")]
    status: &'static str,
    /// Present when `DOWN`: the component that is down, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<Components>,
}

#[derive(Serialize, ToSchema)]
pub struct Components {
    /// The data directory.
    store: StoreHealth,
}

#[derive(Serialize, ToSchema)]
pub struct StoreHealth {
    #[schema(example = "DOWN")]
    status: &'static str,
    details: StoreDetails,
}

#[derive(Serialize, ToSchema)]
pub struct StoreDetails {
    /// Why the last write failed, e.g. "no space left on device (os error 28)".
    error: String,
}

fn up() -> Json<Health> {
    Json(Health {
        status: "UP",
        components: None,
    })
}

/// UP, or DOWN (503) with the reason while the store cannot write.
fn serving(store: Option<&Store>) -> Response {
    match store.and_then(Store::down) {
        None => up().into_response(),
        Some(cause) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Extension(OwnBody),
            Json(Health {
                status: "DOWN",
                components: Some(Components {
                    store: StoreHealth {
                        status: "DOWN",
                        details: StoreDetails {
                            error: cause.to_string(),
                        },
                    },
                }),
            }),
        )
            .into_response(),
    }
}

/// Up as long as the process answers and, with `--data-dir`, the store can write.
#[utoipa::path(get, path = "/actuator/health", tag = "service",
    responses(
        (status = 200, description = "Up", body = Health),
        (status = 503, description = "Down: --data-dir cannot be written; the reason in components.store", body = Health),
    ))]
async fn get_health(State(store): State<Option<Arc<Store>>>) -> Response {
    serving(store.as_deref())
}

/// Kubernetes' liveness probe: up as long as the process answers.
#[utoipa::path(get, path = "/actuator/health/liveness", tag = "service",
    responses((status = 200, description = "Up", body = Health)))]
async fn get_liveness() -> Json<Health> {
    up()
}

/// Kubernetes' readiness probe: as `/actuator/health`.
#[utoipa::path(get, path = "/actuator/health/readiness", tag = "service",
    responses(
        (status = 200, description = "Up", body = Health),
        (status = 503, description = "Down: --data-dir cannot be written; the reason in components.store", body = Health),
    ))]
async fn get_readiness(State(store): State<Option<Arc<Store>>>) -> Response {
    serving(store.as_deref())
}
