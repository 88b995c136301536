-- Bulk writes without per-row foreign-key checks.
--
-- PostgreSQL checks a foreign key with one query per inserted row (an RI
-- trigger running `SELECT ... FOR KEY SHARE` on the parent). For the three
-- tables written 200,000 rows at a time that was about half the time of
-- a reconcile run's `COPY` and of a PSA sync. Each of these references is
-- already guaranteed by how the rows are written, so the checks are dropped:
--
-- - cards.run_id: cards are only written by the transaction that inserts
--   their run (`INSERT ... RETURNING id`, then `COPY`), and reconcile_runs
--   is append-only (its trigger refuses UPDATE and DELETE).
-- - psa_lines.sync_run_id and ledger_psa_lines.sync_run_id: written only by
--   the transaction that reads that sync run (it must exist and be
--   running) and marks it succeeded (updating, so locking, its row); sync
--   runs are never deleted.
--
-- SQLite keeps its foreign keys: it checks one with a primary-key lookup,
-- which costs nothing measurable in these writes.
ALTER TABLE cards DROP CONSTRAINT IF EXISTS cards_run_id_fkey;
ALTER TABLE psa_lines DROP CONSTRAINT IF EXISTS psa_lines_sync_run_id_fkey;
ALTER TABLE ledger_psa_lines DROP CONSTRAINT IF EXISTS ledger_psa_lines_sync_run_id_fkey;
