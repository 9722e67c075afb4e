"""Word similarity: Spearman's ρ between cosine similarity of composed word vectors and human scores."""

import numpy as np
import pytest

from embjax.analysis.evals import word_similarity

E = np.array(
    [
        [1.0, 0.0],  # 0 cat
        [0.9, 0.1],  # 1 dog
        [0.0, 1.0],  # 2 car
        [1.0, 1.0],  # 3 sun
        [1.0, -1.0],  # 4 flower  (sunflower = mean(sun, flower) = [1, 0])
        [0.0, 0.0],
    ]
)  # 5 a zero row
PIECES = {"cat": [0], "dog": [1], "car": [2], "sunflower": [3, 4], "zzz": [], "void": [5]}


def _pairs(tmp_path, text):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    return str(path)


def test_spearman_against_a_hand_computation(tmp_path):
    """cos: cat-dog 0.9/√0.82 = 0.994, cat-car 0, dog-car 0.1/√0.82 = 0.110, sunflower-cat 1 -> ranks 3 1 2 4;
    human 9 1 2 8 -> ranks 4 1 2 3; d = (-1, 0, 0, 1), ρ = 1 - 6·2 / (4·15) = 0.8. Two pairs are skipped: a word
    with no pieces and a word whose vector is zero."""
    path = _pairs(
        tmp_path,
        "word1,word2,score\n# a comment\ncat,dog,9\ncat,car,1\ndog\tcar\t2\nsunflower cat 8\nzzz,cat,5\nvoid,dog,3\n",
    )
    out = word_similarity(E, lambda w: PIECES[w], path)
    assert out["word_sim/spearman"] == pytest.approx(0.8, abs=1e-12)
    assert out["word_sim/pairs"] == 4 and out["word_sim/skipped"] == 2
    assert out["word_sim/unreadable"] == 1  # the header line


def test_a_tokenizers_tokenizer_and_a_dict_give_the_same(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"cat": 0, "dog": 1, "car": 2, "[UNK]": 3}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    path = _pairs(tmp_path, "cat dog 9\ncat car 1\ndog car 2\n")
    a = word_similarity(E, tok, path)
    b = word_similarity(E, {k: v for k, v in vocab.items() if k != "[UNK]"}, path)
    assert a == b and a["word_sim/spearman"] == pytest.approx(1.0)  # cos order 0.994 > 0.110 > 0 = human order


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="an existing, non-empty text file"):
        word_similarity(E, PIECES, str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="an existing, non-empty text file"):
        word_similarity(E, PIECES, _pairs(tmp_path, ""))
    with pytest.raises(ValueError, match="no 'word word score' line"):
        word_similarity(E, PIECES, _pairs(tmp_path, "just a header\n"))
    with pytest.raises(ValueError, match=r"'cat' encodes to id 9; allowed: ids in \[0, 6\)"):
        word_similarity(E, lambda w: [9], _pairs(tmp_path, "cat dog 1\n"))


def test_log_word_similarity_is_logged_at_every_metrics_step(tmp_path):
    """A planted run with a pairs file of its own token strings: word_sim/* at the metrics steps, and the last
    one equals word_similarity of the saved table."""
    import json

    from embjax.cli import train_main
    from embjax.outputs.sinks import read_jsonl
    from tests.conftest import TINY

    pairs = "t1_c1 t5_c1 9\nt1_c1 t2_c2 1\nt3_c3 t7_c3 8\nt2_c2 t3_c3 2\nt4_c0 nosuchword 5\n"
    pairs += "".join(f"t{i}_c{i % 4} t{i + 8}_c{i % 4} {i}\n" for i in range(8, 14))  # a run needs 10 pairs or more
    path = _pairs(tmp_path, pairs)
    assert train_main([*TINY, f"--out_dir={tmp_path}", "--log.wandb=false", f"--log.word_similarity={path}"]) == 0
    rows = [r for r in read_jsonl(tmp_path / "default" / "metrics.jsonl") if "word_sim/pairs/spearman" in r]
    assert [r["step"] for r in rows] == [0, 10, 20, 30]
    assert all(r["word_sim/pairs/pairs"] == 10 and r["word_sim/pairs/skipped"] == 1 for r in rows)
    assert all(r["word_sim/pairs/unreadable"] == 0 for r in rows)
    E = np.load(tmp_path / "default" / "embeddings.npy")
    tokens = [line.split("\t")[1] for line in (tmp_path / "default" / "tokens.tsv").read_text().splitlines()[1:]]
    want = word_similarity(E, {t: i for i, t in enumerate(tokens)}, path)["word_sim/spearman"]
    assert rows[-1]["word_sim/pairs/spearman"] == pytest.approx(want, abs=1e-6)
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["word_sim/pairs/spearman"] == pytest.approx(want, abs=1e-6)


def test_log_word_similarity_file_must_exist(tmp_path, capsys):
    from embjax.cli import train_main
    from tests.conftest import TINY

    assert train_main([*TINY, f"--out_dir={tmp_path}", f"--log.word_similarity={tmp_path}/none.txt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "log.word_similarity: got" in err
    assert not (tmp_path / "default").exists()
