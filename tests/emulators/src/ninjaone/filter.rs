//! NinjaOne's device filter (`df=`) language, the subset the emulator
//! understands: terms joined by `AND` (case-insensitive), each one of
//!
//! - `org`, `loc`, `id` with `=`/`eq`, `!=`/`neq`, `in (a,b)`, `not in (a,b)`
//!   over numbers;
//! - `class` with the same operators over node classes;
//! - `status` with `=`/`eq`/`!=`/`neq`/`in` over `APPROVED`, `PENDING`;
//! - `online`, `offline`;
//! - `created after|before YYYY-MM-DD`.
//!
//! Anything else is refused with a message naming the unknown part, rather
//! than silently matching everything.

use chrono::NaiveDate;

use super::data::{Device, NODE_CLASSES};

/// A parsed filter: all terms must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Filter {
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Org,
    Loc,
    Id,
    Class,
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// `field` is (or, when `negated`, is not) one of `values`.
    Set {
        field: Field,
        values: Vec<u32>,
        negated: bool,
    },
    Online(bool),
    CreatedAfter(i64),
    CreatedBefore(i64),
}

fn class_code(name: &str) -> Option<u32> {
    NODE_CLASSES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .map(|i| i as u32)
}

fn status_code(name: &str) -> Option<u32> {
    match name.to_ascii_uppercase().as_str() {
        "APPROVED" => Some(1),
        "PENDING" => Some(0),
        _ => None,
    }
}

fn parse_value(field: &Field, text: &str) -> Result<u32, String> {
    let text = text.trim().trim_matches(|c| c == '\'' || c == '"');
    match field {
        Field::Class => class_code(text).ok_or_else(|| format!("unknown device class {text:?}")),
        Field::Status => status_code(text)
            .ok_or_else(|| format!("unknown approval status {text:?} (APPROVED or PENDING)")),
        _ => text
            .parse::<u32>()
            .map_err(|_| format!("{text:?} is not a numeric identifier")),
    }
}

fn split_and(text: &str) -> Vec<String> {
    // Split on the word AND outside parentheses.
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let words: Vec<&str> = text.split_whitespace().collect();
    for word in words {
        depth += word.matches('(').count();
        depth = depth.saturating_sub(word.matches(')').count());
        if depth == 0 && word.eq_ignore_ascii_case("and") {
            parts.push(std::mem::take(&mut current));
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    parts.push(current);
    parts
}

fn date_secs(text: &str) -> Result<i64, String> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .map_or(0, |d| d.and_utc().timestamp()))
}

fn parse_term(text: &str) -> Result<Term, String> {
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "online" => return Ok(Term::Online(true)),
        "offline" => return Ok(Term::Online(false)),
        _ => {}
    }
    if let Some(rest) = lower.strip_prefix("created ") {
        let rest = rest.trim();
        if let Some(date) = rest.strip_prefix("after ") {
            return Ok(Term::CreatedAfter(date_secs(date)?));
        }
        if let Some(date) = rest.strip_prefix("before ") {
            return Ok(Term::CreatedBefore(date_secs(date)?));
        }
        return Err(format!(
            "{text:?}: use 'created after YYYY-MM-DD' or 'created before YYYY-MM-DD'"
        ));
    }
    let name_end = text
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (name, rest) = text.split_at(name_end);
    let field = match name.to_ascii_lowercase().as_str() {
        "org" => Field::Org,
        "loc" => Field::Loc,
        "id" => Field::Id,
        "class" => Field::Class,
        "status" => Field::Status,
        "" => return Err(format!("{text:?} does not start with a field name")),
        other => return Err(format!("unknown filter field {other:?} in {text:?}")),
    };
    let rest = rest.trim();
    let lower_rest = rest.to_ascii_lowercase();
    let (negated, list, values_text) = if let Some(v) = rest.strip_prefix("!=") {
        (true, false, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (false, false, v)
    } else if lower_rest.starts_with("neq ") {
        (true, false, &rest[4..])
    } else if lower_rest.starts_with("eq ") {
        (false, false, &rest[3..])
    } else if lower_rest.starts_with("not in") {
        (true, true, &rest[6..])
    } else if lower_rest.starts_with("in") {
        (false, true, &rest[2..])
    } else {
        return Err(format!(
            "{text:?}: expected =, eq, !=, neq, in or not in after {name}"
        ));
    };
    let values = if list {
        let inner = values_text
            .trim()
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or_else(|| format!("{text:?}: a list must be in parentheses, e.g. (1,2)"))?;
        inner
            .split(',')
            .map(|v| parse_value(&field, v))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![parse_value(&field, values_text)?]
    };
    Ok(Term::Set {
        field,
        values,
        negated,
    })
}

impl Filter {
    /// Parses `text`; an empty filter matches every device.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let terms = split_and(text)
            .iter()
            .map(|t| {
                if t.is_empty() {
                    Err(format!("empty term in {text:?}"))
                } else {
                    parse_term(t)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { terms })
    }

    /// Whether `device` passes every term.
    pub fn matches(&self, device: &Device) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Set {
                field,
                values,
                negated,
            } => {
                let value = match field {
                    Field::Org => device.org,
                    Field::Loc => device.loc,
                    Field::Id => device.id,
                    Field::Class => u32::from(device.class),
                    Field::Status => u32::from(device.approved),
                };
                values.contains(&value) != *negated
            }
            Term::Online(online) => device.offline != *online,
            Term::CreatedAfter(at) => device.created > *at,
            Term::CreatedBefore(at) => device.created < *at,
        })
    }

    /// Whether the filter selects `org` only (lets the caller skip other
    /// organisations).
    pub fn only_org(&self) -> Option<u32> {
        self.terms.iter().find_map(|t| match t {
            Term::Set {
                field: Field::Org,
                values,
                negated: false,
            } if values.len() == 1 => values.first().copied(),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(org: u32, class: &str, approved: bool, offline: bool) -> Device {
        Device {
            id: 10,
            org,
            loc: 3,
            class: class_code(class).expect("known class") as u8,
            approved,
            offline,
            created: 1_700_000_000,
            last_contact_ms: 0,
            name: 0,
        }
    }

    #[test]
    fn documented_examples_parse_and_match() {
        let ws = device(7, "WINDOWS_WORKSTATION", true, false);
        let mac_pending = device(7, "MAC", false, true);
        let server = device(8, "WINDOWS_SERVER", true, false);
        let cases = [
            ("status eq APPROVED", [true, false, true]),
            (
                "class in (WINDOWS_WORKSTATION,MAC,LINUX_WORKSTATION)",
                [true, true, false],
            ),
            (
                "class eq WINDOWS_WORKSTATION AND online",
                [true, false, false],
            ),
            ("org = 7", [true, true, false]),
            (
                "org = 7 and class in (MAC) AND offline",
                [false, true, false],
            ),
            (
                "class=WINDOWS_SERVER AND online AND org!=123",
                [false, false, true],
            ),
            ("org not in (7)", [false, false, true]),
            ("status = PENDING", [false, true, false]),
            ("created after 2023-01-01", [true, true, true]),
            ("created before 2023-01-01", [false, false, false]),
            ("", [true, true, true]),
        ];
        for (text, expected) in cases {
            let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got = [&ws, &mac_pending, &server].map(|d| filter.matches(d));
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn bad_filters_are_refused_with_the_culprit_named() {
        for (text, needle) in [
            ("class in (TOASTER)", "TOASTER"),
            ("color = red", "color"),
            ("org ~ 5", "expected"),
            ("org in 5,6", "parentheses"),
            ("org = x", "numeric"),
            ("created after yesterday", "yesterday"),
            ("online AND", "empty term"),
        ] {
            let error = Filter::parse(text).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn a_single_org_is_recognised() {
        assert_eq!(
            Filter::parse("org = 4 AND online")
                .expect("parses")
                .only_org(),
            Some(4)
        );
        assert_eq!(
            Filter::parse("org in (4,5)").expect("parses").only_org(),
            None
        );
        assert_eq!(Filter::parse("org != 4").expect("parses").only_org(), None);
    }
}
