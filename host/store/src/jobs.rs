//! The job queue and schedules, shared by every `trueup` process on one
//! database.
//!
//! The queue is a leased queue (`crate::queue`, which explains why each
//! due job goes to exactly one worker on either backend):
//! [`Store::claim_job`] leases a due job to one worker (`locked_until`),
//! which extends the lease with [`Store::heartbeat_job`]; when a worker
//! dies, the lease runs out and the job is claimed again (or failed, once
//! its attempts are used up, by [`Store::recover_expired_jobs`]).
//!
//! Schedules store a spec (e.g. `"weekly on MON at 06:00"`, in the MSP's
//! time zone) and the next run instant. The application computes next
//! instants; [`Store::enqueue_due_schedules`] enqueues each due schedule
//! exactly once, however many processes call it at the same moment.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::db::{Row, enum_text, id_type, json_text, sql};
use crate::error::{Result, StoreError};
use crate::queue::Queue;

/// Attempts a job enqueued by a schedule gets.
pub const SCHEDULED_JOB_ATTEMPTS: u32 = 3;

id_type!(
    /// A job's id.
    JobId
);

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for `run_at`.
    Queued,
    /// Leased to a worker.
    Running,
    /// Finished.
    Done,
    /// Gave up.
    Failed,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What to do (`sync.psa`, `sync.vendor`, `reconcile`, ...).
    pub kind: String,
    /// Its arguments.
    pub payload: serde_json::Value,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// Claims allowed before it fails for good (at least 1).
    pub max_attempts: u32,
    /// When set, a second job with the same key is not enqueued.
    pub dedupe_key: Option<String>,
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// What to do.
    pub kind: String,
    /// Its arguments.
    pub payload: serde_json::Value,
    /// Status.
    pub status: JobStatus,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// Claims so far.
    pub attempts: u32,
    /// Claims allowed.
    pub max_attempts: u32,
    /// The worker running it.
    pub locked_by: Option<String>,
    /// Its lease's end.
    pub locked_until: Option<DateTime<Utc>>,
    /// The last error.
    pub error: Option<String>,
    /// The dedupe key.
    pub dedupe_key: Option<String>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// First claimed.
    pub started_at: Option<DateTime<Utc>>,
    /// Done or failed at.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// The job kind it enqueues.
    pub kind: String,
    /// The job payload.
    pub payload: serde_json::Value,
    /// When it runs, e.g. `"monthly on day 28 at 18:00"` (MSP time zone;
    /// interpreted by the application).
    pub spec: String,
    /// Disabled schedules are not enqueued.
    pub enabled: bool,
    /// The next instant it is due.
    pub next_run_at: DateTime<Utc>,
    /// When it last enqueued a job.
    pub last_enqueued_at: Option<DateTime<Utc>>,
    /// That job.
    pub last_job: Option<JobId>,
}

const JOB_COLUMNS: &str = "id, kind, payload, status, run_at, attempts, max_attempts, locked_by, \
     locked_until, error, dedupe_key, created_at, started_at, finished_at";

/// The job queue's table, for the leased-queue mechanism.
const JOBS: Queue = Queue {
    table: "jobs",
    what: "job",
    id: "id",
    status: "status",
    waiting: "queued",
    leased: "running",
    failed: "failed",
    owner: "locked_by",
    until: "locked_until",
    attempts: "attempts",
    attempts_left: "attempts < max_attempts",
    due: "run_at",
    error: "error",
    finished: "finished_at",
    touched: None,
    on_claim: "started_at = COALESCE(started_at, $3)",
    columns: JOB_COLUMNS,
};

fn job_from_row(r: &Row) -> Result<Job> {
    Ok(Job {
        id: JobId(r.int("id")?),
        kind: r.text("kind")?,
        payload: r.json("payload")?,
        status: r.enum_value("status", "a job status")?,
        run_at: r.instant("run_at")?,
        attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(r.int("max_attempts")?).unwrap_or(u32::MAX),
        locked_by: r.opt_text("locked_by")?,
        locked_until: r.opt_instant("locked_until")?,
        error: r.opt_text("error")?,
        dedupe_key: r.opt_text("dedupe_key")?,
        created_at: r.instant("created_at")?,
        started_at: r.opt_instant("started_at")?,
        finished_at: r.opt_instant("finished_at")?,
    })
}

fn schedule_from_row(r: &Row) -> Result<Schedule> {
    Ok(Schedule {
        name: r.text("name")?,
        kind: r.text("kind")?,
        payload: r.json("payload")?,
        spec: r.text("spec")?,
        enabled: r.bool("enabled")?,
        next_run_at: r.instant("next_run_at")?,
        last_enqueued_at: r.opt_instant("last_enqueued_at")?,
        last_job: r.opt_int("last_job_id")?.map(JobId),
    })
}

const SCHEDULE_COLUMNS: &str =
    "name, kind, payload, spec, enabled, next_run_at, last_enqueued_at, last_job_id";

async fn insert_job(
    tx: &mut crate::db::Tx,
    operation: &'static str,
    job: &NewJob,
    at: DateTime<Utc>,
) -> Result<Option<JobId>> {
    if job.max_attempts == 0 {
        return Err(StoreError::invalid(
            operation,
            "a job needs at least one attempt",
        ));
    }
    let row = tx
        .fetch_optional(
            sql(
                operation,
                "jobs",
                "INSERT INTO jobs (kind, payload, status, run_at, attempts, max_attempts, dedupe_key, created_at) \
                 VALUES ($1, $2, 'queued', $3, 0, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            )
            .bind(job.kind.as_str())
            .bind(json_text(operation, &job.payload)?)
            .bind(job.run_at)
            .bind(i64::from(job.max_attempts))
            .bind(job.dedupe_key.as_deref())
            .bind(at),
        )
        .await?;
    row.map(|r| Ok(JobId(r.int("id")?))).transpose()
}

impl Store {
    /// Enqueues a job; its id, or `None` when a job with the same dedupe
    /// key exists (idempotent enqueue).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for `max_attempts` 0; database errors.
    pub async fn enqueue_job(&self, job: &NewJob, at: DateTime<Utc>) -> Result<Option<JobId>> {
        const OP: &str = "enqueue job";
        let mut tx = self.db.begin(OP).await?;
        let id = insert_job(&mut tx, OP, job, at).await?;
        tx.commit(OP).await?;
        Ok(id)
    }

    /// Claims the next due job of one of `kinds` for `worker` until `now +
    /// lease`: a queued job with `run_at <= now`, or a running job whose
    /// lease expired and that has attempts left. Counts an attempt. Each
    /// job is handed to exactly one concurrent claimer, across processes.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for no kinds; database errors.
    pub async fn claim_job(
        &self,
        worker: &str,
        kinds: &[&str],
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        const OP: &str = "claim job";
        if kinds.is_empty() {
            return Err(StoreError::invalid(
                OP,
                "name at least one job kind to claim",
            ));
        }
        let row = JOBS
            .claim(&self.db, OP, worker, lease, now, Some(("kind", kinds)))
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Extends `worker`'s lease on a running job to `now + lease`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the worker no longer holds the job.
    pub async fn heartbeat_job(
        &self,
        id: JobId,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<()> {
        JOBS.held("extend job lease", id.0, worker)
            .extend(&self.db, lease, now)
            .await
    }

    /// Marks a running job done.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the worker no longer holds the job.
    pub async fn complete_job(&self, id: JobId, worker: &str, now: DateTime<Utc>) -> Result<()> {
        let held = JOBS.held("complete job", id.0, worker);
        let n = self
            .db
            .execute(held.finish("done", Vec::new(), None, now, None))
            .await?;
        held.check(n)
    }

    /// Records a failed attempt: with `retry_at` and attempts left, the job
    /// is queued again for then; otherwise it fails for good. Returns the
    /// new status.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the worker no longer holds the job.
    pub async fn fail_job(
        &self,
        id: JobId,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<JobStatus> {
        JOBS.held("record job failure", id.0, worker)
            .retry(&self.db, error, retry_at, now)
            .await?
            .enum_value("status", "a job status")
    }

    /// Fails running jobs whose lease expired at `now` with no attempts
    /// left (their worker died on the last attempt); how many. Jobs with
    /// attempts left are simply claimed again by [`Store::claim_job`].
    ///
    /// # Errors
    /// A database error.
    pub async fn recover_expired_jobs(&self, now: DateTime<Utc>) -> Result<u64> {
        JOBS.recover_expired(
            &self.db,
            "recover expired jobs",
            "the worker stopped (its lease expired) on the last attempt",
            now,
        )
        .await
    }

    /// One job.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn job(&self, id: JobId) -> Result<Job> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read job",
                    "jobs",
                    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
                )
                .bind(id),
            )
            .await?
            .ok_or_else(|| StoreError::not_found("read job", "job", id))?;
        job_from_row(&row)
    }

    /// Jobs, newest first, optionally of one status, at most `limit`.
    ///
    /// # Errors
    /// A database error.
    pub async fn jobs(&self, status: Option<JobStatus>, limit: u32) -> Result<Vec<Job>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list jobs",
                    "jobs",
                    format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR status = $1) ORDER BY id DESC LIMIT $2"
                    ),
                )
                .bind(status.map(|s| enum_text(&s)))
                .bind(i64::from(limit)),
            )
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    // ---------------------------------------------------------- schedules

    /// Creates or replaces a schedule (kind, payload, spec, enabled, next
    /// run). Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn put_schedule(&self, schedule: &Schedule, at: DateTime<Utc>) -> Result<()> {
        const OP: &str = "save schedule";
        self.db
            .execute(
                sql(
                    OP,
                    "schedules",
                    "INSERT INTO schedules (name, kind, payload, spec, enabled, next_run_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET \
                     kind = excluded.kind, payload = excluded.payload, spec = excluded.spec, \
                     enabled = excluded.enabled, next_run_at = excluded.next_run_at, updated_at = excluded.updated_at",
                )
                .bind(schedule.name.as_str())
                .bind(schedule.kind.as_str())
                .bind(json_text(OP, &schedule.payload)?)
                .bind(schedule.spec.as_str())
                .bind(schedule.enabled)
                .bind(schedule.next_run_at)
                .bind(at),
            )
            .await?;
        Ok(())
    }

    /// Every schedule, by name.
    ///
    /// # Errors
    /// A database error.
    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list schedules",
                "schedules",
                format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"),
            ))
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Deletes a schedule; whether it existed.
    ///
    /// # Errors
    /// A database error.
    pub async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let n = self
            .db
            .execute(
                sql(
                    "delete schedule",
                    "schedules",
                    "DELETE FROM schedules WHERE name = $1",
                )
                .bind(name),
            )
            .await?;
        Ok(n > 0)
    }

    /// Enqueues one job for each enabled schedule due at `now`
    /// (`next_run_at <= now`) and moves its `next_run_at` to
    /// `next_after(schedule)`, which must be later than `now` (a schedule
    /// missed several times runs once). Returns the jobs enqueued.
    ///
    /// Exactly once across processes: each schedule is advanced with a
    /// compare-and-set on its `next_run_at` in the same transaction as its
    /// job is inserted (with the dedupe key `schedule:NAME:INSTANT`); a
    /// concurrent caller's compare fails and it skips the schedule.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `next_after` fails or returns an instant
    /// not after `now` (nothing of that call is kept); database errors.
    pub async fn enqueue_due_schedules(
        &self,
        now: DateTime<Utc>,
        next_after: impl Fn(&Schedule) -> std::result::Result<DateTime<Utc>, String>,
    ) -> Result<Vec<JobId>> {
        const OP: &str = "enqueue due schedules";
        let now = crate::db::instant(now);
        let due = self
            .db
            .fetch_all(
                sql(
                    OP,
                    "schedules",
                    format!(
                        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE enabled AND next_run_at <= $1 ORDER BY name"
                    ),
                )
                .bind(now),
            )
            .await?
            .iter()
            .map(schedule_from_row)
            .collect::<Result<Vec<_>>>()?;
        let mut jobs = Vec::new();
        for schedule in due {
            let next = next_after(&schedule).map_err(|e| {
                StoreError::invalid(
                    OP,
                    format!("schedule {:?} ({}): {e}", schedule.name, schedule.spec),
                )
            })?;
            if next <= now {
                return Err(StoreError::invalid(
                    OP,
                    format!(
                        "schedule {:?}: the next run {next} is not after now ({now}); it would run again at once",
                        schedule.name
                    ),
                ));
            }
            let mut tx = self.db.begin(OP).await?;
            // The compare-and-set: only the caller that moves next_run_at
            // from the value it read enqueues.
            let moved = tx
                .execute(
                    sql(
                        OP,
                        "schedules",
                        "UPDATE schedules SET next_run_at = $3, last_enqueued_at = $4 \
                         WHERE name = $1 AND next_run_at = $2 AND enabled",
                    )
                    .bind(schedule.name.as_str())
                    .bind(schedule.next_run_at)
                    .bind(next)
                    .bind(now),
                )
                .await?;
            if moved != 1 {
                continue;
            }
            let job = NewJob {
                kind: schedule.kind.clone(),
                payload: schedule.payload.clone(),
                run_at: now,
                max_attempts: SCHEDULED_JOB_ATTEMPTS,
                dedupe_key: Some(format!(
                    "schedule:{}:{}",
                    schedule.name,
                    schedule.next_run_at.to_rfc3339()
                )),
            };
            let Some(id) = insert_job(&mut tx, OP, &job, now).await? else {
                // The job for this instant exists already: keep the move.
                tx.commit(OP).await?;
                continue;
            };
            tx.execute(
                sql(
                    OP,
                    "schedules",
                    "UPDATE schedules SET last_job_id = $2 WHERE name = $1",
                )
                .bind(schedule.name.as_str())
                .bind(id),
            )
            .await?;
            tx.commit(OP).await?;
            jobs.push(id);
        }
        Ok(jobs)
    }
}
