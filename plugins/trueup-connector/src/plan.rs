//! One code path for `plan-quantity-change` and `apply-quantity-change`, so
//! the dry run lists exactly the calls the write makes and the two cannot
//! drift.
//!
//! A connector writes its change once, as a function of a [`Calls`]:
//!
//! - reads go through [`Calls::read`]: sent in both modes (the host allows
//!   GET while planning, and later steps depend on what they return) and
//!   listed in a plan;
//! - writes go through [`Calls::write`]: listed in a plan, sent only when
//!   applying;
//! - the read-back after the write goes through [`Calls::read_back`]:
//!   listed in a plan, sent only when applying (while planning, the state
//!   it would read does not exist yet).
//!
//! Each call is a [`Step`]: method, URL, JSON body and purpose, which is
//! what a [`PlannedCall`] shows. Secrets never enter a step: the connector
//! adds its credentials (headers placed by the host) in the `send` closure
//! it passes, so a plan cannot leak them.
//!
//! ```ignore
//! let mut calls = Calls::apply(); // or Calls::plan()
//! let current = calls.read(Step::get(url, "read the line"), |r| client.send(r))?;
//! if let Some(created) = calls.write(Step::post(url, body, "add the line"), |r| client.send(r))? {
//!     // only when applying
//! }
//! ```

use serde_json::Value;

use crate::ConnectorError;
use crate::http::{Request, Response};
use crate::psa::PlannedCall;

pub use crate::bindings::trueup::connector::http::Method;

/// One HTTP call of a write: what a plan lists and what apply sends.
#[derive(Debug, Clone)]
pub struct Step {
    method: Method,
    url: String,
    body: Option<Value>,
    purpose: String,
}

impl Step {
    /// A call with `method` to `url`, with an optional JSON `body`, made
    /// for `purpose` (one sentence, shown in the dry-run view).
    pub fn new(
        method: Method,
        url: impl Into<String>,
        body: Option<Value>,
        purpose: impl Into<String>,
    ) -> Self {
        Self {
            method,
            url: url.into(),
            body,
            purpose: purpose.into(),
        }
    }

    /// A GET.
    pub fn get(url: impl Into<String>, purpose: impl Into<String>) -> Self {
        Self::new(Method::Get, url, None, purpose)
    }

    /// A POST with a JSON body.
    pub fn post(url: impl Into<String>, body: Value, purpose: impl Into<String>) -> Self {
        Self::new(Method::Post, url, Some(body), purpose)
    }

    /// A PATCH with a JSON body.
    pub fn patch(url: impl Into<String>, body: Value, purpose: impl Into<String>) -> Self {
        Self::new(Method::Patch, url, Some(body), purpose)
    }

    /// A PUT with a JSON body.
    pub fn put(url: impl Into<String>, body: Value, purpose: impl Into<String>) -> Self {
        Self::new(Method::Put, url, Some(body), purpose)
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The method's name, e.g. `POST`.
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// The request without credentials (the JSON body and its content type
    /// set); the connector adds its auth headers before sending.
    ///
    /// # Errors
    /// [`ConnectorError::Internal`] when the body cannot be serialized.
    pub fn request<'a>(&self) -> Result<Request<'a>, ConnectorError> {
        let request = Request::new(self.method, self.url.clone());
        match &self.body {
            Some(body) => request.json(body),
            None => Ok(request),
        }
    }

    /// The step as the dry-run view shows it.
    pub fn planned(&self) -> PlannedCall {
        PlannedCall {
            method: self.method_name().to_owned(),
            url: self.url.clone(),
            body: self.body.as_ref().map(Value::to_string),
            purpose: self.purpose.clone(),
        }
    }
}

/// Planning or applying a write; see the module docs.
#[derive(Debug)]
pub struct Calls {
    planning: bool,
    planned: Vec<PlannedCall>,
}

impl Calls {
    /// Lists the calls; sends only reads.
    pub fn plan() -> Self {
        Self {
            planning: true,
            planned: Vec::new(),
        }
    }

    /// Sends every call.
    pub fn apply() -> Self {
        Self {
            planning: false,
            planned: Vec::new(),
        }
    }

    /// Whether this is a dry run.
    pub fn planning(&self) -> bool {
        self.planning
    }

    /// Sends a read (in both modes) and lists it when planning. `send`
    /// adds credentials, sends and maps the status.
    ///
    /// # Errors
    /// What building the request or `send` returns.
    pub fn read<'a>(
        &mut self,
        step: Step,
        send: impl FnOnce(Request<'a>) -> Result<Response, ConnectorError>,
    ) -> Result<Response, ConnectorError> {
        if self.planning {
            self.planned.push(step.planned());
        }
        send(step.request()?)
    }

    /// Lists a write when planning (and returns `None`); sends it when
    /// applying (and returns the response). Applied writes are logged.
    ///
    /// # Errors
    /// What building the request or `send` returns.
    pub fn write<'a>(
        &mut self,
        step: Step,
        send: impl FnOnce(Request<'a>) -> Result<Response, ConnectorError>,
    ) -> Result<Option<Response>, ConnectorError> {
        if self.planning {
            self.planned.push(step.planned());
            return Ok(None);
        }
        crate::log::info(&format!(
            "{} {}: {}",
            step.method_name(),
            step.url,
            step.purpose
        ));
        send(step.request()?).map(Some)
    }

    /// The read-back after a write: listed when planning (`None`), sent
    /// when applying.
    ///
    /// # Errors
    /// What building the request or `send` returns.
    pub fn read_back<'a>(
        &mut self,
        step: Step,
        send: impl FnOnce(Request<'a>) -> Result<Response, ConnectorError>,
    ) -> Result<Option<Response>, ConnectorError> {
        if self.planning {
            self.planned.push(step.planned());
            return Ok(None);
        }
        send(step.request()?).map(Some)
    }

    /// The calls listed, in order.
    pub fn into_plan(self) -> Vec<PlannedCall> {
        self.planned
    }
}

/// What the body of a [`refusal`] starts with, so the card shows at a
/// glance that the PSA was not written to.
pub const REFUSED_BEFORE_WRITING: &str = "refused by the connector before writing";

/// A write the connector refuses before sending anything, because the PSA
/// does not hold what the change expects or the change cannot be written
/// (e.g. `409` when the line is another product, `422` for a quantity the
/// PSA cannot store). It is `upstream` with `retryable = false`: sending
/// the same change again cannot succeed, so the host shows `message` on
/// the card instead of retrying.
pub fn refusal(status: u16, message: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Upstream(crate::UpstreamFailure {
        status,
        body: format!("{REFUSED_BEFORE_WRITING}: {message}"),
        retryable: false,
    })
}

/// The product identifier and quantity of a change that adds a line
/// (`line-id` none), checked before any request: a line needs the
/// identifier of the catalogue product to add, and a quantity above 0 (a
/// line of 0 would bill nothing). `contract` names the contract in
/// messages, e.g. "agreement 250".
///
/// # Errors
/// A [`refusal`] 422 saying which is missing.
pub fn line_to_add<'c>(
    change: &'c crate::psa::QuantityChange,
    contract: &str,
) -> Result<(&'c str, rust_decimal::Decimal), ConnectorError> {
    let identifier = change.product_identifier.trim();
    if identifier.is_empty() {
        return Err(refusal(
            422,
            format!(
                "adding a line to {contract} needs the identifier of the catalogue product to add"
            ),
        ));
    }
    let quantity = crate::values::to_decimal(&change.new_quantity);
    if quantity <= rust_decimal::Decimal::ZERO {
        return Err(refusal(
            422,
            format!(
                "adding {identifier:?} to {contract} with quantity {} would bill nothing; approve a quantity above 0",
                quantity.normalize()
            ),
        ));
    }
    Ok((identifier, quantity))
}

/// The one catalogue entry a line is added from, among `found` (the
/// entries whose identifier is the change's, retired ones left out).
/// `missing` is the `not-found` message for none, saying where the MSP
/// adds the product; when several share the identifier the add is refused
/// (409, naming the first two `id`s): the line's price would be a guess.
///
/// # Errors
/// As above.
pub fn one_catalogue_entry<T>(
    found: impl IntoIterator<Item = T>,
    id: impl Fn(&T) -> String,
    identifier: &str,
    missing: impl FnOnce() -> String,
) -> Result<T, ConnectorError> {
    let mut found = found.into_iter();
    let entry = found
        .next()
        .ok_or_else(|| ConnectorError::NotFound(missing()))?;
    if let Some(other) = found.next() {
        return Err(refusal(
            409,
            format!(
                "the catalogue has {identifier:?} twice ({} and {}); make it unique so the line's price is unambiguous",
                id(&entry),
                id(&other)
            ),
        ));
    }
    Ok(entry)
}

/// A decimal as an exact JSON number (`12.5`, not `12.500000001`), for
/// request bodies.
///
/// # Errors
/// [`ConnectorError::Internal`] if the text is not a JSON number (it always
/// is for a [`rust_decimal::Decimal`]).
pub fn json_number(value: rust_decimal::Decimal) -> Result<Value, ConnectorError> {
    let text = value.normalize().to_string();
    text.parse::<serde_json::Number>()
        .map(Value::Number)
        .map_err(|e| ConnectorError::Internal(format!("{text} is not a JSON number: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_planned_as_method_url_body_and_purpose() {
        let step = Step::patch(
            "https://x/additions/7",
            serde_json::json!([{"op": "replace", "path": "quantity", "value": 12}]),
            "set the quantity",
        );
        let planned = step.planned();
        assert_eq!(planned.method, "PATCH");
        assert_eq!(planned.url, "https://x/additions/7");
        assert_eq!(
            planned.body.as_deref(),
            Some(r#"[{"op":"replace","path":"quantity","value":12}]"#)
        );
        assert_eq!(planned.purpose, "set the quantity");
        assert_eq!(Step::get("https://x/a", "read").planned().body, None);
    }

    #[test]
    fn decimals_become_exact_json_numbers() {
        for (text, json) in [
            ("12.50", "12.5"),
            ("-3", "-3"),
            ("0.000001", "0.000001"),
            ("40", "40"),
        ] {
            let value: rust_decimal::Decimal = text.parse().expect("test literal");
            assert_eq!(
                json_number(value).expect("a number").to_string(),
                json,
                "{text}"
            );
        }
    }

    #[test]
    fn a_refusal_is_an_upstream_failure_that_is_not_retried() {
        match refusal(409, "line 7 is product \"EDR\"") {
            ConnectorError::Upstream(failure) => {
                assert_eq!(failure.status, 409);
                assert!(!failure.retryable);
                assert_eq!(
                    failure.body,
                    "refused by the connector before writing: line 7 is product \"EDR\""
                );
            }
            other => panic!("expected upstream, got {other:?}"),
        }
    }

    #[test]
    fn a_line_to_add_needs_an_identifier_and_a_quantity_above_zero() {
        let change = |identifier: &str, digits: i64| crate::psa::QuantityChange {
            contract_id: "250".into(),
            line_id: None,
            product_identifier: identifier.into(),
            expected_quantity: crate::values::integer(0),
            new_quantity: crate::WitDecimal { digits, scale: 1 },
            effective_date: crate::Date {
                year: 2026,
                month: 12,
                day: 1,
            },
            policy: crate::psa::ChangePolicy::Dated,
            idempotency_key: "k".into(),
        };
        let ok = change(" EDR ", 25);
        let (identifier, quantity) = line_to_add(&ok, "agreement 250").expect("valid");
        assert_eq!(
            (identifier, quantity.to_string()),
            ("EDR", "2.5".to_owned())
        );
        for (bad, says) in [
            (change("", 10), "identifier"),
            (change("EDR", 0), "above 0"),
        ] {
            match line_to_add(&bad, "agreement 250") {
                Err(ConnectorError::Upstream(failure)) => {
                    assert_eq!((failure.status, failure.retryable), (422, false));
                    assert!(
                        failure.body.contains(says) && failure.body.contains("agreement 250"),
                        "{}",
                        failure.body
                    );
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_line_is_added_from_exactly_one_catalogue_entry() {
        let id = |n: &u32| n.to_string();
        assert_eq!(
            one_catalogue_entry([7], id, "EDR", || "none".into()).ok(),
            Some(7)
        );
        match one_catalogue_entry(Vec::<u32>::new(), id, "EDR", || "no EDR".into()) {
            Err(ConnectorError::NotFound(message)) => assert_eq!(message, "no EDR"),
            other => panic!("expected not-found, got {other:?}"),
        }
        match one_catalogue_entry([7, 9, 11], id, "EDR", || "none".into()) {
            Err(ConnectorError::Upstream(failure)) => {
                assert_eq!((failure.status, failure.retryable), (409, false));
                assert!(
                    failure.body.contains("\"EDR\" twice (7 and 9)"),
                    "{}",
                    failure.body
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_plan_lists_every_call_and_applying_lists_none() {
        let mut plan = Calls::plan();
        assert!(plan.planning());
        let written = plan
            .write(
                Step::post("https://x/a", serde_json::json!({}), "add"),
                |_| panic!("a plan never sends a write"),
            )
            .expect("listed");
        assert!(written.is_none());
        let back = plan
            .read_back(Step::get("https://x/a/1", "read back"), |_| {
                panic!("a plan never reads back")
            })
            .expect("listed");
        assert!(back.is_none());
        let methods: Vec<String> = plan.into_plan().into_iter().map(|c| c.method).collect();
        assert_eq!(methods, ["POST", "GET"]);
        assert!(Calls::apply().into_plan().is_empty());
    }
}
