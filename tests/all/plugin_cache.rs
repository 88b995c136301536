//! Compiled components are cached on disk, keyed by the component's
//! content hash and the engine's version and configuration; a damaged entry
//! is recompiled, never trusted.

use trueup_plugin_host::{EngineSettings, LoadedPlugin, PluginEngine};

use crate::support::{hostile_settings, plugin_dir};

fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

#[tokio::test]
async fn a_compiled_component_is_cached_by_content_and_reused() {
    let cache = tempfile::tempdir().expect("tempdir");
    let engine = PluginEngine::new(&EngineSettings {
        cache_dir: Some(cache.path().to_owned()),
        ..EngineSettings::default()
    })
    .expect("engine");
    let settings = hostile_settings("well-behaved", "http://127.0.0.1:9");
    let first = LoadedPlugin::load(&engine, &plugin_dir("test.hostile"), &settings).expect("load");
    let entries = cache_entries(cache.path());
    assert_eq!(entries.len(), 1, "one entry per component");
    let name = entries[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert!(
        name.starts_with(first.component_sha256()),
        "keyed by the component's hash: {name}"
    );
    let written = std::fs::metadata(&entries[0])
        .expect("meta")
        .modified()
        .expect("mtime");

    // A second load uses the entry (no new file, same file untouched).
    LoadedPlugin::load(&engine, &plugin_dir("test.hostile"), &settings).expect("load again");
    let again = cache_entries(cache.path());
    assert_eq!(again, entries);
    assert_eq!(
        std::fs::metadata(&again[0])
            .expect("meta")
            .modified()
            .expect("mtime"),
        written
    );

    // Another component gets its own entry.
    LoadedPlugin::load(&engine, &plugin_dir("test.bench"), &Default::default())
        .expect("load bench");
    assert_eq!(cache_entries(cache.path()).len(), 2);
}

#[tokio::test]
async fn a_damaged_cache_entry_is_discarded_and_recompiled() {
    let cache = tempfile::tempdir().expect("tempdir");
    let engine = PluginEngine::new(&EngineSettings {
        cache_dir: Some(cache.path().to_owned()),
        ..EngineSettings::default()
    })
    .expect("engine");
    let settings = hostile_settings("well-behaved", "http://127.0.0.1:9");
    LoadedPlugin::load(&engine, &plugin_dir("test.hostile"), &settings).expect("load");
    let entry = cache_entries(cache.path()).remove(0);
    std::fs::write(&entry, b"not a compiled component").expect("damage it");
    let plugin = LoadedPlugin::load(&engine, &plugin_dir("test.hostile"), &settings)
        .expect("a damaged entry must not stop the load");
    assert_eq!(plugin.manifest().id, "test.hostile");
    let repaired = std::fs::read(&entry).expect("rewritten");
    assert_ne!(
        repaired,
        b"not a compiled component".to_vec(),
        "the entry was recompiled"
    );
}
