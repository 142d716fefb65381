-- People in videos (issue 25): a video's faces join the same `faces` table as photos' faces,
-- so clustering, naming, merging, forgetting and `people show` treat them alike.
--
-- A face row belongs to a photo (photo_id) or to a video segment (video_id, segment), never
-- both. A segment keeps one face per face track (the video bolt's tracker): the track's
-- representative face (the one matched to a known person, else the sharpest), `at_secs` its
-- time in the video, `frames` how many analysed frames the track had a face in. A replayed
-- segment finds its rows again by (video_id, segment, track), so a person's decision on a
-- face survives it. A video's faces go with its segments (deleted, re-uploaded, trashed:
-- storage.deletion lists `faces` under the video's tables too).
--
-- video_segment_tags.kind: 'person' marks a name derived from the segment's faces
-- (storage.people rebuilds those rows on every name, merge, remove-face and forget, as it
-- does photos' person tags); NULL is what the video bolt found in the frames.
ALTER TABLE faces
    ALTER COLUMN photo_id DROP NOT NULL,
    ADD COLUMN video_id text,
    ADD COLUMN segment  int,
    ADD COLUMN track    int,
    ADD COLUMN at_secs  real,
    ADD COLUMN frames   int,
    ADD CONSTRAINT faces_photo_or_segment CHECK (
        (photo_id IS NOT NULL AND video_id IS NULL AND segment IS NULL AND track IS NULL)
        OR (photo_id IS NULL AND video_id IS NOT NULL AND segment IS NOT NULL
            AND track IS NOT NULL)),
    ADD CONSTRAINT faces_segment_fkey FOREIGN KEY (video_id, segment)
        REFERENCES video_segments (video_id, segment) ON DELETE CASCADE,
    ADD CONSTRAINT faces_segment_track_key UNIQUE (video_id, segment, track);

ALTER TABLE video_segment_tags
    ADD COLUMN kind text CHECK (kind IS NULL OR kind = 'person');
