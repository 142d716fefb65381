-- Where and when (issue 26): what a photo's own file says, read at ingest by the autotag bolt
-- (autotag.vision.metadata): the wall-clock time it was taken (taken_local), the instant when
-- its UTC offset is known (taken_at: from EXIF OffsetTimeOriginal or the GPS position's time
-- zone), where that date came from, the GPS position, the place it names, camera and lens,
-- and the owner's keywords, title and description. A photo without a date taken has none:
-- it is never given one from the upload time.
ALTER TABLE photos
    ADD COLUMN taken_local timestamp,
    ADD COLUMN taken_at timestamptz,
    ADD COLUMN taken_source text,
    ADD COLUMN latitude double precision,
    ADD COLUMN longitude double precision,
    ADD COLUMN altitude double precision,
    ADD COLUMN place text,
    ADD COLUMN camera text,
    ADD COLUMN lens text,
    ADD COLUMN keywords text,
    ADD COLUMN title text,
    ADD COLUMN description text;

-- Date ranges (`autotag search --from/--to`, `?from=&to=`) and the timeline, newest first.
CREATE INDEX photos_taken_local_idx ON photos (taken_local DESC, photo_id)
    WHERE taken_local IS NOT NULL;

-- Places, time words and keywords from the file are tags of their own kinds. Every later
-- migration changing this constraint must list these kinds too (see
-- ../shared/notes/tag-kinds-union.md); 'learned' (issue 27, 0010) is listed here already.
ALTER TABLE tags DROP CONSTRAINT tags_kind_check,
    ADD CONSTRAINT tags_kind_check CHECK (kind IN (
        'leaf', 'concept', 'detector', 'property', 'learned', 'place', 'time', 'keyword'));
