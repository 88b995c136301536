//! `trueup rules check | test | explain | dry-run`: the MSP's Rhai rules
//! (docs/rules.md). Until the store keeps rule versions, rules are read
//! from files; the active rules are the file `[rules] path` names
//! (default `rules/default.rhai`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{NaiveDate, Utc};
use clap::{Args, Subcommand};
use trueup_core::mapping::SkuTableFirst;
use trueup_core::matching::{MatchConfig, MatchOutcome};
use trueup_core::model::AccountMapping;
use trueup_core::reconcile::reconcile;
use trueup_core::snapshot::Snapshot;
use trueup_rules::cases::run_tests;
use trueup_rules::diff::diff_outputs;
use trueup_rules::explain::explain;
use trueup_rules::{CompiledRules, RuleVersion, tests_path};

use trueup::config::Config;

/// `trueup rules ...`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Compile a rule file, run its declarations and the tests beside it
    /// (`NAME.tests.toml`); errors give file:line:col and a hint.
    Check {
        /// The rule file (default: the configured `[rules] path`).
        file: Option<PathBuf>,
    },
    /// Run the test cases beside rule files and show a diff for each
    /// failing expectation.
    Test {
        /// A rule file, or a directory whose `*.rhai` files (recursively)
        /// have tests beside them (default: the configured rule file).
        path: Option<PathBuf>,
    },
    /// Explain how the rules map one SKU of one vendor account in a
    /// snapshot: every distinct decision with its trace, and the policy of
    /// each product it maps to.
    Explain {
        /// The snapshot file (docs/snapshot-format.md).
        #[arg(long)]
        snapshot: PathBuf,
        /// The SKU id.
        #[arg(long)]
        sku: String,
        /// The vendor account id.
        #[arg(long)]
        account: String,
        /// The vendor integration id, when the account id is not unique.
        #[arg(long)]
        vendor: Option<String>,
        /// The rule file (default: the configured `[rules] path`).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// The reconcile date, YYYY-MM-DD (default: the snapshot's
        /// `taken_at` date).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
    },
    /// Reconcile a snapshot under a draft rule file and under the active
    /// rules, and print the cards that differ.
    DryRun {
        /// The snapshot file (docs/snapshot-format.md).
        #[arg(long)]
        snapshot: PathBuf,
        /// The draft rule file (default: the active rules, which prints a
        /// summary and no differences).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// The active rule file (default: the configured `[rules] path`).
        #[arg(long)]
        active: Option<PathBuf>,
        /// The reconcile date, YYYY-MM-DD (default: the snapshot's
        /// `taken_at` date).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
        /// Print the differences as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("`{text}` is not a date in the form YYYY-MM-DD: {e}"))
}

/// Runs `trueup rules ...`.
///
/// # Errors
/// A rule file that does not compile, failing tests, an unreadable file.
pub fn run(config: Arc<Config>, args: RulesArgs) -> anyhow::Result<()> {
    let configured = || config.rules.path.clone();
    match args.command {
        RulesCommand::Check { file } => check(&file.unwrap_or_else(configured)),
        RulesCommand::Test { path } => test(&path.unwrap_or_else(configured)),
        RulesCommand::Explain {
            snapshot,
            sku,
            account,
            vendor,
            rules,
            as_of,
        } => {
            let rules = compile(&rules.unwrap_or_else(configured))?;
            let (snapshot, as_of) = load_snapshot(&snapshot, as_of)?;
            let (mappings, _) = account_mappings(&snapshot);
            // The snapshot's SKU table first, then the rules: the server's
            // one mapping path.
            let mapper = SkuTableFirst::new(snapshot.sku_mapper(), rules.mapper(as_of));
            let explanation = explain(
                &mapper,
                &snapshot,
                &mappings,
                vendor.as_deref(),
                &account,
                &sku,
            )?;
            print!("{explanation}");
            Ok(())
        }
        RulesCommand::DryRun {
            snapshot,
            rules,
            active,
            as_of,
            json,
        } => dry_run(
            &snapshot,
            rules.as_deref(),
            &active.unwrap_or_else(configured),
            as_of,
            json,
        ),
    }
}

/// Reads and compiles a rule file (tests are not run).
fn compile(path: &Path) -> anyhow::Result<Arc<CompiledRules>> {
    let version = RuleVersion::from_file(path, author(), Utc::now())?;
    let rules = CompiledRules::compile(&version)?;
    for warning in rules.warnings() {
        eprintln!("{warning}");
    }
    Ok(Arc::new(rules))
}

/// Who is making a version: the OS user, until the CLI has logins.
fn author() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "cli".to_owned())
}

fn check(path: &Path) -> anyhow::Result<()> {
    let version = RuleVersion::from_file(path, author(), Utc::now())?;
    let rules = Arc::new(CompiledRules::compile(&version)?);
    for line in rules.printed() {
        println!("{}: print: {line}", rules.file());
    }
    for warning in rules.warnings() {
        println!("{warning}");
    }
    println!(
        "{}: ok: {} rule(s), {} service declaration(s), {} closure(s); vendors {}; version {}",
        rules.file(),
        rules.rule_count(),
        rules.service_count(),
        rules.closure_count(),
        rules.vendors().join(", "),
        rules.label()
    );
    match &version.tests {
        Some(text) => {
            let file = tests_path(path).display().to_string();
            let report = run_tests(&rules, &file, text)?;
            if report.passed() {
                println!("{file}: {} case(s) passed", report.cases.len());
                Ok(())
            } else {
                println!("{report}");
                bail!(
                    "{} of {} test case(s) fail",
                    report.failed(),
                    report.cases.len()
                )
            }
        }
        None => {
            println!(
                "{}: no tests beside the rules; add {} (see docs/rules.md)",
                rules.file(),
                tests_path(path).display()
            );
            Ok(())
        }
    }
}

/// Rule files under `dir` with tests beside them, sorted.
fn rule_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read directory {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rule_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rhai") && tests_path(&path).is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn test(path: &Path) -> anyhow::Result<()> {
    let files = if path.is_dir() {
        let mut files = Vec::new();
        rule_files(path, &mut files)?;
        if files.is_empty() {
            bail!(
                "no rule file under {} has tests beside it (NAME.tests.toml)",
                path.display()
            );
        }
        files
    } else {
        if !tests_path(path).is_file() {
            bail!(
                "{} has no tests beside it; add {} (see docs/rules.md)",
                path.display(),
                tests_path(path).display()
            );
        }
        vec![path.to_owned()]
    };
    let (mut cases, mut failed) = (0, 0);
    for file in &files {
        let version = RuleVersion::from_file(file, author(), Utc::now())?;
        let rules = Arc::new(CompiledRules::compile(&version)?);
        let tests = tests_path(file).display().to_string();
        let text = version.tests.as_deref().unwrap_or_default();
        let report = run_tests(&rules, &tests, text)?;
        println!("{report}");
        cases += report.cases.len();
        failed += report.failed();
    }
    if failed > 0 {
        bail!("{failed} of {cases} test case(s) fail");
    }
    println!("{cases} test case(s) in {} file(s) passed", files.len());
    Ok(())
}

fn load_snapshot(path: &Path, as_of: Option<NaiveDate>) -> anyhow::Result<(Snapshot, NaiveDate)> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read snapshot {name}"))?;
    let snapshot = Snapshot::from_json(&text).with_context(|| format!("snapshot {name}"))?;
    let as_of = match (as_of, snapshot.taken_at) {
        (Some(date), _) => date,
        (None, Some(taken)) => taken.date_naive(),
        (None, None) => bail!("snapshot {name} has no taken_at; pass --as-of YYYY-MM-DD"),
    };
    Ok((snapshot, as_of))
}

/// Account mappings as `trueup reconcile` uses them: matching decides
/// accounts, mappings on record win.
fn account_mappings(snapshot: &Snapshot) -> (Vec<AccountMapping>, Vec<MatchOutcome>) {
    let outcomes = snapshot.resolve_mappings(MatchConfig::default());
    (
        outcomes.iter().map(|o| o.mapping.clone()).collect(),
        outcomes,
    )
}

fn dry_run(
    snapshot: &Path,
    draft: Option<&Path>,
    active: &Path,
    as_of: Option<NaiveDate>,
    json: bool,
) -> anyhow::Result<()> {
    let (snapshot, as_of) = load_snapshot(snapshot, as_of)?;
    let (mappings, outcomes) = account_mappings(&snapshot);
    let active_rules = compile(active)?;
    let draft_rules = match draft {
        Some(path) => compile(path)?,
        None => Arc::clone(&active_rules),
    };
    let run = |rules: &Arc<CompiledRules>| {
        let mapper = SkuTableFirst::new(snapshot.sku_mapper(), rules.mapper(as_of));
        let output = reconcile(&snapshot.reconcile_input(as_of, &mappings, &outcomes, &mapper));
        (output, mapper.rules().stats())
    };
    let (before, _) = run(&active_rules);
    let (after, stats) = run(&draft_rules);
    let diff = diff_outputs(&before, &after);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&diff).context("cannot write the JSON output")?
        );
        return Ok(());
    }
    println!("{diff}");
    println!(
        "draft: {} cards ({} rule error(s)); {} usage rows, {} distinct decisions, {} Rhai closure call(s)",
        after.cards.len(),
        after.stats.rows_rule_error,
        after.stats.usage_rows,
        stats.decisions,
        stats.closure_calls
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use trueup_core::synth::{SynthConfig, generate};

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
    }

    #[test]
    fn the_shipped_rules_check_and_pass_their_tests() {
        check(&shipped().join("default.rhai")).expect("test setup");
        test(&shipped()).expect("test setup");
    }

    #[test]
    fn failing_cases_and_broken_files_fail_the_command() {
        let dir = tempfile::tempdir().expect("test setup");
        let rules = dir.path().join("r.rhai");
        std::fs::write(&rules, "map_sku(\"h\", \"agent\").to(\"EDR\");\n").expect("test setup");
        std::fs::write(
            dir.path().join("r.tests.toml"),
            "as_of = \"2025-03-31\"\n[[case]]\nname = \"x\"\n[[case.usage]]\nvendor = \"h\"\nsku = \"agent\"\nmaps_to = [\"XDR\"]\n",
        )
        .expect("test setup");
        let error = test(dir.path()).expect_err("must fail").to_string();
        assert_eq!(error, "1 of 1 test case(s) fail");
        assert!(check(&rules).is_err());
        std::fs::write(&rules, "// a rule\nservice(\"EDR\").measure(\"max\");\n")
            .expect("test setup");
        let error = check(&rules).expect_err("must fail").to_string();
        assert!(
            error.starts_with(&format!(
                "{}:2:16: error while loading the rules: unknown usage measure",
                rules.display()
            )),
            "{error}"
        );
        let lonely = dir.path().join("lonely.rhai");
        std::fs::write(&lonely, "map_sku(\"h\", \"agent\").to(\"EDR\");\n").expect("test setup");
        assert!(
            test(&lonely)
                .expect_err("must fail")
                .to_string()
                .contains("has no tests beside it")
        );
    }

    #[test]
    fn explain_and_dry_run_read_a_snapshot() {
        let config = SynthConfig {
            seed: 3,
            companies: 4,
            usage_rows: 400,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 31).expect("test setup"),
        };
        let mut snapshot = generate(&config);
        snapshot.taken_at = Some(
            Utc.with_ymd_and_hms(2025, 3, 31, 23, 0, 0)
                .single()
                .expect("a valid instant"),
        );
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("snapshot.json");
        std::fs::write(&path, snapshot.to_json().expect("test setup")).expect("test setup");
        let synth = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/benches/synth.rhai");
        dry_run(
            &path,
            Some(&synth),
            &shipped().join("default.rhai"),
            None,
            false,
        )
        .expect("test setup");
        dry_run(&path, None, &synth, Some(config.as_of), true).expect("test setup");
        let (snapshot, as_of) = load_snapshot(&path, None).expect("test setup");
        assert_eq!(as_of, config.as_of);
        let (mappings, _) = account_mappings(&snapshot);
        let rules = compile(&synth).expect("test setup");
        let mapper = SkuTableFirst::new(snapshot.sku_mapper(), rules.mapper(as_of));
        let row = &snapshot
            .usage
            .iter()
            .find(|u| u.vendor.as_str() == "ninjaone")
            .expect("test setup");
        let text = explain(
            &mapper,
            &snapshot,
            &mappings,
            None,
            row.account.as_str(),
            row.sku_id.as_str(),
        )
        .expect("test setup")
        .to_string();
        assert!(text.contains("synth.rhai:"), "{text}");
        snapshot_without_date(&dir);
    }

    fn snapshot_without_date(dir: &tempfile::TempDir) {
        let path = dir.path().join("undated.json");
        let snapshot = Snapshot::new(trueup_core::effective::PsaProfile::connectwise());
        std::fs::write(&path, snapshot.to_json().expect("test setup")).expect("test setup");
        let error = load_snapshot(&path, None)
            .expect_err("must fail")
            .to_string();
        assert!(error.contains("pass --as-of"), "{error}");
    }
}
