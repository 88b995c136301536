-- Cards are indexed by run first. Under the old index (company_id, key,
-- run_id) every new run's ~200,000 cards landed between the entries of all
-- earlier runs, touching the whole index; indexed by run they append in the
-- order they are written (sorted by company). The index still serves the
-- company filter of a run's cards, a card's lookup by key within a run
-- (scanning only that run's entries, without reading the cards), and the
-- histories, which now probe it once per run: (run, company, key) for a
-- card, (run, company) for a PSA line.
DROP INDEX cards_by_company;
CREATE INDEX cards_by_run_company ON cards (run_id, company_id, key);
