//! Autotask queries: the JSON search (`{"filter": [...], "IncludeFields":
//! [...], "MaxRecords": n}`) sent as `GET /{Entity}/query?search=` or
//! `POST /{Entity}/query`, its evaluation, and id-ordered paging with
//! `pageDetails.nextPageUrl`.
//!
//! Filter items are `{"op", "field", "value"}` with ops `eq noteq gt gte lt
//! lte beginsWith endsWith contains exist notExist in notIn`, or groups
//! `{"op": "and"|"or", "items": [...]}` nested to any depth; the top-level
//! list is an implicit `and`. Property names, ops and field names match
//! case-insensitively. Text compares case-insensitively. A query needs at
//! least one filter item (`{"op": "gte", "field": "id", "value": 0}` is the
//! usual "everything").

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::AtError;
use super::entities::Entity;
use crate::common::{FieldType, Val, compare, decimal_from_json, parse_datetime};

/// Records per page, and the largest `MaxRecords` accepted.
pub const MAX_RECORDS: usize = 500;
/// The most conditions an `or` group may hold.
pub const MAX_OR_CONDITIONS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    Gt,
    Gte,
    Lt,
    Lte,
    BeginsWith,
    EndsWith,
    Contains,
    Exist,
    NotExist,
    In,
    NotIn,
}

impl Op {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "noteq" => Op::NotEq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "beginswith" => Op::BeginsWith,
            "endswith" => Op::EndsWith,
            "contains" => Op::Contains,
            "exist" => Op::Exist,
            "notexist" => Op::NotExist,
            "in" => Op::In,
            "notin" => Op::NotIn,
            _ => return None,
        })
    }
}

/// A compiled filter.
#[derive(Debug, Clone)]
enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Leaf {
        field: &'static str,
        ty: FieldType,
        op: Op,
        values: Vec<Val<'static>>,
    },
}

/// A compiled query for entity `E`.
#[derive(Debug, Clone)]
pub struct Search {
    filter: Filter,
    /// Fields to return (`None` = all).
    pub include: Option<Vec<&'static str>>,
    /// Records per page.
    pub max_records: usize,
}

fn get<'v>(object: &'v serde_json::Map<String, Value>, name: &str) -> Option<&'v Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn error(message: impl Into<String>) -> AtError {
    AtError::server(message)
}

impl Search {
    /// Compiles the search JSON for entity `E`.
    pub fn parse<E: Entity>(search: &Value) -> Result<Search, AtError> {
        let Value::Object(object) = search else {
            return Err(error(
                "The search must be a JSON object with a filter array.",
            ));
        };
        let items = match get(object, "filter") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                return Err(error(
                    "A query requires at least one filter item, e.g. {\"op\":\"gte\",\"field\":\"id\",\"value\":0}.",
                ));
            }
            Some(_) => return Err(error("filter must be an array of filter items.")),
        };
        let filter = Filter::All(
            items
                .iter()
                .map(|item| compile::<E>(item))
                .collect::<Result<_, _>>()?,
        );
        let include = match get(object, "IncludeFields") {
            None | Some(Value::Null) => None,
            Some(Value::Array(fields)) if fields.is_empty() => None,
            Some(Value::Array(fields)) => Some(
                fields
                    .iter()
                    .map(|f| {
                        let name = f.as_str().unwrap_or_default();
                        E::field(name).map(|(n, _)| n).ok_or_else(|| {
                            error(format!(
                                "IncludeFields: unable to find field '{name}' in the {} entity.",
                                E::SINGULAR
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(error("IncludeFields must be an array of field names.")),
        };
        let max_records = match get(object, "MaxRecords") {
            None | Some(Value::Null) => MAX_RECORDS,
            Some(value) => match value.as_u64() {
                Some(n) if (1..=MAX_RECORDS as u64).contains(&n) => n as usize,
                _ => {
                    return Err(error(format!(
                        "MaxRecords must be a whole number between 1 and {MAX_RECORDS}, not {value}."
                    )));
                }
            },
        };
        Ok(Search {
            filter,
            include,
            max_records,
        })
    }

    /// Whether `record` matches.
    pub fn matches<E: Entity>(&self, record: &E) -> bool {
        self.filter.matches(record)
    }
}

fn compile<E: Entity>(item: &Value) -> Result<Filter, AtError> {
    let Value::Object(object) = item else {
        return Err(error(format!(
            "Each filter item must be an object, not {item}."
        )));
    };
    let op_text = get(object, "op")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if op_text.eq_ignore_ascii_case("and") || op_text.eq_ignore_ascii_case("or") {
        let Some(Value::Array(items)) = get(object, "items") else {
            return Err(error(format!(
                "The '{op_text}' group needs an items array."
            )));
        };
        if items.is_empty() {
            return Err(error(format!("The '{op_text}' group has no items.")));
        }
        let or = op_text.eq_ignore_ascii_case("or");
        if or && items.len() > MAX_OR_CONDITIONS {
            return Err(error(format!(
                "An 'or' group may hold at most {MAX_OR_CONDITIONS} conditions; this one holds {}.",
                items.len()
            )));
        }
        let children = items
            .iter()
            .map(compile::<E>)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if or {
            Filter::Any(children)
        } else {
            Filter::All(children)
        });
    }
    let op = Op::parse(op_text).ok_or_else(|| {
        error(format!(
            "Invalid filter operator '{op_text}'; use eq, noteq, gt, gte, lt, lte, beginsWith, endsWith, contains, exist, notExist, in, notIn, and, or."
        ))
    })?;
    let field_name = get(object, "field")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if get(object, "udf").and_then(Value::as_bool).unwrap_or(false) {
        return Err(error(format!(
            "Unable to find user-defined field '{field_name}' in the {} entity.",
            E::SINGULAR
        )));
    }
    let (field, ty) = E::field(field_name).ok_or_else(|| {
        error(format!(
            "Unable to find field '{field_name}' in the {} entity.",
            E::SINGULAR
        ))
    })?;
    let raw = get(object, "value");
    let values = match op {
        Op::Exist | Op::NotExist => Vec::new(),
        Op::In | Op::NotIn => match raw {
            Some(Value::Array(values)) if !values.is_empty() => values
                .iter()
                .map(|v| typed(v, field, ty))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(error(format!(
                    "The '{op_text}' operator on '{field}' needs a non-empty array value."
                )));
            }
        },
        Op::BeginsWith | Op::EndsWith | Op::Contains => {
            if ty != FieldType::Text {
                return Err(error(format!(
                    "The '{op_text}' operator needs a text field; '{field}' is a {}.",
                    ty.describe()
                )));
            }
            vec![typed(raw.unwrap_or(&Value::Null), field, ty)?]
        }
        _ => vec![typed(raw.unwrap_or(&Value::Null), field, ty)?],
    };
    Ok(Filter::Leaf {
        field,
        ty,
        op,
        values,
    })
}

fn typed(value: &Value, field: &str, ty: FieldType) -> Result<Val<'static>, AtError> {
    let bad = || {
        error(format!(
            "The value {value} is not valid for field '{field}', which is a {}.",
            ty.describe()
        ))
    };
    Ok(match (ty, value) {
        (_, Value::Null) => Val::Null,
        (FieldType::Int | FieldType::Decimal, _) => {
            let number = decimal_from_json(value).ok_or_else(bad)?;
            if ty == FieldType::Int && !number.fract().is_zero() {
                return Err(bad());
            }
            Val::Num(number)
        }
        (FieldType::Text, Value::String(s)) => Val::Str(s.clone().into()),
        (FieldType::Text, Value::Number(n)) => Val::Str(n.to_string().into()),
        (FieldType::Bool, Value::Bool(b)) => Val::Bool(*b),
        (FieldType::Bool, Value::String(s)) if s.eq_ignore_ascii_case("true") || s == "1" => {
            Val::Bool(true)
        }
        (FieldType::Bool, Value::String(s)) if s.eq_ignore_ascii_case("false") || s == "0" => {
            Val::Bool(false)
        }
        (FieldType::Bool, Value::Number(n)) if n.as_i64() == Some(1) => Val::Bool(true),
        (FieldType::Bool, Value::Number(n)) if n.as_i64() == Some(0) => Val::Bool(false),
        (FieldType::DateTime, Value::String(s)) => Val::Time(parse_datetime(s).ok_or_else(bad)?),
        _ => return Err(bad()),
    })
}

impl Filter {
    fn matches<E: Entity>(&self, record: &E) -> bool {
        match self {
            Filter::All(items) => items.iter().all(|f| f.matches(record)),
            Filter::Any(items) => items.iter().any(|f| f.matches(record)),
            Filter::Leaf {
                field,
                ty,
                op,
                values,
            } => {
                let raw = record.value(field);
                let value = Val::from_json(Some(&raw), *ty);
                match op {
                    Op::Exist => !value.is_null(),
                    Op::NotExist => value.is_null(),
                    Op::In | Op::NotIn => {
                        let hit = !value.is_null()
                            && values
                                .iter()
                                .any(|v| compare(&value, v) == Some(Ordering::Equal));
                        hit == (*op == Op::In)
                    }
                    Op::BeginsWith | Op::EndsWith | Op::Contains => {
                        let (Val::Str(text), Some(Val::Str(needle))) = (&value, values.first())
                        else {
                            return false;
                        };
                        let text = text.to_lowercase();
                        let needle = needle.to_lowercase();
                        match op {
                            Op::BeginsWith => text.starts_with(&needle),
                            Op::EndsWith => text.ends_with(&needle),
                            _ => text.contains(&needle),
                        }
                    }
                    _ => {
                        let Some(wanted) = values.first() else {
                            return false;
                        };
                        if wanted.is_null() {
                            return match op {
                                Op::Eq => value.is_null(),
                                Op::NotEq => !value.is_null(),
                                _ => false,
                            };
                        }
                        let Some(order) = compare(&value, wanted) else {
                            return *op == Op::NotEq && value.is_null();
                        };
                        match op {
                            Op::Eq => order == Ordering::Equal,
                            Op::NotEq => order != Ordering::Equal,
                            Op::Gt => order == Ordering::Greater,
                            Op::Gte => order != Ordering::Less,
                            Op::Lt => order == Ordering::Less,
                            _ => order != Ordering::Greater,
                        }
                    }
                }
            }
        }
    }
}

/// Where a page starts: the first page, after an id, or (for the previous
/// page) before an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// From the first record.
    Start,
    /// Records with `id > n`.
    After(i64),
    /// The last page of records with `id < n`.
    Before(i64),
}

impl Cursor {
    /// Reads the `paging` parameter of a `query/next` URL.
    pub fn parse(paging: &str) -> Result<(Cursor, Option<usize>), AtError> {
        let value: Value = serde_json::from_str(paging)
            .map_err(|_| error(format!("The paging parameter '{paging}' is not valid.")))?;
        let size = value
            .get("pageSize")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        let cursor = if let Some(after) = value.get("afterId").and_then(Value::as_i64) {
            Cursor::After(after)
        } else if let Some(before) = value.get("beforeId").and_then(Value::as_i64) {
            Cursor::Before(before)
        } else {
            return Err(error(format!(
                "The paging parameter '{paging}' is not valid."
            )));
        };
        Ok((cursor, size))
    }

    /// The `paging` parameter for this cursor.
    pub fn encode(self, size: usize) -> String {
        match self {
            Cursor::Start => json!({"pageSize": size, "afterId": -1}),
            Cursor::After(id) => json!({"pageSize": size, "afterId": id}),
            Cursor::Before(id) => json!({"pageSize": size, "beforeId": id}),
        }
        .to_string()
    }
}

/// One page of results.
#[derive(Debug)]
pub struct Page {
    /// The records, as served.
    pub items: Vec<Value>,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
    /// Where the previous page ends, when there is one.
    pub prev: Option<Cursor>,
}

/// Runs `search` over `records` (sorted by id) from `cursor`.
pub fn run<E: Entity>(records: &[E], search: &Search, cursor: Cursor) -> Result<Page, AtError> {
    let size = search.max_records;
    let mut items: Vec<&E> = Vec::with_capacity(size.min(64));
    let more = match cursor {
        Cursor::Start | Cursor::After(_) => {
            let from = match cursor {
                Cursor::After(id) => records.partition_point(|r| r.id() <= id),
                _ => 0,
            };
            let mut matching = records[from..].iter().filter(|r| search.matches(*r));
            items.extend(matching.by_ref().take(size));
            matching.next().is_some()
        }
        Cursor::Before(id) => {
            let until = records.partition_point(|r| r.id() < id);
            let mut matching = records[..until].iter().rev().filter(|r| search.matches(*r));
            items.extend(matching.by_ref().take(size));
            items.reverse();
            // The record at `id` follows this page.
            true
        }
    };
    if more
        && let Some(include) = &search.include
        && !include.contains(&"id")
    {
        return Err(error(format!(
            "This query returns more than {MAX_RECORDS} records: include 'id' in IncludeFields so the results can be paged."
        )));
    }
    let first = items.first().map(|r| r.id());
    let last = items.last().map(|r| r.id());
    let has_before = first.is_some_and(|first| {
        let until = records.partition_point(|r| r.id() < first);
        records[..until].iter().any(|r| search.matches(r))
    });
    Ok(Page {
        items: items
            .into_iter()
            .map(|r| r.json(search.include.as_deref()))
            .collect(),
        next: if more { last.map(Cursor::After) } else { None },
        prev: if has_before {
            first.map(Cursor::Before)
        } else {
            None
        },
    })
}

/// How many records match.
pub fn count<E: Entity>(records: &[E], search: &Search) -> usize {
    records.iter().filter(|r| search.matches(*r)).count()
}
