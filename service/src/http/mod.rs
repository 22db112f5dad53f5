//! The operators' web dashboard, served by swarmd (`--http ADDR`): one page
//! with every asset embedded in the binary (no CDN, works offline) and a
//! small JSON API it reads, plus server-sent events for live updates.
//!
//! Routes: `/` (the page), `/api/heatmap?top=&columns=`,
//! `/api/affinity?virtual=ID`, `/api/forecast?node=ID&kind=virtual|physical`,
//! `/api/decisions?limit=`, `/api/migrations?limit=`, `/api/events` (SSE:
//! a `decision` event per new decision).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::convert;
use crate::series::{EntityKind, Metric};
use crate::state::{ApiError, Swarm};
use swarm_core::decision::Decision;
use swarm_core::outcome::standing;

use crate::security::Security;

const INDEX: &str = include_str!("index.html");

/// Serves the dashboard on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    swarm: Swarm,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, swarm, Security::default(), shutdown).await
}

/// [`serve`] with TLS and bearer tokens: every route needs a read-only or
/// admin token (the dashboard changes nothing), sent as
/// `Authorization: Bearer <token>`, or once as `?token=` — the page then
/// keeps it in an HttpOnly cookie so its own requests and event stream
/// carry it.
pub async fn serve_with(
    listener: TcpListener,
    swarm: Swarm,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tokens = security.tokens.clone();
    let tls = security.tls.is_some();
    let app = router(swarm.clone()).layer(axum::middleware::from_fn(move |req, next| {
        let (tokens, swarm) = (tokens.clone(), swarm.clone());
        async move { require_token(tokens, swarm, tls, req, next).await }
    }));
    match &security.tls {
        Some(tls) => {
            axum::serve(crate::security::TlsListener::new(listener, tls), app).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
    }
}

const COOKIE: &str = "swarm_token";

/// The dashboard's token check: a header, a `?token=` (remembered in a
/// cookie), or the cookie.
async fn require_token(
    tokens: std::sync::Arc<crate::auth::Tokens>,
    swarm: Swarm,
    tls: bool,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !tokens.enabled() {
        return next.run(req).await;
    }
    let from_query =
        req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token="))).map(str::to_owned);
    let from_cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_owned));
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| from_query.as_ref().or(from_cookie.as_ref()).map(|t| format!("Bearer {t}")));
    // Every dashboard route only reads.
    match tokens.check_access(crate::auth::Access::Read, "the dashboard", header_value.as_deref()) {
        Ok(()) => {
            let mut resp = next.run(req).await;
            if let Some(t) = from_query {
                // Over TLS the cookie must never travel in clear text.
                let secure = if tls { "; Secure" } else { "" };
                let cookie = format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/{secure}");
                if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            resp
        }
        Err(denied) => {
            swarm.telemetry().auth_denied("unauthenticated");
            let body =
                format!("{denied}; open the dashboard as /?token=<token> or send Authorization: Bearer <token>\n");
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        }
    }
}

/// The routes.
pub fn router(swarm: Swarm) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/heatmap", get(heatmap))
        .route("/api/affinity", get(affinity))
        .route("/api/forecast", get(forecast))
        .route("/api/decisions", get(decisions))
        .route("/api/migrations", get(migrations))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .with_state(swarm)
}

/// swarmd's own health for Prometheus (see [`crate::telemetry`]).
async fn metrics(State(s): State<Swarm>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics_text().await)
}

struct Error(StatusCode, String);

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        let code = match &e {
            ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::FailedPrecondition(_) | ApiError::OutOfRange(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Error(code, e.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

#[derive(Deserialize)]
struct HeatmapQ {
    top: Option<usize>,
    columns: Option<usize>,
}

/// The page, with what its first paint shows (the heatmap and both tables,
/// as the API would answer the page's own requests) embedded, so it renders
/// at load without a round trip and without waiting on the event stream.
/// A part that cannot be computed is left out; the page fetches it.
async fn index(State(s): State<Swarm>) -> impl IntoResponse {
    let initial = json!({
        "heatmap": heatmap_json(&s, 40, 60).await.ok(),
        "decisions": decisions_json(&s, 20).await.ok(),
        "migrations": migrations_json(&s, 20),
    });
    // JSON in a <script> element: only "</" could end it early.
    let page = INDEX.replacen("__INITIAL__", &initial.to_string().replace("</", "<\\/"), 1);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page)
}

async fn heatmap_json(s: &Swarm, top: usize, columns: usize) -> Result<Value, Error> {
    let h = s.heatmap(top.clamp(1, 500), columns.clamp(1, 500)).await?;
    let topo = s.topology();
    Ok(json!({
        "heatmap": h,
        "physical_nodes": topo.physical.len(),
        "overload_threshold": s.config().controller.overload_threshold,
        "now_ms": s.now_ms(),
    }))
}

async fn heatmap(State(s): State<Swarm>, Query(q): Query<HeatmapQ>) -> Result<Json<Value>, Error> {
    Ok(Json(heatmap_json(&s, q.top.unwrap_or(40), q.columns.unwrap_or(60)).await?))
}

#[derive(Deserialize)]
struct AffinityQ {
    r#virtual: String,
}

async fn affinity(State(s): State<Swarm>, Query(q): Query<AffinityQ>) -> Result<Json<Value>, Error> {
    let r = convert::affinity(&s.affinity(vec![q.r#virtual], Vec::new(), false).await?);
    let row = r.rows.first().cloned().unwrap_or_default();
    let cells: Vec<Value> = r
        .physical_node_ids
        .iter()
        .zip(&row.scores)
        .map(|(p, sc)| {
            json!({ "physical": p, "score": sc.score, "feasible": sc.feasible,
                    "reason": sc.infeasible_reason, "components": convert::components_json(&sc.components) })
        })
        .collect();
    Ok(Json(
        json!({ "virtual": row.virtual_node_id, "current": row.current_node_id, "weights": r.weights, "cells": cells }),
    ))
}

#[derive(Deserialize)]
struct ForecastQ {
    node: String,
    kind: Option<String>,
}

async fn forecast(State(s): State<Swarm>, Query(q): Query<ForecastQ>) -> Result<Json<Value>, Error> {
    let physical = q.kind.as_deref() == Some("physical");
    let topo = s.topology();
    let (kind, metric) =
        if physical { (EntityKind::Physical, Metric::CpuUsage) } else { (EntityKind::Virtual, Metric::CpuPeak) };
    let overload = s.config().controller.overload_threshold;
    if !crate::validate::known(&topo, kind, &q.node) {
        return Err(ApiError::NotFound(format!("unknown {} node {:?}", kind.name(), q.node)).into());
    }
    let (threshold, label) =
        crate::forecast::threshold(&topo, overload, kind, &q.node, metric).unwrap_or((0.0, "no threshold"));
    let from = s.now_ms() - 6 * 3_600_000;
    let mut history = s.recent_points(kind, metric, &q.node, from).await?;
    let mut metric_used = metric;
    if history.is_empty() && metric == Metric::CpuPeak {
        history = s.recent_points(kind, Metric::CpuUsage, &q.node, from).await?;
        metric_used = Metric::CpuUsage;
    }
    let h = s.forecast_horizon().max(1);
    let (points, message) = if physical {
        // A node's forecast is the sum of its virtual nodes' (the controller's view of it).
        let view = s.cluster_view().await?;
        match view.phys_index.get(q.node.as_str()).map(|&i| &view.phys[i]).filter(|_| view.horizon > 0) {
            Some(p) => (
                (0..view.horizon)
                    .map(|k| {
                        let mean = p.fc_mean[k] + p.fc_extra[k];
                        json!({ "t": s.now_ms() + (k as i64 + 1) * s.step_ms(), "mean": mean, "lower": mean, "upper": p.fc_upper_at(k, 0.0, 0.0, 0.0) })
                    })
                    .collect::<Vec<_>>(),
                None,
            ),
            None => (Vec::new(), Some("no forecast: the model needs more history for this node's virtual nodes".to_string())),
        }
    } else {
        match s.forecast(kind, q.node.clone(), metric_used, h).await {
            Ok(f) => (
                f.points
                    .iter()
                    .map(|p| json!({ "t": p.timestamp_ms, "mean": p.mean, "lower": p.lower, "upper": p.upper }))
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    };
    Ok(Json(json!({
        "node": q.node, "kind": if physical { "physical" } else { "virtual" }, "metric": metric_used.name(),
        "history": history, "forecast": points, "threshold": threshold, "threshold_label": label, "message": message,
    })))
}

#[derive(Deserialize)]
struct LimitQ {
    limit: Option<u64>,
}

/// A decision for the page, with where its outcome stands (`outcome`:
/// pending, not moved, helped, neutral, hurt).
fn decision_json(s: &Swarm, d: &Decision) -> Value {
    let (outcome, summary) = s.read_book(|b| {
        let st = standing(b.get(d.sequence));
        (st.name(), st.summary().to_owned())
    });
    json!({
        "sequence": d.sequence, "decided_at_ms": d.decided_at_ms, "virtual_node_id": d.virt,
        "from": d.from, "to": d.to, "gain": d.gain, "reason": d.reason,
        "kind": convert::decision_kind(d.kind).as_str_name(),
        "expected_overload_at_ms": d.expected_overload_at_ms,
        "outcome": outcome, "outcome_summary": summary,
    })
}

/// The newest `limit` decisions, newest first.
async fn decisions_json(s: &Swarm, limit: u64) -> Result<Value, Error> {
    let limit = limit.clamp(1, 1000);
    let from = s.decisions().last_sequence().saturating_sub(limit - 1).max(1);
    let mut ds = s.list_decisions(from, limit as usize).await?;
    ds.reverse();
    Ok(Value::Array(ds.iter().map(|d| decision_json(s, d)).collect()))
}

async fn decisions(State(s): State<Swarm>, Query(q): Query<LimitQ>) -> Result<Json<Value>, Error> {
    Ok(Json(decisions_json(&s, q.limit.unwrap_or(30)).await?))
}

async fn migrations(State(s): State<Swarm>, Query(q): Query<LimitQ>) -> Json<Value> {
    Json(migrations_json(&s, q.limit.unwrap_or(30)))
}

fn migrations_json(s: &Swarm, limit: u64) -> Value {
    let ms: Vec<_> = s.read_book(|b| b.list(false, None, limit.clamp(1, 1000) as usize).into_iter().cloned().collect());
    Value::Array(
        ms.iter()
            .map(|m| {
                let w = convert::migration(m, false);
                json!({ "id": w.id, "virtual_node_id": w.virtual_node_id, "from": w.from_node_id, "to": w.to_node_id,
                        "phase": m.phase.name(), "since_ms": w.phase_since_ms, "held_by": w.orchestrator_id,
                        "cause": m.history.last().map(|t| t.cause.clone()).unwrap_or_default() })
            })
            .collect(),
    )
}

async fn events(
    State(s): State<Swarm>,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>, Error> {
    let rx = s.decisions().watch(0, s.shutdown_signal()).map_err(|e| ApiError::OutOfRange(e.to_string()))?;
    let stream = ReceiverStream::new(rx)
        .filter_map(|d| d.ok())
        .map(move |d| Ok(Event::default().event("decision").data(decision_json(&s, &d).to_string())));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
