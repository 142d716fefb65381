-- People (issue 25): every face the detector finds, its descriptor, and whose it is.
--
-- A face is a box of a photo (in the photo's own pixels) with the detector's score, a quality
-- (sharpness of the aligned face) and, for a face big enough to recognise, a 128-d descriptor
-- (dlib's ResNet, `model_version`). No face pixels are stored: a crop is cut from the blob.
-- `person_id` is whose face it is (NULL: nobody yet), and `assigned_by` says who decided it:
-- 'user' (named by a person: never changed by the stream), 'match' (the autotag bolt found
-- the nearest known person), 'cluster' (`autotag people cluster`). `not_people` are people a
-- person said this face is not (`people remove-face`): it is never given to them again.
-- `forgotten`: its person asked to be forgotten: the descriptor is gone and is not stored
-- again when the photo is re-tagged.
--
-- A person's name is also a tag of kind 'person' on each photo with one of their faces
-- (storage.people keeps those rows right on every name, merge and forget, and the DB writer
-- on every new face), so the one tag query finds names like any tag.
ALTER TABLE tags DROP CONSTRAINT tags_kind_check,
    ADD CONSTRAINT tags_kind_check CHECK (kind IN (
        'leaf', 'concept', 'detector', 'property', 'learned', 'place', 'time', 'keyword',
        'person'));

CREATE TABLE people (
    person_id   bigserial PRIMARY KEY,
    name        text CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    merged_into bigint REFERENCES people (person_id) ON DELETE SET NULL
);

CREATE TABLE faces (
    face_id       bigserial PRIMARY KEY,
    photo_id      text NOT NULL REFERENCES photos (photo_id) ON DELETE CASCADE,
    x             int NOT NULL,
    y             int NOT NULL,
    w             int NOT NULL CHECK (w > 0),
    h             int NOT NULL CHECK (h > 0),
    score         real NOT NULL,
    quality       real,
    embedding     real[],
    model_version text,
    person_id     bigint REFERENCES people (person_id) ON DELETE SET NULL,
    assigned_by   text CHECK (assigned_by IN ('user', 'match', 'cluster')),
    person_score  real,
    not_people    bigint[] NOT NULL DEFAULT '{}',
    forgotten     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (photo_id, x, y, w, h)
);
CREATE INDEX faces_person_idx ON faces (person_id) WHERE person_id IS NOT NULL;
CREATE INDEX faces_unassigned_idx ON faces (face_id)
    WHERE person_id IS NULL AND embedding IS NOT NULL;

-- Bumped by every change to who is who (name, merge, remove-face, forget, cluster): the
-- autotag bolts poll it and reload the people's reference descriptors when it moves.
CREATE TABLE people_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO people_version DEFAULT VALUES;
