-- autotag schema, version 1: photos, their tags per model version, and feature vectors.
-- Applied once by autotag.store.migrate (recorded in schema_migrations).

CREATE TABLE photos (
    photo_id      text PRIMARY KEY CHECK (photo_id ~ '^[0-9a-f]{64}$'),
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'tagged', 'failed')),
    source        text,
    bytes         bigint,
    width         int,
    height        int,
    attempts      int NOT NULL DEFAULT 0,
    reason        text,
    model_version text,
    uploaded_at   timestamptz NOT NULL DEFAULT now(),
    tagged_at     timestamptz
);
-- "queued for too long" (retry --stuck) and "failed" listings.
CREATE INDEX photos_status_uploaded_idx ON photos (status, uploaded_at);

CREATE TABLE tags (
    photo_id      text NOT NULL REFERENCES photos (photo_id) ON DELETE CASCADE,
    tag           text NOT NULL,
    score         real NOT NULL,
    model_version text NOT NULL,
    PRIMARY KEY (photo_id, model_version, tag)
);
CREATE INDEX tags_tag_score_idx ON tags (tag, score DESC);
-- Case-insensitive exact search (autotag search).
CREATE INDEX tags_lower_tag_score_idx ON tags (lower(tag), score DESC);
-- Word search inside multi-word tags ("retriever" finds "golden retriever").
CREATE INDEX tags_words_idx ON tags
    USING gin (array_remove(regexp_split_to_array(lower(tag), '[^[:alnum:]]+'), ''));

-- seq increases on every insert and update (set by the trigger below), so a similarity
-- index can sync incrementally with "WHERE seq > last_seen ORDER BY seq".
CREATE SEQUENCE photo_vectors_seq_seq AS bigint;

CREATE TABLE photo_vectors (
    photo_id      text NOT NULL REFERENCES photos (photo_id) ON DELETE CASCADE,
    feature_set   text NOT NULL,
    model_version text,
    feature       real[] NOT NULL,
    seq           bigint NOT NULL DEFAULT nextval('photo_vectors_seq_seq'),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (photo_id, feature_set)
);
ALTER SEQUENCE photo_vectors_seq_seq OWNED BY photo_vectors.seq;
CREATE UNIQUE INDEX photo_vectors_seq_idx ON photo_vectors (seq);
CREATE INDEX photo_vectors_feature_set_seq_idx ON photo_vectors (feature_set, seq);

CREATE FUNCTION photo_vectors_bump_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.seq := nextval('photo_vectors_seq_seq');
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER photo_vectors_bump_seq
    BEFORE INSERT OR UPDATE ON photo_vectors
    FOR EACH ROW EXECUTE FUNCTION photo_vectors_bump_seq();
