//! Prometheus metrics in the text exposition format (version 0.0.4),
//! written by hand: request counts and latency histograms by route, and
//! the outcomes of jobs, syncs and write-backs this process saw, plus the
//! job queue's depth read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use trueup_store::jobs::JobStatus;

use super::AppState;
use crate::app::AppEvent;
use crate::lock::lock;

/// Upper bounds of the latency histogram's buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Jobs counted by status for the queue gauge, at most, per scrape.
const QUEUE_SCAN_LIMIT: u32 = 10_000;

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    /// (method, route, status) → count.
    requests: BTreeMap<(String, String, u16), u64>,
    /// (method, route) → latency.
    latency: BTreeMap<(String, String), Histogram>,
    /// (kind, ok) → count.
    jobs: BTreeMap<(String, bool), u64>,
    /// (source, ok) → count.
    syncs: BTreeMap<(String, bool), u64>,
    /// status → count.
    write_backs: BTreeMap<String, u64>,
    /// Reconcile runs recorded.
    reconciles: u64,
}

/// The process's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    counters: Mutex<Counters>,
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub(crate) fn record_request(
        &self,
        method: &Method,
        route: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        let mut c = lock(&self.counters);
        *c.requests
            .entry((method.to_string(), route.to_owned(), status.as_u16()))
            .or_default() += 1;
        let h = c
            .latency
            .entry((method.to_string(), route.to_owned()))
            .or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    pub(crate) fn observe(&self, event: &AppEvent) {
        let mut c = lock(&self.counters);
        match event {
            AppEvent::JobFinished { kind, ok, .. } => {
                *c.jobs.entry((kind.clone(), *ok)).or_default() += 1;
            }
            AppEvent::SyncFinished { source, ok, .. } => {
                *c.syncs.entry((source.clone(), *ok)).or_default() += 1;
            }
            AppEvent::WriteBack { status, .. } => {
                *c.write_backs.entry(status.clone()).or_default() += 1;
            }
            AppEvent::Reconciled { .. } => c.reconciles += 1,
            AppEvent::SyncProgress { .. } => {}
        }
    }

    fn render(&self, queued: Option<usize>, running: Option<usize>) -> String {
        let c = lock(&self.counters);
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP trueup_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE trueup_http_requests_total counter\n");
        for ((method, route, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "trueup_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(method),
                label(route)
            );
        }
        out.push_str("# HELP trueup_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE trueup_http_request_duration_seconds histogram\n");
        for ((method, route), h) in &c.latency {
            let labels = format!("method=\"{}\",route=\"{}\"", label(method), label(route));
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "trueup_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "trueup_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "trueup_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "trueup_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP trueup_jobs_finished_total Jobs this process finished, by kind and outcome.\n",
        );
        out.push_str("# TYPE trueup_jobs_finished_total counter\n");
        for ((kind, ok), n) in &c.jobs {
            let _ = writeln!(
                out,
                "trueup_jobs_finished_total{{kind=\"{}\",outcome=\"{}\"}} {n}",
                label(kind),
                if *ok { "ok" } else { "error" }
            );
        }
        out.push_str("# HELP trueup_syncs_total Syncs this process ran, by source and outcome.\n");
        out.push_str("# TYPE trueup_syncs_total counter\n");
        for ((source, ok), n) in &c.syncs {
            let _ = writeln!(
                out,
                "trueup_syncs_total{{source=\"{}\",outcome=\"{}\"}} {n}",
                label(source),
                if *ok { "ok" } else { "error" }
            );
        }
        out.push_str(
            "# HELP trueup_write_backs_total Write-back attempts this process made, by outcome.\n",
        );
        out.push_str("# TYPE trueup_write_backs_total counter\n");
        for (status, n) in &c.write_backs {
            let _ = writeln!(
                out,
                "trueup_write_backs_total{{status=\"{}\"}} {n}",
                label(status)
            );
        }
        out.push_str("# HELP trueup_reconciles_total Reconcile runs this process recorded.\n");
        out.push_str("# TYPE trueup_reconciles_total counter\n");
        let _ = writeln!(out, "trueup_reconciles_total {}", c.reconciles);
        out.push_str("# HELP trueup_jobs Jobs in the shared queue by status (all processes).\n");
        out.push_str("# TYPE trueup_jobs gauge\n");
        if let Some(n) = queued {
            let _ = writeln!(out, "trueup_jobs{{status=\"queued\"}} {n}");
        }
        if let Some(n) = running {
            let _ = writeln!(out, "trueup_jobs{{status=\"running\"}} {n}");
        }
        out
    }
}

/// `GET /metrics`.
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
