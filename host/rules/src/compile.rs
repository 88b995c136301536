//! Compiling a rule version once into a native rule table
//! ([`CompiledRules`]), and the cache of compiled versions ([`RuleCache`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rhai::{AST, Engine};
use trueup_core::mapping::SourcePosition;

use crate::diagnostics::{describe, parse_error};
use crate::limits::*;
use crate::script::{self, DeclState, SharedState, source_position};
use crate::sync::lock;
use crate::table::{ClosureKind, RuleKind, RuleTable};

// Versions and errors were defined here first; their paths stay.
pub use crate::error::{Phase, RuleError, RuleWarning};
pub use crate::version::{RuleVersion, VERSION_PREFIX, sha256_hex, tests_path};

/// A compiled rule version: the engine, the script (for closures) and the
/// native rule table its declaration phase produced. Shared (`Arc`) by
/// every run that uses the version.
pub struct CompiledRules {
    file: Arc<str>,
    checksum: String,
    label: String,
    pub(crate) engine: Engine,
    pub(crate) ast: AST,
    pub(crate) table: RuleTable,
    /// Rule indices per vendor, in declaration order.
    pub(crate) by_vendor: HashMap<Arc<str>, Vec<u32>>,
    /// Whether any rule reads more of a row than vendor, SKU and company.
    pub(crate) reads_rows: bool,
    warnings: Vec<RuleWarning>,
    printed: Vec<String>,
}

impl fmt::Debug for CompiledRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledRules")
            .field("file", &self.file)
            .field("checksum", &self.checksum)
            .field("rules", &self.table.rules.len())
            .field("services", &self.table.services.len())
            .field("closures", &self.table.closures.len())
            .finish_non_exhaustive()
    }
}

impl CompiledRules {
    /// Compiles `version`: parses it, runs it once to declare its rules
    /// (within [`MAX_DECLARATION_OPERATIONS`] and the other sandbox
    /// limits) and checks the declarations.
    ///
    /// # Errors
    /// [`RuleError::Script`] with the file, line, column and a hint;
    /// [`RuleError::TooLarge`] for an oversized file.
    pub fn compile(version: &RuleVersion) -> Result<Self, RuleError> {
        let file: Arc<str> = Arc::from(version.file.as_str());
        if version.source.len() > MAX_SOURCE_BYTES {
            return Err(RuleError::TooLarge {
                file: version.file.clone(),
                bytes: version.source.len(),
            });
        }
        let state: SharedState = Arc::new(Mutex::new(DeclState::new(Arc::clone(&file))));
        let engine = script::engine(&state);
        let mut ast = engine
            .compile(&version.source)
            .map_err(|e| parse_error(&file, &e))?;
        ast.set_source(version.file.as_str());
        lock(&state).open = true;
        let ran = script::with_budget(MAX_DECLARATION_OPERATIONS, MAX_EVALUATION_TIME, || {
            engine.run_ast(&ast)
        });
        let (table, printed, hint) = {
            let mut s = lock(&state);
            s.open = false;
            let mut printed = std::mem::take(&mut s.printed);
            if s.printed_dropped > 0 {
                printed.push(format!("... {} more line(s) not kept", s.printed_dropped));
            }
            (std::mem::take(&mut s.table), printed, s.hint.take())
        };
        if let Err(error) = ran {
            let failure = describe(&error, MAX_DECLARATION_OPERATIONS);
            return Err(RuleError::Script {
                file: version.file.clone(),
                position: source_position(&file, failure.position),
                phase: Phase::Declare,
                message: failure.message,
                hint: hint.or(failure.hint),
            });
        }
        check_table(&table, &ast, &version.file)?;
        let warnings = shadowed(&table);
        let mut by_vendor: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (i, rule) in table.rules.iter().enumerate() {
            by_vendor
                .entry(Arc::clone(&rule.vendor))
                .or_default()
                .push(i as u32);
        }
        let reads_rows = table.rules.iter().any(|r| {
            r.name_like.is_some()
                || r.chooser.is_some()
                || r.conditions.iter().any(|c| {
                    !matches!(
                        c,
                        crate::table::Condition::CompanyIn { .. }
                            | crate::table::Condition::CompanyPredicate(_)
                    )
                })
        });
        Ok(Self {
            file,
            checksum: version.checksum.clone(),
            label: version.label(),
            engine,
            ast,
            table,
            by_vendor,
            reads_rows,
            warnings,
            printed,
        })
    }

    /// The file name in positions.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The version's checksum.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// The version recorded on cards (`rules/<checksum>`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Number of mapping rules.
    pub fn rule_count(&self) -> usize {
        self.table.rules.len()
    }

    /// Number of rules that map usage to a product (`map_*`, `also_*`;
    /// not `ignore_*`).
    pub fn mapping_rule_count(&self) -> usize {
        self.table
            .rules
            .iter()
            .filter(|r| r.kind != crate::table::RuleKind::Ignore)
            .count()
    }

    /// Number of service declarations.
    pub fn service_count(&self) -> usize {
        self.table.services.len()
    }

    /// Number of closures.
    pub fn closure_count(&self) -> usize {
        self.table.closures.len()
    }

    /// Vendor ids the rules mention, sorted.
    pub fn vendors(&self) -> Vec<&str> {
        let mut vendors: Vec<&str> = self.by_vendor.keys().map(|v| v.as_ref()).collect();
        vendors.sort_unstable();
        vendors
    }

    /// Problems that do not stop the rules (unreachable rules).
    pub fn warnings(&self) -> &[RuleWarning] {
        &self.warnings
    }

    /// What the file printed while loading.
    pub fn printed(&self) -> &[String] {
        &self.printed
    }
}

/// Checks what the file declared: every map rule maps to something, every
/// closure takes one argument.
fn check_table(table: &RuleTable, ast: &AST, file: &str) -> Result<(), RuleError> {
    let invalid = |position: &SourcePosition, message: String, hint: &str| RuleError::Script {
        file: file.to_owned(),
        position: Some(position.clone()),
        phase: Phase::Validate,
        message,
        hint: Some(hint.to_owned()),
    };
    for rule in &table.rules {
        if rule.kind != RuleKind::Ignore && rule.targets.is_empty() && rule.chooser.is_none() {
            return Err(invalid(
                &rule.position,
                format!("{} maps to no product", rule.name),
                "add .to(\"PRODUCT\"), or use ignore_sku/ignore_vendor for usage that is not billed",
            ));
        }
        if rule.chooser.is_some() && !rule.targets.is_empty() {
            return Err(invalid(
                &rule.position,
                format!("{} has both .to(...) and .choose(...)", rule.name),
                "use .to(...) for fixed products or .choose(...) to pick them, not both",
            ));
        }
    }
    for closure in &table.closures {
        let name = closure.fn_ptr.fn_name();
        let curried = closure.fn_ptr.curry().len();
        let params = ast
            .iter_functions()
            .find(|f| f.name == name)
            .map(|f| f.params.len());
        let what = match closure.kind {
            ClosureKind::RowPredicate | ClosureKind::RowChooser => "the row",
            ClosureKind::CompanyPredicate => "the company",
            ClosureKind::ContractPredicate => "the contract",
        };
        match params {
            Some(n) if n == curried + 1 => {}
            Some(n) => {
                return Err(invalid(
                    &closure.position,
                    format!(
                        "the closure takes {} argument(s); it is given one, {what}",
                        n.saturating_sub(curried)
                    ),
                    "write it as |row| ... (one argument)",
                ));
            }
            None => {
                return Err(invalid(
                    &closure.position,
                    format!("{name} is not a function of this file"),
                    "pass a closure |row| ... or the name of a function defined in the file",
                ));
            }
        }
    }
    Ok(())
}

/// Terminal rules no row can reach: an earlier unconditional terminal rule
/// of the same vendor covers every SKU they apply to.
fn shadowed(table: &RuleTable) -> Vec<RuleWarning> {
    let mut warnings = Vec::new();
    for (i, later) in table.rules.iter().enumerate() {
        if !later.kind.is_terminal() {
            continue;
        }
        let cover = table.rules[..i].iter().find(|earlier| {
            earlier.is_unconditional()
                && earlier.vendor == later.vendor
                && earlier.sku_like.is_none()
                && earlier.name_like.is_none()
                && (earlier.skus.is_empty()
                    || (!later.skus.is_empty()
                        && later.skus.iter().all(|s| earlier.skus.contains(s))))
        });
        if let Some(earlier) = cover {
            warnings.push(RuleWarning {
                position: later.position.clone(),
                message: format!(
                    "{} can never apply: {} (at {}) already decides every {} row it could see",
                    later.name, earlier.name, earlier.position, later.vendor
                ),
            });
        }
    }
    warnings
}

/// Compiled versions by (checksum, file), so each version is compiled once
/// per process. Holds at most [`MAX_CACHED_VERSIONS`], dropping the least
/// recently used.
#[derive(Debug, Default)]
pub struct RuleCache {
    /// Least recently used first.
    entries: Mutex<Vec<CacheEntry>>,
}

/// (checksum, file) and the compiled version.
type CacheEntry = ((String, String), Arc<CompiledRules>);

impl RuleCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled `version`, compiling it on first use.
    ///
    /// # Errors
    /// As [`CompiledRules::compile`], and [`RuleError::Checksum`] when the
    /// version's checksum does not match its source.
    pub fn get(&self, version: &RuleVersion) -> Result<Arc<CompiledRules>, RuleError> {
        let key = (version.checksum.clone(), version.file.clone());
        {
            let mut entries = lock(&self.entries);
            if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
                let entry = entries.remove(i);
                let compiled = Arc::clone(&entry.1);
                entries.push(entry);
                return Ok(compiled);
            }
        }
        version.verify()?;
        // Compiled outside the lock: other versions stay available meanwhile.
        let compiled = Arc::new(CompiledRules::compile(version)?);
        let mut entries = lock(&self.entries);
        if !entries.iter().any(|(k, _)| *k == key) {
            if entries.len() >= MAX_CACHED_VERSIONS {
                entries.remove(0);
            }
            entries.push((key, Arc::clone(&compiled)));
        }
        Ok(compiled)
    }

    /// How many versions are cached.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn version(source: &str) -> RuleVersion {
        RuleVersion::new("rules/v.rhai", source, None, "ana", at())
    }

    #[test]
    fn a_version_is_identified_by_the_sha256_of_its_source() {
        let v = version("map_sku(\"v\", \"S\").to(\"X\");");
        // sha256 of the empty string, as a fixed point of the encoding.
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(v.checksum, sha256_hex(&v.source));
        assert_eq!(v.label(), format!("rules/{}", v.checksum));
        assert!(v.verify().is_ok());
        let mut tampered = v.clone();
        tampered
            .source
            .push_str("\nmap_sku(\"v\", \"T\").to(\"Y\");");
        assert!(matches!(tampered.verify(), Err(RuleError::Checksum { .. })));
        // Tests are stored with the version but do not change its identity.
        let with_tests = RuleVersion::new(
            "rules/v.rhai",
            v.source.clone(),
            Some("as_of = \"2025-03-31\"".into()),
            "bo",
            at(),
        );
        assert_eq!(with_tests.checksum, v.checksum);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<RuleVersion>(&json).unwrap(), v);
    }

    #[test]
    fn the_cache_compiles_each_version_once_and_drops_the_oldest() {
        let cache = RuleCache::new();
        let v1 = version("map_sku(\"v\", \"S\").to(\"X\");");
        let a = cache.get(&v1).unwrap();
        let b = cache.get(&v1.clone()).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "compiled once");
        for i in 0..MAX_CACHED_VERSIONS {
            cache
                .get(&version(&format!("map_sku(\"v\", \"S{i}\").to(\"X\");")))
                .unwrap();
        }
        assert_eq!(cache.len(), MAX_CACHED_VERSIONS);
        let c = cache.get(&v1).unwrap();
        assert!(
            !Arc::ptr_eq(&a, &c),
            "v1 was the least recently used and was dropped"
        );
        let mut tampered = v1.clone();
        tampered.checksum = sha256_hex("something else");
        assert!(matches!(
            cache.get(&tampered),
            Err(RuleError::Checksum { .. })
        ));
    }

    #[test]
    fn bad_declarations_name_their_position_and_a_hint() {
        // (source, phase, line, column, message contains, hint contains)
        let table = [
            (
                "map_sku(\"v\", \"S\");",
                Phase::Validate,
                1,
                1,
                "maps to no product",
                "ignore_sku",
            ),
            (
                "map_sku(\"v\", \"S\").to(\"X\").choose(|r| \"Y\");",
                Phase::Validate,
                1,
                1,
                "both .to(...) and .choose(...)",
                "not both",
            ),
            (
                "map_vendor(\"v\").when(|a, b| true).to(\"X\");",
                Phase::Validate,
                1,
                17,
                "takes 2 argument(s)",
                "one argument",
            ),
            (
                "\n  ignore_sku(\"v\", \"S\").to(\"X\");",
                Phase::Declare,
                2,
                24,
                "cannot map to X",
                "map_sku",
            ),
            (
                "map_sku(\"v\", \"S\").to(\"X\", -1);",
                Phase::Declare,
                1,
                19,
                "negative",
                "zero or more",
            ),
            (
                "map_sku(\"v\", \"S\").multiplier(2);",
                Phase::Declare,
                1,
                19,
                "no product to multiply",
                ".to(",
            ),
            (
                "map_sku(\"\", \"S\").to(\"X\");",
                Phase::Declare,
                1,
                1,
                "vendor id is empty",
                "non-empty",
            ),
            (
                "map_sku(\"v\", []).to(\"X\");",
                Phase::Declare,
                1,
                1,
                "empty list",
                "at least one",
            ),
            (
                "map_sku(\"v\", [1]).to(\"X\");",
                Phase::Declare,
                1,
                1,
                "must be a string",
                "[\"X\", \"Y\"]",
            ),
            (
                "service(\"X\").effective(\"soon\");",
                Phase::Declare,
                1,
                14,
                "unknown effective-date policy \"soon\"",
                "first_of_next_month",
            ),
            (
                "service(\"X\").measure(\"max\");",
                Phase::Declare,
                1,
                14,
                "unknown usage measure",
                "daily_average",
            ),
            (
                "service(\"X\").round(\"half\");",
                Phase::Declare,
                1,
                14,
                "unknown rounding",
                "nearest",
            ),
            (
                "service(\"X\").effective_on_day(32);",
                Phase::Declare,
                1,
                14,
                "day 32",
                "1 to 31",
            ),
            (
                "service(\"X\").effective_on(\"31/03/2025\");",
                Phase::Declare,
                1,
                14,
                "not a date",
                "YYYY-MM-DD",
            ),
            (
                "service(\"X\").minimum(10).maximum(5);",
                Phase::Declare,
                1,
                26,
                "minimum 10 is more than maximum 5",
                "at most",
            ),
            (
                "service(\"X\").when_cycle(\"weekly\");",
                Phase::Declare,
                1,
                14,
                "unknown billing cycle",
                "quarterly",
            ),
            (
                "map_sku(\"v\", \"S\").effective(\"arrears\");",
                Phase::Declare,
                1,
                19,
                "there is no function effective (Rule, string)",
                "service setting",
            ),
            (
                "service(\"X\").to(\"Y\");",
                Phase::Declare,
                1,
                14,
                "there is no function to (Service, string)",
                "belongs to mapping rules",
            ),
            (
                "map_sku(\"v\", \"S\").too(\"Y\");",
                Phase::Declare,
                1,
                19,
                "there is no function too",
                "docs/rules.md",
            ),
            (
                "map_sku(\"v\", \"S\").to(\"X\";\n",
                Phase::Compile,
                1,
                25,
                "",
                "",
            ),
        ];
        for (source, phase, line, column, message, hint) in table {
            match CompiledRules::compile(&version(source)) {
                Err(RuleError::Script {
                    phase: p,
                    position,
                    message: m,
                    hint: h,
                    ..
                }) => {
                    let position = position.unwrap();
                    assert_eq!(
                        (p, position.line, position.column),
                        (phase, line, Some(column)),
                        "{source}: {m}"
                    );
                    assert!(m.contains(message), "{source}: {m}");
                    assert!(h.unwrap_or_default().contains(hint), "{source}");
                }
                Err(other) => panic!("{source}: {other}"),
                Ok(_) => panic!("{source} compiled"),
            }
        }
    }

    #[test]
    fn errors_print_as_file_line_column_with_a_hint() {
        let error = CompiledRules::compile(&version(
            "// rules\nservice(\"X\")\n    .effective(\"soon\");",
        ))
        .unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("rules/v.rhai:3:6: error while loading the rules: unknown effective-date policy \"soon\"\n  hint: use one of"), "{text}");
    }

    #[test]
    fn unreachable_rules_are_warned_about() {
        let rules = CompiledRules::compile(&version(
            "ignore_vendor(\"v\");\nmap_sku(\"v\", \"S\").to(\"X\");\nmap_sku(\"w\", [\"A\", \"B\"]).to(\"Y\");\nmap_sku(\"w\", \"A\").to(\"Z\");\nmap_sku(\"w\", \"C\").to(\"Z\");\nalso_sku(\"w\", \"A\").to(\"Q\");",
        ))
        .unwrap();
        let warnings: Vec<(u32, &str)> = rules
            .warnings()
            .iter()
            .map(|w| (w.position.line, w.message.as_str()))
            .collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0].0, 2);
        assert!(
            warnings[0]
                .1
                .contains("ignore_vendor v * (at rules/v.rhai:1:1) already decides"),
            "{}",
            warnings[0].1
        );
        assert_eq!(warnings[1].0, 4);
        assert_eq!(rules.vendors(), ["v", "w"]);
        assert_eq!(
            (
                rules.rule_count(),
                rules.service_count(),
                rules.closure_count()
            ),
            (6, 0, 0)
        );
    }
}
