//! The filtered cards as CSV, with formulas defused for spreadsheets.
//!
//! Written by hand, not with the `csv` crate: its quoting is one style per
//! writer, and a formula-guarded field must always be quoted while plain
//! fields are quoted only when needed (`csv_fields_are_quoted_and_formulas_defused`).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use trueup_store::reconcile::{CardSummary, MAX_PAGE_SIZE};

use super::list::CardQuery;
use super::resolve_run;
use crate::web::AppState;
use crate::web::error::{ApiResult, QueryParams};

/// Quotes a CSV field; text that a spreadsheet would run as a formula is
/// prefixed with `'`.
fn csv_field(out: &mut String, text: &str, is_text: bool) {
    let guarded = is_text && text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let needs_quotes = guarded || text.contains([',', '"', '\n', '\r']);
    if needs_quotes {
        out.push('"');
    }
    if guarded {
        out.push('\'');
    }
    for c in text.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if needs_quotes {
        out.push('"');
    }
}

/// The CSV export's columns.
pub const CSV_COLUMNS: &[&str] = &[
    "key",
    "category",
    "status",
    "company",
    "contract",
    "line",
    "product",
    "vendors",
    "psa_quantity",
    "vendor_quantity",
    "target_quantity",
    "variance",
    "unit_price",
    "money_delta",
    "effective_date",
    "write_back",
    "tags",
];

fn csv_row(out: &mut String, card: &CardSummary) {
    let dec = |d: Option<Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let status = serde_json::to_value(card.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let write_back = card
        .state
        .as_ref()
        .and_then(|s| s.write_back)
        .and_then(|w| serde_json::to_value(w).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let vendors: Vec<&str> = card.vendors.iter().map(|v| v.as_str()).collect();
    let fields: [(String, bool); 17] = [
        (card.key.as_str().to_owned(), false),
        (card.category.as_str().to_owned(), false),
        (status, false),
        (text(&card.company), true),
        (text(&card.contract), true),
        (text(&card.line), true),
        (text(&card.product), true),
        (vendors.join(" "), true),
        (dec(card.psa_quantity), false),
        (dec(card.vendor_quantity), false),
        (dec(card.target_quantity), false),
        (dec(card.variance), false),
        (dec(card.money.map(|m| m.unit_price)), false),
        (dec(card.money.map(|m| m.delta)), false),
        (
            card.effective_date
                .map(|d| d.to_string())
                .unwrap_or_default(),
            false,
        ),
        (write_back, false),
        (card.tags.join(" "), true),
    ];
    for (i, (value, is_text)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, value, *is_text);
    }
    out.push_str("\r\n");
}

/// `GET /api/v1/cards/export.csv`: every card matching the filters.
#[utoipa::path(
    get,
    path = "/api/v1/cards/export.csv",
    tag = "cards",
    params(CardQuery),
    responses((status = 200, description = "The cards as CSV (a header row, then one row per card)", content_type = "text/csv", body = String), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such run", body = crate::web::openapi::ErrorBody)),
)]
pub async fn export_csv(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<CardQuery>,
) -> ApiResult<Response> {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let mut name = "trueup-cards.csv".to_owned();
    if let Some(run) = resolve_run(&state, query.run).await? {
        name = format!("trueup-cards-run-{}-{}.csv", run.id.0, run.as_of);
        let filter = query.filter(state.app.today())?;
        let mut after = None;
        loop {
            let page = state
                .app
                .store()
                .cards_page(run.id, &filter, after, MAX_PAGE_SIZE)
                .await?;
            for card in &page.cards {
                csv_row(&mut out, card);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        csv_field(&mut out, "plain", true);
        out.push('|');
        csv_field(&mut out, "a,b \"c\"", true);
        out.push('|');
        csv_field(&mut out, "=HYPERLINK(\"x\")", true);
        out.push('|');
        csv_field(&mut out, "-12.50", false);
        assert_eq!(
            out,
            "plain|\"a,b \"\"c\"\"\"|\"'=HYPERLINK(\"\"x\"\")\"|-12.50"
        );
    }
}
