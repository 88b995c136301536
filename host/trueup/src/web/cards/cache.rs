//! The short-lived cache of list, totals and groups answers (see the
//! parent module), on `moka`: one request at a time computes a missing
//! answer.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use moka::future::Cache;
use serde::Serialize;
use trueup_core::model::UsageObservation;
use trueup_store::reconcile::ReconcileRunId;

use super::{CARDS_CACHE_ENTRIES, CARDS_CACHE_TTL};
use crate::web::AppState;
use crate::web::error::{ApiError, ApiResult};

/// Cached card answers and the latest run's usage rows.
pub(crate) struct CardsCache {
    /// Answers by (query, generation): an answer computed before this
    /// process changed cards is never served after (a newer generation
    /// misses), and expires within [`CARDS_CACHE_TTL`] anyway.
    answers: Cache<(String, u64), Bytes>,
    pub(super) usage: Mutex<Option<(ReconcileRunId, Arc<Vec<UsageObservation>>)>>,
}

impl Default for CardsCache {
    fn default() -> Self {
        Self {
            answers: Cache::builder()
                .max_capacity(CARDS_CACHE_ENTRIES)
                .time_to_live(CARDS_CACHE_TTL)
                .build(),
            usage: Mutex::default(),
        }
    }
}

fn json_response(body: Bytes) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves `key` from the cache, or computes, caches and serves it. One
/// computation per query at a time: who asks meanwhile waits for it and is
/// served its answer (or its error).
pub(super) async fn cached<T, F>(state: &AppState, key: String, compute: F) -> ApiResult<Response>
where
    T: Serialize,
    F: std::future::Future<Output = ApiResult<T>>,
{
    let body = state
        .shared
        .cards
        .answers
        .try_get_with((key, state.generation()), async {
            let value = compute.await?;
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(|e| ApiError::Internal(format!("encoding: {e}")))
        })
        .await
        .map_err(|error: Arc<ApiError>| (*error).clone())?;
    Ok(json_response(body))
}
