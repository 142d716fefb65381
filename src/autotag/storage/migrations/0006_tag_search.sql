-- Searches for several tags (AND), or for a word naming several tags: each tag's photos read
-- from the index alone (an index-only scan: photo, model version and score are all in it),
-- then joined on the photo. The (lower(tag), score) index still serves one tag best-first.
CREATE INDEX tags_lower_tag_photo_idx ON tags (lower(tag), photo_id, model_version)
    INCLUDE (score);
