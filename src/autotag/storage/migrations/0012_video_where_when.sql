-- Where and when for videos (issue 26): what an MP4/MOV's container says (read at intake by
-- autotag.vision.video_metadata): its creation time — an instant in UTC, shown as the wall
-- clock of the position's time zone when there is a position (taken_local) — where that came
-- from, the position (moov/udta/©xyz or Apple's location key) and the place it names. A video
-- without a creation time has none: it is never given one from the upload time.
-- meta_tags: the place and time words of the whole video (city, region, country names, year,
-- month, season, time of day; vision.where_when), kept once on the video rather than copied
-- into every segment's tags, which the video writer replaces when a segment is analysed;
-- storage.videos.search_segments finds every analysed segment of a video by them.
ALTER TABLE videos
    ADD COLUMN taken_local timestamp,
    ADD COLUMN taken_at timestamptz,
    ADD COLUMN taken_source text,
    ADD COLUMN latitude double precision,
    ADD COLUMN longitude double precision,
    ADD COLUMN altitude double precision,
    ADD COLUMN place text,
    ADD COLUMN meta_tags text[] NOT NULL DEFAULT '{}';

CREATE INDEX videos_meta_tags_idx ON videos USING gin (meta_tags);
