-- Trueup store schema, SQLite flavour. The PostgreSQL flavour in
-- migrations/postgres has the same tables, columns and constraints; only
-- the types differ:
--   amounts and quantities  TEXT, the decimal's canonical text ("12.50")
--   dates                   TEXT 'YYYY-MM-DD'            (PostgreSQL: DATE)
--   instants (UTC)          TEXT 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (TIMESTAMPTZ)
--   booleans                INTEGER 0/1                  (BOOLEAN)
--   JSON documents          TEXT                         (TEXT)
--   bytes                   BLOB                         (BYTEA)
-- No column holds a binary floating-point number.

-- ------------------------------------------------------------ sync runs

CREATE TABLE sync_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('psa', 'vendor')),
    source      TEXT NOT NULL,
    as_of       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    error       TEXT,
    stats       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sync_runs_by_source ON sync_runs (kind, source, status, id);

-- ------------------------------------------------------ PSA current state

CREATE TABLE psa_companies (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    identifier    TEXT,
    domains       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    account_links TEXT NOT NULL,
    sync_run_id   INTEGER NOT NULL REFERENCES sync_runs (id)
);

CREATE TABLE psa_contracts (
    id             TEXT PRIMARY KEY,
    company_id     TEXT NOT NULL,
    name           TEXT NOT NULL,
    contract_type  TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'inactive', 'cancelled', 'expired')),
    billing_cycle  TEXT NOT NULL,
    start_date     TEXT,
    end_date       TEXT,
    timing         TEXT NOT NULL CHECK (timing IN ('advance', 'arrears')),
    prorate        INTEGER NOT NULL CHECK (prorate IN (0, 1)),
    posted_through TEXT,
    cycle_anchor   TEXT,
    sync_run_id    INTEGER NOT NULL REFERENCES sync_runs (id)
);
CREATE INDEX psa_contracts_by_company ON psa_contracts (company_id);

CREATE TABLE psa_lines (
    id                 TEXT PRIMARY KEY,
    contract_id        TEXT NOT NULL,
    product_id         TEXT NOT NULL,
    product_identifier TEXT NOT NULL,
    description        TEXT NOT NULL,
    quantity           TEXT NOT NULL,
    unit_price         TEXT NOT NULL,
    unit_cost          TEXT NOT NULL,
    effective_date     TEXT,
    cancelled_date     TEXT,
    billable           INTEGER NOT NULL CHECK (billable IN (0, 1)),
    sync_run_id        INTEGER NOT NULL REFERENCES sync_runs (id)
);
CREATE INDEX psa_lines_by_contract ON psa_lines (contract_id);

CREATE TABLE psa_catalog (
    product_identifier TEXT PRIMARY KEY,
    description        TEXT NOT NULL,
    unit_price         TEXT NOT NULL,
    unit_cost          TEXT NOT NULL,
    sync_run_id        INTEGER NOT NULL REFERENCES sync_runs (id)
);

-- Append-only: every successful PSA sync's line figures.
CREATE TABLE ledger_psa_lines (
    sync_run_id        INTEGER NOT NULL REFERENCES sync_runs (id),
    as_of              TEXT NOT NULL,
    line_id            TEXT NOT NULL,
    contract_id        TEXT NOT NULL,
    company_id         TEXT,
    product_identifier TEXT NOT NULL,
    quantity           TEXT NOT NULL,
    unit_price         TEXT NOT NULL,
    unit_cost          TEXT NOT NULL,
    PRIMARY KEY (sync_run_id, line_id)
);
CREATE INDEX ledger_psa_lines_by_line ON ledger_psa_lines (line_id, as_of);
CREATE INDEX ledger_psa_lines_by_company ON ledger_psa_lines (company_id, as_of);

-- ----------------------------------------------------------- vendor data

CREATE TABLE vendor_integrations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    source_kind TEXT NOT NULL CHECK (source_kind IN ('plugin', 'push', 'csv')),
    source_ref  TEXT,
    updated_at  TEXT NOT NULL
);

CREATE TABLE vendor_accounts (
    vendor_id   TEXT NOT NULL REFERENCES vendor_integrations (id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    domains     TEXT NOT NULL,
    sync_run_id INTEGER REFERENCES sync_runs (id),
    PRIMARY KEY (vendor_id, id)
);

CREATE TABLE push_integrations (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    vendor_id           TEXT NOT NULL REFERENCES vendor_integrations (id),
    name                TEXT NOT NULL,
    key_hash            TEXT NOT NULL UNIQUE,
    requests_per_minute INTEGER NOT NULL CHECK (requests_per_minute > 0),
    burst               INTEGER NOT NULL CHECK (burst > 0),
    created_at          TEXT NOT NULL,
    revoked_at          TEXT
);

CREATE TABLE csv_profiles (
    name       TEXT PRIMARY KEY,
    vendor_id  TEXT NOT NULL REFERENCES vendor_integrations (id),
    definition TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE csv_imports (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    profile_name TEXT NOT NULL REFERENCES csv_profiles (name),
    vendor_id    TEXT NOT NULL REFERENCES vendor_integrations (id),
    file_name    TEXT NOT NULL,
    row_count    INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    errors       TEXT NOT NULL,
    imported_by  TEXT NOT NULL,
    imported_at  TEXT NOT NULL
);

-- A set of observations delivered together: one vendor sync, one CSV
-- import or one push.
CREATE TABLE usage_batches (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    vendor_id           TEXT NOT NULL REFERENCES vendor_integrations (id),
    source              TEXT NOT NULL CHECK (source IN ('sync', 'csv', 'push')),
    sync_run_id         INTEGER REFERENCES sync_runs (id),
    import_id           INTEGER REFERENCES csv_imports (id),
    push_integration_id INTEGER REFERENCES push_integrations (id),
    created_at          TEXT NOT NULL
);

-- Append-only: the ledger of what vendors reported.
CREATE TABLE usage_observations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id       INTEGER NOT NULL REFERENCES usage_batches (id),
    vendor_id      TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    sku_id         TEXT NOT NULL,
    sku_name       TEXT NOT NULL,
    quantity       TEXT NOT NULL,
    unit           TEXT NOT NULL,
    unit_cost      TEXT,
    billing_term   TEXT,
    commitment_end TEXT,
    attributes     TEXT NOT NULL,
    observed_at    TEXT NOT NULL,
    observed_on    TEXT NOT NULL
);
CREATE INDEX usage_observations_by_day ON usage_observations (vendor_id, observed_on, batch_id);
CREATE INDEX usage_observations_by_batch ON usage_observations (batch_id);

-- The current pushed unit count per (vendor, account, SKU, UTC day): a
-- push sets it, the latest push wins.
CREATE TABLE pushed_usage (
    vendor_id           TEXT NOT NULL REFERENCES vendor_integrations (id),
    account_id          TEXT NOT NULL,
    sku_id              TEXT NOT NULL,
    observed_on         TEXT NOT NULL,
    sku_name            TEXT NOT NULL,
    quantity            TEXT NOT NULL,
    unit                TEXT NOT NULL,
    unit_cost           TEXT,
    billing_term        TEXT,
    commitment_end      TEXT,
    attributes          TEXT NOT NULL,
    observed_at         TEXT NOT NULL,
    push_integration_id INTEGER REFERENCES push_integrations (id),
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (vendor_id, account_id, sku_id, observed_on)
);
CREATE INDEX pushed_usage_by_day ON pushed_usage (observed_on);

-- ---------------------------------------------------------------- mappings

CREATE TABLE account_mapping_overrides (
    vendor_id  TEXT NOT NULL,
    account_id TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('mapped', 'excluded')),
    company_id TEXT,
    reason     TEXT NOT NULL,
    set_by     TEXT NOT NULL,
    set_at     TEXT NOT NULL,
    PRIMARY KEY (vendor_id, account_id),
    CHECK ((status = 'mapped') = (company_id IS NOT NULL))
);

CREATE TABLE account_mappings (
    vendor_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('mapped', 'unmapped', 'excluded')),
    company_id  TEXT,
    method      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    suggestions TEXT NOT NULL,
    decided_at  TEXT NOT NULL,
    PRIMARY KEY (vendor_id, account_id)
);

CREATE TABLE sku_map (
    vendor_id  TEXT NOT NULL,
    sku_id     TEXT NOT NULL,
    product_id TEXT NOT NULL,
    multiplier TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (vendor_id, sku_id, product_id)
);

-- ----------------------------------------------------------- rule versions

CREATE TABLE rule_versions (
    checksum   TEXT PRIMARY KEY,
    source     TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    validation TEXT NOT NULL
);

-- The active version is the latest activation.
CREATE TABLE rule_activations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    checksum     TEXT NOT NULL REFERENCES rule_versions (checksum),
    activated_at TEXT NOT NULL,
    activated_by TEXT NOT NULL
);

-- ------------------------------------------------------ reconcile and cards

CREATE TABLE reconcile_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    as_of           TEXT NOT NULL,
    mapper_version  TEXT NOT NULL,
    rule_checksum   TEXT REFERENCES rule_versions (checksum),
    psa_sync_run_id INTEGER REFERENCES sync_runs (id),
    started_at      TEXT NOT NULL,
    finished_at     TEXT NOT NULL,
    card_count      INTEGER NOT NULL,
    totals          TEXT NOT NULL,
    stats           TEXT NOT NULL,
    exclusions      TEXT NOT NULL,
    shared          TEXT NOT NULL
);
CREATE INDEX reconcile_runs_by_as_of ON reconcile_runs (as_of, id);

-- Append-only: every run's cards.
CREATE TABLE cards (
    run_id          INTEGER NOT NULL REFERENCES reconcile_runs (id),
    position        INTEGER NOT NULL,
    key             TEXT NOT NULL,
    category        TEXT NOT NULL,
    company_id      TEXT,
    contract_id     TEXT,
    line_id         TEXT,
    product_id      TEXT,
    vendors         TEXT NOT NULL,
    psa_quantity    TEXT,
    vendor_quantity TEXT,
    target_quantity TEXT,
    variance        TEXT,
    unit_price      TEXT,
    unit_cost       TEXT,
    price_before    TEXT,
    cost_before     TEXT,
    margin_before   TEXT,
    price_after     TEXT,
    cost_after      TEXT,
    margin_after    TEXT,
    money_delta     TEXT,
    effective_date  TEXT,
    fingerprint     TEXT NOT NULL,
    detail          TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
);
-- One secondary index only: a run writes ~200,000 cards, and each index
-- costs as much as the table. Cards are written sorted by company, so this
-- index grows in order; it serves the company filter, a card's history
-- (company and key) and a line's history (via the line's company). Card
-- keys are unique per run: the store checks that before writing.
CREATE INDEX cards_by_company ON cards (company_id, key, run_id);

-- ------------------------------------------- decisions, outbox, card state

-- Append-only.
CREATE TABLE decisions (
    id         TEXT PRIMARY KEY,
    card_key   TEXT NOT NULL,
    run_id     INTEGER REFERENCES reconcile_runs (id),
    action     TEXT NOT NULL,
    resolution TEXT NOT NULL,
    actor      TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
CREATE INDEX decisions_by_card ON decisions (card_key, decided_at);

CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key   TEXT NOT NULL UNIQUE,
    card_key          TEXT NOT NULL,
    decision_id       TEXT REFERENCES decisions (id),
    change            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'in_flight', 'applied', 'rejected')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  TEXT,
    result_record_ids TEXT,
    result_line       TEXT,
    error             TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    finished_at       TEXT
);
CREATE INDEX outbox_ready ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_by_card ON outbox (card_key, id);

CREATE TABLE card_states (
    key                TEXT PRIMARY KEY,
    status             TEXT NOT NULL CHECK (status IN ('open', 'approved', 'dismissed', 'snoozed', 'excluded')),
    dismissed_through  TEXT,
    snooze_until       TEXT,
    snooze_fingerprint TEXT,
    exclude_reason     TEXT,
    write_back         TEXT CHECK (write_back IN ('pending', 'applied', 'rejected')),
    outbox_id          INTEGER REFERENCES outbox (id),
    decision_id        TEXT REFERENCES decisions (id),
    updated_by         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);

CREATE TABLE card_tags (
    key      TEXT NOT NULL,
    tag      TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (key, tag)
);
CREATE INDEX card_tags_by_tag ON card_tags (tag, key);

CREATE TABLE card_notes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL,
    written_by TEXT NOT NULL,
    written_at TEXT NOT NULL,
    text       TEXT NOT NULL
);
CREATE INDEX card_notes_by_card ON card_notes (key, id);

-- ------------------------------------------------------------ secrets

CREATE TABLE plugin_secrets (
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);

-- ------------------------------------------------- users, sessions, tokens

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'viewer')),
    disabled      INTEGER NOT NULL CHECK (disabled IN (0, 1)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'viewer')),
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);

-- --------------------------------------------------------- jobs, schedules

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    run_at       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
    locked_by    TEXT,
    locked_until TEXT,
    error        TEXT,
    dedupe_key   TEXT UNIQUE,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT
);
CREATE INDEX jobs_ready ON jobs (status, run_at, id);

CREATE TABLE schedules (
    name             TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    spec             TEXT NOT NULL,
    enabled          INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    next_run_at      TEXT NOT NULL,
    last_enqueued_at TEXT,
    last_job_id      INTEGER REFERENCES jobs (id),
    updated_at       TEXT NOT NULL
);

-- ---------------------------------------------------------------- audit

-- Append-only.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_by_at ON audit_log (at, id);
CREATE INDEX audit_log_by_subject ON audit_log (subject, id);

-- ------------------------------------------------- append-only enforcement

CREATE TRIGGER ledger_psa_lines_no_update BEFORE UPDATE ON ledger_psa_lines
BEGIN SELECT RAISE(ABORT, 'ledger_psa_lines is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER ledger_psa_lines_no_delete BEFORE DELETE ON ledger_psa_lines
BEGIN SELECT RAISE(ABORT, 'ledger_psa_lines is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER usage_observations_no_update BEFORE UPDATE ON usage_observations
BEGIN SELECT RAISE(ABORT, 'usage_observations is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER usage_observations_no_delete BEFORE DELETE ON usage_observations
BEGIN SELECT RAISE(ABORT, 'usage_observations is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER cards_no_update BEFORE UPDATE ON cards
BEGIN SELECT RAISE(ABORT, 'cards is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER cards_no_delete BEFORE DELETE ON cards
BEGIN SELECT RAISE(ABORT, 'cards is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER reconcile_runs_no_update BEFORE UPDATE ON reconcile_runs
BEGIN SELECT RAISE(ABORT, 'reconcile_runs is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER reconcile_runs_no_delete BEFORE DELETE ON reconcile_runs
BEGIN SELECT RAISE(ABORT, 'reconcile_runs is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER rule_versions_no_update BEFORE UPDATE ON rule_versions
BEGIN SELECT RAISE(ABORT, 'rule_versions is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER rule_versions_no_delete BEFORE DELETE ON rule_versions
BEGIN SELECT RAISE(ABORT, 'rule_versions is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER rule_activations_no_update BEFORE UPDATE ON rule_activations
BEGIN SELECT RAISE(ABORT, 'rule_activations is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER rule_activations_no_delete BEFORE DELETE ON rule_activations
BEGIN SELECT RAISE(ABORT, 'rule_activations is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be changed or deleted'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be changed or deleted'); END;
