//! Operations: health, Prometheus metrics, request observation, JSON 404s.
//!
//! The request log records method, route template, status and latency only: never
//! the query string (tokens may travel there), headers, or the client address.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::ApiError;
use crate::AppState;

/// Handle on the process-wide Prometheus recorder.
#[derive(Clone)]
pub(crate) struct Metrics(PrometheusHandle);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

impl Metrics {
    /// Install the recorder once per process (several apps may share it in tests).
    pub(crate) fn install() -> Metrics {
        let handle = HANDLE.get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        });
        Metrics(handle.clone())
    }

    /// The Prometheus text.
    pub(crate) fn render(&self) -> String {
        self.0.render()
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.db().ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "database unavailable" })),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.0.metrics.0.render(),
    )
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// Count, time and log each request by route template.
pub(crate) async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let labels = [
        ("method", method.to_string()),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("gremium_http_requests_total", &labels).increment(1);
    metrics::histogram!("gremium_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    tracing::debug!(%method, %route, status, latency_us = elapsed.as_micros() as u64, "request");
    response
}
