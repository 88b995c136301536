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
