-- A change staged on a card (bulk "set effective date", or a quantity) and
-- not yet approved: nothing is written to the PSA until an approval, which
-- then uses these values. Kept by card key, so a stage survives a
-- re-reconcile; `staged_fingerprint` is the card's numbers fingerprint when
-- staged, so a stage whose card's numbers have since changed is shown as
-- such (kept, flagged) instead of being silently applied to new numbers.
ALTER TABLE card_states ADD COLUMN staged_quantity TEXT;
ALTER TABLE card_states ADD COLUMN staged_effective_date DATE;
ALTER TABLE card_states ADD COLUMN staged_fingerprint TEXT;
ALTER TABLE card_states ADD COLUMN staged_by TEXT;
ALTER TABLE card_states ADD COLUMN staged_at TIMESTAMPTZ;
