"""Similar photos by dot product of L2-normalised feature vectors.

``index`` (VectorIndex over one of the stores ``flat``, ``ivf``, ``hnsw``), ``duplicates``
(near-identical groups), ``service`` (an index kept in step with Postgres, answering queries).
"""
