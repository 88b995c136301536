//! Jobs and schedules: a due schedule enqueues one job however many
//! schedulers tick, and the job runs once; `[[schedules]]` are stored and
//! kept; "sync now" through the API becomes a job; and two `trueup serve`
//! PROCESSES on one PostgreSQL database share the queue — every job runs
//! exactly once and both processes take some.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use trueup::app::App;
use trueup::auth::Role;
use trueup::config::{Config, RulesConfig, ScheduleConfig, StoreConfig};
use trueup::jobs::{self, JobSpec};
use trueup_store::audit::AuditFilter;
use trueup_store::jobs::{JobStatus, NewJob, Schedule};
use trueup_store::testing::TestStore;

use crate::support::{repo_root, trueup_binary};
use crate::web_auth::{Client, NO_WORKERS, add_token, serve};

async fn app_at(
    dir: &std::path::Path,
    now: chrono::DateTime<Utc>,
    schedules: Vec<ScheduleConfig>,
) -> App {
    let config = Config {
        data_dir: dir.to_owned(),
        store: StoreConfig {
            url: Some(format!("sqlite://{}", dir.join("trueup.db").display())),
        },
        rules: RulesConfig {
            path: repo_root().join("rules/default.rhai"),
        },
        schedules,
        ..Config::default()
    };
    App::open_with_clock(Arc::new(config), Arc::new(move || now))
        .await
        .expect("app")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_schedule_runs_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc
        .with_ymd_and_hms(2026, 11, 28, 18, 0, 30)
        .single()
        .expect("now");
    let app = app_at(dir.path(), now, Vec::new()).await;
    app.store()
        .put_schedule(
            &Schedule {
                name: "month-end".into(),
                kind: "reconcile".into(),
                payload: serde_json::json!({}),
                spec: "monthly on day 28 at 18:00".into(),
                enabled: true,
                next_run_at: Utc
                    .with_ymd_and_hms(2026, 11, 28, 18, 0, 0)
                    .single()
                    .expect("due"),
                last_enqueued_at: None,
                last_job: None,
            },
            now,
        )
        .await
        .expect("schedule");
    // Three schedulers tick at once (as three processes would), then again.
    let (a, b, c) = tokio::join!(jobs::tick(&app), jobs::tick(&app), jobs::tick(&app));
    let enqueued: usize = [a, b, c].into_iter().map(|r| r.expect("tick").len()).sum();
    assert_eq!(enqueued, 1, "one job for one due run");
    assert!(jobs::tick(&app).await.expect("tick").is_empty());
    let schedule = &app.store().schedules().await.expect("schedules")[0];
    assert_eq!(
        schedule.next_run_at,
        Utc.with_ymd_and_hms(2026, 12, 28, 18, 0, 0)
            .single()
            .expect("next"),
        "moved to the next month"
    );
    // The worker runs it once; then nothing is due.
    let outcome = jobs::run_next(&app)
        .await
        .expect("run")
        .expect("a job was due");
    assert_eq!(outcome.status, JobStatus::Done, "{}", outcome.message);
    assert_eq!(Some(outcome.job), schedule.last_job);
    assert!(jobs::run_next(&app).await.expect("run").is_none());
    let job = app.store().job(outcome.job).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Done, 1));
    assert_eq!(app.store().reconcile_runs(10).await.expect("runs").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_schedules_are_stored_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc
        .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .expect("now");
    let weekly = ScheduleConfig {
        name: "weekly".into(),
        kind: "sync.quick".into(),
        spec: "weekly on mon at 06:00".into(),
        source: None,
        enabled: true,
    };
    let app = app_at(dir.path(), now, vec![weekly.clone()]).await;
    jobs::sync_config_schedules(&app).await.expect("stored");
    let stored = app.store().schedules().await.expect("schedules");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, "sync.quick");
    // 2026-11-25 is a Wednesday: the next Monday 06:00 UTC.
    let monday = Utc
        .with_ymd_and_hms(2026, 11, 30, 6, 0, 0)
        .single()
        .expect("monday");
    assert_eq!(stored[0].next_run_at, monday);
    // Stored again later (a restart): the next run is kept, not pushed.
    drop(app);
    let later = now + chrono::Duration::days(3);
    let app = app_at(dir.path(), later, vec![weekly.clone()]).await;
    jobs::sync_config_schedules(&app).await.expect("stored");
    assert_eq!(
        app.store().schedules().await.expect("schedules")[0].next_run_at,
        monday
    );
    // Removed from the file: removed from the store; API schedules stay.
    app.store()
        .put_schedule(
            &Schedule {
                name: "from-api".into(),
                kind: "reconcile".into(),
                payload: serde_json::json!({}),
                spec: "daily at 07:00".into(),
                enabled: true,
                next_run_at: later,
                last_enqueued_at: None,
                last_job: None,
            },
            later,
        )
        .await
        .expect("schedule");
    drop(app);
    let app = app_at(dir.path(), later, Vec::new()).await;
    jobs::sync_config_schedules(&app).await.expect("stored");
    let names: Vec<String> = app
        .store()
        .schedules()
        .await
        .expect("schedules")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["from-api"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_and_schedules_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc
        .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .expect("now");
    let app = app_at(dir.path(), now, Vec::new()).await;
    let admin = add_token(&app, "ops", Role::Admin).await;
    let server = serve(app.clone(), NO_WORKERS, None).await;
    let client = Client::with_token(&server.base, &admin);
    let answer = client
        .post("/api/v1/reconcile", serde_json::json!({}))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let job = answer.json()["job"]["id"].as_i64().expect("id");
    // Asking again while it is queued gives the same job.
    let again = client
        .post("/api/v1/reconcile", serde_json::json!({}))
        .await
        .json();
    assert_eq!(again["job"]["id"], job);
    let unknown = client
        .post("/api/v1/syncs", serde_json::json!({ "source": "nowhere" }))
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let outcome = jobs::run_next(&app).await.expect("run").expect("due");
    assert_eq!(outcome.job.0, job);
    let listed = client.get(&format!("/api/v1/jobs/{job}")).await.json();
    assert_eq!(listed["status"], "done");
    // Schedules: validated specs, stored in canonical form.
    let bad = client
        .send(
            axum::http::Method::PUT,
            "/api/v1/schedules/nightly",
            Some(serde_json::json!({ "kind": "reconcile", "spec": "hourly" })),
        )
        .await;
    assert_eq!(bad.status, 400);
    let put = client
        .send(
            axum::http::Method::PUT,
            "/api/v1/schedules/nightly",
            Some(serde_json::json!({ "kind": "sync.full", "spec": "Daily at 02:30" })),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let put = put.json();
    assert_eq!(put["spec"], "daily at 02:30");
    assert_eq!(put["next_run_at"], "2026-11-26T02:30:00Z");
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `trueup serve` on `config` and waits until it listens.
fn start(binary: &PathBuf, config: &std::path::Path) -> Process {
    let mut child = Command::new(binary)
        .args([
            "--config",
            &config.display().to_string(),
            "serve",
            "--bind",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("trueup serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("listening on ") => break,
            Some(Ok(_)) => continue,
            _ => panic!("trueup serve exited before listening"),
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Process(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres_job_queue() {
    let database = TestStore::postgres()
        .await
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL (TRUEUP_TEST_POSTGRES_URL): {e}"));
    let binary = trueup_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut processes = Vec::new();
    for name in ["a", "b"] {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).expect("data dir");
        let config = data.join("trueup.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[store]\nurl = {:?}\n[rules]\npath = {:?}\n",
                data.display().to_string(),
                database.url(),
                repo_root().join("rules/default.rhai").display().to_string()
            ),
        )
        .expect("config");
        processes.push(start(&binary, &config));
    }
    // Jobs due a moment from now, so both workers are polling when they
    // become due. A worker claims its next job as soon as one ends but
    // looks at an empty queue only every JOB_IDLE_POLL (500 ms), and an
    // empty store reconciles in milliseconds: 40 jobs were once all done
    // by one process before the other's next look (seen in CI). 200 keep
    // the queue non-empty across several of the other's polls.
    const JOBS: usize = 200;
    let run_at = Utc::now() + chrono::Duration::seconds(2);
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let id = database
            .enqueue_job(
                &NewJob {
                    kind: JobSpec::Reconcile { as_of: None }.kind().to_owned(),
                    payload: serde_json::json!({}),
                    run_at,
                    max_attempts: 1,
                    dedupe_key: Some(format!("test-{i}")),
                },
                Utc::now(),
            )
            .await
            .expect("enqueue")
            .expect("new job");
        ids.push(id);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let jobs = database.jobs(None, 1000).await.expect("jobs");
        let finished = jobs
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Done | JobStatus::Failed))
            .count();
        if finished == JOBS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {finished} of {JOBS} jobs finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(processes);
    let mut workers = std::collections::BTreeSet::new();
    for id in &ids {
        let job = database.job(*id).await.expect("job");
        assert_eq!(job.status, JobStatus::Done, "job {}: {:?}", id.0, job.error);
        assert_eq!(job.attempts, 1, "job {} was claimed once", id.0);
        let ran = database
            .audit_entries(
                &AuditFilter {
                    subject: Some(format!("job:{}", id.0)),
                    ..AuditFilter::default()
                },
                10,
            )
            .await
            .expect("audit");
        let done: Vec<_> = ran
            .iter()
            .filter(|e| e.entry.action == "job.done")
            .collect();
        assert_eq!(done.len(), 1, "job {} ran exactly once: {ran:?}", id.0);
        workers.insert(done[0].entry.actor.clone());
    }
    assert_eq!(
        workers.len(),
        2,
        "both processes took jobs (workers: {workers:?})"
    );
    assert_eq!(
        database.reconcile_runs(1000).await.expect("runs").len(),
        JOBS,
        "one reconcile per job"
    );
}
