//! HTTP: `/metrics` (Prometheus text format), `/livez` (the processing loop is turning — never
//! "is Kafka up", or an orchestrator would restart-loop the pod while brokers are down) and
//! `/readyz` (configuration loaded, assignment received, windows rebuilt).

use crate::service::{Health, Shutdown};
use crate::telemetry::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Serves until `shutdown` is triggered.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: Shutdown,
) {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    let stop = async move { shutdown.wait().await };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(error = %e, "http server stopped");
    }
}

async fn metrics_page(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn livez(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.alive() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stalled: the processing loop has not turned for {:.1}s\n",
                s.health.since_beat().as_secs_f64()
            ),
        )
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let state = s.health.state();
    if s.health.ready() {
        (StatusCode::OK, format!("ready: {state}\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {state}\n"),
        )
    }
}
