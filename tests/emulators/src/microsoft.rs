//! Microsoft emulator: three API families on one origin.
//!
//! | emulator path | real host | what |
//! |---|---|---|
//! | `POST /{tenant}/oauth2/v2.0/token` | `login.microsoftonline.com` | identity platform, client-credentials grant |
//! | `GET /v1.0/subscribedSkus` | `graph.microsoft.com` | Graph licences of the token's tenant |
//! | `GET /v1/customers`, `GET /v1/customers/{tenant}` | `api.partnercenter.microsoft.com` | CSP customers, continuation-token paging |
//! | `GET /v1/customers/{tenant}/subscriptions[/{id}]`, `PATCH .../subscriptions/{id}` | `api.partnercenter.microsoft.com` | CSP subscriptions |
//! | `GET /_emulator/microsoft/tenants` | (inspection) | every tenant with its world customer |
//!
//! **Tokens (GDAP).** The MSP's multi-tenant app ([`CLIENT_ID`] /
//! [`CLIENT_SECRET`]) asks each tenant's token endpoint for a token; the
//! `{tenant}` segment is a tenant id or one of its domains. A token carries
//! the tenant it was issued in and the audience of its scope
//! ([`GRAPH_SCOPE`] or [`PARTNER_CENTER_SCOPE`]). Graph serves only the
//! token's tenant (there is no tenant in a Graph URL, exactly as on the real
//! service), so a token of tenant A can never read tenant B's licences.
//! Partner Center accepts only Partner Center tokens issued in the partner's
//! own tenant ([`PARTNER_TENANT_ID`]); anything else gets a 401.
//!
//! **Graph** `subscribedSkus` answers `{"@odata.context", "value"}` with
//! every SKU of the tenant. It refuses `$filter` with Graph's
//! `Request_UnsupportedQuery` error ("Filtered searches against this resource
//! are not supported.", as the live service answers); `$select` trims the
//! objects. Errors use Graph's `{"error":{"code","message","innerError"}}`.
//!
//! **Partner Center** lists customers `size` at a time (at most, and by
//! default, [`Settings::customers_page_max`]); a further page is fetched with
//! `seekOperation=Next` and the `MS-ContinuationToken` request header, as
//! given in `links.next` of the previous page (also in `continuationToken`).
//! Subscriptions are one page. `PATCH` takes the full subscription resource
//! and applies its `quantity` (increases open a 7-day refundable window;
//! decreases beyond `refundableQuantity.totalQuantity` are refused, as new
//! commerce does); an `If-Match` etag is checked when sent. The subscription
//! resource is limited to [`Settings::subscription_requests_per_minute`] per
//! customer tenant (500, as documented): over it, `429` with `Retry-After`.
//! `MS-RequestId` and `MS-CorrelationId` are echoed (generated when absent).

// Handlers bail out early with a finished HTTP answer (`Err(Response)`);
// boxing it would only add noise to a once-per-request path.
#![allow(clippy::result_large_err)]

mod data;
mod partner_center;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::EmulatorContext;
use crate::vendor_common::{
    KeyedRateLimit, TokenRefusal, TokenStore, bearer_token, guid, reference_time,
};

/// The MSP's app registration (client id) used for every tenant.
pub const CLIENT_ID: &str = "6f1c6d2e-5b7a-4a3c-9d1e-2f4b8a7c9e01";
/// The app's client secret.
pub const CLIENT_SECRET: &str = "emu~ms.Secret-8Qp2";
/// The partner's own tenant (where Partner Center tokens are issued).
pub const PARTNER_TENANT_ID: &str = "0d3e4f5a-6b7c-4d8e-9f01-a2b3c4d5e6f7";
/// The scope that yields a Microsoft Graph token.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The scope that yields a Partner Center token.
pub const PARTNER_CENTER_SCOPE: &str = "https://api.partnercenter.microsoft.com/.default";

/// Partner Center's documented limit on the subscription resource, per
/// customer tenant per minute.
pub const SUBSCRIPTION_REQUESTS_PER_MINUTE: usize = 500;
/// Largest `size` the customers list honours; larger requests are cut to it.
pub const CUSTOMERS_PAGE_MAX: usize = 500;
/// New-commerce seat reductions are refundable for this many hours (7 days)
/// after a purchase or an increase.
pub const REFUND_WINDOW_HOURS: i64 = 168;
/// Access-token lifetime the identity platform reports (`expires_in`).
pub const TOKEN_LIFETIME_SECS: u64 = 3599;

/// Knobs of the Microsoft emulator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of issued tokens, in seconds.
    pub token_lifetime_secs: u64,
    /// Subscription-resource requests allowed per customer tenant per minute.
    pub subscription_requests_per_minute: usize,
    /// Largest customers page.
    pub customers_page_max: usize,
    /// The instant term dates and refund windows are relative to (default:
    /// the wall clock when the emulator starts).
    pub as_of: Option<DateTime<Utc>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            token_lifetime_secs: TOKEN_LIFETIME_SECS,
            subscription_requests_per_minute: SUBSCRIPTION_REQUESTS_PER_MINUTE,
            customers_page_max: CUSTOMERS_PAGE_MAX,
            as_of: None,
        }
    }
}

/// Which API a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Graph,
    PartnerCenter,
}

#[derive(Debug, Clone)]
struct Claims {
    tenant_id: String,
    audience: Audience,
}

struct MsState {
    ctx: EmulatorContext,
    settings: Settings,
    tenants: Mutex<Vec<data::Tenant>>,
    /// Lower-case tenant id or domain → index in `tenants`.
    lookup: HashMap<String, usize>,
    tokens: TokenStore<Claims>,
    throttle: KeyedRateLimit,
    /// The reference instant the data was built for.
    now: DateTime<Utc>,
    /// When the emulator started; the emulated clock runs from `now` on.
    started: DateTime<Utc>,
}

type Shared = Arc<MsState>;

impl MsState {
    /// The emulated current instant: the reference time plus the time the
    /// emulator has been running.
    fn clock(&self) -> DateTime<Utc> {
        self.now + (Utc::now() - self.started)
    }

    fn tenants(&self) -> MutexGuard<'_, Vec<data::Tenant>> {
        // Handlers never leave a tenant half-updated across an await, so a
        // poisoned lock still guards consistent data.
        self.tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The emulator's API router and its `/_emulator/microsoft` inspection
/// router (kept apart so fault injection never touches inspection).
pub fn routers(ctx: &EmulatorContext) -> (Router, Router) {
    let settings = ctx.settings.microsoft.clone();
    let now = reference_time(settings.as_of);
    let tenants = data::build(&ctx.world, now);
    let mut lookup = HashMap::new();
    for (i, t) in tenants.iter().enumerate() {
        lookup.insert(t.id.to_ascii_lowercase(), i);
        lookup.insert(t.domain.to_ascii_lowercase(), i);
        lookup.insert(t.initial_domain.to_ascii_lowercase(), i);
    }
    let state = Arc::new(MsState {
        ctx: ctx.clone(),
        throttle: KeyedRateLimit::new(
            settings.subscription_requests_per_minute,
            Duration::from_secs(60),
        ),
        settings,
        tenants: Mutex::new(tenants),
        lookup,
        tokens: TokenStore::new("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.ms", ctx.world.seed),
        now,
        started: Utc::now(),
    });
    let inspection = Router::new()
        .route("/_emulator/microsoft/tenants", get(inspect_tenants))
        .with_state(state.clone());
    let api = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/v1.0/subscribedSkus", get(subscribed_skus))
        .route("/v1/customers", get(partner_center::customers))
        .route("/v1/customers/{tenant}", get(partner_center::customer))
        .route(
            "/v1/customers/{tenant}/subscriptions",
            get(partner_center::subscriptions),
        )
        .route(
            "/v1/customers/{tenant}/subscriptions/{id}",
            get(partner_center::subscription).patch(partner_center::patch_subscription),
        )
        .with_state(state);
    (api, inspection)
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------
// Identity platform

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = guid(
        u64::from(code),
        "aad-trace",
        Utc::now().timestamp_micros() as u64,
    );
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} Timestamp: {}", iso(Utc::now())),
            "error_codes": [code],
            "timestamp": iso(Utc::now()),
            "trace_id": trace,
            "correlation_id": trace,
        })),
    )
        .into_response()
}

async fn token(
    State(state): State<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let tenant_id = if tenant.eq_ignore_ascii_case(PARTNER_TENANT_ID) {
        PARTNER_TENANT_ID.to_owned()
    } else {
        match state.lookup.get(&tenant.to_ascii_lowercase()) {
            Some(&i) => state.tenants()[i].id.clone(),
            None => {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    90002,
                    &format!(
                        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                    ),
                );
            }
        }
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; this emulator serves 'client_credentials'.",
        );
    }
    if form.client_id.as_deref() != Some(CLIENT_ID) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{}' was not found in the directory '{tenant_id}'.",
                form.client_id.as_deref().unwrap_or_default()
            ),
        );
    }
    if form.client_secret.as_deref() != Some(CLIENT_SECRET) {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    let audience = match form.scope.as_deref().map(str::trim) {
        Some(GRAPH_SCOPE) => Audience::Graph,
        Some(PARTNER_CENTER_SCOPE) => Audience::PartnerCenter,
        other => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                    other.unwrap_or_default()
                ),
            );
        }
    };
    let lifetime = Duration::from_secs(state.settings.token_lifetime_secs);
    let (access_token, _) = state.tokens.issue(
        Claims {
            tenant_id,
            audience,
        },
        lifetime,
    );
    Json(json!({
        "token_type": "Bearer",
        "expires_in": state.settings.token_lifetime_secs,
        "ext_expires_in": state.settings.token_lifetime_secs,
        "access_token": access_token,
    }))
    .into_response()
}

// ---------------------------------------------------------------------------
// Graph

fn graph_error(status: StatusCode, code: &str, message: &str, headers: &HeaderMap) -> Response {
    let request_id = guid(0, "graph-request", Utc::now().timestamp_micros() as u64);
    let client_request_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| request_id.clone(), str::to_owned);
    let mut response = (
        status,
        Json(json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                }
            }
        })),
    )
        .into_response();
    graph_headers(&mut response, &request_id, &client_request_id);
    response
}

fn graph_headers(response: &mut Response, request_id: &str, client_request_id: &str) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(client_request_id) {
        headers.insert("client-request-id", v);
    }
}

/// The tenant a Graph request may read, or the 401 Graph sends.
fn graph_tenant(state: &MsState, headers: &HeaderMap) -> Result<String, Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
            headers,
        ));
    };
    match state.tokens.check(token) {
        Ok(claims) if claims.audience == Audience::Graph => Ok(claims.tenant_id),
        Ok(_) => Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
            headers,
        )),
        Err(TokenRefusal::Expired) => Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
            headers,
        )),
        Err(TokenRefusal::Unknown) => Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format.",
            headers,
        )),
    }
}

fn sku_json(tenant: &data::Tenant, sku: &data::TenantSku) -> Value {
    let subscription_ids: Vec<String> = tenant
        .subscriptions
        .iter()
        .filter(|s| s.def.part_number == sku.def.part_number && s.status != "deleted")
        .map(|s| s.id.to_ascii_lowercase())
        .collect();
    json!({
        "accountName": tenant.name,
        "accountId": tenant.id,
        "appliesTo": "User",
        "capabilityStatus": sku.status,
        "consumedUnits": sku.consumed,
        "id": format!("{}_{}", tenant.id, sku.def.sku_id),
        "prepaidUnits": {
            "enabled": sku.enabled,
            "lockedOut": sku.locked_out,
            "suspended": sku.suspended,
            "warning": sku.warning,
        },
        "servicePlans": sku.def.service_plans.iter().map(|(id, name, applies_to)| json!({
            "servicePlanId": id,
            "servicePlanName": name,
            "provisioningStatus": if sku.status == "Enabled" { "Success" } else { "Disabled" },
            "appliesTo": applies_to,
        })).collect::<Vec<_>>(),
        "skuId": sku.def.sku_id,
        "skuPartNumber": sku.def.part_number,
        "subscriptionIds": subscription_ids,
    })
}

async fn subscribed_skus(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let tenant_id = match graph_tenant(&state, &headers) {
        Ok(id) => id,
        Err(response) => return response,
    };
    if query.contains_key("$filter") {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "Filtered searches against this resource are not supported.",
            &headers,
        );
    }
    let select: Option<Vec<String>> = query
        .get("$select")
        .map(|s| s.split(',').map(|f| f.trim().to_owned()).collect());
    let value: Vec<Value> = match state.lookup.get(&tenant_id.to_ascii_lowercase()) {
        Some(&i) => {
            let tenants = state.tenants();
            let tenant = &tenants[i];
            tenant
                .skus
                .iter()
                .map(|sku| {
                    let full = sku_json(tenant, sku);
                    match (&select, full) {
                        (Some(fields), Value::Object(map)) => {
                            let kept: Map<String, Value> = map
                                .into_iter()
                                .filter(|(k, _)| k == "id" || fields.iter().any(|f| f == k))
                                .collect();
                            Value::Object(kept)
                        }
                        (_, full) => full,
                    }
                })
                .collect()
        }
        // The partner tenant itself holds no licences in this world.
        None => Vec::new(),
    };
    let request_id = guid(1, "graph-request", Utc::now().timestamp_micros() as u64);
    let client_request_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| request_id.clone(), str::to_owned);
    let mut response = Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",
        "value": value,
    }))
    .into_response();
    graph_headers(&mut response, &request_id, &client_request_id);
    response
}

// ---------------------------------------------------------------------------
// Inspection

async fn inspect_tenants(State(state): State<Shared>) -> Json<Value> {
    let tenants = state.tenants();
    Json(json!({
        "partnerTenantId": PARTNER_TENANT_ID,
        "tenants": tenants.iter().map(|t| json!({
            "tenantId": t.id,
            "customerIndex": t.customer_index,
            "name": t.name,
            "domain": t.domain,
            "initialDomain": t.initial_domain,
            "internal": t.customer_index.is_none(),
        })).collect::<Vec<_>>(),
    }))
}
