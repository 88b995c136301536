//! Background jobs: syncs and reconciles run as rows of the store's job
//! queue, by a worker loop in every `trueup serve` process, enqueued on
//! demand (the API's "sync now") or by schedules.
//!
//! Exactly once: the store's leased queue hands each due job to one worker
//! under a lease the worker extends with heartbeats while the job runs
//! ([`crate::queue_worker`]); a worker that dies leaves its lease to
//! expire and the job is claimed again (or failed, on its last attempt).
//! Schedules are advanced with a compare-and-set in the transaction that
//! enqueues their job, so any number of processes ticking at once enqueue
//! each due run once.
//!
//! Job kinds (`kind`, payload):
//! - `sync.full` `{}`: sync the PSA and every vendor, then reconcile;
//! - `sync.quick` `{}`: sync the PSA and every vendor, no reconcile;
//! - `sync.source` `{"source": ID}`: sync one source (PSA plugin id or
//!   vendor integration id);
//! - `reconcile` `{}`: reconcile the stored data as of today.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_store::jobs::{Job, JobId, JobStatus, NewJob, Schedule as StoredSchedule};

use crate::app::{App, AppError, AppEvent};
use crate::backoff::Backoff;
use crate::config::ScheduleConfig;
use crate::queue_worker::{self, QueueWorker};
use crate::schedule::Schedule;

/// Every job kind the worker runs.
pub const JOB_KINDS: &[&str] = &["sync.full", "sync.quick", "sync.source", "reconcile"];

/// How long a claimed job stays with its worker without a heartbeat.
pub const JOB_LEASE: Duration = Duration::from_secs(120);

/// How often a running job's lease is extended (well inside [`JOB_LEASE`]).
pub const JOB_HEARTBEAT: Duration = Duration::from_secs(30);

/// How often an idle worker looks for due jobs.
pub const JOB_IDLE_POLL: Duration = Duration::from_millis(500);

/// How often the scheduler enqueues due schedules and recovers jobs whose
/// worker died.
pub const SCHEDULER_TICK: Duration = Duration::from_secs(15);

/// Attempts an on-demand job gets (a schedule's get
/// [`trueup_store::jobs::SCHEDULED_JOB_ATTEMPTS`]).
pub const ON_DEMAND_ATTEMPTS: u32 = 2;

/// First retry delay of a failed job; doubles per attempt up to
/// [`MAX_JOB_RETRY_DELAY`].
pub const FIRST_JOB_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Longest retry delay of a failed job.
pub const MAX_JOB_RETRY_DELAY: Duration = Duration::from_secs(30 * 60);

/// A job to run, as the API and schedules describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// `sync.full`.
    #[serde(rename = "sync.full")]
    SyncFull,
    /// `sync.quick`.
    #[serde(rename = "sync.quick")]
    SyncQuick,
    /// `sync.source`.
    #[serde(rename = "sync.source")]
    SyncSource {
        /// The PSA plugin id or vendor integration id.
        source: String,
    },
    /// `reconcile`.
    #[serde(rename = "reconcile")]
    Reconcile {
        /// The reconcile date; `None`: today when the job runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        as_of: Option<chrono::NaiveDate>,
    },
}

/// A job that cannot be run or enqueued.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The kind or payload is not one the worker knows.
    #[error("job {id}: {problem}")]
    Malformed {
        /// The job id (0 before it is enqueued).
        id: i64,
        /// What is wrong.
        problem: String,
    },
    /// Running it failed (boxed: the application's error is large and
    /// job results travel through channels and the store).
    #[error(transparent)]
    App(Box<AppError>),
}

impl From<AppError> for JobError {
    fn from(error: AppError) -> Self {
        JobError::App(Box::new(error))
    }
}

impl JobSpec {
    /// The store's job kind.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::SyncFull => "sync.full",
            JobSpec::SyncQuick => "sync.quick",
            JobSpec::SyncSource { .. } => "sync.source",
            JobSpec::Reconcile { .. } => "reconcile",
        }
    }

    /// The store's payload.
    pub fn payload(&self) -> serde_json::Value {
        match self {
            JobSpec::SyncSource { source } => serde_json::json!({ "source": source }),
            JobSpec::Reconcile { as_of: Some(day) } => serde_json::json!({ "as_of": day }),
            _ => serde_json::json!({}),
        }
    }

    /// Reads a stored kind and payload.
    ///
    /// # Errors
    /// [`JobError::Malformed`] for an unknown kind or a payload without
    /// what it needs.
    pub fn from_stored(id: i64, kind: &str, payload: &serde_json::Value) -> Result<Self, JobError> {
        let malformed = |problem: String| JobError::Malformed { id, problem };
        match kind {
            "sync.full" => Ok(JobSpec::SyncFull),
            "sync.quick" => Ok(JobSpec::SyncQuick),
            "reconcile" => match payload.get("as_of") {
                None | Some(serde_json::Value::Null) => Ok(JobSpec::Reconcile { as_of: None }),
                Some(day) => serde_json::from_value(day.clone())
                    .map(|day| JobSpec::Reconcile { as_of: Some(day) })
                    .map_err(|e| {
                        malformed(format!("a reconcile job's as_of must be YYYY-MM-DD: {e}"))
                    }),
            },
            "sync.source" => payload
                .get("source")
                .and_then(|s| s.as_str())
                .map(|source| JobSpec::SyncSource {
                    source: source.to_owned(),
                })
                .ok_or_else(|| malformed("a sync.source job needs {\"source\": ID}".into())),
            other => Err(malformed(format!(
                "unknown job kind {other:?} (known: {})",
                JOB_KINDS.join(", ")
            ))),
        }
    }

    /// The spec of a `[[schedules]]` entry.
    pub fn of_schedule(schedule: &ScheduleConfig) -> Result<Self, JobError> {
        let payload = match &schedule.source {
            Some(source) => serde_json::json!({ "source": source }),
            None => serde_json::json!({}),
        };
        Self::from_stored(0, &schedule.kind, &payload)
    }
}

/// Whether `source` names the configured PSA or a vendor integration.
/// The error says which names would do (for [`AppError::NotFound`]).
fn check_source(app: &App, source: &str) -> Result<(), String> {
    let psa = app
        .config()
        .psa
        .as_ref()
        .is_some_and(|p| p.plugin == source);
    if psa || app.config().vendors.iter().any(|v| v.id == source) {
        Ok(())
    } else {
        Err(format!(
            "no source {source:?}: name the [psa] plugin or a [[vendors]] id"
        ))
    }
}

/// Enqueues `spec` to run now (once: a `sync.*` job for a source that
/// already has one queued or running is not enqueued twice — its id is
/// returned instead).
///
/// # Errors
/// An unknown source; a store error.
pub async fn enqueue(app: &App, spec: &JobSpec, by: &str) -> Result<JobId, AppError> {
    if let JobSpec::SyncSource { source } = spec {
        check_source(app, source).map_err(AppError::NotFound)?;
    }
    let now = app.now();
    for job in app.store().jobs(Some(JobStatus::Queued), 200).await? {
        if job.kind == spec.kind() && job.payload == spec.payload() && job.run_at <= now {
            return Ok(job.id);
        }
    }
    let id = app
        .store()
        .enqueue_job(
            &NewJob {
                kind: spec.kind().to_owned(),
                payload: spec.payload(),
                run_at: now,
                max_attempts: ON_DEMAND_ATTEMPTS,
                dedupe_key: None,
            },
            now,
        )
        .await?
        .ok_or_else(|| AppError::Invalid("the job was not enqueued".into()))?;
    app.audit(
        by,
        "job.enqueue",
        &format!("job:{}", id.0),
        serde_json::json!({ "kind": spec.kind(), "payload": spec.payload() }),
    )
    .await;
    Ok(id)
}

/// Runs a job's work; a one-line summary.
///
/// # Errors
/// What failed. A sync of several sources fails when any source failed
/// (the others are still synced and recorded).
pub async fn run(app: &App, spec: &JobSpec) -> Result<String, AppError> {
    match spec {
        JobSpec::SyncFull | JobSpec::SyncQuick => {
            let mut failed = Vec::new();
            let mut synced = 0;
            for (source, outcome) in app.sync_all().await {
                match outcome {
                    Ok(_) => synced += 1,
                    Err(e) => failed.push(format!("{source}: {e}")),
                }
            }
            let mut summary = format!("{synced} source(s) synced");
            if *spec == JobSpec::SyncFull {
                let reconciled = app.reconcile().await?;
                summary.push_str(&format!(
                    "; reconcile run {} with {} card(s)",
                    reconciled.run, reconciled.cards
                ));
            }
            if failed.is_empty() {
                Ok(summary)
            } else {
                Err(AppError::Invalid(format!(
                    "{summary}; failed: {}",
                    failed.join("; ")
                )))
            }
        }
        JobSpec::SyncSource { source } => {
            check_source(app, source).map_err(AppError::NotFound)?;
            let summary = if app
                .config()
                .psa
                .as_ref()
                .is_some_and(|p| &p.plugin == source)
            {
                app.sync_psa().await?
            } else {
                app.sync_vendor(source).await?
            };
            Ok(format!(
                "{}: {} records, {} requests",
                summary.source, summary.records, summary.requests
            ))
        }
        JobSpec::Reconcile { as_of } => {
            let reconciled = match as_of {
                Some(day) => app.reconcile_as_of(*day).await?,
                None => app.reconcile().await?,
            };
            Ok(format!(
                "reconcile run {} with {} card(s)",
                reconciled.run, reconciled.cards
            ))
        }
    }
}

fn retry_delay(attempts: u32) -> Duration {
    Backoff::new(FIRST_JOB_RETRY_DELAY, MAX_JOB_RETRY_DELAY).delay(attempts)
}

/// What one claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// The job.
    pub job: JobId,
    /// Its kind.
    pub kind: String,
    /// Its status afterwards (done, queued again, failed).
    pub status: JobStatus,
    /// The summary or the error.
    pub message: String,
}

/// Claims the next due job, runs it (extending its lease while it runs)
/// and records the outcome. `None` when nothing is due.
///
/// # Errors
/// A store error while claiming or recording.
pub async fn run_next(app: &App) -> Result<Option<JobOutcome>, AppError> {
    let worker = app.worker_id().to_owned();
    let Some(job) = app
        .store()
        .claim_job(&worker, JOB_KINDS, JOB_LEASE, app.now())
        .await?
    else {
        return Ok(None);
    };
    let result = run_claimed(app, &job).await;
    let now = app.now();
    let (status, message) = match result {
        Ok(summary) => {
            app.store().complete_job(job.id, &worker, now).await?;
            (JobStatus::Done, summary)
        }
        Err(error) => {
            let message = error.to_string();
            let retry_at = chrono::Duration::from_std(retry_delay(job.attempts))
                .ok()
                .and_then(|d| now.checked_add_signed(d));
            let status = app
                .store()
                .fail_job(job.id, &worker, &message, retry_at, now)
                .await?;
            (status, message)
        }
    };
    tracing::info!(job = job.id.0, kind = %job.kind, ?status, %message, "job finished");
    app.audit(
        &format!("worker:{worker}"),
        &format!("job.{}", status_word(status)),
        &format!("job:{}", job.id.0),
        serde_json::json!({ "kind": job.kind, "attempt": job.attempts, "message": message }),
    )
    .await;
    app.emit(AppEvent::JobFinished {
        job: job.id.0,
        kind: job.kind.clone(),
        ok: status == JobStatus::Done,
        message: message.clone(),
    });
    Ok(Some(JobOutcome {
        job: job.id,
        kind: job.kind,
        status,
        message,
    }))
}

fn status_word(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "retry",
        JobStatus::Running => "running",
        JobStatus::Done => "done",
        JobStatus::Failed => "failed",
    }
}

/// Runs a claimed job with a heartbeat extending its lease.
async fn run_claimed(app: &App, job: &Job) -> Result<String, JobError> {
    let spec = JobSpec::from_stored(job.id.0, &job.kind, &job.payload)?;
    let worker = app.clone();
    // A task of its own, so the job's work runs on even while the
    // heartbeat's statement runs.
    let work = tokio::spawn(async move { run(&worker, &spec).await });
    let result = queue_worker::holding_lease("job", job.id.0, JOB_HEARTBEAT, work, || {
        app.store()
            .heartbeat_job(job.id, app.worker_id(), JOB_LEASE, app.now())
    })
    .await
    .map_err(|e| AppError::Invalid(format!("the background work stopped: {e}")))?;
    Ok(result?)
}

/// The job queue's worker.
struct JobWorker(App);

impl QueueWorker for JobWorker {
    type Error = AppError;

    fn name(&self) -> &'static str {
        "job worker"
    }

    async fn work_next(&mut self) -> Result<bool, AppError> {
        Ok(run_next(&self.0).await?.is_some())
    }
}

/// Runs jobs until `shutdown` resolves (a job in progress is finished
/// first, so its outcome is recorded).
pub async fn run_worker(app: App, shutdown: impl std::future::Future<Output = ()>) {
    queue_worker::run(JobWorker(app), JOB_IDLE_POLL, shutdown).await;
}

/// The next run of `spec` after `after` in the MSP's time zone.
///
/// # Errors
/// A spec that does not parse, or that never runs again.
pub fn next_run(app: &App, spec: &str, after: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let schedule = Schedule::parse(spec).map_err(|e| e.to_string())?;
    schedule
        .next_after(after, app.config().billing.zone())
        .ok_or_else(|| format!("{spec:?} has no run after {after}"))
}

/// The payload marker of schedules that come from `trueup.toml`.
const FROM_CONFIG: &str = "trueup.toml";

/// Stores or updates the schedules of `[[schedules]]`: a schedule whose
/// kind, spec and source are unchanged keeps its next run; a changed one
/// is moved to its next run after now. Schedules that came from the file
/// and are no longer in it are deleted (those created through the API are
/// left alone).
///
/// # Errors
/// A store error or a bad spec.
pub async fn sync_config_schedules(app: &App) -> Result<(), AppError> {
    let now = app.now();
    let existing = app.store().schedules().await?;
    for entry in &app.config().schedules {
        let spec = JobSpec::of_schedule(entry).map_err(|e| AppError::Invalid(e.to_string()))?;
        let mut payload = spec.payload();
        payload["origin"] = serde_json::json!(FROM_CONFIG);
        let unchanged = existing.iter().any(|s| {
            s.name == entry.name
                && s.kind == spec.kind()
                && s.spec == entry.spec
                && s.payload == payload
                && s.enabled == entry.enabled
        });
        if unchanged {
            continue;
        }
        let next_run_at = next_run(app, &entry.spec, now).map_err(AppError::Invalid)?;
        app.store()
            .put_schedule(
                &StoredSchedule {
                    name: entry.name.clone(),
                    kind: spec.kind().to_owned(),
                    payload,
                    spec: entry.spec.clone(),
                    enabled: entry.enabled,
                    next_run_at,
                    last_enqueued_at: None,
                    last_job: None,
                },
                now,
            )
            .await?;
    }
    for stored in existing {
        let from_config =
            stored.payload.get("origin").and_then(|o| o.as_str()) == Some(FROM_CONFIG);
        if from_config && !app.config().schedules.iter().any(|s| s.name == stored.name) {
            app.store().delete_schedule(&stored.name).await?;
        }
    }
    Ok(())
}

/// One scheduler pass: fails jobs whose worker died on their last attempt
/// and enqueues every due schedule once. Returns the jobs enqueued.
///
/// # Errors
/// A store error or a schedule whose spec no longer parses.
pub async fn tick(app: &App) -> Result<Vec<JobId>, AppError> {
    let now = app.now();
    let recovered = app.store().recover_expired_jobs(now).await?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "failed jobs whose worker stopped on their last attempt"
        );
    }
    let jobs = app
        .store()
        .enqueue_due_schedules(now, |s| next_run(app, &s.spec, now))
        .await?;
    for id in &jobs {
        tracing::info!(job = id.0, "scheduled job enqueued");
    }
    Ok(jobs)
}

/// Runs the scheduler every `every` until `shutdown` resolves.
pub async fn run_scheduler(
    app: App,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        if let Err(error) = tick(&app).await {
            tracing::error!(%error, "scheduler");
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_through_the_store_form() {
        for spec in [
            JobSpec::SyncFull,
            JobSpec::SyncQuick,
            JobSpec::Reconcile { as_of: None },
            JobSpec::Reconcile {
                as_of: chrono::NaiveDate::from_ymd_opt(2026, 10, 31),
            },
            JobSpec::SyncSource {
                source: "pax8".into(),
            },
        ] {
            assert_eq!(
                JobSpec::from_stored(1, spec.kind(), &spec.payload()).expect("reads back"),
                spec
            );
        }
        assert_eq!(
            JobSpec::from_stored(7, "backup", &serde_json::json!({}))
                .expect_err("unknown")
                .to_string(),
            "job 7: unknown job kind \"backup\" (known: sync.full, sync.quick, sync.source, reconcile)"
        );
        assert!(JobSpec::from_stored(7, "sync.source", &serde_json::json!({})).is_err());
    }

    #[test]
    fn retries_back_off() {
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(2), Duration::from_secs(120));
        assert_eq!(retry_delay(30), MAX_JOB_RETRY_DELAY);
    }
}
