//! Prometheus metrics in the text exposition format, through the `metrics`
//! facade and `metrics-exporter-prometheus`: request counts and latency
//! histograms by route, and the outcomes of jobs, syncs and write-backs this
//! process saw, plus the job queue's depth read at scrape time.
//!
//! Each served app has a recorder of its own (not the process-global one
//! the `metrics` macros use), so several servers in one process — the test
//! suite, `trueup demo` beside its emulators — keep separate counters.

use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{Key, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use trueup_store::jobs::JobStatus;

use super::AppState;
use crate::app::AppEvent;

/// Upper bounds of the latency histogram's buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Jobs counted by status for the queue gauge, at most, per scrape.
const QUEUE_SCAN_LIMIT: u32 = 10_000;

const REQUESTS: &str = "trueup_http_requests_total";
const LATENCY: &str = "trueup_http_request_duration_seconds";
const JOBS_FINISHED: &str = "trueup_jobs_finished_total";
const SYNCS: &str = "trueup_syncs_total";
const WRITE_BACKS: &str = "trueup_write_backs_total";
const RECONCILES: &str = "trueup_reconciles_total";
const QUEUE: &str = "trueup_jobs";

/// Every metric with its help text; the single list the recorder is
/// described from.
const DESCRIPTIONS: [(&str, &str); 7] = [
    (REQUESTS, "HTTP requests answered, by route and status."),
    (LATENCY, "Time to answer, by route."),
    (
        JOBS_FINISHED,
        "Jobs this process finished, by kind and outcome.",
    ),
    (SYNCS, "Syncs this process ran, by source and outcome."),
    (
        WRITE_BACKS,
        "Write-back attempts this process made, by outcome.",
    ),
    (RECONCILES, "Reconcile runs this process recorded."),
    (QUEUE, "Jobs in the shared queue by status (all processes)."),
];

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// The process's counters for one served app.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), &LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            // Only an empty bucket list is refused, and ours is a constant.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        for (name, help) in DESCRIPTIONS {
            let unit = (name == LATENCY).then_some(Unit::Seconds);
            recorder.describe_counter(name.into(), unit, SharedString::const_str(help));
        }
        Self { recorder }
    }
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}

fn outcome(ok: bool) -> String {
    if ok { "ok" } else { "error" }.to_owned()
}

impl Metrics {
    fn count(&self, name: &'static str, labels: &[(&'static str, String)]) {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
            .increment(1);
    }

    pub(crate) fn record_request(
        &self,
        method: &Method,
        route: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let (method, route) = (method.to_string(), route.to_owned());
        self.count(
            REQUESTS,
            &[
                ("method", method.clone()),
                ("route", route.clone()),
                ("status", status.as_u16().to_string()),
            ],
        );
        self.recorder
            .register_histogram(
                &key(LATENCY, &[("method", method), ("route", route)]),
                &METADATA,
            )
            .record(elapsed.as_secs_f64());
    }

    pub(crate) fn observe(&self, event: &AppEvent) {
        match event {
            AppEvent::JobFinished { kind, ok, .. } => self.count(
                JOBS_FINISHED,
                &[("kind", kind.clone()), ("outcome", outcome(*ok))],
            ),
            AppEvent::SyncFinished { source, ok, .. } => self.count(
                SYNCS,
                &[("source", source.clone()), ("outcome", outcome(*ok))],
            ),
            AppEvent::WriteBack { status, .. } => {
                self.count(WRITE_BACKS, &[("status", status.clone())]);
            }
            AppEvent::Reconciled { .. } => self.count(RECONCILES, &[]),
            AppEvent::SyncProgress { .. } => {}
        }
    }

    fn render(&self, queued: Option<usize>, running: Option<usize>) -> String {
        for (status, n) in [("queued", queued), ("running", running)] {
            if let Some(n) = n {
                self.recorder
                    .register_gauge(&key(QUEUE, &[("status", status.to_owned())]), &METADATA)
                    .set(n as f64);
            }
        }
        self.recorder.handle().render()
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)),
)]
pub async fn exposition(State(state): State<AppState>) -> Response {
    let store = state.app.store();
    let queued = store
        .jobs(Some(JobStatus::Queued), QUEUE_SCAN_LIMIT)
        .await
        .ok()
        .map(|j| j.len());
    let running = store
        .jobs(Some(JobStatus::Running), QUEUE_SCAN_LIMIT)
        .await
        .ok()
        .map(|j| j.len());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.shared.metrics.render(queued, running),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_buckets() {
        let m = Metrics::default();
        m.record_request(
            &Method::GET,
            "/api/v1/cards",
            StatusCode::OK,
            Duration::from_millis(3),
        );
        m.observe(&AppEvent::WriteBack {
            card: "k".into(),
            status: "applied".into(),
            message: String::new(),
        });
        let text = m.render(Some(2), None);
        assert!(text.contains(
            "trueup_http_requests_total{method=\"GET\",route=\"/api/v1/cards\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "trueup_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/cards\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "trueup_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/cards\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("trueup_write_backs_total{status=\"applied\"} 1"));
        assert!(text.contains("trueup_jobs{status=\"queued\"} 2"));
    }
}
