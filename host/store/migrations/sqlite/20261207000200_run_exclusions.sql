-- What each reconcile run left out or noted, one row per exclusion, so a
-- run's exclusions can be listed by reason, counted and paged (they were a
-- JSON list on the run, which could only be read whole). Append-only like
-- the cards. `subject_vendor` is set for vendor accounts (whose ids are
-- only unique within a vendor); `company_id`/`company_name` name the PSA
-- company concerned, when known.
CREATE TABLE run_exclusions (
    run_id         INTEGER NOT NULL REFERENCES reconcile_runs (id),
    position       INTEGER NOT NULL,
    code           TEXT NOT NULL,
    severity       TEXT NOT NULL,
    subject_kind   TEXT NOT NULL,
    subject_vendor TEXT,
    subject_id     TEXT NOT NULL,
    subject_name   TEXT,
    company_id     TEXT,
    company_name   TEXT,
    source         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
);
-- The reason filter and the counts per reason of one run.
CREATE INDEX run_exclusions_by_code ON run_exclusions (run_id, code, position);
