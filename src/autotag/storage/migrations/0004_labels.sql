-- Tag corrections made on the web page, and what the page's queries need.
--
-- A label is a person's word on one (photo, tag): positive (the tag belongs, e.g. a missing
-- tag added) or negative (a wrong tag removed). One row per pair; the latest word wins.
-- `autotag labels export` writes them as the class,photo_id,label CSV `autotag train` reads.
CREATE TABLE labels (
    photo_id   text NOT NULL REFERENCES photos (photo_id) ON DELETE CASCADE,
    tag        text NOT NULL CHECK (tag <> '' AND length(tag) <= 200 AND tag !~ '[\r\n,]'),
    positive   boolean NOT NULL,
    labeled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (photo_id, tag)
);
CREATE INDEX labels_lower_tag_idx ON labels (lower(tag));

-- Photos tagged per minute over the last minutes (the status page's chart).
CREATE INDEX photos_tagged_at_idx ON photos (tagged_at) WHERE tagged_at IS NOT NULL;
-- Newest-first search results.
CREATE INDEX photos_uploaded_at_idx ON photos (uploaded_at DESC, photo_id);
