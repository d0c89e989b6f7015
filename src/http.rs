//! HTTP: `/metrics` (Prometheus text format), `/livez` (the processing loop is turning — never
//! "is Kafka up", or an orchestrator would restart-loop the pod while brokers are down) and
//! `/readyz` (configuration loaded, assignment received, windows rebuilt).

use crate::lifecycle::{Health, Shutdown};
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

/// Asks a running instance for `path` (`/livez`, `/readyz`, `/metrics`) with a plain HTTP/1.1
/// GET and returns the status code and body (at most 4 MiB): the container health check
/// (`dialguard health`), which must work in a runtime image that has no shell or curl.
pub fn probe(
    addr: std::net::SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> std::io::Result<(u16, String)> {
    request(addr, "GET", path, None, timeout)
}

/// One plain HTTP/1.1 request (a JSON body with POST), the connection closed after it: the
/// status code and body (at most 4 MiB). For [`probe`] and the demo's dialer asking
/// `/v1/check`.
pub fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    timeout: std::time::Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = json {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.take(4 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the answer is not an HTTP response",
            )
        })?;
    Ok((code, body.trim_end().to_owned()))
}
