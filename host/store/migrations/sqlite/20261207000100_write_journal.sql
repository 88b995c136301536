-- Exactly-once write-back whatever the PSA answers (issue 13).
--
-- 1. An outbox entry may end in `needs_review` (the PSA holds something
--    other than what was sent, or a write may have landed and the connector
--    failed: nothing is re-sent until a person decides) or `cancelled` (a
--    person withdrew it before it ran); `review` holds what was sent and
--    what the PSA stored (JSON). The card's write-back status follows.
-- 2. `write_journal`: every write the connector sent for an entry, recorded
--    by the plugin host before it was sent and again with its outcome.
--
-- SQLite cannot change a CHECK constraint in place, so `outbox` and
-- `card_states` are rebuilt. `card_states` references `outbox`: with the
-- check deferred, dropping `outbox` counts its referencing rows as
-- violations and re-inserting the same ids into the new `outbox` clears
-- them before the migration's transaction commits.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE outbox_before_review AS SELECT * FROM outbox;
CREATE TABLE card_states_before_review AS SELECT * FROM card_states;
DROP TABLE card_states;
DROP TABLE outbox;

CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key   TEXT NOT NULL UNIQUE,
    card_key          TEXT NOT NULL,
    decision_id       TEXT REFERENCES decisions (id),
    change            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'in_flight', 'applied', 'rejected', 'needs_review', 'cancelled')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  TEXT,
    result_record_ids TEXT,
    result_line       TEXT,
    error             TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    finished_at       TEXT,
    review            TEXT
);
INSERT INTO outbox (id, idempotency_key, card_key, decision_id, change, status, attempts,
    next_attempt_at, lease_owner, lease_expires_at, result_record_ids, result_line, error,
    created_at, updated_at, finished_at)
SELECT id, idempotency_key, card_key, decision_id, change, status, attempts,
    next_attempt_at, lease_owner, lease_expires_at, result_record_ids, result_line, error,
    created_at, updated_at, finished_at
FROM outbox_before_review;
CREATE INDEX outbox_ready ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_by_card ON outbox (card_key, id);

CREATE TABLE card_states (
    key                TEXT PRIMARY KEY,
    status             TEXT NOT NULL CHECK (status IN ('open', 'approved', 'dismissed', 'snoozed', 'excluded')),
    dismissed_through  TEXT,
    snooze_until       TEXT,
    snooze_fingerprint TEXT,
    exclude_reason     TEXT,
    write_back         TEXT CHECK (write_back IN ('pending', 'applied', 'rejected', 'needs_review', 'cancelled')),
    outbox_id          INTEGER REFERENCES outbox (id),
    decision_id        TEXT REFERENCES decisions (id),
    updated_by         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
INSERT INTO card_states SELECT * FROM card_states_before_review;

DROP TABLE outbox_before_review;
DROP TABLE card_states_before_review;

CREATE TABLE write_journal (
    outbox_id   INTEGER NOT NULL REFERENCES outbox (id),
    attempt     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    method      TEXT NOT NULL,
    url         TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('sending', 'acknowledged', 'not_applied', 'unknown')),
    status      INTEGER,
    record_id   TEXT,
    detail      TEXT,
    recorded_at TEXT NOT NULL,
    -- Set when a person decided on the entry (accept, retry): these writes
    -- no longer hold the entry back.
    reviewed_at TEXT,
    PRIMARY KEY (outbox_id, attempt, seq)
);
