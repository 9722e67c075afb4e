"""The data wing: where text comes from (sources), how it is tokenized and cached (prepare) and the corpus a run
samples its batches from, planted or prepared (corpus)."""
