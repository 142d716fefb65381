-- What each stored tag is: 'leaf' (an ImageNet or trained class), 'concept' (an everyday word
-- summed over leaves, e.g. dog), 'detector' (face, person) or 'property' (black and white);
-- for a concept, `via` is the leaf that contributed most. Rows written before this migration
-- are leaves (their detector tags included) until `autotag retag` rewrites them.
ALTER TABLE tags
    ADD COLUMN kind text NOT NULL DEFAULT 'leaf'
        CHECK (kind IN ('leaf', 'concept', 'detector', 'property')),
    ADD COLUMN via text;
