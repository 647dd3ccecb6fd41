//! Spring Boot's health probes, as Fusion's container answers them.
//!
//! - `GET /actuator/health`
//! - `GET /actuator/health/liveness`
//! - `GET /actuator/health/readiness`

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/actuator/health", get(get_health))
        .route("/actuator/health/liveness", get(get_health))
        .route("/actuator/health/readiness", get(get_health))
}

/// Up as long as the process answers: the registry lives in memory and cannot be down.
async fn get_health() -> Json<Value> {
    Json(json!({"status": "UP"}))
}
