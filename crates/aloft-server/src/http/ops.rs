//! Health, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, description = "not ready")))]
async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.ping().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// Prometheus metrics: requests, latencies, devices and deployments by status.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics_text(State(st): State<AppState>) -> Response {
    let Some(handle) = &st.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are off\n").into_response();
    };
    if let Ok(counts) = st.store.device_counts().await {
        for s in ["pending", "accepted", "rejected", "preauthorized", "noauth"] {
            let n = counts.get(s).copied().unwrap_or(0);
            #[expect(clippy::cast_precision_loss, reason = "device counts fit f64 exactly")]
            metrics::gauge!("aloft_devices", "status" => s).set(n as f64);
        }
    }
    if let Ok(counts) = st.store.deployment_counts().await {
        for s in ["pending", "inprogress", "finished"] {
            let n = counts.get(s).copied().unwrap_or(0);
            #[expect(
                clippy::cast_precision_loss,
                reason = "deployment counts fit f64 exactly"
            )]
            metrics::gauge!("aloft_deployments", "status" => s).set(n as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
