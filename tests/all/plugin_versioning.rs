//! API versions are checked before anything is compiled or linked.

use std::path::Path;

use trueup_plugin_host::LoadError;
use trueup_plugin_host::LoadedPlugin;

use crate::support::{engine, hostile_settings, plugin_dir};

/// A copy of the hostile guest's directory, with edits.
fn copy_plugin(
    to: &Path,
    manifest_edit: impl Fn(String) -> String,
    wasm_edit: impl Fn(Vec<u8>) -> Vec<u8>,
) {
    let from = plugin_dir("test.hostile");
    let manifest = std::fs::read_to_string(from.join("plugin.toml")).expect("manifest");
    std::fs::write(to.join("plugin.toml"), manifest_edit(manifest)).expect("write manifest");
    let wasm = std::fs::read(from.join("plugin.wasm")).expect("component");
    std::fs::write(to.join("plugin.wasm"), wasm_edit(wasm)).expect("write component");
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(
        from.len(),
        to.len(),
        "same length keeps the binary's layout"
    );
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn a_manifest_for_an_unsupported_api_is_refused_before_the_component_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(
        dir.path(),
        |m| m.replace("api = \"0.1.0\"", "api = \"0.9.0\""),
        |w| w,
    );
    // Without the component, a later check would fail with an I/O error:
    // the refusal must come first.
    std::fs::remove_file(dir.path().join("plugin.wasm")).expect("remove");
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("unsupported API");
    assert!(
        matches!(error, LoadError::IncompatibleApi { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "plugin test.hostile 0.1.0 was built for trueup:connector@0.9.0; this host supports 0.1.0–0.1.x. Rebuild it against a supported trueup-connector SDK, or upgrade Trueup"
    );
}

#[test]
fn a_component_exporting_an_unsupported_api_is_refused_before_compiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(
        dir.path(),
        |m| m,
        |w| replace_all(&w, b"connector/vendor@0.1.0", b"connector/vendor@0.7.0"),
    );
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("unsupported API");
    assert_eq!(
        error.to_string(),
        "plugin test.hostile 0.1.0 was built for trueup:connector@0.7.0; this host supports 0.1.0–0.1.x. Rebuild it against a supported trueup-connector SDK, or upgrade Trueup"
    );
}

#[test]
fn a_manifest_that_lies_about_the_world_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(
        dir.path(),
        |m| m.replace("kind = \"vendor\"", "kind = \"psa\""),
        |w| w,
    );
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("mismatch");
    assert_eq!(
        error.to_string(),
        "plugin test.hostile: plugin.toml says kind = \"psa\" but the component implements the vendor-connector world"
    );
}

#[test]
fn a_core_module_is_not_a_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(dir.path(), |m| m, |_| b"\0asm\x01\0\0\0".to_vec());
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("core module");
    assert_eq!(
        error.to_string(),
        "plugin test.hostile: this is a core WebAssembly module, not a component; build it with scripts/setup (or `wasm-tools component new`)"
    );
}

#[test]
fn garbage_is_not_webassembly() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(dir.path(), |m| m, |_| b"MZ not wasm".to_vec());
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("garbage");
    assert!(
        error
            .to_string()
            .starts_with("plugin test.hostile: not a WebAssembly binary: "),
        "{error}"
    );
}

#[test]
fn the_supported_version_loads() {
    let plugin = LoadedPlugin::load(
        &engine(),
        &plugin_dir("test.hostile"),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect("loads");
    assert_eq!(plugin.api(), "0.1.0");
    assert!(
        plugin
            .interface()
            .exports
            .contains(&"trueup:connector/vendor@0.1.0".to_owned())
    );
}
