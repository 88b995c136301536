//! Partner Center (`api.partnercenter.microsoft.com/v1`) handlers: customers
//! with continuation-token paging, and the subscription resource.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::data::{RefundWindow, Subscription, Tenant};
use super::{Audience, MsState, PARTNER_TENANT_ID, REFUND_WINDOW_HOURS, Shared, iso};
use crate::vendor_common::{TokenRefusal, bearer_token, guid, refuse_when_throttled};

/// The header carrying a continuation token to the next page.
const CONTINUATION_HEADER: &str = "MS-ContinuationToken";

/// Copies `MS-RequestId` / `MS-CorrelationId` from the request onto the
/// response, generating them when the client sent none.
fn with_ms_headers(mut response: Response, request: &HeaderMap) -> Response {
    for name in ["MS-RequestId", "MS-CorrelationId"] {
        let value = request.get(name).cloned().or_else(|| {
            HeaderValue::from_str(&guid(
                name.len() as u64,
                "pc-header",
                Utc::now().timestamp_micros() as u64,
            ))
            .ok()
        });
        if let Some(value) = value {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Partner Center's error resource.
fn pc_error(
    status: StatusCode,
    code: u32,
    name: &str,
    description: &str,
    request: &HeaderMap,
) -> Response {
    with_ms_headers(
        (
            status,
            Json(json!({
                "code": code,
                "description": description,
                "errorName": name,
                "data": [],
                "source": "PartnerFD",
            })),
        )
            .into_response(),
        request,
    )
}

fn authorize(state: &MsState, headers: &HeaderMap) -> Result<(), Response> {
    let refuse = |description: &str| {
        Err(pc_error(
            StatusCode::UNAUTHORIZED,
            401,
            "Unauthorized",
            description,
            headers,
        ))
    };
    let Some(token) = bearer_token(headers) else {
        return refuse("Authorization header is missing or is not a Bearer token.");
    };
    match state.tokens.check(token) {
        Ok(claims)
            if claims.audience == Audience::PartnerCenter
                && claims.tenant_id == PARTNER_TENANT_ID =>
        {
            Ok(())
        }
        Ok(claims) if claims.audience != Audience::PartnerCenter => refuse(
            "The token audience is not Partner Center; request a token for https://api.partnercenter.microsoft.com/.default.",
        ),
        Ok(_) => refuse("Partner Center tokens must be issued in the partner's own tenant."),
        Err(TokenRefusal::Expired) => refuse("The access token has expired."),
        Err(TokenRefusal::Unknown) => refuse("The access token is not valid."),
    }
}

fn throttle(state: &MsState, tenant_id: &str, headers: &HeaderMap) -> Result<(), Response> {
    let admitted = state.throttle.admit(&tenant_id.to_ascii_lowercase());
    refuse_when_throttled(admitted, |secs| {
        let response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "statusCode": 429,
                "message": format!("Rate limit is exceeded. Try again in {secs} seconds."),
            })),
        )
            .into_response();
        with_ms_headers(response, headers)
    })
}

fn link(uri: &str) -> Value {
    json!({"uri": uri, "method": "GET", "headers": []})
}

fn customer_json(tenant: &Tenant, seed: u64) -> Value {
    let self_uri = format!("/customers/{}", tenant.id);
    json!({
        "id": tenant.id,
        "commerceId": guid(seed, "pc-commerce", tenant.customer_index.map_or(u64::MAX, |i| i as u64)),
        "companyProfile": {
            "tenantId": tenant.id,
            "domain": tenant.domain,
            "companyName": tenant.name,
            "links": {"self": link(&format!("{self_uri}/profiles/company"))},
            "attributes": {"objectType": "CustomerCompanyProfile"},
        },
        "relationshipToPartner": "reseller",
        "allowDelegatedAccess": true,
        "links": {"self": link(&self_uri)},
        "attributes": {"objectType": "Customer"},
    })
}

fn etag(subscription: &Subscription) -> String {
    STANDARD.encode(format!(
        "{{\"id\":\"{}\",\"version\":{}}}",
        subscription.id.to_ascii_lowercase(),
        subscription.version
    ))
}

fn live_windows(subscription: &Subscription, now: DateTime<Utc>) -> Vec<&RefundWindow> {
    subscription
        .refund_windows
        .iter()
        .filter(|w| w.until > now)
        .collect()
}

fn subscription_json(tenant: &Tenant, s: &Subscription, now: DateTime<Utc>) -> Value {
    let windows = live_windows(s, now);
    let self_uri = format!("/customers/{}/subscriptions/{}", tenant.id, s.id);
    let (product, sku) = s
        .def
        .offer_id
        .split_once(':')
        .unwrap_or((s.def.offer_id, ""));
    json!({
        "id": s.id,
        "offerId": s.def.offer_id,
        "offerName": s.def.offer_name,
        "friendlyName": s.friendly_name,
        "productType": {"id": "OnlineServicesNCE", "displayName": "OnlineServicesNCE"},
        "quantity": s.quantity,
        "unitType": "Licenses",
        "hasPurchasableAddons": false,
        "creationDate": iso(s.creation_date),
        "effectiveStartDate": iso(s.effective_start),
        "commitmentEndDate": iso(s.commitment_end),
        "status": s.status,
        "autoRenewEnabled": s.auto_renew,
        "isTrial": false,
        "billingType": "license",
        "billingCycle": s.billing_cycle,
        "termDuration": s.term_duration,
        "refundableQuantity": {
            "totalQuantity": windows.iter().map(|w| w.quantity).sum::<u32>(),
            "details": windows.iter().map(|w| json!({
                "quantity": w.quantity,
                "allowedUntilDateTime": iso(w.until),
            })).collect::<Vec<_>>(),
        },
        "isMicrosoftProduct": true,
        "partnerId": "",
        "contractType": "subscription",
        "publisherName": "Microsoft Corporation",
        "orderId": s.order_id,
        "links": {
            "product": link(&format!("/products/{product}?country=US")),
            "sku": link(&format!("/products/{product}/skus/{sku}?country=US")),
            "self": link(&self_uri),
        },
        "attributes": {"etag": etag(s), "objectType": "Subscription"},
    })
}

fn encode_continuation(offset: usize, size: usize, seed: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{offset}:{size}:{seed:x}"))
}

fn decode_continuation(token: &str, seed: u64) -> Option<(usize, usize)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()?;
    let mut parts = text.split(':');
    let offset = parts.next()?.parse().ok()?;
    let size = parts.next()?.parse().ok()?;
    (parts.next()? == format!("{seed:x}") && parts.next().is_none()).then_some((offset, size))
}

/// `GET /v1/customers?size=N`, then `?size=N&seekOperation=Next` with the
/// `MS-ContinuationToken` header.
pub(super) async fn customers(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    let seed = state.ctx.world.seed;
    let max = state.settings.customers_page_max.max(1);
    let seek_next = query
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("seekOperation") && v.eq_ignore_ascii_case("next"));
    let (offset, size, presented) = if seek_next {
        let Some(presented) = headers
            .get(CONTINUATION_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return pc_error(
                StatusCode::BAD_REQUEST,
                400,
                "InvalidInput",
                "seekOperation=Next requires the MS-ContinuationToken header from links.next of the previous page.",
                &headers,
            );
        };
        let Some((offset, size)) = decode_continuation(presented, seed) else {
            return pc_error(
                StatusCode::BAD_REQUEST,
                400,
                "InvalidInput",
                "The continuation token is not valid.",
                &headers,
            );
        };
        (offset, size.clamp(1, max), Some(presented.to_owned()))
    } else {
        let size = match query.get("size").map(|s| s.parse::<usize>()) {
            None => max,
            Some(Ok(n)) if n >= 1 => n.min(max),
            Some(_) => {
                return pc_error(
                    StatusCode::BAD_REQUEST,
                    400,
                    "InvalidInput",
                    "size must be a positive integer.",
                    &headers,
                );
            }
        };
        (0, size, None)
    };
    let tenants = state.tenants();
    let start = offset.min(tenants.len());
    let range = start..start.saturating_add(size).min(tenants.len());
    let items: Vec<Value> = tenants[range.clone()]
        .iter()
        .map(|t| customer_json(t, seed))
        .collect();
    let looping = state.ctx.faults.paging_loop("/v1/customers");
    let next_token = if looping {
        Some(presented.unwrap_or_else(|| encode_continuation(0, size, seed)))
    } else if range.end < tenants.len() {
        Some(encode_continuation(range.end, size, seed))
    } else {
        None
    };
    let mut links = serde_json::Map::new();
    links.insert("self".into(), link(&format!("/v1/customers?size={size}")));
    let mut body = json!({
        "totalCount": items.len(),
        "items": items,
    });
    if let Some(token) = &next_token {
        links.insert(
            "next".into(),
            json!({
                "uri": format!("/v1/customers?size={size}&seekOperation=Next"),
                "method": "GET",
                "headers": [{"key": CONTINUATION_HEADER, "value": token}],
            }),
        );
        body["continuationToken"] = json!(token);
    }
    body["links"] = Value::Object(links);
    body["attributes"] = json!({"objectType": "Collection"});
    with_ms_headers(Json(body).into_response(), &headers)
}

fn find_tenant(state: &MsState, tenant: &str) -> Option<usize> {
    state.lookup.get(&tenant.to_ascii_lowercase()).copied()
}

fn customer_not_found(tenant: &str, headers: &HeaderMap) -> Response {
    pc_error(
        StatusCode::NOT_FOUND,
        600008,
        "CustomerNotFound",
        &format!("Customer {tenant} was not found for this partner."),
        headers,
    )
}

/// `GET /v1/customers/{tenant}`.
pub(super) async fn customer(
    State(state): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    let Some(i) = find_tenant(&state, &tenant) else {
        return customer_not_found(&tenant, &headers);
    };
    let body = customer_json(&state.tenants()[i], state.ctx.world.seed);
    with_ms_headers(Json(body).into_response(), &headers)
}

/// `GET /v1/customers/{tenant}/subscriptions`.
pub(super) async fn subscriptions(
    State(state): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    if let Err(response) = throttle(&state, &tenant, &headers) {
        return response;
    }
    let Some(i) = find_tenant(&state, &tenant) else {
        return customer_not_found(&tenant, &headers);
    };
    let now = state.clock();
    let tenants = state.tenants();
    let t = &tenants[i];
    let items: Vec<Value> = t
        .subscriptions
        .iter()
        .map(|s| subscription_json(t, s, now))
        .collect();
    let body = json!({
        "totalCount": items.len(),
        "items": items,
        "links": {"self": link(&format!("/customers/{}/subscriptions", t.id))},
        "attributes": {"objectType": "Collection"},
    });
    with_ms_headers(Json(body).into_response(), &headers)
}

fn subscription_not_found(id: &str, headers: &HeaderMap) -> Response {
    pc_error(
        StatusCode::NOT_FOUND,
        800002,
        "SubscriptionNotFound",
        &format!("Subscription {id} was not found."),
        headers,
    )
}

/// `GET /v1/customers/{tenant}/subscriptions/{id}`.
pub(super) async fn subscription(
    State(state): State<Shared>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    if let Err(response) = throttle(&state, &tenant, &headers) {
        return response;
    }
    let Some(i) = find_tenant(&state, &tenant) else {
        return customer_not_found(&tenant, &headers);
    };
    let now = state.clock();
    let tenants = state.tenants();
    let t = &tenants[i];
    match t
        .subscriptions
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
    {
        Some(s) => with_ms_headers(Json(subscription_json(t, s, now)).into_response(), &headers),
        None => subscription_not_found(&id, &headers),
    }
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `PATCH /v1/customers/{tenant}/subscriptions/{id}` with the full resource;
/// only `quantity` changes.
pub(super) async fn patch_subscription(
    State(state): State<Shared>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    if let Err(response) = throttle(&state, &tenant, &headers) {
        return response;
    }
    let invalid = |description: String| {
        pc_error(
            StatusCode::BAD_REQUEST,
            400,
            "InvalidInput",
            &description,
            &headers,
        )
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return invalid(
                "The request body must be the subscription resource (a JSON object).".into(),
            );
        }
        Err(e) => return invalid(format!("The request body is not valid JSON: {e}.")),
    };
    let Some(i) = find_tenant(&state, &tenant) else {
        return customer_not_found(&tenant, &headers);
    };
    let now = state.clock();
    let mut tenants = state.tenants();
    let t = &mut tenants[i];
    let Some(s) = t
        .subscriptions
        .iter_mut()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
    else {
        return subscription_not_found(&id, &headers);
    };
    if let Some(body_id) = field(&body, "id").and_then(Value::as_str)
        && !body_id.eq_ignore_ascii_case(&s.id)
    {
        return invalid(format!(
            "The subscription id in the body ({body_id}) does not match the URL ({id})."
        ));
    }
    if let Some(expected) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        let expected = expected.trim().trim_start_matches("W/").trim_matches('"');
        if expected != etag(s) {
            return pc_error(
                StatusCode::PRECONDITION_FAILED,
                412,
                "PreconditionFailed",
                "The subscription was changed since it was read (etag mismatch); read it again.",
                &headers,
            );
        }
    }
    let Some(quantity) = field(&body, "quantity").and_then(Value::as_u64) else {
        return invalid("quantity is required and must be a whole number.".into());
    };
    let Ok(quantity) = u32::try_from(quantity) else {
        return invalid(format!("quantity {quantity} is out of range."));
    };
    if quantity == 0 {
        return invalid("quantity must be at least 1; cancel the subscription instead.".into());
    }
    if s.status != "active" {
        return pc_error(
            StatusCode::BAD_REQUEST,
            800036,
            "SubscriptionNotActive",
            &format!(
                "Subscription {} is {}; only active subscriptions can change quantity.",
                s.id, s.status
            ),
            &headers,
        );
    }
    if quantity < s.quantity {
        let decrease = s.quantity - quantity;
        let refundable: u32 = live_windows(s, now).iter().map(|w| w.quantity).sum();
        if decrease > refundable {
            return pc_error(
                StatusCode::BAD_REQUEST,
                800138,
                "QuantityDecreaseNotAllowed",
                &format!(
                    "Cannot reduce quantity by {decrease}: only {refundable} seat(s) are refundable now; further reductions are possible at renewal on or after {}.",
                    iso(s.commitment_end)
                ),
                &headers,
            );
        }
        // Give back the most recently bought seats first.
        let mut left = decrease;
        s.refund_windows.retain(|w| w.until > now);
        for w in s.refund_windows.iter_mut().rev() {
            let take = left.min(w.quantity);
            w.quantity -= take;
            left -= take;
        }
        s.refund_windows.retain(|w| w.quantity > 0);
    } else if quantity > s.quantity {
        s.refund_windows.push(RefundWindow {
            quantity: quantity - s.quantity,
            until: now + Duration::hours(REFUND_WINDOW_HOURS),
        });
    }
    s.quantity = quantity;
    s.version += 1;
    let updated = s.clone();
    t.sync_prepaid();
    let body = subscription_json(t, &updated, now);
    with_ms_headers(Json(body).into_response(), &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_tokens_round_trip_and_reject_other_seeds() {
        let token = encode_continuation(40, 20, 9);
        assert_eq!(decode_continuation(&token, 9), Some((40, 20)));
        assert_eq!(decode_continuation(&token, 10), None);
        assert_eq!(decode_continuation("not-a-token", 9), None);
    }
}
