-- People in a photo (issue 25): the person detector's boxes (autotag.vision.person_detector,
-- CenterNet's COCO person class), as the tagger found them: JSON text
-- [[x, y, w, h, score], ...] in the photo's own pixels, best first. NULL: no person detector
-- looked at this photo (tagged before it existed, or a bundle without the face detector).
-- The `person` tag is derived from these boxes (and faces inside them), stored in tags.
ALTER TABLE photos ADD COLUMN person_boxes text;
