//! Needs review and what a person decides (issue 13), through the real
//! path — an approval, the outbox, the write-back worker, the shipped
//! ConnectWise connector, the emulator — and the decisions' HTTP routes.
//! What the PSA received is read from the emulator's own write log.
//!
//! - The PSA stores another unit price than the line had: the entry ends
//!   `needs_review` with both prices shown, one write in the PSA after
//!   repeated worker passes past every retry delay; cancelling it answers
//!   409 naming the record; accepting it makes it applied with the line
//!   the PSA holds.
//! - A pending write-back cancelled before the worker runs is never sent.
//! - An attempt that died mid-write (a journalled "sending" with no
//!   outcome, its lease expired) is not sent again: `needs_review`
//!   without a call to the PSA.

use std::sync::Arc;
use std::time::Duration;

use trueup::app::App;
use trueup::auth::Role;
use trueup::server::Workers;
use trueup_core::actions::Action;
use trueup_core::card::CardKey;
use trueup_emulators::faults::{AlteredField, FaultPlan};
use trueup_store::outbox::{OutboxEntry, OutboxStatus};
use trueup_store::write_review::{JournalOutcome, JournalRow};

use crate::web_auth::{Client, add_token, serve};
use crate::write_back_faults::{
    PSAS, TestClock, applied_writes, approvable_cards, psa_setup, set_secrets, write_log,
};

/// Worker passes, the clock moved past the longest retry delay after each.
const ROUNDS: usize = 4;
const ROUND_SECS: i64 = 11 * 60;

const NO_WORKERS: Workers = Workers {
    jobs: false,
    scheduler: false,
    write_back: false,
};

async fn entry_of(app: &App, card: &CardKey) -> OutboxEntry {
    app.store()
        .outbox_entries(None, 10_000)
        .await
        .expect("outbox")
        .into_iter()
        .find(|e| &e.card_key == card)
        .expect("the card's outbox entry")
}

async fn rounds(app: &App, clock: &TestClock) {
    for _ in 0..ROUNDS {
        // A failing pass is shown by the entry's status, asserted below.
        let _ = app.write_back_due().await;
        clock.advance(ROUND_SECS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_price_waits_for_a_person_and_is_written_once() {
    let psa = &PSAS[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let (emulators, own, config) = psa_setup(psa, dir.path(), 4_000).await;
    assert!(own.is_none(), "ConnectWise is the demo's own emulator");
    let running = &emulators.connectwise;
    let base = running.base_url.clone();
    let clock = TestClock::new();
    let app = App::open_with_clock(Arc::new(config), clock.clock())
        .await
        .expect("app");
    set_secrets(&app, psa).await;
    let (run, cards) = approvable_cards(&app).await;
    assert!(cards.len() >= 3, "only {} approvable cards", cards.len());
    let token = add_token(&app, "approver", Role::Approver).await;
    let server = serve(app.clone(), NO_WORKERS, None).await;
    let http = Client::with_token(&server.base, &token);

    // 1. The PSA stores another unit price.
    let repriced = &cards[0];
    running.faults.set_plan(FaultPlan {
        path_contains: Some(psa.write_paths.to_owned()),
        writes_only: true,
        alter_written: 1,
        alter_field: Some(AlteredField::Price),
        ..FaultPlan::default()
    });
    app.decide(
        Some(run),
        &[repriced.key],
        &Action::Approve,
        "approver@test",
    )
    .await
    .expect("approve");
    rounds(&app, &clock).await;
    running.faults.set_plan(FaultPlan::default());
    let entry = entry_of(&app, &repriced.key).await;
    assert_eq!(entry.status, OutboxStatus::NeedsReview, "{:?}", entry.error);
    // A dated change is an end to the old addition and a new one: each
    // applied exactly once.
    let first = applied_writes(&write_log(&base, psa).await);
    assert!(!first.is_empty(), "the PSA received no write");
    assert!(first.values().all(|n| *n == 1), "PSA writes: {first:?}");

    let review = http
        .get(&format!("/api/v1/outbox/{}/review", entry.id.0))
        .await;
    assert_eq!(review.status, 200, "{}", review.text);
    let review = review.json();
    let mismatch = &review["review"]["mismatches"][0];
    assert_eq!(mismatch["field"], "unit_price", "{review}");
    assert_ne!(mismatch["sent"], mismatch["stored"], "{review}");
    assert!(
        review["writes"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["outcome"] == "acknowledged")),
        "{review}"
    );
    let card = app
        .store()
        .card_state(&repriced.key)
        .await
        .expect("state")
        .expect("a state");
    assert_eq!(
        serde_json::to_value(card.write_back).expect("json"),
        "needs_review"
    );

    // It ran: cancelling answers 409 and says so.
    let cancel = http
        .post(
            &format!("/api/v1/outbox/{}/cancel", entry.id.0),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(cancel.status, 409, "{}", cancel.text);
    assert!(cancel.text.contains("written"), "{}", cancel.text);

    // Accept what the PSA stored.
    let accept = http
        .post(
            &format!("/api/v1/outbox/{}/accept", entry.id.0),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(accept.status, 200, "{}", accept.text);
    let entry = entry_of(&app, &repriced.key).await;
    assert_eq!(entry.status, OutboxStatus::Applied);
    let stored_price = entry.result.expect("the stored line").line.unit_price;
    assert_eq!(
        mismatch["stored"]
            .as_str()
            .map(str::parse::<rust_decimal::Decimal>),
        Some(Ok(stored_price))
    );
    rounds(&app, &clock).await;
    let applied = applied_writes(&write_log(&base, psa).await);
    assert_eq!(applied, first, "nothing more may reach the PSA");

    // 2. Cancelled before it runs: never sent.
    let cancelled = &cards[1];
    app.decide(
        Some(run),
        &[cancelled.key],
        &Action::Approve,
        "approver@test",
    )
    .await
    .expect("approve");
    let pending = entry_of(&app, &cancelled.key).await;
    let cancel = http
        .post(
            &format!("/api/v1/outbox/{}/cancel", pending.id.0),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);
    rounds(&app, &clock).await;
    assert_eq!(
        entry_of(&app, &cancelled.key).await.status,
        OutboxStatus::Cancelled
    );
    let applied = applied_writes(&write_log(&base, psa).await);
    assert_eq!(applied, first, "nothing more may reach the PSA");

    // 3. An attempt that died mid-write: claimed, "sending" journalled, no
    // outcome, its lease run out. The next worker does not send it again.
    let died = &cards[2];
    app.decide(Some(run), &[died.key], &Action::Approve, "approver@test")
        .await
        .expect("approve");
    let claimed = app
        .store()
        .claim_next_write_back("dead-worker", Duration::from_secs(30), clock.clock()())
        .await
        .expect("claim")
        .expect("the entry");
    assert_eq!(claimed.card_key, died.key);
    app.store()
        .record_journal_write(
            claimed.id,
            &JournalRow {
                attempt: claimed.attempts,
                seq: 1,
                method: "POST".into(),
                url: format!("{base}/v4_6_release/apis/3.0/finance/agreements/1/additions"),
                outcome: JournalOutcome::Sending,
                status: None,
                record_id: None,
                detail: None,
                recorded_at: clock.clock()(),
                reviewed_at: None,
            },
        )
        .await
        .expect("journalled");
    rounds(&app, &clock).await;
    let entry = entry_of(&app, &died.key).await;
    assert_eq!(entry.status, OutboxStatus::NeedsReview, "{:?}", entry.error);
    assert!(
        entry
            .error
            .as_deref()
            .is_some_and(|e| e.contains("earlier attempt")),
        "{:?}",
        entry.error
    );
    let applied = applied_writes(&write_log(&base, psa).await);
    assert_eq!(applied, first, "nothing more may reach the PSA");
}

/// Retry after review, end to end: the PSA (ConnectWise emulator) stores
/// another unit price than sent, so the write-back ends needs review; a
/// person retries it (`POST /api/v1/outbox/{id}/retry`, the card listed
/// pending again); the worker runs it through the shipped connector against
/// the emulator, now clean. The emulator's own write log shows the retry
/// wrote nothing: the PSA already holds the change, so the entry is back in
/// needs review, and nothing more is sent after further worker passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_review_is_sent_once_more_through_the_worker() {
    let psa = &PSAS[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let (emulators, _own, config) = psa_setup(psa, dir.path(), 4_000).await;
    let running = &emulators.connectwise;
    let base = running.base_url.clone();
    let clock = TestClock::new();
    let app = App::open_with_clock(Arc::new(config), clock.clock())
        .await
        .expect("app");
    set_secrets(&app, psa).await;
    let (run, cards) = approvable_cards(&app).await;
    let card = cards.first().expect("an approvable card");
    let token = add_token(&app, "approver", Role::Approver).await;
    let server = serve(app.clone(), NO_WORKERS, None).await;
    let http = Client::with_token(&server.base, &token);

    running.faults.set_plan(FaultPlan {
        path_contains: Some(psa.write_paths.to_owned()),
        writes_only: true,
        alter_written: 1,
        alter_field: Some(AlteredField::Price),
        ..FaultPlan::default()
    });
    app.decide(Some(run), &[card.key], &Action::Approve, "approver@test")
        .await
        .expect("approve");
    rounds(&app, &clock).await;
    running.faults.set_plan(FaultPlan::default());
    let entry = entry_of(&app, &card.key).await;
    assert_eq!(entry.status, OutboxStatus::NeedsReview, "{:?}", entry.error);
    let before = write_log(&base, psa).await;
    let first = applied_writes(&before);
    assert!(!first.is_empty(), "the first attempt wrote nothing");
    rounds(&app, &clock).await;
    assert_eq!(
        write_log(&base, psa).await.len(),
        before.len(),
        "nothing is re-sent while the entry waits for a person"
    );

    let retry = http
        .post(
            &format!("/api/v1/outbox/{}/retry", entry.id.0),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    let listed = http.get("/api/v1/cards?write_back=pending").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert!(
        listed.text.contains(card.key.as_str()),
        "the retried card is pending again: {}",
        listed.text
    );
    rounds(&app, &clock).await;
    // The worker ran the retry (a second attempt) through the connector,
    // which read the PSA's line back first: the change is already there
    // (at the PSA's price), so nothing is written again, and the entry is
    // back in needs review with what the PSA holds.
    let after = write_log(&base, psa).await;
    assert_eq!(
        applied_writes(&after),
        first,
        "the retry wrote nothing more: {:?}",
        &after[before.len()..]
    );
    let done = entry_of(&app, &card.key).await;
    assert_eq!(
        done.attempts,
        entry.attempts + 1,
        "the worker ran the retry"
    );
    assert_eq!(done.status, OutboxStatus::NeedsReview, "{:?}", done.error);
    rounds(&app, &clock).await;
    assert_eq!(
        write_log(&base, psa).await.len(),
        after.len(),
        "nothing is sent again after the retry"
    );
}
