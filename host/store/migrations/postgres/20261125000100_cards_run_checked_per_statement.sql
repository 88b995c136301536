-- cards.run_id is checked once per INSERT statement instead of once per row.
--
-- A run writes ~200,000 cards in one COPY; the foreign key's per-row check
-- (a trigger that looks the run up and locks it, 200,000 times) was half of
-- the write's time. What the key guarded is kept, at the database level:
-- - reconcile_runs and cards are append-only (trigger
--   trueup_append_only), so a run can never be deleted or renumbered under
--   its cards, and a card's run_id can never change;
-- - after every INSERT into cards, the statement trigger below checks that
--   each distinct run_id in cards names an existing run, by a loose scan of
--   cards_by_run_company (one index probe per run, not per card), and fails
--   with foreign_key_violation (SQLSTATE 23503) naming the missing run.
-- SQLite keeps its foreign key: there the per-row check is cheap.
ALTER TABLE cards DROP CONSTRAINT cards_run_id_fkey;

CREATE FUNCTION trueup_cards_have_runs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing BIGINT;
BEGIN
    WITH RECURSIVE runs (id) AS (
        SELECT min(run_id) FROM cards
        UNION ALL
        SELECT (SELECT min(c.run_id) FROM cards c WHERE c.run_id > runs.id)
        FROM runs WHERE runs.id IS NOT NULL
    )
    SELECT runs.id INTO missing FROM runs
    WHERE runs.id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM reconcile_runs r WHERE r.id = runs.id)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'cards refer to reconcile run %, which does not exist', missing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'cards_run_id_fkey';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER cards_have_runs AFTER INSERT ON cards
    FOR EACH STATEMENT EXECUTE FUNCTION trueup_cards_have_runs();
