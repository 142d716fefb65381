-- Questions before a learned tag is published (issue 27): a new tag that passes the
-- learner's own estimates is not published at once (a handful of examples says too little
-- about the rest of the library); it is `asking` the user first. `phase` = 'near' (yes/no on
-- the photos nearest its threshold, to place it) or 'spot' (yes/no on a few random photos it
-- would tag: published only if enough are right); `questions` are the photo ids asked in
-- that phase (answered by a label on the photo: yes = a positive, no = a negative).
ALTER TABLE learned_tags DROP CONSTRAINT learned_tags_status_check,
    ADD CONSTRAINT learned_tags_status_check
        CHECK (status IN ('learned', 'not-yet', 'refused', 'asking')),
    ADD COLUMN phase text CHECK (phase IN ('near', 'spot')),
    ADD COLUMN questions text[] NOT NULL DEFAULT '{}';

-- The head a spot check is asked about (phase 'spot'), published as it was checked when
-- enough answers are yes: W (on L2-normalized vectors), the bias b (z = W·x − b) and the
-- Platt calibration; the threshold is the row's `threshold`.
ALTER TABLE learned_tags
    ADD COLUMN candidate_w real[],
    ADD COLUMN candidate_b real,
    ADD COLUMN candidate_calib_a real,
    ADD COLUMN candidate_calib_c real;
