"""The train wing: the jitted train step (step), what it observes (observe), the loop that drives it (loop), runs
and sweeps end to end (runner) and the word2vec / fastText baseline (baseline)."""
