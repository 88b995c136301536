//! The ConnectWise `conditions` query language (the subset integrations
//! use), parsed against an entity's field [`Schema`] and evaluated on the
//! JSON the emulator serves.
//!
//! Grammar (keywords case-insensitive):
//!
//! ```text
//! expr       := term ( "or" term )*
//! term       := factor ( "and" factor )*
//! factor     := "not" factor | "(" expr ")" | comparison
//! comparison := path op value
//!             | path ["not"] "like" string        -- `*` / `%` any run, `_` one char
//!             | path ["not"] "contains" string
//!             | path ["not"] "in" "(" value ( "," value )* ")"
//! op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//! value      := "\"text\"" | number | true | false | null | "[" datetime "]"
//! path       := name ( "/" name )*                 -- e.g. company/id, type/name
//! ```
//!
//! Fields are typed: a date is compared only with a `[datetime]`, a number
//! with a number, text with a double-quoted string, a boolean with
//! `true`/`false`. Text compares case-insensitively. A null field satisfies
//! only `= null` (SQL semantics: `name != "x"` is false when `name` is
//! null). Anything else is a parse error whose message names the problem
//! and its position, answered as `400`.

use std::cmp::Ordering;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::common::{FieldType, Val, compare, parse_datetime, wildcard_match};

/// The filterable fields of one entity: `(path, type)`, paths as
/// ConnectWise spells them (matched case-insensitively).
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Entity name for messages, e.g. `"agreement"`.
    pub entity: &'static str,
    /// The fields.
    pub fields: &'static [(&'static str, FieldType)],
}

impl Schema {
    /// The canonical path and type of `path`; `lastUpdated` is accepted as
    /// shorthand for `_info/lastUpdated`, as ConnectWise does.
    pub fn lookup(&self, path: &str) -> Option<(&'static str, FieldType)> {
        let wanted = if path.eq_ignore_ascii_case("lastUpdated") {
            "_info/lastUpdated"
        } else {
            path
        };
        self.fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .copied()
    }
}

/// A literal in a condition.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Num(Decimal),
    Str(String),
    Time(chrono::DateTime<chrono::Utc>),
}

impl Lit {
    fn val(&self) -> Val<'_> {
        match self {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Num(n) => Val::Num(*n),
            Lit::Str(s) => Val::Str(s.as_str().into()),
            Lit::Time(t) => Val::Time(*t),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Lit::Null => "null",
            Lit::Bool(_) => "a boolean",
            Lit::Num(_) => "a number",
            Lit::Str(_) => "a string",
            Lit::Time(_) => "a [datetime]",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed condition, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Both hold.
    And(Box<Condition>, Box<Condition>),
    /// Either holds.
    Or(Box<Condition>, Box<Condition>),
    /// The inner condition does not hold.
    Not(Box<Condition>),
    /// `path op value`.
    Compare {
        /// Canonical field path.
        path: &'static str,
        /// Field type.
        ty: FieldType,
        /// Operator.
        op: CompareOp,
        /// Literal.
        value: LitValue,
    },
    /// `path like pattern` / `path contains text` (negated with `not`).
    Text {
        /// Canonical field path.
        path: &'static str,
        /// `like` (wildcards) or `contains` (substring).
        like: bool,
        /// The pattern or text.
        pattern: String,
        /// `not like` / `not contains`.
        negated: bool,
    },
    /// `path in (values)` (negated with `not in`).
    In {
        /// Canonical field path.
        path: &'static str,
        /// Field type.
        ty: FieldType,
        /// The values.
        values: Vec<LitValue>,
        /// `not in`.
        negated: bool,
    },
}

/// A comparison operator (public wrapper so [`Condition`] can be matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompareOp(Op);

/// A literal value (public wrapper so [`Condition`] can be matched).
#[derive(Debug, Clone, PartialEq)]
pub struct LitValue(Lit);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(Decimal),
    Time(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

/// Parses `text` against `schema`. The error names the problem and the
/// 1-based character position.
pub fn parse(text: &str, schema: &Schema) -> Result<Condition, String> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("conditions is empty".to_owned());
    }
    let mut parser = Parser {
        tokens,
        at: 0,
        schema,
        len: text.chars().count(),
    };
    let condition = parser.expr()?;
    if let Some((token, pos)) = parser.tokens.get(parser.at) {
        return Err(format!(
            "unexpected {} at position {pos}; expected 'and', 'or' or the end of the conditions",
            describe_token(token)
        ));
    }
    Ok(condition)
}

fn describe_token(token: &Token) -> String {
    match token {
        Token::Ident(s) => format!("'{s}'"),
        Token::Str(s) => format!("string \"{s}\""),
        Token::Num(n) => format!("number {n}"),
        Token::Time(t) => format!("datetime [{t}]"),
        Token::Op(_) => "operator".to_owned(),
        Token::LParen => "'('".to_owned(),
        Token::RParen => "')'".to_owned(),
        Token::Comma => "','".to_owned(),
    }
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push((Token::LParen, pos));
                i += 1;
            }
            ')' => {
                tokens.push((Token::RParen, pos));
                i += 1;
            }
            ',' => {
                tokens.push((Token::Comma, pos));
                i += 1;
            }
            '=' => {
                tokens.push((Token::Op(Op::Eq), pos));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                tokens.push((Token::Op(Op::Ne), pos));
                i += 2;
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    tokens.push((Token::Op(Op::Le), pos));
                    i += 2;
                }
                Some('>') => {
                    tokens.push((Token::Op(Op::Ne), pos));
                    i += 2;
                }
                _ => {
                    tokens.push((Token::Op(Op::Lt), pos));
                    i += 1;
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    tokens.push((Token::Op(Op::Ge), pos));
                    i += 2;
                } else {
                    tokens.push((Token::Op(Op::Gt), pos));
                    i += 1;
                }
            }
            '"' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!("unterminated string starting at position {pos}"));
                        }
                        Some('\\') if chars.get(i + 1).is_some() => {
                            value.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            value.push(*ch);
                            i += 1;
                        }
                    }
                }
                tokens.push((Token::Str(value), pos));
            }
            '\'' => {
                return Err(format!(
                    "single quote at position {pos}: strings in conditions must be in double quotes"
                ));
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|ch| *ch == ']')
                    .ok_or_else(|| format!("unterminated datetime '[' at position {pos}"))?;
                let inner: String = chars[i + 1..i + close].iter().collect();
                tokens.push((Token::Time(inner.trim().to_owned()), pos));
                i += close + 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_ascii_digit() || *ch == '.')
                {
                    i += 1;
                }
                let literal: String = chars[start..i].iter().collect();
                let number = literal
                    .parse::<Decimal>()
                    .map_err(|_| format!("invalid number '{literal}' at position {pos}"))?;
                tokens.push((Token::Num(number), pos));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '/')
                {
                    i += 1;
                }
                tokens.push((Token::Ident(chars[start..i].iter().collect()), pos));
            }
            other => return Err(format!("unexpected character '{other}' at position {pos}")),
        }
    }
    Ok(tokens)
}

struct Parser<'s> {
    tokens: Vec<(Token, usize)>,
    at: usize,
    schema: &'s Schema,
    len: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map_or(self.len + 1, |(_, p)| *p)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(s)) if s.eq_ignore_ascii_case(word))
    }

    fn expr(&mut self) -> Result<Condition, String> {
        let mut left = self.term()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.term()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Condition, String> {
        let mut left = self.factor()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.factor()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Condition, String> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.factor()?)));
        }
        if self.peek() == Some(&Token::LParen) {
            let open = self.pos();
            self.at += 1;
            let inner = self.expr()?;
            if self.peek() != Some(&Token::RParen) {
                return Err(format!(
                    "missing ')' for the '(' at position {open} (found {} at position {})",
                    self.peek().map_or("the end".to_owned(), describe_token),
                    self.pos()
                ));
            }
            self.at += 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Condition, String> {
        let pos = self.pos();
        let name = match self.peek() {
            Some(Token::Ident(name)) => name.clone(),
            Some(other) => {
                return Err(format!(
                    "expected a field name at position {pos}, found {}",
                    describe_token(other)
                ));
            }
            None => {
                return Err(format!(
                    "expected a field name at position {pos}, found the end"
                ));
            }
        };
        let (path, ty) = self.schema.lookup(&name).ok_or_else(|| {
            format!(
                "unknown field '{name}' at position {pos} for {}; known fields: {}",
                self.schema.entity,
                self.schema
                    .fields
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        self.at += 1;
        let mut negated = false;
        if self.keyword("not") {
            negated = true;
            self.at += 1;
        }
        let op_pos = self.pos();
        if self.keyword("like") || self.keyword("contains") {
            let like = self.keyword("like");
            self.at += 1;
            if ty != FieldType::Text {
                return Err(format!(
                    "'{}' at position {op_pos} needs a text field; '{path}' is a {}",
                    if like { "like" } else { "contains" },
                    ty.describe()
                ));
            }
            let value_pos = self.pos();
            let pattern = match self.peek() {
                Some(Token::Str(s)) => s.clone(),
                other => {
                    return Err(format!(
                        "expected a double-quoted string at position {value_pos}, found {}",
                        other.map_or("the end".to_owned(), describe_token)
                    ));
                }
            };
            self.at += 1;
            return Ok(Condition::Text {
                path,
                like,
                pattern,
                negated,
            });
        }
        if self.keyword("in") {
            self.at += 1;
            if self.peek() != Some(&Token::LParen) {
                return Err(format!(
                    "expected '(' after 'in' at position {}",
                    self.pos()
                ));
            }
            self.at += 1;
            let mut values = Vec::new();
            loop {
                values.push(LitValue(self.literal(path, ty)?));
                match self.peek() {
                    Some(Token::Comma) => self.at += 1,
                    Some(Token::RParen) => {
                        self.at += 1;
                        break;
                    }
                    other => {
                        return Err(format!(
                            "expected ',' or ')' in the 'in' list at position {}, found {}",
                            self.pos(),
                            other.map_or("the end".to_owned(), describe_token)
                        ));
                    }
                }
            }
            return Ok(Condition::In {
                path,
                ty,
                values,
                negated,
            });
        }
        if negated {
            return Err(format!(
                "'not' after a field at position {op_pos} must be followed by like, contains or in"
            ));
        }
        let op = match self.peek() {
            Some(Token::Op(op)) => *op,
            other => {
                return Err(format!(
                    "expected an operator (=, !=, <, <=, >, >=, like, contains, in) after '{name}' at position {op_pos}, found {}",
                    other.map_or("the end".to_owned(), describe_token)
                ));
            }
        };
        self.at += 1;
        let value_pos = self.pos();
        let value = self.literal(path, ty)?;
        if value == Lit::Null && !matches!(op, Op::Eq | Op::Ne) {
            return Err(format!(
                "null at position {value_pos} can only be compared with = or !="
            ));
        }
        Ok(Condition::Compare {
            path,
            ty,
            op: CompareOp(op),
            value: LitValue(value),
        })
    }

    fn literal(&mut self, path: &str, ty: FieldType) -> Result<Lit, String> {
        let pos = self.pos();
        let token = self
            .peek()
            .cloned()
            .ok_or_else(|| format!("expected a value at position {pos}, found the end"))?;
        let lit = match token {
            Token::Str(s) => Lit::Str(s),
            Token::Num(n) => Lit::Num(n),
            Token::Time(t) => Lit::Time(
                parse_datetime(&t)
                    .ok_or_else(|| format!("invalid datetime [{t}] at position {pos}"))?,
            ),
            Token::Ident(word) if word.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Token::Ident(word) if word.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Token::Ident(word) if word.eq_ignore_ascii_case("null") => Lit::Null,
            other => {
                return Err(format!(
                    "expected a value at position {pos}, found {} (strings need double quotes)",
                    describe_token(&other)
                ));
            }
        };
        let fits = matches!(
            (&lit, ty),
            (Lit::Null, _)
                | (Lit::Str(_), FieldType::Text)
                | (Lit::Num(_), FieldType::Int | FieldType::Decimal)
                | (Lit::Bool(_), FieldType::Bool)
                | (Lit::Time(_), FieldType::DateTime)
        );
        if !fits {
            let hint = match ty {
                FieldType::DateTime => " (write dates as [2025-01-01T00:00:00Z])",
                FieldType::Text => " (write text in double quotes)",
                _ => "",
            };
            return Err(format!(
                "'{path}' is a {} field but the value at position {pos} is {}{hint}",
                ty.describe(),
                lit.describe()
            ));
        }
        self.at += 1;
        Ok(lit)
    }
}

/// Reads `path` (slash-separated) from a JSON object.
pub fn lookup<'v>(record: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('/')
        .try_fold(record, |value, segment| value.get(segment))
}

impl Condition {
    /// Whether `record` (an entity as served) satisfies the condition.
    pub fn matches(&self, record: &Value) -> bool {
        match self {
            Condition::And(a, b) => a.matches(record) && b.matches(record),
            Condition::Or(a, b) => a.matches(record) || b.matches(record),
            Condition::Not(inner) => !inner.matches(record),
            Condition::Compare {
                path,
                ty,
                op: CompareOp(op),
                value: LitValue(lit),
            } => {
                let field = Val::from_json(lookup(record, path), *ty);
                if *lit == Lit::Null {
                    return field.is_null() == (*op == Op::Eq);
                }
                let Some(order) = compare(&field, &lit.val()) else {
                    return false;
                };
                match op {
                    Op::Eq => order == Ordering::Equal,
                    Op::Ne => order != Ordering::Equal,
                    Op::Lt => order == Ordering::Less,
                    Op::Le => order != Ordering::Greater,
                    Op::Gt => order == Ordering::Greater,
                    Op::Ge => order != Ordering::Less,
                }
            }
            Condition::Text {
                path,
                like,
                pattern,
                negated,
            } => {
                let Some(Value::String(text)) = lookup(record, path) else {
                    return false;
                };
                let hit = if *like {
                    wildcard_match(pattern, text)
                } else {
                    text.to_lowercase().contains(&pattern.to_lowercase())
                };
                hit != *negated
            }
            Condition::In {
                path,
                ty,
                values,
                negated,
            } => {
                let field = Val::from_json(lookup(record, path), *ty);
                if field.is_null() {
                    return false;
                }
                let hit = values
                    .iter()
                    .any(|LitValue(lit)| compare(&field, &lit.val()) == Some(Ordering::Equal));
                hit != *negated
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: Schema = Schema {
        entity: "agreement",
        fields: &[
            ("id", FieldType::Int),
            ("name", FieldType::Text),
            ("company/id", FieldType::Int),
            ("type/name", FieldType::Text),
            ("cancelledFlag", FieldType::Bool),
            ("startDate", FieldType::DateTime),
            ("endDate", FieldType::DateTime),
            ("billAmount", FieldType::Decimal),
            ("_info/lastUpdated", FieldType::DateTime),
        ],
    };

    fn records() -> Vec<Value> {
        vec![
            json!({"id": 1, "name": "Managed Services", "company": {"id": 10}, "type": {"name": "MSP"},
                   "cancelledFlag": false, "startDate": "2024-01-01T00:00:00Z", "billAmount": 0.0,
                   "_info": {"lastUpdated": "2025-03-01T10:00:00Z"}}),
            json!({"id": 2, "name": "Block Time 10h", "company": {"id": 10}, "type": {"name": "Block Time"},
                   "cancelledFlag": true, "startDate": "2023-06-01T00:00:00Z", "endDate": "2024-05-31T00:00:00Z",
                   "billAmount": 950.5, "_info": {"lastUpdated": "2024-06-01T00:00:00Z"}}),
            json!({"id": 3, "name": "Microsoft \"NCE\" Licences", "company": {"id": 11}, "type": {"name": "MSP"},
                   "cancelledFlag": false, "startDate": "2025-02-01T00:00:00Z", "billAmount": 12.25,
                   "_info": {"lastUpdated": "2025-04-01T00:00:00Z"}}),
        ]
    }

    fn ids(text: &str) -> Vec<i64> {
        let condition = parse(text, &SCHEMA).unwrap_or_else(|e| panic!("{text}: {e}"));
        records()
            .iter()
            .filter(|r| condition.matches(r))
            .filter_map(|r| r["id"].as_i64())
            .collect()
    }

    #[test]
    fn expressions_select_the_expected_records() {
        let table: &[(&str, &[i64])] = &[
            ("id = 2", &[2]),
            ("id != 2", &[1, 3]),
            ("id <> 2", &[1, 3]),
            ("id >= 2", &[2, 3]),
            ("id < 2", &[1]),
            ("company/id = 10", &[1, 2]),
            ("COMPANY/ID=11", &[3]),
            ("type/name = \"msp\"", &[1, 3]),
            ("name contains \"block\"", &[2]),
            ("name not contains \"block\"", &[1, 3]),
            ("name like \"Managed*\"", &[1]),
            ("name like \"%time%\"", &[2]),
            ("name not like \"%time%\"", &[1, 3]),
            ("name = \"Microsoft \\\"NCE\\\" Licences\"", &[3]),
            ("id in (1, 3)", &[1, 3]),
            ("id not in (1,3)", &[2]),
            ("type/name in (\"Block Time\", \"Other\")", &[2]),
            ("cancelledFlag = false", &[1, 3]),
            ("cancelledFlag = true and company/id = 10", &[2]),
            ("cancelledFlag = true or company/id = 11", &[2, 3]),
            ("not (cancelledFlag = true or company/id = 11)", &[1]),
            ("company/id = 10 and (id = 1 or id = 3)", &[1]),
            ("startDate >= [2024-01-01T00:00:00Z]", &[1, 3]),
            ("startDate < [2024-01-01]", &[2]),
            ("lastUpdated > [2025-01-01T00:00:00Z]", &[1, 3]),
            ("endDate = null", &[1, 3]),
            ("endDate != null", &[2]),
            ("endDate < [2030-01-01T00:00:00Z]", &[2]),
            ("billAmount > 12.2", &[2, 3]),
            ("billAmount = 950.50", &[2]),
            ("id = 1 AND cancelledFlag = false OR id = 2", &[1, 2]),
        ];
        for (text, expected) in table {
            assert_eq!(ids(text), *expected, "{text}");
        }
    }

    #[test]
    fn bad_conditions_are_refused_with_the_problem_named() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("foo = 1", "unknown field 'foo' at position 1"),
            ("id = ", "expected a value at position 6"),
            ("id 2", "expected an operator"),
            ("name = 'x'", "double quotes"),
            ("name = \"x", "unterminated string"),
            ("startDate > \"2024-01-01\"", "write dates as [2025"),
            ("startDate > [yesterday]", "invalid datetime [yesterday]"),
            ("id = \"2\"", "'id' is a whole number field"),
            ("(id = 1", "missing ')'"),
            ("id = 1 id = 2", "unexpected 'id' at position 8"),
            ("id like \"1\"", "needs a text field"),
            ("id in 1", "expected '(' after 'in'"),
            ("id < null", "null at position"),
            ("id = 1 # 2", "unexpected character '#'"),
        ];
        for (text, needle) in table {
            let error = parse(text, &SCHEMA).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
