//! NinjaOne RMM public API v2 emulator (`https://{app|eu|oc}.ninjarmm.com`).
//!
//! | route | what |
//! |---|---|
//! | `POST /oauth/token` (also `/ws/oauth/token`) | form `grant_type=client_credentials&client_id&client_secret&scope=monitoring management control` |
//! | `GET /api/v2/organizations?pageSize=&after=` | organisations, brief |
//! | `GET /api/v2/organization/{id}` | one organisation with its locations |
//! | `GET /api/v2/organization/{id}/locations` | its locations |
//! | `GET /api/v2/organization/{id}/devices?pageSize=&after=` | its devices |
//! | `GET /api/v2/devices?df=&pageSize=&after=` | devices, brief |
//! | `GET /api/v2/devices-detailed?df=&pageSize=&after=` | devices with `os` |
//! | `GET /api/v2/device/{id}` | one device with `os`, addresses |
//! | `GET /_emulator/ninjaone/organizations` | inspection: org id ↔ world customer, device counts |
//!
//! Every `/api/v2/...` route is also served as `/v2/...` (both prefixes
//! exist on the real service).
//!
//! Auth: `Authorization: Bearer` with a token from the token route for
//! [`CLIENT_ID`]/[`CLIENT_SECRET`]; reads need the `monitoring` scope (403
//! otherwise). Tokens last [`Settings::token_lifetime_secs`] (3600).
//!
//! Paging follows the published v2 spec: list endpoints answer a plain JSON
//! array; `after` is the last identifier of the previous page (records with
//! a larger id follow) and `pageSize` caps the count. There is no next link:
//! an empty page is the end. An absent `pageSize` means
//! [`Settings::page_size_max`] ([`PAGE_SIZE_MAX`], 300), and larger values
//! are cut to it: NinjaOne publishes no maximum, so the emulator serves
//! fewer than asked, as a real server may \[I, the stricter choice\]; a
//! client that takes a short page for the last reads only the first 300. Under a paging-loop fault `after` is ignored, so every
//! request returns the first page again and the cursor a client computes
//! from it repeats.
//!
//! Device filters (`df=`) are described in [`filter`]; an unparsable filter
//! is a 400 naming the bad part. `lastContact`, `lastUpdate` and `created`
//! are epoch seconds as floating-point numbers, as the real API sends them.
//! Set [`Settings::requests_per_minute`] to get 429s with `Retry-After`
//! (NinjaOne publishes no figure, so it is off by default).

// Handlers bail out early with a finished HTTP answer (`Err(Response)`);
// boxing it would only add noise to a once-per-request path.
#![allow(clippy::result_large_err)]

mod data;
mod filter;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::EmulatorContext;
use crate::faults::RateWindow;
use crate::vendor_common::{
    TokenRefusal, TokenStore, bearer_token, guid, reference_time, refuse_when_throttled,
};
use data::{Device, NinjaData, Org};
use filter::Filter;

/// The API client id the emulator accepts.
pub const CLIENT_ID: &str = "ninja-emu-client-Qw81";
/// The matching client secret.
pub const CLIENT_SECRET: &str = "ninja-emu-secret-Lp0x-3vB";
/// Largest page served (and the size when `pageSize` is absent): smaller
/// than the 10,000 connectors may ask for, so short pages are exercised.
pub const PAGE_SIZE_MAX: usize = 300;
/// Token lifetime (`expires_in`).
pub const TOKEN_LIFETIME_SECS: u64 = 3600;
/// Scopes a client may ask for.
pub const SCOPES: [&str; 3] = ["monitoring", "management", "control"];

/// Knobs of the NinjaOne emulator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest page (also the page when `pageSize` is absent).
    pub page_size_max: usize,
    /// Requests per minute before 429; `None` never limits.
    pub requests_per_minute: Option<usize>,
    /// Token lifetime in seconds.
    pub token_lifetime_secs: u64,
    /// Scale runs: this many devices per organisation instead of the
    /// catalogue-driven counts.
    pub devices_per_org: Option<u32>,
    /// The instant `lastContact` is relative to (default: start-up clock).
    pub as_of: Option<DateTime<Utc>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            page_size_max: PAGE_SIZE_MAX,
            requests_per_minute: None,
            token_lifetime_secs: TOKEN_LIFETIME_SECS,
            devices_per_org: None,
            as_of: None,
        }
    }
}

struct NinjaState {
    ctx: EmulatorContext,
    settings: Settings,
    data: NinjaData,
    tokens: TokenStore<Vec<String>>,
    throttle: Option<RateWindow>,
}

type Shared = Arc<NinjaState>;

/// The emulator's API router and its `/_emulator/ninjaone` inspection
/// router (kept apart so fault injection never touches inspection).
pub fn routers(ctx: &EmulatorContext) -> (Router, Router) {
    let settings = ctx.settings.ninjaone.clone();
    let now = reference_time(settings.as_of);
    let data = data::build(&ctx.world, now, settings.devices_per_org);
    let state = Arc::new(NinjaState {
        ctx: ctx.clone(),
        throttle: settings
            .requests_per_minute
            .map(|n| RateWindow::new(n, Duration::from_secs(60))),
        settings,
        data,
        tokens: TokenStore::new("ninja.", ctx.world.seed),
    });
    let api = Router::new()
        .route("/organizations", get(organizations))
        .route("/organization/{id}", get(organization))
        .route("/organization/{id}/locations", get(locations))
        .route("/organization/{id}/devices", get(organization_devices))
        .route("/devices", get(devices))
        .route("/devices-detailed", get(devices_detailed))
        .route("/device/{id}", get(device));
    let inspection = Router::new()
        .route("/_emulator/ninjaone/organizations", get(inspect))
        .with_state(state.clone());
    let api = Router::new()
        .route("/oauth/token", post(token))
        .route("/ws/oauth/token", post(token))
        .nest("/api/v2", api.clone())
        .nest("/v2", api)
        .with_state(state);
    (api, inspection)
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

async fn token(State(state): State<Shared>, Form(form): Form<TokenForm>) -> Response {
    let refuse = |status: StatusCode, body: Value| (status, Json(body)).into_response();
    if form.grant_type.as_deref() != Some("client_credentials") {
        return refuse(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type", "error_description": "Only client_credentials is supported for API services applications."}),
        );
    }
    if form.client_id.as_deref() != Some(CLIENT_ID) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            json!({"resultCode": "Client app not exist"}),
        );
    }
    if form.client_secret.as_deref() != Some(CLIENT_SECRET) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": "Bad client credentials"}),
        );
    }
    let requested: Vec<String> = form
        .scope
        .as_deref()
        .unwrap_or("monitoring")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if let Some(bad) = requested.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return refuse(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_scope", "error_description": format!("Invalid scope: {bad}")}),
        );
    }
    let lifetime = state.settings.token_lifetime_secs;
    let scope = requested.join(" ");
    let (access_token, _) = state.tokens.issue(requested, Duration::from_secs(lifetime));
    Json(json!({
        "access_token": access_token,
        "expires_in": lifetime,
        "scope": scope,
        "token_type": "Bearer",
    }))
    .into_response()
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "resultCode": "FAILURE",
            "errorMessage": message,
            "incidentId": guid(u64::from(status.as_u16()), "ninja-incident", Utc::now().timestamp_micros() as u64),
        })),
    )
        .into_response()
}

/// Checks the bearer token, its `monitoring` scope and the rate limit.
fn guard(state: &NinjaState, headers: &HeaderMap) -> Result<(), Response> {
    let unauthorized = |description: &str| {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token", "error_description": description})),
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        response
    };
    let Some(token) = bearer_token(headers) else {
        return Err(unauthorized(
            "Full authentication is required to access this resource",
        ));
    };
    let scopes = match state.tokens.check(token) {
        Ok(scopes) => scopes,
        Err(TokenRefusal::Expired) => return Err(unauthorized("Access token expired")),
        Err(TokenRefusal::Unknown) => return Err(unauthorized("Invalid access token")),
    };
    if !scopes.iter().any(|s| s == "monitoring") {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "Insufficient scope: reading needs the 'monitoring' scope.",
        ));
    }
    let admitted = state.throttle.as_ref().map_or(Ok(()), RateWindow::admit);
    refuse_when_throttled(admitted, |secs| {
        api_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many requests; retry in {secs} s."),
        )
    })
}

/// `pageSize` and `after` of a list request.
struct Paging {
    size: usize,
    after: u32,
}

fn paging(
    state: &NinjaState,
    query: &HashMap<String, String>,
    uri: &Uri,
) -> Result<Paging, Response> {
    let number = |name: &str| -> Result<Option<u64>, Response> {
        query
            .get(name)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    api_error(
                        StatusCode::BAD_REQUEST,
                        &format!("{name} must be a non-negative integer, got {v:?}."),
                    )
                })
            })
            .transpose()
    };
    let max = state.settings.page_size_max.max(1);
    let size = match number("pageSize")? {
        None => max,
        Some(0) => {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "pageSize must be at least 1.",
            ));
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(max),
    };
    let after = if state.ctx.faults.paging_loop(uri.path()) {
        0
    } else {
        number("after")?.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    Ok(Paging { size, after })
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A device as the list endpoints serve it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceJson {
    id: u32,
    uid: String,
    organization_id: u32,
    location_id: u32,
    node_class: &'static str,
    node_role_id: u32,
    role_policy_id: u32,
    approval_status: &'static str,
    offline: bool,
    display_name: String,
    system_name: String,
    dns_name: String,
    created: f64,
    last_contact: f64,
    last_update: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<Value>,
}

fn host_name(org: &Org, device: &Device) -> String {
    let kind = match device.class_name() {
        c if c.starts_with("NMS_") => "NET",
        c if c.contains("SERVER") || c.ends_with("_GUEST") || c.ends_with("_HOST") => "SRV",
        "ANDROID" | "APPLE_IOS" | "APPLE_IPADOS" => "MOB",
        "CLOUD_MONITOR_TARGET" => "CLD",
        _ => "WS",
    };
    format!("{}-{kind}{:03}", org.host_prefix, device.name)
}

fn os_json(device: &Device, seed: u64) -> Option<Value> {
    let (manufacturer, name, build, release) = match device.class_name() {
        "WINDOWS_WORKSTATION" => (
            "Microsoft Corporation",
            "Windows 11 Professional Edition",
            "22631",
            "23H2",
        ),
        "WINDOWS_SERVER" | "HYPERV_VMM_GUEST" | "HYPERV_VMM_HOST" => (
            "Microsoft Corporation",
            "Windows Server 2022 Standard Edition",
            "20348",
            "21H2",
        ),
        "MAC" | "MAC_SERVER" => ("Apple Inc.", "macOS Sonoma", "23F79", "14.5"),
        "LINUX_WORKSTATION" | "LINUX_SERVER" | "VMWARE_VM_GUEST" => {
            ("Canonical", "Ubuntu 22.04.4 LTS", "5.15.0-105", "22.04")
        }
        _ => return None,
    };
    let mut rng = crate::world::SeededRng::stream(seed, "ninja-boot", u64::from(device.id));
    let boot_ms = device.last_contact_ms - i64::from(rng.range(3_600, 30 * 86_400)) * 1000;
    Some(json!({
        "manufacturer": manufacturer,
        "name": name,
        "architecture": "64-bit",
        "lastBootTime": secs(boot_ms),
        "buildNumber": build,
        "releaseId": release,
        "servicePackMajorVersion": 0,
        "servicePackMinorVersion": 0,
        "locale": "en-US",
        "language": "English",
        "needsReboot": rng.chance(10),
    }))
}

fn device_json(state: &NinjaState, device: &Device, detailed: bool) -> DeviceJson {
    let org = &state.data.orgs[device.org as usize - 1];
    let name = host_name(org, device);
    let seed = state.ctx.world.seed;
    DeviceJson {
        id: device.id,
        uid: guid(seed, "ninja-device", u64::from(device.id)),
        organization_id: device.org,
        location_id: device.loc,
        node_class: device.class_name(),
        node_role_id: u32::from(device.class) + 1,
        role_policy_id: u32::from(device.class) + 100,
        approval_status: if device.approved {
            "APPROVED"
        } else {
            "PENDING"
        },
        offline: device.offline,
        dns_name: format!("{}.{}", name.to_ascii_lowercase(), org.domain),
        display_name: name.clone(),
        system_name: name,
        created: device.created as f64,
        last_contact: secs(device.last_contact_ms),
        last_update: secs(device.last_contact_ms - 20_000),
        os: if detailed {
            os_json(device, seed)
        } else {
            None
        },
    }
}

/// Up to `paging.size` devices of `pool` (ascending ids) with an id above
/// `paging.after` that pass `filter`.
fn device_page<'a>(pool: &'a [Device], paging: &Paging, filter: &Filter) -> Vec<&'a Device> {
    let start = pool.partition_point(|d| d.id <= paging.after);
    pool[start..]
        .iter()
        .filter(|d| filter.matches(d))
        .take(paging.size)
        .collect()
}

fn list_devices(
    state: &NinjaState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    uri: &Uri,
    detailed: bool,
) -> Response {
    if let Err(r) = guard(state, headers) {
        return r;
    }
    let paging = match paging(state, query, uri) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let filter = match Filter::parse(query.get("df").map_or("", String::as_str)) {
        Ok(f) => f,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid device filter: {e}"),
            );
        }
    };
    let pool: &[Device] = match filter.only_org() {
        Some(org) => state
            .data
            .orgs
            .get((org as usize).wrapping_sub(1))
            .map_or(&[][..], |o| &state.data.devices[o.devices.clone()]),
        None => &state.data.devices,
    };
    let page: Vec<DeviceJson> = device_page(pool, &paging, &filter)
        .into_iter()
        .map(|d| device_json(state, d, detailed))
        .collect();
    Json(page).into_response()
}

async fn devices(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    list_devices(&state, &query, &headers, &uri, false)
}

async fn devices_detailed(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    list_devices(&state, &query, &headers, &uri, true)
}

fn find_org<'a>(state: &'a NinjaState, id: &str) -> Result<&'a Org, Response> {
    id.parse::<usize>()
        .ok()
        .and_then(|i| state.data.orgs.get(i.wrapping_sub(1)))
        .ok_or_else(|| {
            api_error(
                StatusCode::NOT_FOUND,
                &format!("Organization {id} not found."),
            )
        })
}

async fn organization_devices(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    let org = match find_org(&state, &id) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let paging = match paging(&state, &query, &uri) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let pool = &state.data.devices[org.devices.clone()];
    let page: Vec<DeviceJson> = device_page(pool, &paging, &Filter::default())
        .into_iter()
        .map(|d| device_json(&state, d, false))
        .collect();
    Json(page).into_response()
}

async fn device(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    let Some(device) = id
        .parse::<usize>()
        .ok()
        .and_then(|i| state.data.devices.get(i.wrapping_sub(1)))
    else {
        return api_error(StatusCode::NOT_FOUND, &format!("Device {id} not found."));
    };
    let mut body = serde_json::to_value(device_json(&state, device, true)).unwrap_or(Value::Null);
    let octet = device.id % 250 + 2;
    body["ipAddresses"] = json!([format!(
        "10.{}.{}.{octet}",
        device.org % 250,
        device.loc % 250
    )]);
    body["macAddresses"] = json!([format!(
        "00:15:5d:{:02x}:{:02x}:{:02x}",
        device.org % 256,
        (device.id >> 8) % 256,
        device.id % 256
    )]);
    body["publicIP"] = json!(format!("203.0.113.{}", device.org % 250 + 1));
    body["deviceType"] = json!(if device.class_name().starts_with("NMS_") {
        "NMS"
    } else {
        "AGENT"
    });
    Json(body).into_response()
}

fn org_json(org: &Org) -> Value {
    json!({
        "name": org.name,
        "description": "",
        "nodeApprovalMode": "MANUAL",
        "tags": [],
        "fields": {},
        "id": org.id,
    })
}

fn location_json(id: u32, name: &str) -> Value {
    json!({"id": id, "name": name, "address": "", "description": "", "tags": [], "fields": {}})
}

async fn organizations(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    let paging = match paging(&state, &query, &uri) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let orgs = &state.data.orgs;
    let start = orgs.partition_point(|o| o.id <= paging.after);
    let page: Vec<Value> = orgs[start..]
        .iter()
        .take(paging.size)
        .map(org_json)
        .collect();
    Json(page).into_response()
}

async fn organization(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    match find_org(&state, &id) {
        Ok(org) => {
            let mut body = org_json(org);
            body["locations"] = json!(
                org.locations
                    .iter()
                    .map(|(id, name)| location_json(*id, name))
                    .collect::<Vec<_>>()
            );
            body["policies"] = json!([]);
            body["settings"] = json!({});
            Json(body).into_response()
        }
        Err(r) => r,
    }
}

async fn locations(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    match find_org(&state, &id) {
        Ok(org) => Json(
            org.locations
                .iter()
                .map(|(id, name)| location_json(*id, name))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(r) => r,
    }
}

async fn inspect(State(state): State<Shared>) -> Json<Value> {
    Json(json!(
        state
            .data
            .orgs
            .iter()
            .map(|o| json!({
                "id": o.id,
                "customerIndex": o.customer_index,
                "name": o.name,
                "internal": o.customer_index.is_none(),
                "devices": o.devices.len(),
            }))
            .collect::<Vec<_>>()
    ))
}
