//! The OpenAPI 3.1 document, generated from the code.
//!
//! Each handler carries a `#[utoipa::path]` annotation (method, path,
//! parameters, body, responses) and its types derive `ToSchema`. The route
//! table ([`Routes`]) registers a route from utoipa-axum's `routes!`
//! output, so the axum route and its operation come from the same
//! annotation and a route cannot exist without its operation. What the
//! annotation does not say the table adds to the operation: its summary,
//! its access rule (`x-trueup-access`), its security requirement and the
//! error answers the guard gives (401/403, or 303 for pages).
//!
//! The document is built once per process ([`document`]) and served at
//! `/api/openapi.json`; `trueup openapi` prints it.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::{self, Next};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
};
use utoipa_axum::router::UtoipaMethodRouter;

use super::{Access, RouteInfo, auth};

/// The extension naming who may call an operation: `public`, `page`,
/// `viewer`, `approver`, `admin` or `push_key`.
pub const ACCESS_EXTENSION: &str = "x-trueup-access";

/// The security scheme of the session cookie.
pub const SESSION_SCHEME: &str = "session";
/// The security scheme of API tokens (`Authorization: Bearer tu_...`).
pub const TOKEN_SCHEME: &str = "token";
/// The security scheme of the push API's keys.
pub const PUSH_KEY_SCHEME: &str = "push_key";

/// The name of the shared error answer (`components/responses`).
const ERROR_RESPONSE: &str = "Error";

const DESCRIPTION: &str = "Trueup's API. Authenticate with the session cookie \
trueup_session from POST /api/v1/session (then send the CSRF token in X-CSRF-Token on \
every state-changing request) or with an API token: Authorization: Bearer tu_... . \
The push API (/api/v1/usage...) authenticates with a push key instead. Each \
operation's x-trueup-access names who may call it (public, page, push_key, or the \
least role: viewer < approver < admin). Errors are {\"error\":{\"code\",\"message\"}} \
(the push API's: {\"error\",\"message\",\"problems\"}). Amounts and quantities are \
decimal strings. Generated from the code; see docs/api.md.";

/// An error answer of the API (not of the push API).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A machine-readable code: `unauthenticated`, `forbidden`, `csrf`,
    /// `not_found`, `bad_request`, `conflict`, `too_many_requests`,
    /// `upstream`, `unavailable`, `internal`.
    pub code: String,
    /// What happened and how to fix it.
    pub message: String,
    /// The request id, for errors whose detail is only in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The name an [`Access`] has in the document.
pub fn access_name(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Page => "page",
        Access::PushKey => "push_key",
        Access::Role(role) => role.as_str(),
    }
}

/// Builds a router, its route table and its OpenAPI document together, so
/// they cannot differ.
pub(crate) struct Routes<S> {
    pub(crate) router: Router<S>,
    pub(crate) table: Vec<RouteInfo>,
    pub(crate) doc: OpenApi,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub(crate) fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
            doc: OpenApi::default(),
        }
    }

    /// Routes a handler annotated with `#[utoipa::path]` (pass
    /// `utoipa_axum::routes!(handler)`) behind the guard of `access`, and
    /// documents it with `summary` and `access`.
    pub(crate) fn add(
        mut self,
        access: Access,
        summary: &'static str,
        (schemas, paths, handler): UtoipaMethodRouter<S>,
    ) -> Self {
        let guarded = handler.route_layer(middleware::from_fn(move |req: Request, next: Next| {
            auth::guard(access, req, next)
        }));
        let components = self.doc.components.get_or_insert_with(Default::default);
        components.schemas.extend(schemas);
        for (path, item) in paths.paths {
            self.router = self.router.route(&path, guarded.clone());
            // OpenAPI has no rest-of-path parameter: `{*page}` is `{page}`.
            let documented = path.replace("{*", "{");
            for (method, mut operation) in operations(item) {
                describe(&mut operation, access, summary);
                self.table.push(RouteInfo {
                    method: method_of(&method),
                    path: path.clone(),
                    access,
                    summary,
                });
                self.doc
                    .paths
                    .add_path_operation(&documented, vec![method], operation);
            }
        }
        self
    }
}

/// The operations of a path item with their methods.
fn operations(item: PathItem) -> Vec<(HttpMethod, Operation)> {
    [
        (HttpMethod::Get, item.get),
        (HttpMethod::Put, item.put),
        (HttpMethod::Post, item.post),
        (HttpMethod::Delete, item.delete),
        (HttpMethod::Options, item.options),
        (HttpMethod::Head, item.head),
        (HttpMethod::Patch, item.patch),
        (HttpMethod::Trace, item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|o| (method, o)))
    .collect()
}

fn method_of(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Post => Method::POST,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// Adds to an operation what the route table knows: the summary, the
/// access rule, the security requirement and the guard's answers.
fn describe(operation: &mut Operation, access: Access, summary: &str) {
    operation.summary = Some(summary.to_owned());
    operation
        .extensions
        .get_or_insert_with(Extensions::default)
        .insert(ACCESS_EXTENSION.to_owned(), access_name(access).into());
    let requirement = |scheme: &str| SecurityRequirement::new::<_, [&str; 0], &str>(scheme, []);
    operation.security = Some(match access {
        Access::Public => Vec::new(),
        Access::Page => vec![requirement(SESSION_SCHEME)],
        Access::Role(_) => vec![requirement(SESSION_SCHEME), requirement(TOKEN_SCHEME)],
        Access::PushKey => vec![requirement(PUSH_KEY_SCHEME)],
    });
    let responses = &mut operation.responses.responses;
    match access {
        Access::Public | Access::PushKey => {}
        Access::Page => {
            responses.entry("303".to_owned()).or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description("Not logged in: redirects to /login")
                        .build(),
                )
            });
        }
        Access::Role(_) => {
            for status in ["401", "403"] {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(ERROR_RESPONSE)));
            }
        }
    }
}

/// The document's frame: info, security schemes, the shared error answer.
fn frame() -> OpenApi {
    let error = ResponseBuilder::new()
        .description(
            "An error: 401 without valid credentials, 403 with too low a role or without the \
             CSRF token, otherwise what the operation says",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build();
    let components = ComponentsBuilder::new()
        .schema_from::<ErrorBody>()
        .schema_from::<ErrorDetail>()
        .response(ERROR_RESPONSE, error)
        .security_scheme(
            SESSION_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::SESSION_COOKIE,
                "The session cookie from POST /api/v1/session; send X-CSRF-Token too on \
                 state-changing requests",
            ))),
        )
        .security_scheme(
            TOKEN_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token: Authorization: Bearer tu_..."))
                    .build(),
            ),
        )
        .security_scheme(
            PUSH_KEY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A push integration's key (Authorization: Bearer <key>), created by \
                         the MSP with `trueup push create`",
                    ))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Trueup REST API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .build(),
        )
        .components(Some(components))
        .build()
}

/// The document of the web API, and of the push API beside it when
/// `with_push` (what `trueup serve` serves).
pub fn build(with_push: bool) -> OpenApi {
    let mut doc = frame();
    doc.merge(super::routes().doc);
    if with_push {
        doc.merge(crate::ingest::push::routes().doc);
    }
    doc
}

/// The document as served (see [`build`]): built once per process.
pub fn document(with_push: bool) -> &'static str {
    fn text(with_push: bool) -> String {
        match build(with_push).to_pretty_json() {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "the OpenAPI document cannot be written as JSON");
                String::from("{}")
            }
        }
    }
    static WEB: LazyLock<String> = LazyLock::new(|| text(false));
    static WITH_PUSH: LazyLock<String> = LazyLock::new(|| text(true));
    if with_push { &WITH_PUSH } else { &WEB }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn served(with_push: bool) -> Value {
        serde_json::from_str(document(with_push)).expect("the document is JSON")
    }

    /// (METHOD, path as documented) of every operation in `doc`.
    fn operations_of(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    fn documented_path(route: &RouteInfo) -> String {
        route.path.replace("{*", "{")
    }

    #[test]
    fn every_route_is_documented_with_its_access_and_nothing_else_is() {
        for with_push in [false, true] {
            let doc = served(with_push);
            let mut table = crate::web::route_table();
            if with_push {
                table.extend(crate::ingest::push::route_table());
            }
            let routed: BTreeSet<(String, String)> = table
                .iter()
                .map(|r| (r.method.to_string(), documented_path(r)))
                .collect();
            let documented = operations_of(&doc);
            let undocumented: Vec<_> = routed.difference(&documented).collect();
            let unrouted: Vec<_> = documented.difference(&routed).collect();
            assert!(
                undocumented.is_empty(),
                "routes without an operation: {undocumented:?}"
            );
            assert!(
                unrouted.is_empty(),
                "operations without a route: {unrouted:?}"
            );
            for route in &table {
                let operation =
                    &doc["paths"][documented_path(route)][route.method.as_str().to_lowercase()];
                let what = format!("{} {}", route.method, route.path);
                assert_eq!(
                    operation[ACCESS_EXTENSION],
                    access_name(route.access),
                    "{what}"
                );
                assert_eq!(operation["summary"], route.summary, "{what}");
                let security = operation["security"].as_array().expect("security");
                match route.access {
                    Access::Public => assert!(security.is_empty(), "{what}"),
                    Access::Role(_) => {
                        assert_eq!(security.len(), 2, "{what}");
                        for status in ["401", "403"] {
                            assert!(
                                operation["responses"][status].is_object(),
                                "{what}: {status}"
                            );
                        }
                    }
                    Access::Page | Access::PushKey => assert_eq!(security.len(), 1, "{what}"),
                }
                assert!(
                    operation["responses"]
                        .as_object()
                        .expect("responses")
                        .keys()
                        .any(|status| status.starts_with('2') || status.starts_with('3')),
                    "{what} documents no success"
                );
            }
        }
    }

    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => out.push(target),
                        _ => refs(inner, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let doc = served(true);
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Trueup REST API");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50, "the operations refer to their schemas");
        for target in found {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
        }
        for scheme in [SESSION_SCHEME, TOKEN_SCHEME, PUSH_KEY_SCHEME] {
            assert!(
                doc["components"]["securitySchemes"][scheme].is_object(),
                "{scheme}"
            );
        }
        // The wire format: dates as dates, money as decimal strings.
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["RunRef"]["properties"]["as_of"]["format"], "date");
        assert_eq!(
            schemas["SkuRequest"]["properties"]["multiplier"]["type"],
            serde_json::json!(["string", "null"])
        );
        assert_eq!(
            schemas["Role"]["enum"],
            serde_json::json!(["viewer", "approver", "admin"])
        );
    }

    #[test]
    fn the_push_api_is_documented_only_where_it_is_served() {
        let web = served(false);
        assert!(web["paths"]["/api/v1/usage"].is_null());
        assert!(web["components"]["securitySchemes"][PUSH_KEY_SCHEME].is_object());
        let all = served(true);
        assert!(all["paths"]["/api/v1/usage"]["post"].is_object());
        assert!(all["paths"]["/api/v1/cards"]["get"].is_object());
    }
}
