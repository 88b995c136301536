//! One test per sandbox limit: the script hits it, the error names it and
//! points at the line (and column) that hit it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use trueup_core::mapping::UsageMapper;
use trueup_core::model::{Attributes, UsageObservation};

use crate::compile::{CompiledRules, Phase, RuleError, RuleVersion};
use crate::limits::*;
use crate::script;

fn version(source: &str) -> RuleVersion {
    RuleVersion::new(
        "rules/test.rhai",
        source,
        None,
        "test",
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(),
    )
}

fn compile(source: &str) -> Result<Arc<CompiledRules>, RuleError> {
    CompiledRules::compile(&version(source)).map(Arc::new)
}

/// The script error of `source`: (phase, line, message, hint).
fn script_error(source: &str) -> (Phase, u32, String, Option<String>) {
    match compile(source) {
        Err(RuleError::Script {
            phase,
            position,
            message,
            hint,
            ..
        }) => (phase, position.map_or(0, |p| p.line), message, hint),
        Err(other) => panic!("not a script error: {other}"),
        Ok(_) => panic!("compiled:\n{source}"),
    }
}

fn row(vendor: &str, sku: &str, attrs: &[(&str, &str)]) -> UsageObservation {
    UsageObservation {
        vendor: vendor.into(),
        account: "acct".into(),
        sku_id: sku.into(),
        sku_name: Arc::from(sku),
        quantity: 1.into(),
        unit: Arc::from("device"),
        unit_cost: None,
        billing_term: None,
        commitment_end: None,
        attributes: Attributes::new(attrs.iter().map(|(k, v)| (Arc::from(*k), Arc::from(*v)))),
        observed_at: chrono::DateTime::UNIX_EPOCH,
    }
}

/// The failure a closure rule produces for one row: (line, message).
fn closure_failure(source: &str) -> (u32, String) {
    let rules = compile(source).unwrap_or_else(|e| panic!("{e}"));
    let mapper = rules.mapper(NaiveDate::from_ymd_opt(2025, 3, 31).unwrap());
    let failure = mapper
        .map_usage(&row("v", "S", &[]), None)
        .expect_err("the closure must fail");
    (
        failure.position.as_ref().map_or(0, |p| p.line),
        failure.message,
    )
}

#[test]
fn operations_are_limited_while_loading() {
    let (phase, line, message, hint) = script_error("let x = 1;\nloop { x += 1; }\n");
    assert_eq!((phase, line), (Phase::Declare, 2));
    assert!(
        message.contains(&format!(
            "more than {MAX_DECLARATION_OPERATIONS} operations"
        )),
        "{message}"
    );
    assert!(hint.unwrap().contains("loops end"));
}

#[test]
fn operations_are_limited_in_a_closure() {
    // Rhai gives no position for a budget stop inside a closure; the
    // failure points at the rule's closure (`.when(` on line 2).
    let (line, message) = closure_failure(
        "map_vendor(\"v\")\n    .when(|row| {\n        let n = 0;\n        loop { n += 1; }\n    })\n    .to(\"X\");",
    );
    assert_eq!(line, 2, "{message}");
    assert!(
        message.contains(&format!("more than {MAX_CLOSURE_OPERATIONS} operations")),
        "{message}"
    );
    assert!(
        message.contains("rule map_vendor v * (declared at rules/test.rhai:1:1)"),
        "{message}"
    );
}

#[test]
fn closure_errors_point_inside_the_closure() {
    let (line, message) = closure_failure(
        "map_vendor(\"v\")\n    .when(|row| {\n        let n = 0;\n        throw `no decision for ${row.sku}`;\n    })\n    .to(\"X\");",
    );
    assert_eq!(line, 4, "{message}");
    assert!(message.ends_with("failed: no decision for S"), "{message}");
}

#[test]
fn wall_clock_time_is_limited() {
    // A zero time budget stops the evaluation at the first progress check.
    let rules = compile("map_sku(\"v\", \"S\").to(\"X\");").unwrap();
    let result = script::with_budget(u64::MAX, Duration::ZERO, || {
        rules.engine.run("let n = 0; while n < 1000000 { n += 1; }")
    });
    let error = result.expect_err("must stop");
    let described = crate::diagnostics::describe(&error, u64::MAX);
    assert!(
        described.message.contains("ran for more than"),
        "{}",
        described.message
    );
}

#[test]
fn call_depth_is_limited() {
    let (phase, line, message, _) =
        script_error("fn deeper(n) {\n    deeper(n + 1)\n}\ndeeper(0);\n");
    assert_eq!(phase, Phase::Declare);
    assert!((1..=4).contains(&line), "line {line}");
    assert!(
        message.contains(&format!("more than {MAX_CALL_LEVELS} levels deep")),
        "{message}"
    );
}

#[test]
fn expression_depth_is_limited() {
    let nested = format!(
        "let x = {}1{};",
        "(".repeat(MAX_EXPRESSION_DEPTH + 8),
        ")".repeat(MAX_EXPRESSION_DEPTH + 8)
    );
    let (phase, line, _, hint) = script_error(&format!("// deep\n{nested}\n"));
    assert_eq!((phase, line), (Phase::Compile, 2));
    assert!(
        hint.unwrap()
            .contains(&format!("{MAX_EXPRESSION_DEPTH} levels"))
    );
    // Inside a function the limit is lower.
    let depth = MAX_FUNCTION_EXPRESSION_DEPTH + 4;
    let in_fn = format!(
        "fn f() {{\n    {}1{}\n}}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    assert!(depth < MAX_EXPRESSION_DEPTH);
    let (phase, line, _, _) = script_error(&in_fn);
    assert_eq!((phase, line), (Phase::Compile, 2));
}

#[test]
fn string_size_is_limited() {
    let (phase, line, message, _) =
        script_error("let s = \"0123456789\";\nloop {\n    s += s;\n}\n");
    assert_eq!((phase, line), (Phase::Declare, 3));
    assert!(
        message.contains(&format!("strings {MAX_STRING_SIZE} bytes")),
        "{message}"
    );
}

#[test]
fn array_size_is_limited() {
    let (phase, line, message, _) = script_error("let a = [];\nloop {\n    a.push(1);\n}\n");
    assert_eq!((phase, line), (Phase::Declare, 3));
    assert!(
        message.contains(&format!("arrays {MAX_ARRAY_SIZE} items")),
        "{message}"
    );
}

#[test]
fn map_size_is_limited() {
    // A literal over the limit is refused when the file compiles.
    let literal: Vec<String> = (0..=MAX_MAP_SIZE).map(|i| format!("k{i}: {i}")).collect();
    let (phase, line, message, _) = script_error(&format!(
        "let ok = 1;\nlet m = #{{ {} }};\n",
        literal.join(", ")
    ));
    assert_eq!((phase, line), (Phase::Compile, 2));
    assert!(message.contains(&format!("({MAX_MAP_SIZE})")), "{message}");
    // Merging maps is stopped at the limit: two maps of 200 keys each
    // (built under the limit) cannot be merged.
    let (phase, line, message, _) = script_error(
        "let a = #{};\nlet b = #{};\nfor i in 0..200 { a[`a${i}`] = i; b[`b${i}`] = i; }\na += b;\n",
    );
    assert_eq!((phase, line), (Phase::Declare, 4));
    assert!(
        message.contains(&format!("maps {MAX_MAP_SIZE} properties")),
        "{message}"
    );
    // Rhai 1.27 does not check the map itself when `m[key] = value` adds a
    // key; such growth is bounded by the operation budget instead (each
    // new key costs operations), which the closure budget enforces.
    let (line, message) = closure_failure(
        "map_vendor(\"v\")\n    .when(|row| {\n        let m = #{};\n        let i = 0;\n        loop { m[`k${i}`] = i; i += 1; }\n    })\n    .to(\"X\");",
    );
    assert_eq!(line, 2, "{message}");
    assert!(
        message.contains(&format!("more than {MAX_CLOSURE_OPERATIONS} operations")),
        "{message}"
    );
}

#[test]
fn variables_are_limited() {
    let source: String = (0..=MAX_VARIABLES)
        .map(|i| format!("let v{i} = {i};\n"))
        .collect();
    let (phase, line, message, _) = script_error(&source);
    assert_eq!(phase, Phase::Declare);
    assert_eq!(
        line as usize,
        MAX_VARIABLES + 1,
        "the variable past the limit"
    );
    assert!(
        message.contains(&format!("more than {MAX_VARIABLES} variables")),
        "{message}"
    );
}

#[test]
fn eval_is_disabled() {
    let (phase, line, message, hint) = script_error("let a = 1;\nlet b = eval(\"a + 1\");\n");
    assert_eq!((phase, line), (Phase::Compile, 2));
    assert!(message.contains("eval"), "{message}");
    assert!(hint.unwrap().contains("eval is not available"));
}

#[test]
fn try_catch_cannot_swallow_failures() {
    let (phase, line, message, _) = script_error("let a = 1;\ntry { a = 2; } catch { a = 3; }\n");
    assert_eq!((phase, line), (Phase::Compile, 2));
    assert!(message.contains("try"), "{message}");
}

#[test]
fn modules_and_files_are_unavailable() {
    let (phase, line, message, hint) = script_error("// load a module\nimport \"helpers\" as h;\n");
    assert_eq!((phase, line), (Phase::Compile, 2));
    assert!(message.contains("import"), "{message}");
    assert!(hint.unwrap().contains("cannot load modules or files"));
    // No function reaches the file system.
    for call in [
        "open_file(\"/etc/passwd\")",
        "read_file(\"/etc/passwd\")",
        "Engine()",
    ] {
        let (phase, line, message, _) = script_error(&format!("let ok = 1;\nlet x = {call};\n"));
        assert_eq!((phase, line), (Phase::Declare, 2), "{call}");
        assert!(
            message.starts_with("there is no function"),
            "{call}: {message}"
        );
    }
}

#[test]
fn variables_must_be_declared() {
    let (phase, line, message, hint) =
        script_error("let vendor = \"v\";\nmap_sku(vendr, \"S\").to(\"X\");\n");
    assert_eq!((phase, line), (Phase::Compile, 2));
    assert!(message.contains("vendr"), "{message}");
    assert!(hint.unwrap().contains("declare it with let"));
}

#[test]
fn closures_cannot_declare_rules() {
    let (line, message) = closure_failure(
        "map_vendor(\"v\")\n    .when(|row| {\n        map_sku(\"v\", \"S\").to(\"Y\");\n        true\n    })\n    .to(\"X\");",
    );
    assert_eq!(line, 3, "{message}");
    assert!(
        message.contains("map_sku can only be called while the rule file loads"),
        "{message}"
    );
}

#[test]
fn closures_see_only_declared_attributes() {
    let (line, message) = closure_failure(
        "map_vendor(\"v\")\n    .when([\"a\"], |row| row.attrs[\"b\"] == \"x\")\n    .to(\"X\");",
    );
    assert_eq!(line, 2, "{message}");
    assert!(message.contains("there is no property \"b\""), "{message}");
    assert!(message.contains("declare"), "{message}");
}

#[test]
fn oversized_files_are_refused() {
    let big = "// x\n".repeat(MAX_SOURCE_BYTES / 5 + 1);
    assert!(matches!(compile(&big), Err(RuleError::TooLarge { .. })));
}

#[test]
fn print_is_captured_not_written() {
    let rules =
        compile("print(\"loading\");\ndebug(\"details\");\nmap_sku(\"v\", \"S\").to(\"X\");")
            .unwrap();
    assert_eq!(rules.printed(), ["loading", "\"details\" (line 2)"]);
}
