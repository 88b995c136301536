//! Live events as Server-Sent Events: every [`AppEvent`] this process
//! emits (sync progress, finished syncs and jobs, reconciles,
//! write-backs), one JSON object per `data:` line, the event's kind as the
//! SSE `event:` name.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::app::AppEvent;

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn event_name(event: &AppEvent) -> &'static str {
    match event {
        AppEvent::SyncProgress { .. } => "sync_progress",
        AppEvent::SyncFinished { .. } => "sync_finished",
        AppEvent::Reconciled { .. } => "reconciled",
        AppEvent::JobFinished { .. } => "job_finished",
        AppEvent::WriteBack { .. } => "write_back",
    }
}

/// `GET /api/v1/events`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    responses((status = 200, description = "Server-Sent Events named sync, job, reconcile, write_back, ...; each data line is the event as JSON", content_type = "text/event-stream", body = String)),
)]
pub async fn stream(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.app.events();
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(event) => {
                let data = serde_json::to_string(&event).unwrap_or_default();
                let sse = Event::default().event(event_name(&event)).data(data);
                Some((Ok(sse), receiver))
            }
            Err(RecvError::Lagged(missed)) => {
                let sse = Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{missed}}}"));
                Some((Ok(sse), receiver))
            }
            Err(RecvError::Closed) => None,
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
