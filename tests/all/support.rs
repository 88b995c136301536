//! Shared helpers: where built plugins are, a fixture HTTP server, an engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
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
