//! Jobs: sync and reconcile now (enqueued as jobs), the job list and
//! the schedules.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use trueup_store::jobs::{Job, JobId, JobStatus, Schedule as StoredSchedule};

use crate::jobs::{self, JobSpec};
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::cards::ListQuery;
use crate::web::error::{ApiError, ApiResult, JsonBody, OptionalJsonBody, QueryParams};

/// "Sync now".
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// `quick`: sync the sources; `full` (default): sync them, then
    /// reconcile.
    #[serde(default)]
    pub mode: Option<String>,
    /// Only this source (PSA plugin id or vendor integration id); `mode`
    /// is then ignored.
    #[serde(default)]
    pub source: Option<String>,
}

/// A job enqueued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Enqueued {
    /// The job.
    #[schema(value_type = Object)]
    pub job: Job,
}

async fn enqueue(
    state: &AppState,
    spec: &JobSpec,
    by: &str,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    let id = jobs::enqueue(&state.app, spec, by).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Enqueued {
            job: state.app.store().job(id).await?,
        }),
    ))
}

/// `POST /api/v1/syncs`.
#[utoipa::path(
    post,
    path = "/api/v1/syncs",
    tag = "jobs",
    request_body = SyncRequest,
    responses((status = 202, description = "The job, queued", body = Enqueued), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn sync_now(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<SyncRequest>,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    let spec = match (&request.source, request.mode.as_deref()) {
        (Some(source), _) => JobSpec::SyncSource {
            source: source.clone(),
        },
        (None, Some("quick")) => JobSpec::SyncQuick,
        (None, Some("full") | None) => JobSpec::SyncFull,
        (None, Some(other)) => {
            return Err(ApiError::BadRequest(format!(
                "mode {other:?} is not quick or full"
            )));
        }
    };
    enqueue(&state, &spec, &caller.name).await
}

/// "Reconcile now", optionally as of an earlier date.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// The reconcile date, `YYYY-MM-DD`, today or earlier (default: today
    /// in the MSP's time zone when the job runs): a month can be
    /// reconciled after it ends, with that month's periods, proration and
    /// effective dates.
    #[serde(default)]
    pub as_of: Option<String>,
}

/// `POST /api/v1/reconcile`. The body is optional: none (or `{}`)
/// reconciles as of today.
#[utoipa::path(
    post,
    path = "/api/v1/reconcile",
    tag = "jobs",
    request_body(content = Option<ReconcileRequest>, description = "Optional: `{\"as_of\": \"YYYY-MM-DD\"}`"),
    responses(
        (status = 202, description = "The job, queued", body = Enqueued),
        (status = 400, description = "The body is not the JSON described", body = crate::web::openapi::ErrorBody),
        (status = 415, description = "A body was sent without Content-Type: application/json", body = crate::web::openapi::ErrorBody),
        (status = 422, description = "as_of is not a real date in the form YYYY-MM-DD, or lies after today", body = crate::web::openapi::ErrorBody),
    ),
)]
pub async fn reconcile_now(
    State(state): State<AppState>,
    Caller(caller): Caller,
    OptionalJsonBody(request): OptionalJsonBody<ReconcileRequest>,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    let as_of = request
        .as_of
        .as_deref()
        .map(|text| crate::app::reconcile::as_of_date(text, state.app.today()))
        .transpose()
        .map_err(ApiError::Unprocessable)?;
    enqueue(&state, &JobSpec::Reconcile { as_of }, &caller.name).await
}

/// `GET /api/v1/jobs`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    params(crate::web::cards::ListQuery),
    responses((status = 200, description = "Jobs (id, kind, status, progress, times, error), newest first", body = Vec<Object>), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn jobs(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<Job>>> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            serde_json::from_value::<JobStatus>(serde_json::Value::String(s.to_owned())).map_err(
                |_| {
                    ApiError::BadRequest(format!(
                        "{s:?} is not a job status (queued, running, done, failed)"
                    ))
                },
            )
        })
        .transpose()?;
    Ok(Json(state.app.store().jobs(status, query.limit()).await?))
}

/// `GET /api/v1/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job id")),
    responses((status = 200, description = "The job (id, kind, status, progress, times, error)", body = Object), (status = 404, description = "No such job", body = crate::web::openapi::ErrorBody)),
)]
pub async fn job(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Job>> {
    Ok(Json(state.app.store().job(JobId(id)).await?))
}

/// `GET /api/v1/schedules`.
#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    tag = "jobs",
    responses((status = 200, description = "Schedules (name, kind, spec, source, enabled, next run)", body = Vec<Object>)),
)]
pub async fn schedules(State(state): State<AppState>) -> ApiResult<Json<Vec<StoredSchedule>>> {
    Ok(Json(state.app.store().schedules().await?))
}

/// A schedule to create or change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// `sync.full`, `sync.quick`, `sync.source` or `reconcile`.
    pub kind: String,
    /// When, e.g. `"monthly on day 28 at 18:00"` (the MSP's time zone).
    pub spec: String,
    /// For `sync.source`: the source.
    #[serde(default)]
    pub source: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PUT /api/v1/schedules/{name}`.
#[utoipa::path(
    put,
    path = "/api/v1/schedules/{name}",
    tag = "jobs",
    params(("name" = String, Path, description = "The schedule name")),
    request_body = ScheduleRequest,
    responses((status = 200, description = "The stored schedule (name, kind, spec, source, enabled, next run)", body = Object), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn put_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> ApiResult<Json<StoredSchedule>> {
    if name.trim().is_empty() {
        return Err(ApiError::BadRequest("a schedule needs a name".into()));
    }
    let payload = match &request.source {
        Some(source) => serde_json::json!({ "source": source }),
        None => serde_json::json!({}),
    };
    let spec = JobSpec::from_stored(0, &request.kind, &payload)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = state.app.now();
    let next_run_at =
        jobs::next_run(&state.app, &request.spec, now).map_err(ApiError::BadRequest)?;
    let schedule = StoredSchedule {
        name: name.clone(),
        kind: spec.kind().to_owned(),
        payload: spec.payload(),
        spec: crate::schedule::Schedule::parse(&request.spec)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .to_string(),
        enabled: request.enabled.unwrap_or(true),
        next_run_at,
        last_enqueued_at: None,
        last_job: None,
    };
    state.app.store().put_schedule(&schedule, now).await?;
    state
        .app
        .audit(
            &caller.name,
            "schedule.put",
            &format!("schedule:{name}"),
            serde_json::json!({ "kind": schedule.kind, "spec": schedule.spec, "enabled": schedule.enabled }),
        )
        .await;
    let stored = state
        .app
        .store()
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::Internal(format!("schedule {name:?} vanished")))?;
    Ok(Json(stored))
}

/// `DELETE /api/v1/schedules/{name}`.
#[utoipa::path(
    delete,
    path = "/api/v1/schedules/{name}",
    tag = "jobs",
    params(("name" = String, Path, description = "The schedule name")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such schedule", body = crate::web::openapi::ErrorBody)),
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.app.store().delete_schedule(&name).await? {
        return Err(ApiError::NotFound(format!("no schedule {name:?}")));
    }
    state
        .app
        .audit(
            &caller.name,
            "schedule.delete",
            &format!("schedule:{name}"),
            serde_json::json!({}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
