//! The guarantees the store's two leased queues (the job queue and the
//! write-back outbox) share through one mechanism, checked table-style:
//! every case runs over both queues on both backends. PostgreSQL cases
//! fail, never skip, when the server is unreachable.
//!
//! The whole file is test code (`cfg(test)`), where clippy.toml lets a
//! panic be the failure report.
#![cfg(test)]

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use trueup_core::card::CardKey;
use trueup_store::jobs::{JobId, NewJob};
use trueup_store::outbox::{NewOutboxEntry, OutboxId};
use trueup_store::testing::TestStore;
use trueup_store::{Store, StoreError};

const LEASE: Duration = Duration::from_secs(60);

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

/// Which queue a case runs on; each method is that queue's typed API.
#[derive(Debug, Clone, Copy)]
enum Queue {
    Jobs,
    Outbox,
}

const QUEUES: [Queue; 2] = [Queue::Jobs, Queue::Outbox];

/// A claimed row: its id and attempts so far.
#[derive(Debug, PartialEq)]
struct Claimed {
    id: i64,
    attempts: u32,
}

impl Queue {
    /// Enqueues row `i`, due at `t(0)`, with attempts to spare.
    async fn enqueue(self, store: &Store, i: u32) {
        match self {
            Queue::Jobs => {
                let job = NewJob {
                    kind: "sync".into(),
                    payload: serde_json::json!({ "n": i }),
                    run_at: t(0),
                    max_attempts: 5,
                    dedupe_key: None,
                };
                store.enqueue_job(&job, t(0)).await.unwrap();
            }
            Queue::Outbox => {
                let entry = NewOutboxEntry {
                    idempotency_key: format!("key-{i}"),
                    card_key: CardKey::from_value(u128::from(i)),
                    change: serde_json::json!({ "line_id": format!("L{i}"), "new_quantity": "3" }),
                    not_before: t(0),
                };
                store.enqueue_write_back(&entry, t(0)).await.unwrap();
            }
        }
    }

    async fn claim(self, store: &Store, worker: &str, now: DateTime<Utc>) -> Option<Claimed> {
        match self {
            Queue::Jobs => store
                .claim_job(worker, &["sync"], LEASE, now)
                .await
                .unwrap()
                .map(|j| {
                    assert_eq!(j.locked_by.as_deref(), Some(worker));
                    Claimed {
                        id: j.id.0,
                        attempts: j.attempts,
                    }
                }),
            Queue::Outbox => store
                .claim_next_write_back(worker, LEASE, now)
                .await
                .unwrap()
                .map(|e| {
                    assert_eq!(e.lease_owner.as_deref(), Some(worker));
                    Claimed {
                        id: e.id.0,
                        attempts: e.attempts,
                    }
                }),
        }
    }

    async fn extend(
        self,
        store: &Store,
        id: i64,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Queue::Jobs => store.heartbeat_job(JobId(id), worker, LEASE, now).await,
            Queue::Outbox => {
                store
                    .extend_write_back_lease(OutboxId(id), worker, LEASE, now)
                    .await
            }
        }
    }

    /// Retries the row from `at`.
    async fn retry(
        self,
        store: &Store,
        id: i64,
        worker: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Queue::Jobs => store
                .fail_job(JobId(id), worker, "busy", Some(at), now)
                .await
                .map(drop),
            Queue::Outbox => {
                store
                    .retry_write_back(OutboxId(id), worker, "busy", at, now)
                    .await
            }
        }
    }

    /// Finishes the row for good.
    async fn finish(
        self,
        store: &Store,
        id: i64,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Queue::Jobs => store.complete_job(JobId(id), worker, now).await,
            Queue::Outbox => {
                store
                    .reject_write_back(OutboxId(id), worker, "refused", now)
                    .await
            }
        }
    }
}

fn assert_lost(result: Result<(), StoreError>, queue: Queue, what: &str) {
    assert!(
        matches!(result, Err(StoreError::LeaseLost { .. })),
        "{queue:?}: {what} should be LeaseLost, got {result:?}"
    );
}

async fn concurrent_claimers_never_get_the_same_row(store: TestStore) {
    const ROWS: u32 = 30;
    let other = store.another_pool().await.unwrap();
    for queue in QUEUES {
        for i in 0..ROWS {
            queue.enqueue(&store, i).await;
        }
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let pool = if worker % 2 == 0 {
                store.store().clone()
            } else {
                other.clone()
            };
            tasks.push(tokio::spawn(async move {
                let name = format!("w{worker}");
                let mut got = Vec::new();
                while let Some(row) = queue.claim(&pool, &name, t(1)).await {
                    assert_eq!(row.attempts, 1, "{queue:?}: a claim counts one attempt");
                    got.push(row.id);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), ROWS as usize, "{queue:?}: every row claimed");
        assert_eq!(distinct.len(), all.len(), "{queue:?}: no row claimed twice");
    }
}

async fn an_expired_lease_is_taken_over_and_the_loser_refused(store: TestStore) {
    for queue in QUEUES {
        queue.enqueue(&store, 1).await;
        let first = queue.claim(&store, "a", t(1)).await.unwrap();
        // Extending moves the lease's end: at t(61) it would have expired.
        queue.extend(&store, first.id, "a", t(30)).await.unwrap();
        assert_eq!(
            queue.claim(&store, "b", t(89)).await,
            None,
            "{queue:?}: a held lease is not taken over"
        );
        let taken = queue.claim(&store, "b", t(90)).await.unwrap();
        assert_eq!(
            taken,
            Claimed {
                id: first.id,
                attempts: 2
            },
            "{queue:?}: the expired row, one more attempt"
        );
        assert_lost(
            queue.extend(&store, first.id, "a", t(91)).await,
            queue,
            "the loser's extension",
        );
        assert_lost(
            queue.retry(&store, first.id, "a", t(95), t(91)).await,
            queue,
            "the loser's retry",
        );
        assert_lost(
            queue.finish(&store, first.id, "a", t(91)).await,
            queue,
            "the loser's finish",
        );
        queue.extend(&store, first.id, "b", t(91)).await.unwrap();
        queue.finish(&store, first.id, "b", t(92)).await.unwrap();
        assert_lost(
            queue.finish(&store, first.id, "b", t(93)).await,
            queue,
            "finishing twice",
        );
        assert_eq!(
            queue.claim(&store, "c", t(10_000)).await,
            None,
            "{queue:?}: a finished row is never claimed again"
        );
    }
}

async fn a_retried_row_is_due_again_at_its_retry_instant(store: TestStore) {
    for queue in QUEUES {
        queue.enqueue(&store, 7).await;
        let row = queue.claim(&store, "a", t(1)).await.unwrap();
        queue.retry(&store, row.id, "a", t(50), t(2)).await.unwrap();
        assert_lost(
            queue.extend(&store, row.id, "a", t(3)).await,
            queue,
            "extending a released lease",
        );
        assert_eq!(
            queue.claim(&store, "b", t(49)).await,
            None,
            "{queue:?}: not due before its retry instant"
        );
        let again = queue.claim(&store, "b", t(50)).await.unwrap();
        assert_eq!(
            again,
            Claimed {
                id: row.id,
                attempts: 2
            },
            "{queue:?}"
        );
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = super::TestStore::sqlite().await.expect("a SQLite test store");
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = super::TestStore::postgres().await.expect("a PostgreSQL test store");
                    super::$name(store).await;
                }
            )*
        }
    };
}

both!(
    concurrent_claimers_never_get_the_same_row,
    an_expired_lease_is_taken_over_and_the_loser_refused,
    a_retried_row_is_due_again_at_its_retry_instant,
);
