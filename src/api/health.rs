//! Spring Boot's health probes, as Fusion's container answers them.
//!
//! - `GET /actuator/health`
//! - `GET /actuator/health/liveness`
//! - `GET /actuator/health/readiness`

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_health))
        .routes(routes!(get_liveness))
        .routes(routes!(get_readiness))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `UP`: the registry lives in memory and cannot be down.
    #[schema(example = "UP")]
    status: &'static str,
}

fn up() -> Json<Health> {
    Json(Health { status: "UP" })
}

/// Up as long as the process answers.
#[utoipa::path(get, path = "/actuator/health", tag = "service",
    responses((status = 200, description = "Up", body = Health)))]
async fn get_health() -> Json<Health> {
    up()
}

/// Kubernetes' liveness probe.
#[utoipa::path(get, path = "/actuator/health/liveness", tag = "service",
    responses((status = 200, description = "Up", body = Health)))]
async fn get_liveness() -> Json<Health> {
    up()
}

/// Kubernetes' readiness probe.
#[utoipa::path(get, path = "/actuator/health/readiness", tag = "service",
    responses((status = 200, description = "Up", body = Health)))]
async fn get_readiness() -> Json<Health> {
    up()
}
