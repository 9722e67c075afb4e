"""The seeds x pairs bootstrap of benchmark correlations (embjax.findings.bootstrap) against independent references:
SciPy's ranks and Spearman on explicit resamples, Fisher's z with Bonett & Wright's factor, Steiger's (1980) test
for dependent correlations, a plain loop bootstrap written here, Monte Carlo draws from the population; and the
per-pair data of a trained run (embjax.findings.pairs) against the ρ the run logged."""

import json
import math
import os

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from embjax.findings.bootstrap import (
    Bootstrap,
    bootstrap_diff,
    bootstrap_rho,
    bootstrap_verdict,
    design_resolvable,
    pair_counts,
    resample_ranks,
    resolvable_effect,
    rho_se,
    seed_rhos,
)
from embjax.findings.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def _normal(rng, n, corr):
    """n draws of a standard normal vector with correlation matrix `corr`, as its columns."""
    return rng.multivariate_normal(np.zeros(len(corr)), np.asarray(corr, np.float64), size=n).T


def _trivariate(rng, n, r_h1, r_h2, r_12):
    """(human, model 1, model 2) columns with the given correlations."""
    return _normal(rng, n, [[1, r_h1, r_h2], [r_h1, 1, r_12], [r_h2, r_12, 1]])


def _sp(a, b):
    return spearmanr(a, b).statistic


def test_ranks_and_rho_of_each_resample_equal_scipy_on_the_resample_written_out():
    """Tied values (integer scores, as human judgments are) and repeated draws: every drawn copy's rank equals
    scipy's average rank of the explicit resample, and each draw's ρ equals scipy's spearmanr of it."""
    rng = np.random.default_rng(3)
    v, h = rng.integers(0, 8, 40).astype(float), rng.integers(0, 5, 40).astype(float)
    W = pair_counts(rng, 6, 40)
    assert (W.sum(axis=1) == 40).all() and (W == 0).any() and (W > 1).any()
    R, rho = resample_ranks(v, W), seed_rhos(np.stack([v, -v]), h, W)
    for b in range(6):
        idx = np.repeat(np.arange(40), W[b].astype(int))
        np.testing.assert_allclose(R[b, idx], rankdata(v[idx]), rtol=0, atol=1e-12)
        assert rho[0, b] == pytest.approx(_sp(v[idx], h[idx]), abs=1e-12)
        assert rho[1, b] == pytest.approx(_sp(-v[idx], h[idx]), abs=1e-12)


def test_the_pair_bootstrap_se_of_one_table_matches_fisher_z_and_the_population():
    """One seed, n = 400 pairs from a bivariate normal with ρ = 0.5: the bootstrap's standard error of Spearman's
    ρ within 15 % of Fisher's z with Bonett & Wright's factor, (1 − ρ²)√((1 + ρ²/2)/(n − 3)) by hand, and of the
    spread of ρ over 1,000 fresh samples from the population (Monte Carlo, scipy's ranks)."""
    rng, n = np.random.default_rng(0), 400
    h, x = _normal(rng, n, [[1, 0.5], [0.5, 1]])
    b = bootstrap_rho(x, h)
    r = _sp(x, h)
    assert b.estimate == pytest.approx(r, abs=1e-12) and b.var_seeds < 1e-20  # one seed: no seed noise
    fisher = (1 - r * r) * math.sqrt((1 + r * r / 2) / (n - 3))
    assert rho_se(r, n) == pytest.approx(fisher, rel=1e-12)
    assert b.se == pytest.approx(fisher, rel=0.15)
    H, X = (rng.standard_normal((1000, n)) for _ in range(2))
    X = 0.5 * H + math.sqrt(0.75) * X
    rh, rx = rankdata(H, axis=1), rankdata(X, axis=1)
    mc = [np.corrcoef(a, c)[0, 1] for a, c in zip(rh, rx)]
    assert b.se == pytest.approx(np.std(mc, ddof=1), rel=0.15)
    assert b.lo < r < b.hi and b.hi - b.lo == pytest.approx(2 * 1.96 * fisher, rel=0.2)


def _steiger_se(r_h1, r_h2, r_12, n):
    """Steiger's (1980) standard error of z(r_h1) − z(r_h2) (dependent correlations sharing h), on ρ's scale."""
    rb = (r_h1 + r_h2) / 2
    psi = r_12 * (1 - 2 * rb * rb) - 0.5 * rb * rb * (1 - 2 * rb * rb - r_12 * r_12)
    s = psi / (1 - rb * rb) ** 2
    return (1 - rb * rb) * math.sqrt((2 - 2 * s) / (n - 3))


def _loop_bootstrap(h, x1, x2, draws=2000, seed=11):
    """A plain bootstrap of ρ(x1, h) − ρ(x2, h): one scipy spearmanr per side per draw, the same pairs for both."""
    rng, n, d = np.random.default_rng(seed), len(h), []
    for _ in range(draws):
        i = rng.integers(0, n, n)
        d.append(_sp(x1[i], h[i]) - _sp(x2[i], h[i]))
    return np.asarray(d)


def test_a_paired_difference_matches_steiger_and_a_loop_bootstrap():
    """ρ(x1, h) − ρ(x2, h) on 400 shared pairs (ρ_h1 = 0.5, ρ_h2 = 0.4, ρ_12 = 0.6): the bootstrap's standard error
    within 10 % of a loop bootstrap written here and within 15 % of Steiger's test, and well under the error the
    two correlations would have if they were independent (√2 × Fisher's)."""
    rng, n = np.random.default_rng(1), 400
    h, x1, x2 = _trivariate(rng, n, 0.5, 0.4, 0.6)
    b = bootstrap_diff(x1, x2, h)
    assert b.estimate == pytest.approx(_sp(x1, h) - _sp(x2, h), abs=1e-12)
    loop = _loop_bootstrap(h, x1, x2)
    assert b.se == pytest.approx(np.std(loop, ddof=1), rel=0.10)
    assert b.lo == pytest.approx(np.percentile(loop, 2.5), abs=0.015)
    assert b.hi == pytest.approx(np.percentile(loop, 97.5), abs=0.015)
    steiger = _steiger_se(_sp(x1, h), _sp(x2, h), _sp(x1, x2), n)
    assert b.se == pytest.approx(steiger, rel=0.15)
    assert b.se < 0.8 * math.sqrt(2) * rho_se((_sp(x1, h) + _sp(x2, h)) / 2, n)


def test_the_same_drawn_pairs_on_both_sides_are_what_keeps_a_paired_difference_tight():
    """Two tables that agree closely (ρ_12 = 0.9) on 462 pairs: resampling the pairs independently for each side
    (what a paired difference must not do, built here from the same draws' machinery) gives an interval more
    than twice as wide as the library's paired difference, whose standard error stays at Steiger's."""
    rng, n = np.random.default_rng(2), 462
    h, x1, x2 = _trivariate(rng, n, 0.45, 0.4, 0.9)
    b = bootstrap_diff(x1, x2, h)
    g = np.random.default_rng(5)
    broken = seed_rhos(x1[None], h, pair_counts(g, 2000, n))[0] - seed_rhos(x2[None], h, pair_counts(g, 2000, n))[0]
    lo, hi = np.percentile(broken, [2.5, 97.5])
    assert hi - lo > 2.0 * (b.hi - b.lo)
    assert b.se == pytest.approx(_steiger_se(_sp(x1, h), _sp(x2, h), _sp(x1, x2), n), rel=0.15)
    # identical sides over 3 seeds: exactly zero in every draw (both sides take the same drawn pairs and seeds)
    C = x1 + 0.5 * rng.standard_normal((3, n))
    same = bootstrap_diff(C, C, h)
    assert same.lo == same.hi == same.estimate == same.var_seeds == same.var_pairs == 0.0


def _seed_tables(rng, h, strengths, noise):
    """One row per seed: strength_k × h + noise."""
    return np.stack([s * h + noise * rng.standard_normal(h.size) for s in strengths])


def test_seed_noise_and_pair_noise_are_told_apart():
    """Seeds dominate: 5 seeds of very different strength on 1,500 pairs; the seeds-only variance is the
    bootstrap variance of a mean of 5 resampled seeds, σ²/5 with σ² the per-seed ρ's population variance (scipy),
    within 15 %. Pairs dominate: 5 near-identical seeds on 120 pairs; the pairs-only variance is Fisher's within
    25 %. The two-level variance is about their sum."""
    rng = np.random.default_rng(4)
    h = rng.standard_normal(1500)
    C = _seed_tables(rng, h, [0.1, 0.3, 0.6, 1.0, 2.0], 1.0)
    b = bootstrap_rho(C, h)
    per_seed = np.asarray([_sp(c, h) for c in C])
    assert b.estimate == pytest.approx(per_seed.mean(), abs=1e-12)
    assert b.var_seeds == pytest.approx(per_seed.var() / 5, rel=0.15)
    assert b.var_seeds > 10 * b.var_pairs and b.dominant == "seeds"
    assert b.se**2 == pytest.approx(b.var_seeds + b.var_pairs, rel=0.2)

    h = rng.standard_normal(120)
    base = 0.7 * h + 0.7 * rng.standard_normal(120)
    C = base + 0.02 * rng.standard_normal((5, 120))
    b = bootstrap_rho(C, h)
    assert b.var_pairs > 10 * b.var_seeds and b.dominant == "pairs"
    assert math.sqrt(b.var_pairs) == pytest.approx(rho_se(b.estimate, 120), rel=0.25)
    assert b.se**2 == pytest.approx(b.var_seeds + b.var_pairs, rel=0.2)


def test_arms_paired_by_seed_share_the_seed_draws_and_unpaired_arms_draw_apart():
    """Two arms whose seeds move both alike (seed k's strength shared): paired, the seed noise cancels; unpaired,
    it adds. Arms with 3 and 4 seeds (not paired): the seeds-only variance is the sum of each arm's own (σ_a²/3 +
    σ_b²/4, scipy); pairing arms of unequal seed counts is refused."""
    rng = np.random.default_rng(6)
    h = rng.standard_normal(600)
    noise = rng.standard_normal((3, 600))
    A, B = np.asarray([0.2, 0.8, 1.5])[:, None] * h + noise, np.asarray([0.3, 0.9, 1.6])[:, None] * h + noise
    paired, apart = bootstrap_diff(A, B, h), bootstrap_diff(A, B, h, paired=False)
    assert paired.var_seeds < 0.02 * apart.var_seeds and paired.hi - paired.lo < 0.5 * (apart.hi - apart.lo)
    A, B = _seed_tables(rng, h, [0.2, 0.8, 1.5], 1.0), _seed_tables(rng, h, [0.1, 0.5, 1.0, 3.0], 1.0)
    b = bootstrap_diff(A, B, h, paired=False)
    va, vb = (np.var([_sp(c, h) for c in X]) / len(X) for X in (A, B))
    assert b.var_seeds == pytest.approx(va + vb, rel=0.15)
    with pytest.raises(ValueError, match="seeds"):
        bootstrap_diff(A, B, h, paired=True)


def test_a_seed_gives_the_same_numbers_and_another_seed_others():
    rng = np.random.default_rng(7)
    h = rng.integers(0, 10, 300).astype(float)
    C = 0.3 * h + rng.standard_normal((3, 300))
    a, b, c = bootstrap_rho(C, h), bootstrap_rho(C, h), bootstrap_rho(C, h, seed=1)
    assert a == b and (a.lo, a.hi, a.se) != (c.lo, c.hi, c.se) and a.estimate == c.estimate
    assert a.draws == 2000 and a.seeds == 3 and a.pairs == 300


def test_the_verdict_reads_a_bootstrap_interval_and_names_the_dominant_noise():
    """Hand intervals against the claim ρ_out − ρ_in ≥ 0.05, then synthetic runs: a clear effect is reproduced, a
    clear absence is not, and an effect at the threshold on few pairs is inconclusive with the pairs named."""
    assert bootstrap_verdict((0.08, 0.2), 0.05) == (REPRODUCED, None)
    assert bootstrap_verdict((-0.1, 0.01), 0.05) == (NOT_REPRODUCED, None)
    assert bootstrap_verdict((0.0, 0.1), 0.05, noise=(1e-4, 4e-4)) == (INCONCLUSIVE, "pairs")
    assert bootstrap_verdict((0.0, 0.1), 0.05, noise=(4e-4, 1e-4)) == (INCONCLUSIVE, "seeds")
    assert bootstrap_verdict((0.0, 0.1), -math.inf, 0.05) == (INCONCLUSIVE, None)
    assert bootstrap_verdict((math.nan, 0.1), 0.05).verdict == INCONCLUSIVE

    rng = np.random.default_rng(8)
    h = rng.standard_normal(462)
    noise = rng.standard_normal((3, 462))
    strong, weak = 0.8 * h + noise, 0.2 * h + noise  # ρ ≈ 0.62 and 0.2: a difference of ~0.4
    assert bootstrap_verdict(bootstrap_diff(strong, weak, h), 0.05).verdict == REPRODUCED
    assert bootstrap_verdict(bootstrap_diff(weak, strong, h), 0.05).verdict == NOT_REPRODUCED
    h = rng.standard_normal(60)
    a = 0.5 * h + rng.standard_normal(60) + 0.01 * rng.standard_normal((3, 60))
    b = a + 0.6 * rng.standard_normal(60)
    bs = bootstrap_diff(a, b, h)
    assert bs.lo < 0.05 < bs.hi  # the design check: it straddles
    assert bootstrap_verdict(bs, 0.05) == (INCONCLUSIVE, "pairs")


def test_the_smallest_resolvable_effect_by_hand_and_against_the_bootstrap():
    """z √(SE_pairs² + sd²/k) by hand for SimLex's 462 pairs and 3 seeds; a difference of 0.03 is below it even
    for two tables whose pair noise correlates at 0.8; the analytic value within 20 % of 2 × the bootstrap SE on a
    synthetic design of the same size (with the seed variance the bootstrap sees, (k − 1)/k of s²/k); a pilot's
    bootstrap scaled to 12 seeds by hand."""
    se = (1 - 0.09) * math.sqrt(1.045 / 459)
    assert resolvable_effect(462, 3, 0.02, 0.3) == pytest.approx(2 * math.sqrt(se**2 + 0.02**2 / 3), rel=1e-12)
    diff = resolvable_effect(462, 3, 0.02, 0.3, difference=True, pair_corr=0.8)
    assert diff == pytest.approx(2 * math.sqrt(se**2 * 0.4 + 0.02**2 / 3), rel=1e-12) and diff > 0.03

    rng = np.random.default_rng(9)
    h = rng.standard_normal(462)
    C = _seed_tables(rng, h, [0.35, 0.45, 0.55], 1.0)
    b = bootstrap_rho(C, h)
    sd = np.std([_sp(c, h) for c in C], ddof=1)
    # a bootstrap over k seeds sees (k − 1)/k of the seeds' unbiased variance s²/k (the docstring's caveat)
    assert b.resolvable == pytest.approx(resolvable_effect(462, 3, sd * math.sqrt(2 / 3), b.estimate), rel=0.2)
    assert b.resolvable < resolvable_effect(462, 3, sd, b.estimate)

    pilot = Bootstrap(0.1, 0.0, 0.2, 0.05, var_seeds=4e-4, var_pairs=9e-4, seeds=3, pairs=462, draws=2000)
    want = 2 * math.sqrt(4e-4 * 1.5 * 3 / 12 + 9e-4 * 462 / 924)
    assert design_resolvable(pilot, 12, 924) == pytest.approx(want, rel=1e-12)


def _benchmark_corpus(path, rng):
    """Documents of random benchmark words (lowercased), WordSim's capitalised words the most frequent (so that
    case-insensitive matching is what finds them), and a tail rare enough to stay out of the vocabulary."""
    from gensim.test.utils import datapath

    from embjax.analysis.evals import read_pairs

    pairs = [p for f in ("wordsim353.tsv", "simlex999.txt") for p in read_pairs(datapath(f))[0]]
    words = sorted({w for a, b, _ in pairs for w in (a, b)})
    upper = [w.lower() for w in words if w != w.lower()]
    docs = [" ".join([*rng.choice(words, 50), *upper]).lower() for _ in range(200)]
    path.write_text("\n\n".join(docs) + "\n")


def test_a_runs_pair_scores_give_the_spearman_it_logged(tmp_path):
    """A tiny untied linear LM (2 seeds, one program) on benchmark words: for both tables and both benchmarks the
    per-pair data's ρ equals summary.json's word_sim/<set>/spearman exactly, over the same pairs (WordSim's
    capitalised words found up to case, out-of-vocabulary pairs skipped); stacking the seeds keeps the pairs both
    use, in the file's order; a BPE run is refused."""
    from embjax.config import load_config
    from embjax.findings.pairs import pair_scores, stacked
    from embjax.findings.runs import load
    from embjax.train.runner import train_group

    _benchmark_corpus(tmp_path / "c.txt", np.random.default_rng(0))
    keys = {"data.kind": "text", "data.path": str(tmp_path / "c.txt"), "data.tokenizer": "word"}
    keys |= {"data.vocab_size": 900, "data.cache_dir": str(tmp_path / "cache"), "data.seq_len": 16}
    keys |= {"data.batch_size": 8, "model.kind": "linear", "model.embed_dim": 16, "model.tie_embeddings": False}
    keys |= {"steps": 20, "log.metrics_every": 20, "log.eval_every": 20, "checkpoint.every": 20}
    keys |= {"log.progress": False, "log.wandb": False, "out_dir": str(tmp_path / "runs")}
    keys |= {"log.word_similarity": ["wordsim353", "simlex999"]}
    cfgs = [load_config(None, {**keys, "seed": s, "name": f"s{s}"}) for s in (0, 1)]
    train_group(cfgs, progress=False)
    dirs = [tmp_path / "runs" / f"s{s}" for s in (0, 1)]
    summary = json.loads((dirs[0] / "summary.json").read_text())
    for table, file in (("", "embeddings.npy"), ("_out", "output_embeddings.npy")):
        for name in ("wordsim353", "simlex999"):
            p = pair_scores(str(dirs[0]), name, file)
            assert p.spearman == summary[f"word_sim{table}/{name}/spearman"], (table, name)
            assert p.used.sum() == summary[f"word_sim{table}/{name}/pairs"] and not p.used.all()
            assert p.spearman == pytest.approx(_sp(p.cos[p.used], p.human[p.used]), abs=1e-12)
    ws = pair_scores(str(dirs[0]), "wordsim353")
    assert any(ws.used[i] and a != a.lower() for i, (a, _) in enumerate(ws.words))  # found up to case
    given = pair_scores(str(dirs[1]), "simlex999", np.load(dirs[1] / "embeddings.npy"))  # a table as an array
    assert given.spearman == json.loads((dirs[1] / "summary.json").read_text())["word_sim/simlex999/spearman"]
    runs = sorted(load(str(tmp_path / "runs")), key=lambda r: r["name"])  # run dicts, as the findings read them
    cos, human, kept = stacked(runs, "simlex999")
    both = pair_scores(str(dirs[0]), "simlex999").used & pair_scores(str(dirs[1]), "simlex999").used
    assert (kept == np.flatnonzero(both)).all() and cos.shape == (2, both.sum()) and human.shape == (both.sum(),)
    (tmp_path / "bpe").mkdir()
    (tmp_path / "bpe" / "config.yaml").write_text("data:\n  kind: text\n  tokenizer: bpe\n")
    with pytest.raises(ValueError, match="data.tokenizer='bpe'"):
        pair_scores(str(tmp_path / "bpe"), "simlex999")


def _synthetic_runs(root, rng, out_strength):
    """Run directories of a tied and an untied arm (3 seeds each) on every benchmark word, written by hand: random
    input tables, and untied output tables whose SimLex pairs are pulled together in proportion to their human
    score (out_strength: how much), so ρ_out − ρ_in is what the test chose."""
    import yaml
    from gensim.test.utils import datapath

    from embjax.analysis.evals import read_pairs

    pairs = read_pairs(datapath("simlex999.txt"))[0]
    words = ["<unk>"] + sorted({w.lower() for a, b, _ in pairs for w in (a, b)})
    index = {w: i for i, w in enumerate(words)}
    runs = []
    for tie in (True, False):
        for seed in range(3):
            d = root / f"{'tied' if tie else 'untied'}-{seed}"
            d.mkdir()
            cfg = {"seed": seed, "data": {"kind": "text", "tokenizer": "word"}}
            cfg |= {"model": {"tie_embeddings": tie, "kind": "lstm", "dropout": 0.5}, "embedding": {"init_std": 0.02}}
            (d / "config.yaml").write_text(yaml.safe_dump(cfg))
            (d / "tokens.tsv").write_text("id\ttoken\n" + "".join(f"{i}\t{w}\n" for i, w in enumerate(words)))
            E = rng.standard_normal((len(words), 48))
            np.save(d / "embeddings.npy", E)
            if not tie:
                X = E + 0.5 * rng.standard_normal(E.shape)
                for a, b, s in pairs:
                    X[index[b.lower()]] += out_strength * s / 10 * E[index[a.lower()]]
                np.save(d / "output_embeddings.npy", X)
            runs.append({"dir": str(d), "name": d.name, "cfg": cfg, "summary": {"status": "finished"}, "rows": []})
    return runs


@pytest.mark.parametrize("strength, want", [(1.5, REPRODUCED), (-1.5, NOT_REPRODUCED), (0.0, INCONCLUSIVE)])
def test_a_benchmark_check_of_a_finding_reads_the_seeds_and_pairs_interval(tmp_path, strength, want):
    """tied_vs_untied_text on hand-made run directories: the check 'ρ_out − ρ_in ≥ 0 on SimLex' carries the
    bootstrap over seeds and pairs (equal to bootstrap_diff of the runs' own per-pair cosines, computed here
    apart), its verdict is that interval's (reproduced / not reproduced / inconclusive naming the dominant noise:
    when it straddles), and its summary says so."""
    from embjax.findings.pairs import stacked
    from embjax.findings.tied_vs_untied_text import analyse

    runs = _synthetic_runs(tmp_path, np.random.default_rng(3), strength)
    check = analyse(runs)[0][0]
    untied = sorted((r for r in runs if not r["cfg"]["model"]["tie_embeddings"]), key=lambda r: r["name"])
    c_out, h, kept = stacked(untied, "simlex999", "output_embeddings.npy")
    c_in, _, kept_in = stacked(untied, "simlex999")
    assert (kept == kept_in).all() and h.size == 999  # every pair has both words
    want_boot = bootstrap_diff(c_out, c_in, h)
    assert (check.boot.lo, check.boot.hi, check.boot.estimate) == (want_boot.lo, want_boot.hi, want_boot.estimate)
    assert check.verdict == want == bootstrap_verdict(want_boot, 0.0).verdict
    assert check.noise == (check.boot.dominant if want == INCONCLUSIVE else None)
    assert "seeds × pairs (3 seeds × 999 pairs)" in check.summary() and "resolves ±" in check.summary()
    if want == INCONCLUSIVE:
        assert f"{check.noise} noise dominates" in check.summary()
    one_seed = analyse([r for r in runs if r["cfg"]["seed"] == 0])[0][0]  # --quick's one seed: no training noise seen
    assert one_seed.boot.seeds == 1 and one_seed.verdict == INCONCLUSIVE


def test_a_run_that_kept_its_best_checkpoint_is_read_at_it(tmp_path):
    """With checkpoint.keep_best a run directory holds best_<table>.npy beside the final table, and summary.json
    best/<key>: the findings read both there (the tables the papers report). Here the untied runs' final output
    tables are noise and their best ones carry the signal: the check's bootstrap is the best tables' (computed
    apart), so it reads reproduced; a run without the file, or a key without best/, falls back to the final."""
    from embjax.findings.pairs import stacked
    from embjax.findings.runs import best, best_table
    from embjax.findings.tied_vs_untied_text import analyse

    runs = _synthetic_runs(tmp_path, np.random.default_rng(3), 1.5)
    untied = sorted((r for r in runs if not r["cfg"]["model"]["tie_embeddings"]), key=lambda r: r["name"])
    c_best, h, _ = stacked(untied, "simlex999", "output_embeddings.npy")  # before the move: what best_ will hold
    c_in, _, _ = stacked(untied, "simlex999")
    rng = np.random.default_rng(9)
    for r in untied:
        d = r["dir"]
        os.replace(os.path.join(d, "output_embeddings.npy"), os.path.join(d, "best_output_embeddings.npy"))
        np.save(
            os.path.join(d, "output_embeddings.npy"),
            rng.standard_normal(np.load(os.path.join(d, "embeddings.npy")).shape),
        )
    assert best_table(untied[0], "output_embeddings.npy") == "best_output_embeddings.npy"
    assert best_table(untied[0], "embeddings.npy") == "embeddings.npy"  # no best_ file: the final table
    check = analyse(runs)[0][0]
    want = bootstrap_diff(c_best, c_in, h)
    assert (check.boot.lo, check.boot.hi) == (want.lo, want.hi) and check.verdict == REPRODUCED
    final_only = bootstrap_diff(stacked(untied, "simlex999", "output_embeddings.npy")[0], c_in, h)
    assert final_only.hi < want.lo  # the final (noise) tables would not have given it
    run = {"summary": {"best/eval/loss": 1.5, "eval/loss": 2.0, "emb/cos_mean": 0.3}, "rows": []}
    assert best(run, "eval/loss") == 1.5 and best(run, "emb/cos_mean") == 0.3


def test_a_findings_power_statement_quotes_the_resolvable_effects_by_hand():
    """The design statement a real-text finding prints before its run: one table's ρ on SimLex-999's 462 pairs with
    3 seeds, by hand (2 √(SE² + s²/3)), and a difference's range from correlated to independent pair noise."""
    from embjax.findings.bootstrap import PILOT_PAIR_CORR, PILOT_SEED_SD, design_statement
    from embjax.findings.tied_vs_untied_text import FINDING

    se = (1 - 0.01) * math.sqrt(1.005 / 459)
    one = 2 * math.sqrt(se**2 + PILOT_SEED_SD**2 / 3)
    lo = 2 * math.sqrt(se**2 * 2 * (1 - PILOT_PAIR_CORR) + PILOT_SEED_SD**2 / 3)
    hi = 2 * math.sqrt(se**2 * 2 + PILOT_SEED_SD**2 / 3)
    text = design_statement()
    assert f"±{one:.2f} (SimLex-999, 462 pairs)" in text and f"±{lo:.2f}–{hi:.2f} (SimLex-999)" in text
    assert text in FINDING.power


@pytest.mark.parametrize("strength", [1.5, 0.07, 0.0])
def test_tables_against_a_random_one_name_the_best_table_and_the_null_band(tmp_path, strength):
    """findings.md's "Tables against a random one" on hand-made runs: the arms are told apart by what differs
    (tied / untied), a word2vec reference row (baseline.json) is no arm; the best SimLex table is the untied output
    table when it was pulled towards the human scores, with the interval bootstrap_rho gives its cosines (computed
    here apart); the random table's band is the null distribution of Spearman's ρ on 999 pairs: mean ≈ 0,
    sd ≈ 1/√(n − 1) (a known formula); "clearly above" only when the whole interval is above the band (at
    strength 0.07 the estimate is above it, the interval's lower end is not)."""
    from embjax.findings.learned import arms, best_tables, random_band, statement
    from embjax.findings.pairs import stacked

    runs = _synthetic_runs(tmp_path, np.random.default_rng(3), strength)
    (tmp_path / "ref").mkdir()
    ref = _synthetic_runs(tmp_path / "ref", np.random.default_rng(4), 5.0)[3]  # an untied table pulled hard
    (tmp_path / "ref" / "untied-0" / "baseline.json").write_text(
        json.dumps({"baseline": {"method": "word2vec", "epochs": 20}})
    )
    runs.append(ref)
    by_arm = arms(runs)
    assert sorted(by_arm) == ["tied", "untied"] and all(sorted(a) == [0, 1, 2] for a in by_arm.values())
    name, boot, run, table = best_tables(runs)["simlex999"]
    m, lo, hi = random_band(run, "simlex999", table)
    assert abs(m) < 0.03 and (hi - lo) / 4 == pytest.approx(1 / math.sqrt(999 - 1), rel=0.15)
    text = statement(runs)
    assert "The reference rows, on the same tokens: word2vec (20 epochs) SimLex-999" in text
    if strength > 0:
        cos, h, _ = stacked([by_arm["untied"][s] for s in (0, 1, 2)], "simlex999", "output_embeddings.npy")
        want = bootstrap_rho(cos, h)
        assert name == "untied: its output table" and (boot.lo, boot.hi) == (want.lo, want.hi)
        assert "SimLex-999: the best is untied: its output table" in text
    if strength > 1:
        assert boot.lo > hi and "**clearly above**" in text and "No table stands" not in text
    else:
        assert boot.lo < hi and "**No table stands clearly above a random one**" in text
    if strength == 0.07:
        assert boot.estimate > hi
