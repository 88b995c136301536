//! The body of `POST /api/v1/usage`: one item, or `{"items": [...]}`.
//! Shape errors (not JSON, a missing or unknown field, a wrong type) are
//! "malformed" (400); values that are well-typed but wrong (a quantity
//! that is not a decimal or is negative, a bad date) are "invalid" (422).
//! Every problem names its JSON path.

use std::collections::HashMap;

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use crate::ingest::{MAX_VALUE_LEN, parse_decimal};

/// Most items in one request.
pub const MAX_BATCH_ITEMS: usize = 1_000;

/// How many days after today (the MSP's time zone) `observed_on` may be,
/// for vendors whose day starts earlier.
pub const MAX_FUTURE_DAYS: u64 = 1;

/// Most problems listed in one answer (the count says how many there were).
pub const MAX_REPORTED_PROBLEMS: usize = 100;

/// The fields of one item.
pub const ITEM_FIELDS: &[&str] = &[
    "account_id",
    "service",
    "quantity",
    "observed_on",
    "sku_name",
    "unit",
    "unit_cost",
];

/// One usage item.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PushUsageItem)]
pub(crate) struct RawItem {
    /// The vendor's id of the customer account (1 to 256 characters).
    account_id: String,
    /// The SKU id (1 to 256 characters).
    service: String,
    /// Units in use, 0 or more: a decimal string ("12.50") or a JSON
    /// integer; fractional JSON numbers are refused. Replaces the count of
    /// (account, service, observed_on).
    #[schema(value_type = String)]
    quantity: Value,
    /// The day counted; default today in the MSP's time zone; at most one
    /// day ahead.
    #[serde(default)]
    #[schema(value_type = Option<chrono::NaiveDate>)]
    observed_on: Option<String>,
    /// Display name of the SKU; default the service id.
    #[serde(default)]
    sku_name: Option<String>,
    /// Unit of measure; default "unit".
    #[serde(default)]
    unit: Option<String>,
    /// The vendor's cost per unit, 0 or more, as `quantity`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    unit_cost: Option<Value>,
}

/// A batch of 1 to [`MAX_BATCH_ITEMS`] items, set all or nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PushUsageBatch)]
pub(crate) struct RawBatch {
    /// The items.
    items: Vec<RawItem>,
}

/// One thing wrong with the body, at a JSON path (`$`, `$.items[2].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = PushProblem)]
pub struct Problem {
    /// Where.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, or not the expected shape: 400.
    Malformed(Vec<Problem>),
    /// More than [`MAX_BATCH_ITEMS`] items: 413.
    TooManyItems(usize),
    /// Values that are wrong: 422 (every problem, up to
    /// [`MAX_REPORTED_PROBLEMS`], and how many there were).
    Invalid(Vec<Problem>, usize),
}

/// One validated item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The item's JSON path (`$` or `$.items[N]`).
    pub path: String,
    /// The vendor's account id.
    pub account: String,
    /// The SKU id.
    pub service: String,
    /// Units.
    pub quantity: Decimal,
    /// The day counted (default: today in the MSP's time zone).
    pub observed_on: NaiveDate,
    /// The SKU's display name, if sent.
    pub sku_name: Option<String>,
    /// The unit, if sent.
    pub unit: Option<String>,
    /// The vendor's cost per unit, if sent.
    pub unit_cost: Option<Decimal>,
}

/// A validated body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Whether it was the `{"items": [...]}` form.
    pub batch: bool,
    /// The items, in order.
    pub items: Vec<Item>,
}

fn json_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." || text.is_empty() {
        "$".to_owned()
    } else {
        format!("$.{text}")
    }
}

fn malformed(path: &str, message: impl Into<String>) -> BodyError {
    BodyError::Malformed(vec![Problem {
        path: path.to_owned(),
        message: message.into(),
    }])
}

/// Parses and validates a request body; `today` is the MSP's date.
///
/// # Errors
/// See [`BodyError`].
pub fn parse(body: &[u8], today: NaiveDate) -> Result<Body, BodyError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| malformed("$", format!("the body is not JSON: {e}")))?;
    let Value::Object(root) = &value else {
        return Err(malformed(
            "$",
            "expected a JSON object: one item, or {\"items\": [...]}",
        ));
    };
    let (batch, raw) = if root.contains_key("items") {
        if let Some(Value::Array(items)) = root.get("items")
            && items.len() > MAX_BATCH_ITEMS
        {
            return Err(BodyError::TooManyItems(items.len()));
        }
        let batch: RawBatch = serde_path_to_error::deserialize(value)
            .map_err(|e| malformed(&json_path(e.path()), e.inner().to_string()))?;
        if batch.items.is_empty() {
            return Err(BodyError::Invalid(
                vec![Problem {
                    path: "$.items".into(),
                    message: "no items: send at least one".into(),
                }],
                1,
            ));
        }
        (true, batch.items)
    } else {
        let item: RawItem = serde_path_to_error::deserialize(value)
            .map_err(|e| malformed(&json_path(e.path()), e.inner().to_string()))?;
        (false, vec![item])
    };
    let latest = today
        .checked_add_days(Days::new(MAX_FUTURE_DAYS))
        .unwrap_or(today);
    let mut checker = Checker::default();
    let mut items = Vec::with_capacity(raw.len());
    let mut first_of: HashMap<(String, String, NaiveDate), String> = HashMap::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let path = if batch {
            format!("$.items[{i}]")
        } else {
            "$".to_owned()
        };
        if let Some(item) = checker.item(&path, raw, today, latest) {
            let key = (item.account.clone(), item.service.clone(), item.observed_on);
            match first_of.get(&key) {
                Some(first) => checker.invalid(
                    &path,
                    format!(
                        "sets account {:?}, service {:?} on {} again (as {first}); send each once per request",
                        item.account, item.service, item.observed_on
                    ),
                ),
                None => {
                    first_of.insert(key, path.clone());
                    items.push(item);
                }
            }
        }
    }
    checker.finish()?;
    Ok(Body { batch, items })
}

#[derive(Default)]
struct Checker {
    malformed: Vec<Problem>,
    invalid: Vec<Problem>,
    count: usize,
}

impl Checker {
    fn push(list: &mut Vec<Problem>, count: &mut usize, path: &str, message: String) {
        *count += 1;
        if list.len() < MAX_REPORTED_PROBLEMS {
            list.push(Problem {
                path: path.to_owned(),
                message,
            });
        }
    }

    fn invalid(&mut self, path: &str, message: String) {
        Self::push(&mut self.invalid, &mut self.count, path, message);
    }

    fn malformed(&mut self, path: &str, message: String) {
        Self::push(&mut self.malformed, &mut self.count, path, message);
    }

    fn finish(self) -> Result<(), BodyError> {
        if !self.malformed.is_empty() {
            return Err(BodyError::Malformed(self.malformed));
        }
        if !self.invalid.is_empty() {
            return Err(BodyError::Invalid(self.invalid, self.count));
        }
        Ok(())
    }

    fn text(&mut self, path: &str, value: String, required: bool) -> Option<String> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            if required {
                self.invalid(path, "must not be empty".into());
            }
            return None;
        }
        if trimmed.len() > MAX_VALUE_LEN {
            self.invalid(
                path,
                format!(
                    "is {} bytes long; at most {MAX_VALUE_LEN} are accepted",
                    trimmed.len()
                ),
            );
            return None;
        }
        if let Err(message) = trueup_core::model::text::check("the value", trimmed, false) {
            self.invalid(path, message);
            return None;
        }
        Some(trimmed.to_owned())
    }

    fn amount(&mut self, path: &str, what: &str, value: &Value) -> Option<Decimal> {
        use trueup_core::model::amount;
        let parsed = match value {
            Value::String(text) => parse_decimal(text.trim()),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Decimal::from(i))
                } else if let Some(u) = n.as_u64() {
                    Ok(Decimal::from(u))
                } else {
                    Err(format!(
                        "the fractional number {n} must be sent as a string (e.g. \"{n}\") so it is read exactly, not as binary floating point"
                    ))
                }
            }
            other => {
                self.malformed(
                    path,
                    format!(
                        "expected {what} as a decimal string (e.g. \"12.5\") or an integer, found {}",
                        kind(other)
                    ),
                );
                return None;
            }
        };
        match parsed {
            Ok(v) if v.is_sign_negative() && !v.is_zero() => {
                self.invalid(path, format!("{what} {v} is negative; send 0 or more"));
                None
            }
            Ok(v) => match amount::check(what, v, amount::MAX_AMOUNT) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.invalid(path, e.to_string());
                    None
                }
            },
            Err(message) => {
                self.invalid(path, message);
                None
            }
        }
    }

    fn item(
        &mut self,
        path: &str,
        raw: RawItem,
        today: NaiveDate,
        latest: NaiveDate,
    ) -> Option<Item> {
        let account = self.text(&format!("{path}.account_id"), raw.account_id, true);
        let service = self.text(&format!("{path}.service"), raw.service, true);
        let quantity = self.amount(&format!("{path}.quantity"), "quantity", &raw.quantity);
        let unit_cost = match &raw.unit_cost {
            None | Some(Value::Null) => Some(None),
            Some(v) => self
                .amount(&format!("{path}.unit_cost"), "unit_cost", v)
                .map(Some),
        };
        let sku_name = match raw.sku_name {
            Some(name) => self.text(&format!("{path}.sku_name"), name, false),
            None => None,
        };
        let unit = match raw.unit {
            Some(unit) => self.text(&format!("{path}.unit"), unit, false),
            None => None,
        };
        let observed_on = match raw.observed_on {
            None => Some(today),
            Some(text) => {
                let at = format!("{path}.observed_on");
                match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
                    Ok(day) if day > latest => {
                        self.invalid(
                            &at,
                            format!("{day} is in the future (today is {today}); send the day the count was taken"),
                        );
                        None
                    }
                    Ok(day) => Some(day),
                    Err(_) => {
                        self.invalid(
                            &at,
                            format!("{text:?} is not a date; send YYYY-MM-DD, e.g. \"{today}\""),
                        );
                        None
                    }
                }
            }
        };
        Some(Item {
            path: path.to_owned(),
            account: account?,
            service: service?,
            quantity: quantity?,
            observed_on: observed_on?,
            sku_name,
            unit,
            unit_cost: unit_cost?,
        })
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
    }

    fn parse_str(body: &str) -> Result<Body, BodyError> {
        parse(body.as_bytes(), today())
    }

    fn problems(error: BodyError) -> Vec<(String, String)> {
        match error {
            BodyError::Malformed(p) | BodyError::Invalid(p, _) => {
                p.into_iter().map(|p| (p.path, p.message)).collect()
            }
            BodyError::TooManyItems(n) => vec![("$.items".into(), n.to_string())],
        }
    }

    #[test]
    fn one_item_with_defaults() {
        let body = parse_str(r#"{"account_id": " a1 ", "service": "backup", "quantity": "12.50"}"#)
            .expect("valid");
        assert!(!body.batch);
        assert_eq!(
            body.items,
            [Item {
                path: "$".into(),
                account: "a1".into(),
                service: "backup".into(),
                quantity: Decimal::from_str("12.50").expect("decimal"),
                observed_on: today(),
                sku_name: None,
                unit: None,
                unit_cost: None,
            }]
        );
        assert_eq!(body.items[0].quantity.scale(), 2);
    }

    #[test]
    fn a_batch_with_every_field() {
        let body = parse_str(
            r#"{"items": [
                {"account_id": "a1", "service": "backup", "quantity": 3, "observed_on": "2026-11-24",
                 "sku_name": "Backup", "unit": "seat", "unit_cost": "2.10"},
                {"account_id": "a2", "service": "backup", "quantity": "0"}
            ]}"#,
        )
        .expect("valid");
        assert!(body.batch);
        assert_eq!(body.items.len(), 2);
        assert_eq!(body.items[0].path, "$.items[0]");
        assert_eq!(
            body.items[0].observed_on,
            NaiveDate::from_ymd_opt(2026, 11, 24).expect("date")
        );
        assert_eq!(
            body.items[0].unit_cost,
            Some(Decimal::from_str("2.10").expect("decimal"))
        );
        assert_eq!(body.items[1].quantity, Decimal::ZERO);
    }

    #[test]
    fn shape_errors_are_malformed_with_their_path() {
        let table = [
            ("not json", "$", "not JSON"),
            ("[1]", "$", "expected a JSON object"),
            (
                r#"{"service": "s", "quantity": "1"}"#,
                "$",
                "missing field `account_id`",
            ),
            (
                r#"{"account_id": 5, "service": "s", "quantity": "1"}"#,
                "$.account_id",
                "invalid type",
            ),
            (
                r#"{"account_id": "a", "service": "s", "quantity": "1", "qty": 2}"#,
                "$.qty",
                "unknown field `qty`",
            ),
            (
                r#"{"items": [{"account_id": "a", "service": "s", "quantity": "1"}, {"account_id": "a"}]}"#,
                "$.items[1]",
                "missing field `service`",
            ),
            (
                r#"{"items": {"account_id": "a"}}"#,
                "$.items",
                "invalid type",
            ),
            (
                r#"{"account_id": "a", "service": "s", "quantity": true}"#,
                "$.quantity",
                "found a boolean",
            ),
            (
                r#"{"items": [{"account_id": "a", "service": "s", "quantity": "1", "unit_cost": []}]}"#,
                "$.items[0].unit_cost",
                "found an array",
            ),
        ];
        for (body, path, message) in table {
            let error = parse_str(body).expect_err(body);
            assert!(
                matches!(error, BodyError::Malformed(_)),
                "{body}: {error:?}"
            );
            let found = problems(error);
            assert_eq!(found[0].0, path, "{body}: {found:?}");
            assert!(found[0].1.contains(message), "{body}: {found:?}");
        }
    }

    #[test]
    fn bad_values_are_invalid_and_all_reported() {
        let error = parse_str(
            r#"{"items": [
                {"account_id": "a1", "service": "s", "quantity": "twelve"},
                {"account_id": "a2", "service": "s", "quantity": "-1"},
                {"account_id": "a3", "service": "s", "quantity": 1.5},
                {"account_id": "", "service": "s", "quantity": "1"},
                {"account_id": "a5", "service": "s", "quantity": "1", "observed_on": "25/11/2026"},
                {"account_id": "a6", "service": "s", "quantity": "1", "observed_on": "2026-12-25"},
                {"account_id": "a7", "service": "s", "quantity": "1", "unit_cost": "-2"},
                {"account_id": "a8", "service": "s", "quantity": "1"},
                {"account_id": "a8", "service": "s", "quantity": "2"}
            ]}"#,
        )
        .expect_err("invalid");
        let BodyError::Invalid(list, count) = error else {
            panic!("expected invalid values: {error:?}");
        };
        assert_eq!(count, 8);
        let found: Vec<(&str, &str)> = list
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        let expect = [
            ("$.items[0].quantity", "not a decimal"),
            ("$.items[1].quantity", "negative"),
            ("$.items[2].quantity", "as a string"),
            ("$.items[3].account_id", "must not be empty"),
            ("$.items[4].observed_on", "YYYY-MM-DD"),
            ("$.items[5].observed_on", "future"),
            ("$.items[6].unit_cost", "negative"),
            ("$.items[8]", "again (as $.items[7])"),
        ];
        assert_eq!(found.len(), expect.len(), "{found:?}");
        for ((path, message), (want_path, want)) in found.iter().zip(expect) {
            assert_eq!(*path, want_path);
            assert!(message.contains(want), "{path}: {message}");
        }
    }

    #[test]
    fn batches_are_capped_and_must_not_be_empty() {
        let item = r#"{"account_id": "a", "service": "s", "quantity": "1"}"#;
        let items = vec![item; MAX_BATCH_ITEMS + 1].join(",");
        let error = parse_str(&format!(r#"{{"items": [{items}]}}"#)).expect_err("too many");
        assert_eq!(error, BodyError::TooManyItems(MAX_BATCH_ITEMS + 1));
        let error = parse_str(r#"{"items": []}"#).expect_err("empty");
        assert!(matches!(error, BodyError::Invalid(..)), "{error:?}");
        // Tomorrow is accepted (vendors ahead of the MSP's zone).
        let tomorrow =
            r#"{"account_id": "a", "service": "s", "quantity": "1", "observed_on": "2026-11-26"}"#;
        assert!(parse_str(tomorrow).is_ok());
    }
}
