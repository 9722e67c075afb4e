"""The analysis wing: pure measurements of tables and runs: geometry metrics (metrics), rank statistics (stats),
word-similarity and analogy benchmarks (evals), scaling fits and the muP coordinate and lr analyses (scaling)."""
