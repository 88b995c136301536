-- What the PSA bills of a card's product on the company's other lines, when
-- usage is compared against all of them together. Without it a card read
-- "No change · PSA 1 · vendor 3 · variance 0": the variance was taken
-- against the company's total (1 + 2 on another agreement) while the card
-- showed only its own line. NULL when the line is the only one.
ALTER TABLE cards ADD COLUMN psa_quantity_elsewhere TEXT;
