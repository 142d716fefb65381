-- Deleting photos and videos (storage/deletion.py).
--
-- Trashing an item moves its rows here, as JSON per table ("photos", "tags", "labels",
-- "photo_vectors"; or "videos", "video_segments", ...), and deletes them from their tables:
-- so every lookup, search, statistic and the live feed lose it at once, with no filter to
-- remember in each query. Restoring puts the rows back. A permanent delete (or the trash's
-- expiry) drops the rows and keeps only a tombstone (purged, rows NULL): the DB writer
-- refuses any result for an id found here, so a result still in flight cannot resurrect the
-- photo. Tombstones expire (`autotag gc`); registering the same bytes again removes the
-- tombstone, so a re-upload is a new upload.
CREATE TABLE trash (
    item_id    text PRIMARY KEY CHECK (item_id ~ '^[0-9a-f]{64}$'),
    kind       text NOT NULL CHECK (kind IN ('photo', 'video')),
    deleted_at timestamptz NOT NULL DEFAULT now(),
    purged     boolean NOT NULL DEFAULT false,
    source     text,
    rows       jsonb,
    CHECK (purged = (rows IS NULL))
);
CREATE INDEX trash_deleted_at_idx ON trash (purged, deleted_at);
