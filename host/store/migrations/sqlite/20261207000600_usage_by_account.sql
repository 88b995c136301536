-- The usage ledger by account (issue 16). The reconcile reads a period's
-- usage keeping, per (vendor, account, day), only the latest batch that
-- reported it; with only the per-day index (vendor, day, batch) that meant
-- a sort of the whole period and, for each (account, day), a scan of every
-- row of its vendor and day — quadratic: a 1,000,000-row month did not
-- finish in 20 minutes. In this order the read is one pass over the index
-- (equal keys adjacent, the latest batch last), and one account's rows —
-- a card's detail, the re-reconcile after a mapping change — are a seek.
-- `id` last makes the order total, so positions in the read are stable.
CREATE INDEX usage_observations_by_account
    ON usage_observations (vendor_id, account_id, observed_on, batch_id, id);

-- Where each vendor account's rows sit in a run's usage read (the read is
-- ordered by account, so an account's rows are one range): a card's usage
-- rows are positions in that read, and with this a card's detail reads
-- only its accounts' rows by the index above instead of the whole period.
-- Runs recorded before this table have no ranges; their detail reads the
-- period as before.
CREATE TABLE run_usage_accounts (
    run_id     INTEGER NOT NULL REFERENCES reconcile_runs (id),
    first_row  INTEGER NOT NULL,
    row_count  INTEGER NOT NULL,
    vendor_id  TEXT NOT NULL,
    account_id TEXT NOT NULL,
    PRIMARY KEY (run_id, first_row)
);
