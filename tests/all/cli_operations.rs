//! Operating Trueup from the command line, through the real `trueup`
//! binary run from a directory other than the configuration's:
//! - `trueup plugin secret set | list | delete` on SQLite and PostgreSQL:
//!   the value from standard input (never an argument), sealed as the
//!   API's `PUT /api/v1/integrations/{plugin}/secrets/{name}` seals it,
//!   audited, listed by name only; unknown plugins and undeclared names
//!   refused naming what is declared;
//! - `trueup plugin check` fails naming a required secret that is not set
//!   and the command that sets it;
//! - `trueup import csv` enqueues a reconcile job (reused while queued),
//!   which the job worker of a server on that store runs into cards;
//! - the data directory `trueup demo` writes (its `trueup.toml`) loads from
//!   any working directory with every plugin found.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use trueup::app::App;
use trueup::config::Config;
use trueup::server::Workers;
use trueup_store::audit::AuditFilter;
use trueup_store::jobs::{JobId, JobStatus};
use trueup_store::testing::TestStore;

use crate::support::{plugin_dir, repo_root, trueup_binary};
use crate::web_auth::serve;

const PSA: &str = "trueup.connectwise";

/// Runs `trueup --config CONFIG ARGS` in `cwd` with `stdin` piped in.
fn trueup(config: &Path, cwd: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(trueup_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(cwd)
        .env_remove("TRUEUP_SECRET_KEY")
        .env_remove("TRUEUP_CONFIG")
        .env("USER", "ops")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trueup");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("trueup ran")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A `trueup.toml` in `dir` whose data directory and (for SQLite) store
/// are given RELATIVE to the file, with the ConnectWise plugin installed.
fn write_config(dir: &Path, store_url: Option<&str>) -> PathBuf {
    let store = match store_url {
        Some(url) => format!("url = {url:?}"),
        None => "url = \"sqlite://data/trueup.db\"".to_owned(),
    };
    let text = format!(
        r#"data_dir = "data"

[store]
{store}

[rules]
path = {rules:?}

[plugins."{PSA}"]
path = {plugin:?}

[plugins."{PSA}".config]
base_url = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"
company_id = "contoso"
client_id = "00000000-0000-0000-0000-000000000000"

[plugins."{PSA}".grants]
secrets = ["public_key", "private_key"]
"#,
        rules = repo_root().join("rules/default.rhai").display().to_string(),
        plugin = plugin_dir(PSA).display().to_string(),
    );
    let path = dir.join("trueup.toml");
    std::fs::write(&path, text).expect("write trueup.toml");
    path
}

/// The app a server on `config` would open.
async fn open(config: &Path) -> App {
    let config = Config::load(config, true).expect("the config loads");
    App::open(Arc::new(config)).await.expect("app opens")
}

async fn secrets_from_the_cli(store_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("another working directory");
    let config = write_config(dir.path(), store_url);
    let run = |args: &[&str], stdin: &str| trueup(&config, elsewhere.path(), args, stdin);

    // Piped, with the line break `echo` adds.
    let set = run(
        &["plugin", "secret", "set", PSA, "private_key"],
        "pk-9f3c1e\n",
    );
    assert!(set.status.success(), "{}", text(&set));
    assert!(!text(&set).contains("pk-9f3c1e"), "{}", text(&set));

    // Never as an argument.
    let argument = run(
        &["plugin", "secret", "set", PSA, "public_key", "pub-value"],
        "",
    );
    assert!(!argument.status.success(), "{}", text(&argument));
    // Nothing piped and no terminal: refused, saying how.
    let empty = run(&["plugin", "secret", "set", PSA, "public_key"], "");
    assert!(!empty.status.success());
    assert!(
        text(&empty).contains("pipe it on standard input"),
        "{}",
        text(&empty)
    );

    // An undeclared name or an unknown plugin names what would do.
    let undeclared = run(&["plugin", "secret", "set", PSA, "password"], "x");
    assert!(!undeclared.status.success());
    assert!(
        text(&undeclared)
            .contains("declares no secret \"password\" (its secrets: public_key, private_key)"),
        "{}",
        text(&undeclared)
    );
    let unknown = run(
        &["plugin", "secret", "set", "trueup.autotask", "secret"],
        "x",
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains(&format!("(configured: {PSA})")),
        "{}",
        text(&unknown)
    );

    // `plugin check` fails naming the missing required secret and the
    // command that sets it.
    let check = run(&["plugin", "check", PSA], "");
    assert!(!check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains(&format!(
            "FAIL  required secrets are set in the store: secret \"public_key\" is required but not set (set it with `trueup plugin secret set {PSA} public_key`)"
        )),
        "{}",
        text(&check)
    );
    assert!(
        !text(&check).contains("\"private_key\" is required"),
        "private_key is set: {}",
        text(&check)
    );

    // Names, never values.
    let list = run(&["plugin", "secret", "list", PSA], "");
    assert!(list.status.success(), "{}", text(&list));
    let listing = text(&list);
    assert!(!listing.contains("pk-9f3c1e"), "{listing}");
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("{name} listed: {listing}"))
            .to_owned()
    };
    assert!(line("private_key").contains("set "), "{listing}");
    assert!(line("private_key").contains("by cli:ops"), "{listing}");
    assert!(line("public_key").ends_with("not set"), "{listing}");

    // Stored as the API stores it: the server's app opens it with the
    // data directory's key, and the change is audited.
    {
        let app = open(&config).await;
        let secrets = app.plugin_secrets(PSA).await.expect("secrets open");
        assert_eq!(
            secrets.get("private_key").map(|v| v.expose().to_vec()),
            Some(b"pk-9f3c1e".to_vec())
        );
        assert!(!secrets.contains("public_key"));
        let audit = app
            .store()
            .audit_entries(
                &AuditFilter {
                    subject: Some(format!("{PSA}/private_key")),
                    ..AuditFilter::default()
                },
                10,
            )
            .await
            .expect("audit");
        assert_eq!(
            audit
                .iter()
                .map(|e| e.entry.action.as_str())
                .collect::<Vec<_>>(),
            ["secret.set"]
        );
        assert_eq!(audit[0].entry.actor, "cli:ops");
        app.store().close().await;
    }

    // Both set: the check's secret line passes.
    let set = run(&["plugin", "secret", "set", PSA, "public_key"], "pub-77");
    assert!(set.status.success(), "{}", text(&set));
    let check = run(&["plugin", "check", PSA], "");
    assert!(
        text(&check).contains("ok    required secrets are set in the store"),
        "{}",
        text(&check)
    );

    // Delete: gone from the store and the listing, audited.
    let delete = run(&["plugin", "secret", "delete", PSA, "private_key"], "");
    assert!(delete.status.success(), "{}", text(&delete));
    let again = run(&["plugin", "secret", "delete", PSA, "private_key"], "");
    assert!(again.status.success());
    assert!(text(&again).contains("was not set"), "{}", text(&again));
    let list = run(&["plugin", "secret", "list", PSA], "");
    let listing = text(&list);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("private_key") && l.ends_with("not set")),
        "{listing}"
    );
    let app = open(&config).await;
    assert!(
        !app.plugin_secrets(PSA)
            .await
            .expect("secrets")
            .contains("private_key")
    );
    let deletions = app
        .store()
        .audit_entries(
            &AuditFilter {
                subject: Some(format!("{PSA}/private_key")),
                ..AuditFilter::default()
            },
            10,
        )
        .await
        .expect("audit");
    assert_eq!(
        deletions
            .iter()
            .filter(|e| e.entry.action == "secret.delete")
            .count(),
        1
    );
    app.store().close().await;
    if store_url.is_none() {
        // The relative SQLite file is beside the config, not in the
        // directory trueup ran in.
        assert!(dir.path().join("data/trueup.db").is_file());
        assert!(!elsewhere.path().join("data").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_secrets_from_the_cli_on_sqlite() {
    secrets_from_the_cli(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_secrets_from_the_cli_on_postgres() {
    let database = TestStore::postgres()
        .await
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL (TRUEUP_TEST_POSTGRES_URL): {e}"));
    secrets_from_the_cli(Some(database.url())).await;
}

const PROFILE: &str = r#"
vendor = "acme-backup"
vendor_name = "Acme Backup"
header = true

[columns]
account_id = "Customer ID"
account_name = "Customer"
sku_id = "Plan"
quantity = "Seats"
observed_on = "Date"
"#;

/// The job id in `reconcile queued as job N ...`.
fn queued_job(output: &Output) -> JobId {
    let out = String::from_utf8_lossy(&output.stdout);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("reconcile queued as job "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no job id printed: {}", text(output)));
    JobId(id)
}

async fn import_queues_a_reconcile(store_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("another working directory");
    let config = write_config(dir.path(), store_url);
    let run = |args: &[&str]| trueup(&config, elsewhere.path(), args, "");
    let profile = elsewhere.path().join("acme.toml");
    std::fs::write(&profile, PROFILE).expect("profile");
    let saved = run(&[
        "import",
        "profile",
        "set",
        "acme",
        "--file",
        &profile.display().to_string(),
    ]);
    assert!(saved.status.success(), "{}", text(&saved));
    let today = chrono::Utc::now().date_naive();
    let csv = elsewhere.path().join("usage.csv");
    std::fs::write(
        &csv,
        format!(
            "Customer ID,Customer,Plan,Seats,Date\nc-1,Contoso,backup-100,5,{today}\nc-2,Fabrikam,backup-500,2,{today}\n"
        ),
    )
    .expect("csv");
    let csv = csv.display().to_string();
    let first = run(&["import", "csv", "--profile", "acme", &csv]);
    assert!(first.status.success(), "{}", text(&first));
    let job = queued_job(&first);
    // A second import while the reconcile is still queued reuses it.
    let second = run(&["import", "csv", "--profile", "acme", &csv]);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(queued_job(&second), job, "one queued reconcile, not two");

    // A server on that store: its job worker runs the job into cards.
    let app = open(&config).await;
    assert_eq!(
        app.store().job(job).await.expect("job").status,
        JobStatus::Queued
    );
    assert!(
        app.store()
            .reconcile_runs(10)
            .await
            .expect("runs")
            .is_empty()
    );
    let served = serve(
        app.clone(),
        Workers {
            jobs: true,
            scheduler: false,
            write_back: false,
        },
        None,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let stored = served.app.store().job(job).await.expect("job");
        if matches!(stored.status, JobStatus::Done | JobStatus::Failed) {
            break stored;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server's worker did not run job {}",
            job.0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.status, JobStatus::Done, "{:?}", done.error);
    let run = served
        .app
        .store()
        .latest_reconcile_run()
        .await
        .expect("runs")
        .expect("the job recorded a reconcile run");
    assert_eq!(run.stats.usage_rows, 2, "{:?}", run.stats);
    assert!(run.card_count > 0, "the imported usage made cards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_csv_queues_a_reconcile_a_server_runs_on_sqlite() {
    import_queues_a_reconcile(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_csv_queues_a_reconcile_a_server_runs_on_postgres() {
    let database = TestStore::postgres()
        .await
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL (TRUEUP_TEST_POSTGRES_URL): {e}"));
    import_queues_a_reconcile(Some(database.url())).await;
}

/// `root` relative to this process's working directory when it is inside
/// it (as `trueup demo --root .` is), else `root` itself.
fn relative_to_cwd(root: &Path) -> PathBuf {
    let cwd = std::env::current_dir().expect("cwd");
    match cwd.strip_prefix(root) {
        Ok(below) => below.components().map(|_| "..").collect(),
        Err(_) => root.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_data_dir_serves_from_any_directory() {
    let emulators = trueup::demo::start_emulators(
        7,
        5,
        chrono::Utc::now().date_naive(),
        std::net::Ipv4Addr::LOCALHOST.into(),
    )
    .await
    .expect("emulators");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    // As `trueup demo` run in the repository is given it: `--root .`, a
    // path relative to where it ran.
    let root = relative_to_cwd(&repo_root());
    let (config_path, loaded) = trueup::demo::write_config(
        &data,
        &root,
        "127.0.0.1:0".parse().expect("addr"),
        &emulators,
    )
    .expect("the demo's trueup.toml");
    assert_eq!(config_path, data.join("trueup.toml"));
    for (id, entry) in &loaded.plugins {
        assert!(
            entry.path.join("plugin.wasm").is_file(),
            "{id}: {}",
            entry.path.display()
        );
    }

    // `trueup --config DIR/trueup.toml` from elsewhere: every plugin loads.
    let elsewhere = tempfile::tempdir().expect("another working directory");
    let list = trueup(&config_path, elsewhere.path(), &["plugin", "list"], "");
    assert!(list.status.success(), "{}", text(&list));
    let listing = text(&list);
    let mut ids: Vec<&str> = vec![trueup::demo::PSA_PLUGIN];
    ids.extend(trueup::demo::VENDORS.iter().map(|v| v.2));
    for id in ids {
        let line = listing
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} listed: {listing}"));
        assert!(line.contains(" ok ("), "{line}");
    }
    // The database and key are in the data directory, not where it ran.
    let app = open(&config_path).await;
    app.store().close().await;
    assert!(data.join("trueup.db").is_file());
    assert!(data.join("secret.key").is_file());
    assert!(
        std::fs::read_dir(elsewhere.path())
            .expect("dir")
            .next()
            .is_none()
    );
}
