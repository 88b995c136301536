//! Huntress API emulator (`https://api.huntress.io/v1`).
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/account` | `{"account": {...}}` |
//! | `GET /v1/organizations?limit=&page=` or `?limit=&page_token=` | `{"organizations": [...], "pagination": {...}}` |
//! | `GET /v1/organizations/{id}` | `{"organization": {..., "actual_usages": {"edr": {billable_agents_count, unresponsive_agents_count, isolated_agents_count, outdated_agents_count}}}}` (the published OpenAPI's shape; with [`Settings::legacy_edr_block`] the older top-level `"edr": {agents_count, unresponsive_agents_count, isolated_agents_count}` instead) |
//! | `GET /v1/agents?organization_id=&platform=&limit=&page=|page_token=` | `{"agents": [...], "pagination": {...}}` |
//! | `GET /v1/agents/{id}` | `{"agent": {...}}` |
//! | `GET /_emulator/huntress/organizations` | inspection: org id ↔ world customer |
//!
//! Auth: `Authorization: Basic base64("<PUBLIC_KEY>:<PRIVATE_KEY>")` with
//! [`PUBLIC_KEY`] / [`PRIVATE_KEY`]; anything else is a 401.
//!
//! Paging — both styles the API has used, on the same endpoints:
//! - **page style** (no `page_token` in the request): `page` is 1-based
//!   (default 1); `pagination` holds `current_page, current_page_count,
//!   limit, total_count, total_pages, next_page` (`null` on the last page),
//!   `next_page_url`, `prev_page`, and also `next_page_token` so a
//!   token-style client can start from a plain first request;
//! - **token style** (`page_token` given): `pagination` holds only
//!   `next_page_token` and `next_page_url` (both absent on the last page)
//!   and `limit`.
//!
//! `limit` defaults to 10 and is cut to [`Settings::limit_max`] (500). Under
//! a paging-loop fault `next_page` / `next_page_token` point at the page
//! just served. The account is limited to [`Settings::requests_per_minute`]
//! requests per sliding minute (60); over it, 429 with `Retry-After`.
//!
//! Truth: an organisation's `actual_usages.edr.billable_agents_count` is the
//! customer's reported EDR usage. `agents_count` (the list and the single
//! GET) counts every agent, the unresponsive ones (no callback for
//! [`UNRESPONSIVE_AFTER_DAYS`] days, not billable \[I\]) too, so a client
//! billing `agents_count` over-bills. A few billable agents are isolated.
//! The list carries no usage block (our sources show `actual_usages` only
//! on the single GET; the stricter choice \[I\]). Noise: organisations with
//! no agents and the MSP's internal organisation.

// Handlers bail out early with a finished HTTP answer (`Err(Response)`);
// boxing it would only add noise to a once-per-request path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Value, json};

use crate::EmulatorContext;
use crate::catalog::{VendorSource, reported_usage};
use crate::faults::RateWindow;
use crate::vendor_common::{
    MSP_NAME, basic_credentials, internal_account_name, page_count, reference_time,
    refuse_when_throttled, slug,
};
use crate::world::SeededRng;

/// The API key (user part of Basic auth).
pub const PUBLIC_KEY: &str = "hk_emu_public_5f2c81";
/// The API secret (password part of Basic auth).
pub const PRIVATE_KEY: &str = "hk_emu_private_9b7e44d0";
/// The account the keys belong to.
pub const ACCOUNT_ID: u64 = 4242;
/// Largest `limit`.
pub const LIMIT_MAX: usize = 500;
/// `limit` when none is given.
pub const DEFAULT_LIMIT: usize = 10;
/// Requests per sliding minute for the account.
pub const REQUESTS_PER_MINUTE: usize = 60;
/// Agents that last called back longer ago than this count as unresponsive.
pub const UNRESPONSIVE_AFTER_DAYS: i64 = 7;

/// Knobs of the Huntress emulator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest page.
    pub limit_max: usize,
    /// Requests per sliding minute; `None` never limits.
    pub requests_per_minute: Option<usize>,
    /// The instant callbacks are relative to (default: start-up clock).
    pub as_of: Option<DateTime<Utc>>,
    /// Serve the older single-organisation shape: a top-level `edr` block
    /// with `agents_count`, no `actual_usages` and no billable count.
    pub legacy_edr_block: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            limit_max: LIMIT_MAX,
            requests_per_minute: Some(REQUESTS_PER_MINUTE),
            as_of: None,
            legacy_edr_block: false,
        }
    }
}

#[derive(Debug, Clone)]
struct Org {
    id: u64,
    customer_index: Option<usize>,
    name: String,
    key: String,
    domain: String,
    created: DateTime<Utc>,
    /// Index range into the agents.
    agents: std::ops::Range<usize>,
}

/// One agent, compact.
#[derive(Debug, Clone, Copy)]
struct Agent {
    id: u64,
    /// Index of the organisation.
    org: usize,
    mac: bool,
    server: bool,
    isolated: bool,
    created_ms: i64,
    last_callback_ms: i64,
    serial: u32,
}

struct HuntressState {
    ctx: EmulatorContext,
    settings: Settings,
    orgs: Vec<Org>,
    agents: Vec<Agent>,
    now: DateTime<Utc>,
    throttle: Option<RateWindow>,
}

type Shared = Arc<HuntressState>;

/// First organisation id; ids ascend from here in world order.
const FIRST_ORG_ID: u64 = 31_000;
/// First agent id.
const FIRST_AGENT_ID: u64 = 5_200_000;

fn build(ctx: &EmulatorContext, now: DateTime<Utc>) -> (Vec<Org>, Vec<Agent>) {
    let seed = ctx.world.seed;
    let now_ms = now.timestamp_millis();
    let mut orgs = Vec::new();
    let mut agents = Vec::new();
    let push_org = |customer_index: Option<usize>,
                    name: String,
                    domain: String,
                    count: u32,
                    servers: u32,
                    rng: &mut SeededRng,
                    orgs: &mut Vec<Org>,
                    agents: &mut Vec<Agent>| {
        let index = orgs.len();
        let start = agents.len();
        let unresponsive = if count > 3 && rng.chance(30) {
            rng.range(1, 2)
        } else {
            0
        };
        let isolated = u32::from(count > 5 && rng.chance(5));
        // The unresponsive agents come on top of the `count` billable ones.
        let total = count + unresponsive;
        for serial in 0..total {
            let stale = serial < unresponsive;
            let callback_s = if stale {
                i64::from(rng.range(8 * 86_400, 60 * 86_400))
            } else {
                i64::from(rng.range(5, 3600))
            };
            let last_callback_ms = now_ms - callback_s * 1000;
            agents.push(Agent {
                id: FIRST_AGENT_ID + agents.len() as u64,
                org: index,
                mac: rng.chance(12),
                server: total - serial <= servers,
                isolated: serial >= unresponsive && serial < unresponsive + isolated,
                created_ms: last_callback_ms - i64::from(rng.range(30, 900)) * 86_400_000,
                last_callback_ms,
                serial: serial + 1,
            });
        }
        let created = Utc
            .timestamp_millis_opt(now_ms - i64::from(rng.range(40, 1500)) * 86_400_000)
            .single()
            .unwrap_or(now);
        orgs.push(Org {
            id: FIRST_ORG_ID + index as u64,
            customer_index,
            key: slug(&name, '-'),
            name,
            domain,
            created,
            agents: start..agents.len(),
        });
    };
    for customer in ctx.world.vendor_customers() {
        let mut rng = SeededRng::stream(seed, "huntress-org", customer.index as u64);
        let edr = reported_usage(customer).into_iter().find_map(|(p, units)| {
            matches!(p.source, VendorSource::HuntressAgents).then_some(units)
        });
        let count = match edr {
            Some(units) => units,
            None if rng.chance(15) => 0,
            None => continue,
        };
        push_org(
            Some(customer.index),
            customer.vendor_name.clone(),
            customer.domain.clone(),
            count,
            customer.servers.min(count),
            &mut rng,
            &mut orgs,
            &mut agents,
        );
    }
    let mut rng = SeededRng::stream(seed, "huntress-org-internal", 0);
    push_org(
        None,
        internal_account_name(),
        crate::vendor_common::MSP_DOMAIN.to_owned(),
        9,
        1,
        &mut rng,
        &mut orgs,
        &mut agents,
    );
    (orgs, agents)
}

/// The emulator's API router and its `/_emulator/huntress` inspection
/// router (kept apart so fault injection never touches inspection).
pub fn routers(ctx: &EmulatorContext) -> (Router, Router) {
    let settings = ctx.settings.huntress.clone();
    let now = reference_time(settings.as_of);
    let (orgs, agents) = build(ctx, now);
    let state = Arc::new(HuntressState {
        ctx: ctx.clone(),
        throttle: settings
            .requests_per_minute
            .map(|n| RateWindow::new(n, Duration::from_secs(60))),
        settings,
        orgs,
        agents,
        now,
    });
    let inspection = Router::new()
        .route("/_emulator/huntress/organizations", get(inspect))
        .with_state(state.clone());
    let api = Router::new()
        .route("/v1/account", get(account))
        .route("/v1/organizations", get(organizations))
        .route("/v1/organizations/{id}", get(organization))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}", get(agent))
        .with_state(state);
    (api, inspection)
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn iso_ms(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or_else(String::new, iso)
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or_default(),
            "message": message,
        })),
    )
        .into_response()
}

/// Checks Basic credentials and the account's rate limit.
fn guard(state: &HuntressState, headers: &HeaderMap) -> Result<(), Response> {
    match basic_credentials(headers) {
        Some((public, private)) if public == PUBLIC_KEY && private == PRIVATE_KEY => {}
        Some(_) => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "Invalid API key or secret.",
            ));
        }
        None => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "Authorization: Basic base64(API_KEY:API_SECRET) is required.",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Huntress API\""),
            );
            return Err(response);
        }
    }
    let admitted = state.throttle.as_ref().map_or(Ok(()), RateWindow::admit);
    refuse_when_throttled(admitted, |secs| {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Rate limit exceeded; retry in {secs} s."),
        )
    })
}

/// How the client pages.
enum Style {
    /// `page` (1-based).
    Page(usize),
    /// `page_token`: the presented token and the offset it stands for.
    Token(String, usize),
}

struct PageRequest {
    limit: usize,
    style: Style,
}

fn encode_token(offset: usize, seed: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{offset}:{seed:x}"))
}

fn decode_token(token: &str, seed: u64) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()?;
    let (offset, check) = text.split_once(':')?;
    (check == format!("{seed:x}")).then_some(())?;
    offset.parse().ok()
}

fn page_request(
    state: &HuntressState,
    query: &HashMap<String, String>,
) -> Result<PageRequest, Response> {
    let number = |name: &str, default: usize| -> Result<usize, Response> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!("{name} must be a positive integer, got {v:?}."),
                )),
            },
        }
    };
    let limit = number("limit", DEFAULT_LIMIT)?.min(state.settings.limit_max.max(1));
    let style = match query.get("page_token") {
        Some(token) => match decode_token(token, state.ctx.world.seed) {
            Some(offset) => Style::Token(token.clone(), offset),
            None => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "page_token is not valid; pass next_page_token from the previous response.",
                ));
            }
        },
        None => Style::Page(number("page", 1)?),
    };
    Ok(PageRequest { limit, style })
}

/// Serves `items` (already filtered) as one page under `key` with the
/// pagination block of the request's style.
fn paged(
    state: &HuntressState,
    key: &str,
    items: Vec<Value>,
    request: &PageRequest,
    uri: &Uri,
    extra_query: &str,
) -> Response {
    let total = items.len();
    let limit = request.limit;
    let looping = state.ctx.faults.paging_loop(uri.path());
    let base = format!("{}{}", state.ctx.base_url, uri.path());
    let seed = state.ctx.world.seed;
    let (offset, pagination) = match &request.style {
        Style::Page(page) => {
            let offset = (page - 1).saturating_mul(limit).min(total);
            let count = total.saturating_sub(offset).min(limit);
            let pages = page_count(total, limit);
            let next = if looping {
                Some(*page)
            } else {
                (offset + count < total).then_some(page + 1)
            };
            let mut p = json!({
                "current_page": page,
                "current_page_count": count,
                "limit": limit,
                "total_count": total,
                "total_pages": pages,
                "next_page": next,
                "prev_page": (*page > 1).then_some(page - 1),
            });
            if let Some(next) = next {
                p["next_page_url"] =
                    json!(format!("{base}?limit={limit}&page={next}{extra_query}"));
                let next_offset = if looping { offset } else { offset + count };
                p["next_page_token"] = json!(encode_token(next_offset, seed));
            }
            (offset, p)
        }
        Style::Token(token, offset) => {
            let offset = (*offset).min(total);
            let count = total.saturating_sub(offset).min(limit);
            let next_token = if looping {
                Some(token.clone())
            } else {
                (offset + count < total).then(|| encode_token(offset + count, seed))
            };
            let mut p = json!({"limit": limit});
            if let Some(next) = next_token {
                p["next_page_url"] = json!(format!(
                    "{base}?limit={limit}&page_token={next}{extra_query}"
                ));
                p["next_page_token"] = json!(next);
            }
            (offset, p)
        }
    };
    let page: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let mut body = serde_json::Map::new();
    body.insert(key.to_owned(), Value::Array(page));
    body.insert("pagination".to_owned(), pagination);
    Json(Value::Object(body)).into_response()
}

async fn account(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    Json(json!({
        "account": {
            "id": ACCOUNT_ID,
            "name": MSP_NAME,
            "subdomain": slug(MSP_NAME, '-'),
            "status": "enabled",
            "support_type": "huntress_supported",
        }
    }))
    .into_response()
}

fn edr_counts(state: &HuntressState, org: &Org) -> (usize, usize, usize) {
    let agents = &state.agents[org.agents.clone()];
    let cutoff = state.now.timestamp_millis() - UNRESPONSIVE_AFTER_DAYS * 86_400_000;
    (
        agents.len(),
        agents
            .iter()
            .filter(|a| a.last_callback_ms < cutoff)
            .count(),
        agents.iter().filter(|a| a.isolated).count(),
    )
}

fn org_json(state: &HuntressState, org: &Org) -> Value {
    json!({
        "id": org.id,
        "name": org.name,
        "key": org.key,
        "account_id": ACCOUNT_ID,
        "agents_count": org.agents.len(),
        "billable_identity_count": 0,
        "created_at": iso(org.created),
        "updated_at": iso(org.created.max(state.now - chrono::Duration::days(3))),
        "incident_reports_count": org.agents.len() / 25,
        "logs_sources_count": 0,
        "microsoft_365_tenant_id": null,
        "report_recipients": [],
        "sat_learner_count": 0,
    })
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
    let request = match page_request(&state, &query) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let items = state.orgs.iter().map(|o| org_json(&state, o)).collect();
    paged(&state, "organizations", items, &request, &uri, "")
}

async fn organization(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    let Some(org) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.orgs.iter().find(|o| o.id == id))
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Organization {id} not found."),
        );
    };
    let (agents, unresponsive, isolated) = edr_counts(&state, org);
    let mut body = org_json(&state, org);
    if state.settings.legacy_edr_block {
        body["edr"] = json!({
            "agents_count": agents,
            "unresponsive_agents_count": unresponsive,
            "isolated_agents_count": isolated,
        });
    } else {
        body["actual_usages"] = json!({
            "edr": {
                "billable_agents_count": agents - unresponsive,
                "unresponsive_agents_count": unresponsive,
                "outdated_agents_count": 0,
                "isolated_agents_count": isolated,
            },
            "sat": {"learners_count": 0},
        });
    }
    Json(json!({"organization": body})).into_response()
}

fn agent_json(state: &HuntressState, agent: &Agent) -> Value {
    let org = &state.orgs[agent.org];
    let prefix: String = org
        .key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect::<String>()
        .to_ascii_uppercase();
    let (platform, os, hostname) = if agent.mac {
        (
            "darwin",
            "macOS 14.5",
            format!("{prefix}-MBP{:03}", agent.serial),
        )
    } else if agent.server {
        (
            "windows",
            "Windows Server 2022 Standard",
            format!("{prefix}-SRV{:03}", agent.serial),
        )
    } else {
        (
            "windows",
            "Windows 11 Pro",
            format!("{prefix}-WS{:03}", agent.serial),
        )
    };
    json!({
        "id": agent.id,
        "account_id": ACCOUNT_ID,
        "organization_id": org.id,
        "hostname": hostname,
        "domain_name": org.domain,
        "platform": platform,
        "os": os,
        "arch": "x86_64",
        "version": "0.14.2",
        "edr_version": "2.9.4",
        "ipv4_address": format!("10.{}.{}.{}", agent.org % 250, (agent.serial / 250) % 250, agent.serial % 250 + 2),
        "external_ip": format!("198.51.100.{}", agent.org % 250 + 1),
        "serial_number": format!("SN{:010}", agent.id),
        "defender_status": if agent.mac { "Unknown" } else { "Protected" },
        "firewall_status": "Enabled",
        "isolated": agent.isolated,
        "tags": [],
        "created_at": iso_ms(agent.created_ms),
        "updated_at": iso_ms(agent.last_callback_ms),
        "last_callback_at": iso_ms(agent.last_callback_ms),
        "last_survey_at": iso_ms(agent.last_callback_ms - 3_600_000),
    })
}

async fn list_agents(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    let request = match page_request(&state, &query) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut extra = String::new();
    let pool: &[Agent] = match query.get("organization_id") {
        Some(id) => {
            let Some(org) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| state.orgs.iter().find(|o| o.id == id))
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("Organization {id} not found."),
                );
            };
            extra.push_str(&format!("&organization_id={id}"));
            &state.agents[org.agents.clone()]
        }
        None => &state.agents,
    };
    let platform = query.get("platform").map(String::as_str);
    if let Some(p) = platform {
        if !matches!(p, "windows" | "darwin" | "linux") {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("platform must be windows, darwin or linux, got {p:?}."),
            );
        }
        extra.push_str(&format!("&platform={p}"));
    }
    let items = pool
        .iter()
        .filter(|a| match platform {
            Some("darwin") => a.mac,
            Some("windows") => !a.mac,
            Some(_) => false,
            None => true,
        })
        .map(|a| agent_json(&state, a))
        .collect();
    paged(&state, "agents", items, &request, &uri, &extra)
}

async fn agent(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&state, &headers) {
        return r;
    }
    let found = id
        .parse::<u64>()
        .ok()
        .and_then(|id| id.checked_sub(FIRST_AGENT_ID))
        .and_then(|i| state.agents.get(usize::try_from(i).ok()?));
    match found {
        Some(a) => Json(json!({"agent": agent_json(&state, a)})).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("Agent {id} not found.")),
    }
}

async fn inspect(State(state): State<Shared>) -> Json<Value> {
    Json(json!(
        state
            .orgs
            .iter()
            .map(|o| {
                let (agents, unresponsive, isolated) = edr_counts(&state, o);
                json!({
                    "id": o.id,
                    "customerIndex": o.customer_index,
                    "name": o.name,
                    "internal": o.customer_index.is_none(),
                    "agents": agents,
                    "billable": agents - unresponsive,
                    "unresponsive": unresponsive,
                    "isolated": isolated,
                })
            })
            .collect::<Vec<_>>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_other_seeds() {
        let token = encode_token(500, 3);
        assert_eq!(decode_token(&token, 3), Some(500));
        assert_eq!(decode_token(&token, 4), None);
        assert_eq!(decode_token("garbage", 3), None);
    }
}
