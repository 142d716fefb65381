-- Videos and camera streams: what was found in them, never their frames.
-- A video is an uploaded file (its id is the file's sha256, like a photo) or one run of a
-- camera (its segments are separate blobs). Each segment is analysed on its own; a video's
-- status follows its segments (queued until none is queued; done if any is done).

CREATE TABLE videos (
    video_id      text PRIMARY KEY CHECK (video_id ~ '^[0-9a-f]{64}$'),
    kind          text NOT NULL CHECK (kind IN ('upload', 'camera')),
    camera        text,
    source        text,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('recording', 'queued', 'done', 'failed')),
    reason        text,
    format        text,
    fps           real,
    width         int,
    height        int,
    duration_secs real,
    bytes         bigint,
    segments      int NOT NULL DEFAULT 0,
    uploaded_at   timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz
);
CREATE INDEX videos_status_uploaded_idx ON videos (status, uploaded_at);

CREATE TABLE video_segments (
    video_id        text NOT NULL REFERENCES videos (video_id) ON DELETE CASCADE,
    segment         int NOT NULL CHECK (segment >= 0),
    blob_id         text NOT NULL CHECK (blob_id ~ '^[0-9a-f]{64}$'),
    start_secs      real NOT NULL,
    end_secs        real NOT NULL,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    reason          text,
    attempts        int NOT NULL DEFAULT 0,
    model_version   text,
    feature_set     text,
    frames_decoded  int,
    frames_analysed int,
    stats           jsonb,
    analysed_at     timestamptz,
    PRIMARY KEY (video_id, segment)
);

-- One row per person or face box in an analysed frame. ``feature`` (the CNN on the crop,
-- L2-normalised) is kept for the first box of a track and then one every few seconds.
CREATE TABLE video_detections (
    detection_id  bigserial PRIMARY KEY,
    video_id      text NOT NULL,
    segment       int NOT NULL,
    camera        text,
    frame         int NOT NULL,
    at_secs       real NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('person', 'face')),
    track         int NOT NULL,
    x             int NOT NULL,
    y             int NOT NULL,
    w             int NOT NULL,
    h             int NOT NULL,
    score         real NOT NULL,
    feature_set   text,
    feature       real[],
    FOREIGN KEY (video_id, segment) REFERENCES video_segments (video_id, segment)
        ON DELETE CASCADE
);
CREATE INDEX video_detections_segment_idx ON video_detections (video_id, segment, at_secs);
CREATE INDEX video_detections_vector_idx ON video_detections (feature_set, detection_id)
    WHERE feature IS NOT NULL;
ALTER TABLE video_detections ALTER COLUMN feature SET STORAGE MAIN;

-- Per segment and tag: the best score over its analysed frames and how many frames had it.
CREATE TABLE video_segment_tags (
    video_id      text NOT NULL,
    segment       int NOT NULL,
    tag           text NOT NULL,
    score         real NOT NULL,
    frames        int NOT NULL,
    model_version text NOT NULL,
    PRIMARY KEY (video_id, segment, tag),
    FOREIGN KEY (video_id, segment) REFERENCES video_segments (video_id, segment)
        ON DELETE CASCADE
);
CREATE INDEX video_segment_tags_lower_tag_idx ON video_segment_tags (lower(tag), score DESC);
