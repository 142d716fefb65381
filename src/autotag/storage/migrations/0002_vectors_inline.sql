-- Keep feature vectors in the table row instead of TOAST (a 1,280-d real[] is ~5 KB, which
-- fits an 8 KB page): a psql scan with dot_product() then reads them directly, 2.7x faster
-- on 100k rows (bench/similarity.py). Applies to rows written from now on.
ALTER TABLE photo_vectors ALTER COLUMN feature SET STORAGE MAIN;
ALTER TABLE photo_vectors SET (toast_tuple_target = 8160);
