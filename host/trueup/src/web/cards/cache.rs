//! The short-lived cache of list, totals and groups answers (see the
//! parent module): one request at a time computes a missing answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use trueup_core::model::UsageObservation;
use trueup_store::reconcile::ReconcileRunId;

use super::{CARDS_CACHE_ENTRIES, CARDS_CACHE_TTL};
use crate::lock::lock;
use crate::web::AppState;
use crate::web::error::{ApiError, ApiResult};

struct Cached {
    generation: u64,
    at: Instant,
    body: Bytes,
}

/// Cached card answers and the latest run's usage rows.
#[derive(Default)]
pub(crate) struct CardsCache {
    answers: Mutex<HashMap<String, Cached>>,
    /// Per query: held while its answer is computed.
    computing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(super) usage: Mutex<Option<(ReconcileRunId, Arc<Vec<UsageObservation>>)>>,
}

fn json_response(body: Bytes) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl CardsCache {
    fn get(&self, key: &str, generation: u64) -> Option<Bytes> {
        let answers = lock(&self.answers);
        answers
            .get(key)
            .filter(|c| c.generation == generation && c.at.elapsed() < CARDS_CACHE_TTL)
            .map(|c| c.body.clone())
    }

    fn put(&self, key: String, generation: u64, body: Bytes) {
        let mut answers = lock(&self.answers);
        if answers.len() >= CARDS_CACHE_ENTRIES {
            answers.clear();
        }
        answers.insert(
            key,
            Cached {
                generation,
                at: Instant::now(),
                body,
            },
        );
    }

    /// The lock whose holder computes `key`'s answer.
    fn computing(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut computing = lock(&self.computing);
        if let Some(turn) = computing.get(key) {
            return Arc::clone(turn);
        }
        if computing.len() >= CARDS_CACHE_ENTRIES {
            // A lock dropped here only lets two requests compute at once.
            computing.clear();
        }
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        computing.insert(key.to_owned(), Arc::clone(&turn));
        turn
    }
}

/// Serves `key` from the cache, or computes, caches and serves it.
pub(super) async fn cached<T, F>(state: &AppState, key: String, compute: F) -> ApiResult<Response>
where
    T: Serialize,
    F: std::future::Future<Output = ApiResult<T>>,
{
    let cache = &state.shared.cards;
    if let Some(body) = cache.get(&key, state.generation()) {
        return Ok(json_response(body));
    }
    // One computation per query at a time; who waited for it is served
    // its answer.
    let turn = cache.computing(&key);
    let _turn = turn.lock().await;
    let generation = state.generation();
    if let Some(body) = cache.get(&key, generation) {
        return Ok(json_response(body));
    }
    let value = compute.await?;
    let body = Bytes::from(
        serde_json::to_vec(&value).map_err(|e| ApiError::Internal(format!("encoding: {e}")))?,
    );
    state.shared.cards.put(key, generation, body.clone());
    Ok(json_response(body))
}
