//! The shipped rules (`rules/default.rhai` and `rules/examples/*.rhai`)
//! compile without warnings and pass the test cases beside them, so CI runs
//! every `*.tests.toml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use trueup_rules::cases::run_tests;
use trueup_rules::{CompiledRules, RuleVersion, tests_path};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn rule_files() -> Vec<PathBuf> {
    let mut files = vec![rules_dir().join("default.rhai")];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(rules_dir().join("examples"))
        .expect("rules/examples is readable")
        .map(|e| e.expect("rules/examples is readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    examples.sort();
    files.extend(examples);
    files
}

#[test]
fn every_shipped_rule_file_has_passing_tests() {
    let files = rule_files();
    assert!(
        files.len() >= 6,
        "the default rules and at least five examples: {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let tests = tests_path(file);
        assert!(
            tests.is_file(),
            "{} has no tests beside it ({})",
            file.display(),
            tests.display()
        );
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
        let version = RuleVersion::from_file(file, "ci", at).unwrap();
        let rules = match CompiledRules::compile(&version) {
            Ok(rules) => Arc::new(rules),
            Err(e) => panic!("{e}"),
        };
        assert!(
            rules.warnings().is_empty(),
            "{}: {:?}",
            file.display(),
            rules.warnings()
        );
        let text = version.tests.clone().unwrap();
        let report = run_tests(&rules, &tests.display().to_string(), &text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.cases.len() >= 3,
            "{}: only {} case(s)",
            tests.display(),
            report.cases.len()
        );
        println!("{report}");
        if !report.passed() {
            failures.push(report.to_string());
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
