-- Learned tags (issue 27): a tag a person taught with a handful of labels, fitted on the
-- stored vectors by `learning.learner` and published as a head group of a new bundle.
--
-- A learned tag is its own kind. On photos tagged by the topology it carries the bundle's id
-- as model_version like every tag; on photos re-scored from their stored vectors it is
-- written under the photo's current model_version (so search finds it at once) with `via` =
-- the bundle that learned it. The CHECK lists every kind of contract.KINDS at the time of
-- writing (0008's place/time/keyword and 0011's person included).
ALTER TABLE tags DROP CONSTRAINT tags_kind_check,
    ADD CONSTRAINT tags_kind_check CHECK (kind IN (
        'leaf', 'concept', 'detector', 'property', 'learned', 'place', 'time', 'keyword',
        'person'
    ));

-- What the learner made of each tag with labels: learned (in bundle_id), or not yet and why.
-- labels_seen is a signature (md5) of the tag's labels when it was last looked
-- at: a tag whose labels changed since is learned again.
CREATE TABLE learned_tags (
    tag         text PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('learned', 'not-yet', 'refused')),
    message     text NOT NULL DEFAULT '',
    bundle_id   text,
    n_pos       int NOT NULL DEFAULT 0,
    n_neg       int NOT NULL DEFAULT 0,
    precision   real,
    recall      real,
    threshold   real,
    labels_seen text NOT NULL DEFAULT '',
    learned_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tags_learned_idx ON tags (tag) WHERE kind = 'learned';
