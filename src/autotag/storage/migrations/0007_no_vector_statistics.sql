-- No planner statistics on feature vectors. Nothing filters or sorts by a vector's elements,
-- but ANALYZE of a real[] column builds most-common-element statistics over every element of
-- every sampled vector: at 1,280 floats per row that made each autovacuum analyze of
-- photo_vectors cost seconds of CPU, taken from the tagging bolts (BENCHMARKS.md).
ALTER TABLE photo_vectors ALTER COLUMN feature SET STATISTICS 0;
ALTER TABLE video_detections ALTER COLUMN feature SET STATISTICS 0;
