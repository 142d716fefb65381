-- Searches for several tags (AND), or for a word naming several tags: each tag's photos read
-- from this index alone (an index-only scan: photo, model version, score and the tag itself
-- are all in it, the tag so that lower(tag) needs no heap visit), then joined on the photo.
-- The (lower(tag), score) index still serves one tag best-first.
CREATE INDEX tags_lower_tag_photo_idx ON tags (lower(tag), photo_id)
    INCLUDE (model_version, score, tag);
