//! `plugin.toml` parsing: good manifests load, bad ones fail with an error
//! naming the file and the field.

use std::path::Path;

use trueup_plugin_host::manifest::{PluginKind, PluginManifest};

const GOOD: &str = r#"
id = "acme.backup"
name = "Acme Backup"
version = "1.2.3"
kind = "vendor"
api = "0.1.0"
description = "Backup seats per customer"
authors = ["Acme <dev@acme.example>"]
license = "MIT"

[config.base_url]
description = "API base"
required = true

[config.api_key]
description = "API key"
secret = true

[capabilities]
http = ["https://api.acme.example", "{{config.base_url}}"]
secrets = ["api_key"]

[limits]
memory_mib = 48
"#;

fn parse(text: &str) -> Result<PluginManifest, String> {
    PluginManifest::parse(text, Path::new("plugins/acme/plugin.toml")).map_err(|e| e.to_string())
}

#[test]
fn a_good_manifest_parses() {
    let manifest = parse(GOOD).expect("good manifest");
    assert_eq!(manifest.id, "acme.backup");
    assert_eq!(manifest.kind, PluginKind::Vendor);
    assert!(manifest.is_secret("api_key"));
    assert!(!manifest.is_secret("base_url"));
    assert_eq!(manifest.limits.memory_mib, Some(48));
    assert_eq!(manifest.http_patterns().len(), 2);
}

#[test]
fn every_shipped_manifest_parses() {
    let root = crate::support::repo_root();
    let mut seen = 0;
    for dir in ["plugins", "tests/guests"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("read dir") {
            let path = entry.expect("entry").path().join("plugin.toml");
            if path.is_file() {
                PluginManifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
    }
    assert!(seen >= 3, "found only {seen} manifests");
}

#[test]
fn bad_manifests_name_the_file_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown field",
            "colour = \"blue\"\n",
            "plugins/acme/plugin.toml: line 10: unknown field `colour`, expected one of `id`, `name`, `version`, `kind`, `api`, `description`, `authors`, `license`, `repository`, `component`, `config`, `capabilities`, `limits`",
        ),
        (
            "bad id",
            "",
            "plugins/acme/plugin.toml: field `id`: \"Acme Backup!\" is not a plugin id (lower-case letters, digits, '.', '-', '_'; starting with a letter; at most 64 characters)",
        ),
        (
            "bad kind",
            "",
            "plugins/acme/plugin.toml: line 5: unknown variant `rmm`, expected `psa` or `vendor`",
        ),
        (
            "bad version",
            "",
            "plugins/acme/plugin.toml: field `version`: \"1.2\" is not a semantic version like 1.2.3",
        ),
        (
            "secret with default",
            "",
            "plugins/acme/plugin.toml: field `config.api_key.default`: a secret cannot have a default value",
        ),
        (
            "undeclared secret capability",
            "",
            "plugins/acme/plugin.toml: field `capabilities.secrets`: \"token\" has no [config.token] entry with `secret = true` describing it",
        ),
        (
            "wildcard host",
            "",
            "plugins/acme/plugin.toml: field `capabilities.http`: \"*\" is not an allowed-host pattern: allowing every host would remove the network sandbox; list the hosts the plugin talks to",
        ),
        (
            "template to an undeclared key",
            "",
            "plugins/acme/plugin.toml: field `capabilities.http`: \"{{config.site}}\" refers to config key `site`, which [config] does not declare",
        ),
        (
            "unknown limit",
            "",
            "plugins/acme/plugin.toml: line 25: unknown field `fuel`, expected one of `memory_mib`, `call_timeout_ms`, `cpu_budget_ms`, `max_response_bytes`",
        ),
    ];
    for (name, _, expected) in cases {
        let text = match *name {
            "unknown field" => GOOD.replace(
                "license = \"MIT\"\n",
                "license = \"MIT\"\ncolour = \"blue\"\n",
            ),
            "bad id" => GOOD.replace("id = \"acme.backup\"", "id = \"Acme Backup!\""),
            "bad kind" => GOOD.replace("kind = \"vendor\"", "kind = \"rmm\""),
            "bad version" => GOOD.replace("version = \"1.2.3\"", "version = \"1.2\""),
            "secret with default" => {
                GOOD.replace("secret = true", "secret = true\ndefault = \"x\"")
            }
            "undeclared secret capability" => GOOD.replace(
                "secrets = [\"api_key\"]",
                "secrets = [\"api_key\", \"token\"]",
            ),
            "wildcard host" => {
                GOOD.replace("http = [\"https://api.acme.example\"", "http = [\"*\"")
            }
            "template to an undeclared key" => {
                GOOD.replace("{{config.base_url}}", "{{config.site}}")
            }
            "unknown limit" => GOOD.replace("memory_mib = 48", "memory_mib = 48\nfuel = 10"),
            other => panic!("no case {other}"),
        };
        assert_ne!(text, GOOD, "case {name} did not change the manifest");
        let error = parse(&text).expect_err(name);
        assert_eq!(&error, expected, "case {name}");
    }
}
