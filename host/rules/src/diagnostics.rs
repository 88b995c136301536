//! Rhai's errors in a rule author's words: what failed, where, and a hint
//! naming the limit or the fix.

use std::sync::Arc;

use rhai::{EvalAltResult, ParseError, ParseErrorType, Position};

use crate::error::{Phase, RuleError};
use crate::limits::*;
use crate::script::{self, source_position};

/// A failure of a Rhai evaluation, in the MSP's words.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    pub message: String,
    pub position: Position,
    pub hint: Option<String>,
}

/// Describes a Rhai error: the innermost error (a closure's failure inside
/// the call that ran it) with its position, limits named by their value.
pub(crate) fn describe(error: &EvalAltResult, operations: u64) -> Described {
    let inner = error.unwrap_inner();
    let position = if inner.position().is_none() {
        error.position()
    } else {
        inner.position()
    };
    let (message, hint): (String, Option<&str>) = match inner {
        EvalAltResult::ErrorTooManyOperations(_) => (
            format!("the rule used more than {operations} operations (a loop that does not end?)"),
            Some("make loops end; rules should only look at a few values"),
        ),
        EvalAltResult::ErrorTerminated(value, _) => (
            value.to_string(),
            Some("make loops end; rules should only look at a few values"),
        ),
        EvalAltResult::ErrorStackOverflow(_) => (
            format!("functions call each other more than {MAX_CALL_LEVELS} levels deep"),
            Some("look for a function that calls itself without stopping"),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => (
            format!(
                "{what} exceeds the limit (strings {MAX_STRING_SIZE} bytes, arrays {MAX_ARRAY_SIZE} items, maps {MAX_MAP_SIZE} properties)"
            ),
            Some("rules should not build large values"),
        ),
        EvalAltResult::ErrorTooManyVariables(_) => (
            format!("more than {MAX_VARIABLES} variables are in use at once"),
            Some("use fewer variables, or arrays"),
        ),
        EvalAltResult::ErrorRuntime(value, _) => (value.to_string(), None),
        EvalAltResult::ErrorFunctionNotFound(signature, _) => {
            let signature = readable_types(signature);
            let name = signature.split(" (").next().unwrap_or_default();
            let hint = if signature.contains("(Rule")
                && script::SERVICE_METHODS.contains(&name)
                && !script::RULE_METHODS.contains(&name)
            {
                format!(
                    "{name} is a service setting: write service(\"PRODUCT\").{name}(...), not on a mapping rule"
                )
            } else if signature.contains("(Service")
                && script::RULE_METHODS.contains(&name)
                && !script::SERVICE_METHODS.contains(&name)
            {
                format!(
                    "{name} belongs to mapping rules (map_sku, map_vendor, ...), not to service(...)"
                )
            } else {
                "check the name and the types of the arguments; docs/rules.md lists what rules can call".to_owned()
            };
            return Described {
                message: format!("there is no function {signature}"),
                position,
                hint: Some(hint),
            };
        }
        EvalAltResult::ErrorPropertyNotFound(property, _) => (
            format!("there is no property {property:?}"),
            Some(
                "a closure sees only the attributes it declares: list it, e.g. .when([\"os-name\"], |row| ...)",
            ),
        ),
        EvalAltResult::ErrorVariableNotFound(name, _) => (
            format!("there is no variable {name}"),
            Some("declare it with let before using it"),
        ),
        other => {
            // Rhai appends " (line L, position C)"; the position is kept
            // separately.
            let text = other.to_string();
            let suffix = format!(" ({})", other.position());
            let text = if other.position().is_none() {
                text
            } else {
                text.trim_end_matches(suffix.as_str()).to_owned()
            };
            (text, None)
        }
    };
    Described {
        message,
        position,
        hint: hint.map(str::to_owned),
    }
}

/// Rhai's type names in a signature, as a rule author knows them.
fn readable_types(signature: &str) -> String {
    signature
        .replace("&str | ImmutableString | String", "string")
        .replace("rust_decimal::decimal::Decimal", "decimal")
        .replace("rust_decimal::Decimal", "decimal")
        .replace("i64", "integer")
}

/// A parse error as a [`RuleError::Script`] of the compile phase, with a
/// hint for the constructs Trueup rules leave out.
pub(crate) fn parse_error(file: &Arc<str>, error: &ParseError) -> RuleError {
    let kind = error.err_type();
    let hint = match kind {
        ParseErrorType::ExprTooDeep => Some(format!(
            "expressions may nest {MAX_EXPRESSION_DEPTH} levels ({MAX_FUNCTION_EXPRESSION_DEPTH} inside functions); split it with let"
        )),
        ParseErrorType::VariableUndefined(_) => Some("declare it with let before using it".to_owned()),
        ParseErrorType::Reserved(word) if word == "eval" => Some("eval is not available in Trueup rules".to_owned()),
        ParseErrorType::Reserved(word) if word == "try" || word == "catch" => Some(
            "try/catch is not available: a failing declaration must stop the file, and a failing closure marks its cards"
                .to_owned(),
        ),
        ParseErrorType::Reserved(word) if word == "import" || word == "export" => {
            Some("rules cannot load modules or files; put everything in one rule file".to_owned())
        }
        _ => None,
    };
    let message = match kind {
        ParseErrorType::Reserved(word) => format!("{word:?} is not available in Trueup rules"),
        other => other.to_string(),
    };
    // A disabled keyword is reported as an improper symbol, not as reserved.
    let hint = hint.or_else(|| {
        ["eval", "try", "catch"]
            .iter()
            .find(|word| message.contains(&format!("'{word}'")))
            .map(|word| match *word {
                "eval" => "eval is not available in Trueup rules".to_owned(),
                _ => "try/catch is not available: a failing declaration must stop the file, and a failing closure marks its cards"
                    .to_owned(),
            })
    });
    RuleError::Script {
        file: file.to_string(),
        position: source_position(file, error.position()),
        phase: Phase::Compile,
        message,
        hint,
    }
}
