//! Shared helpers: where built plugins are, a fixture HTTP server, an engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use chrono::NaiveDate;
use trueup_plugin_host::{
    EngineSettings, Grants, LoadedPlugin, PluginEngine, PluginSecrets, PluginSettings, SecretValue,
    SessionOptions,
};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The built plugin directory for `id`; fails loudly when it was not built.
pub fn plugin_dir(id: &str) -> PathBuf {
    let dir = repo_root().join("target/plugins").join(id);
    assert!(
        dir.join("plugin.wasm").is_file(),
        "{} is missing: build the plugins with scripts/setup (scripts/test does it for you)",
        dir.join("plugin.wasm").display()
    );
    dir
}

/// A fresh engine (its own epoch ticker) with no compile cache.
pub fn engine() -> PluginEngine {
    PluginEngine::new(&EngineSettings::default()).expect("engine")
}

/// The secret the hostile guest is granted.
pub const TOKEN: &str = "tok-3f9a7c1e55";

/// A loopback server for guests to talk to:
/// - `GET /accounts`: two names, one per line, only with `Bearer TOKEN`;
/// - `GET /slow`: answers after 10 s;
/// - `GET /echo`: echoes the `Authorization` header;
/// - `GET /exfiltrate`: 200.
pub async fn fixture_server() -> String {
    async fn accounts(headers: HeaderMap) -> (StatusCode, String) {
        let expected = format!("Bearer {TOKEN}");
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            Some(value) if value == expected => (StatusCode::OK, "Northwind\nContoso".into()),
            _ => (StatusCode::UNAUTHORIZED, "bad token".into()),
        }
    }
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(10)).await;
        "late"
    }
    async fn echo(headers: HeaderMap) -> String {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
    let app = Router::new()
        .route("/accounts", get(accounts))
        .route("/slow", get(slow))
        .route("/echo", get(echo))
        .route("/exfiltrate", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind fixture server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("fixture server");
    });
    format!("http://{addr}")
}

/// Settings for the hostile guest: `behaviour`, talking to `base_url`,
/// loopback granted, its token granted.
pub fn hostile_settings(behaviour: &str, base_url: &str) -> PluginSettings {
    PluginSettings {
        config: BTreeMap::from([
            ("behaviour".to_owned(), behaviour.to_owned()),
            ("base_url".to_owned(), base_url.to_owned()),
        ]),
        grants: Grants {
            http: vec![base_url.to_owned()],
            private_networks: vec!["127.0.0.1/32".to_owned()],
            secrets: vec!["token".to_owned()],
        },
        ..PluginSettings::default()
    }
}

/// Session options with the hostile guest's token stored.
pub fn options_with_token() -> SessionOptions {
    SessionOptions::new(
        NaiveDate::from_ymd_opt(2026, 11, 25).expect("date"),
        PluginSecrets::new([("token".to_owned(), SecretValue::new(TOKEN))]),
    )
}

/// Loads the hostile guest with `behaviour`.
pub fn hostile(engine: &PluginEngine, behaviour: &str, base_url: &str) -> Arc<LoadedPlugin> {
    LoadedPlugin::load(
        engine,
        &plugin_dir("test.hostile"),
        &hostile_settings(behaviour, base_url),
    )
    .expect("load the hostile guest")
}

/// Cargo (the one running the tests, else `cargo` on the path) in the
/// repository root, without the variables Cargo set for this test crate:
/// build scripts that watch them (ring's does) would rebuild on every run.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(repo_root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&&*name)
        {
            command.env_remove(&*name);
        }
    }
    command
}

/// The `trueup` binary of the current sources, built once per test run
/// (`cargo test` builds only the library of the trueup package for this
/// test binary; tests that run `trueup` processes need the executable).
pub fn trueup_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let mut command = cargo();
            command.args([
                "build",
                "-p",
                "trueup",
                "--bin",
                "trueup",
                "--message-format=json-render-diagnostics",
            ]);
            if !cfg!(debug_assertions) {
                command.arg("--release");
            }
            let output = command
                .stderr(Stdio::inherit())
                .output()
                .expect("run cargo build -p trueup");
            assert!(
                output.status.success(),
                "cargo build -p trueup failed: {}",
                output.status
            );
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "trueup")
                .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                .expect("cargo reported the trueup executable")
        })
        .clone()
}
