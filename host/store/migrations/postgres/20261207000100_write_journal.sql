-- Exactly-once write-back whatever the PSA answers (issue 13).
--
-- 1. An outbox entry may end in `needs_review` (the PSA holds something
--    other than what was sent, or a write may have landed and the connector
--    failed: nothing is re-sent until a person decides) or `cancelled` (a
--    person withdrew it before it ran); `review` holds what was sent and
--    what the PSA stored (JSON). The card's write-back status follows.
-- 2. `write_journal`: every write the connector sent for an entry, recorded
--    by the plugin host before it was sent and again with its outcome.
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('pending', 'in_flight', 'applied', 'rejected', 'needs_review', 'cancelled'));
ALTER TABLE outbox ADD COLUMN review TEXT;

ALTER TABLE card_states DROP CONSTRAINT card_states_write_back_check;
ALTER TABLE card_states ADD CONSTRAINT card_states_write_back_check
    CHECK (write_back IN ('pending', 'applied', 'rejected', 'needs_review', 'cancelled'));

CREATE TABLE write_journal (
    outbox_id   BIGINT NOT NULL REFERENCES outbox (id),
    attempt     BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    method      TEXT NOT NULL,
    url         TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('sending', 'acknowledged', 'not_applied', 'unknown')),
    status      BIGINT,
    record_id   TEXT,
    detail      TEXT,
    recorded_at TIMESTAMPTZ NOT NULL,
    -- Set when a person decided on the entry (accept, retry): these writes
    -- no longer hold the entry back.
    reviewed_at TIMESTAMPTZ,
    PRIMARY KEY (outbox_id, attempt, seq)
);
