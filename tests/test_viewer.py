"""Embedding snapshots and the embedding-space page: the frames are the table at their steps, the page's
numbers match independent NumPy references, and the page works in a real (headless Chromium) browser."""

import base64
import glob
import json
import os
import shutil
import time

import numpy as np
import pytest
import yaml

from embjax.analysis.neighbors import nearest_neighbors
from embjax.cli import sweep_main, train_main, view_main
from embjax.outputs import snapshots
from embjax.outputs.viewer import neighbours, page_data, projection
from tests.conftest import TINY, run_cli, wandb_records

ARGS = TINY + ["--log.wandb=false"]  # 30 steps, log.every 5: a snapshot every 5 steps (7 frames)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("view")
    assert train_main(TINY + [f"--out_dir={out}", "--name=r", "--log.wandb=true", "--log.mode=offline"]) == 0
    return out / "r"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewsweep")
    base = {
        "steps": 20,
        "data": {"vocab_size": 64, "num_classes": 4, "seq_len": 16, "batch_size": 8, "eval_batches": 2},
        "model": {"embed_dim": 16, "num_layers": 1, "num_heads": 2},
        "optim": {"warmup_steps": 5},
        "log": {"every": 5, "metrics_every": 10, "eval_every": 10, "progress": False, "wandb": False},
        "checkpoint": {"every": 10},
    }
    (tmp / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {
        "name": "vs",
        "program": "experiments/train.py",
        "method": "grid",
        "parameters": {"config": {"value": str(tmp / "base.yaml")}, "embedding.init_std": {"values": [0.02, 0.2, 1.0]}},
    }
    (tmp / "s.yaml").write_text(yaml.safe_dump(sweep))
    assert sweep_main([str(tmp / "s.yaml"), f"--out_dir={tmp}"]) == 0
    return tmp / "vs"


def _decode(b64, dtype, shape):
    return np.frombuffer(base64.b64decode(b64), np.dtype(dtype).newbyteorder("<")).reshape(shape)


def test_cadence_and_rows():
    assert snapshots.snapshot_every(1000, 10, None) == 20  # the default run: 51 frames
    assert snapshots.snapshot_every(300, 10, None) == 10  # never off the log grid, never below log.every
    assert snapshots.snapshot_every(60, 5, None) == 5 and snapshots.snapshot_every(60, 5, 7) == 7
    assert snapshots.snapshot_every(60, 5, 0) == 0
    assert np.array_equal(snapshots.snapshot_rows(np.ones(4096)), np.arange(4096))
    counts = np.random.default_rng(1).zipf(1.3, 8192).astype(float)
    rows = snapshots.snapshot_rows(counts)
    top = set(np.argsort(-counts, kind="stable")[:1024].tolist())  # independent: the 1,024 most frequent
    assert len(rows) == len(set(rows.tolist())) == 4096 and top <= set(rows.tolist())
    assert np.array_equal(rows, np.sort(rows)) and np.array_equal(rows, snapshots.snapshot_rows(counts))


def test_frames_are_the_table_at_their_steps(tmp_path):
    """Through the loop's Run interface: each frame equals the table (float16) and the update counts of the
    checkpoint at the same step; a run directory's last frame is its embeddings.npy."""
    import jax

    from embjax.config import load_config
    from embjax.data.corpus import make_corpus
    from embjax.outputs.run import MemoryRun
    from embjax.runtime.signals import Signals
    from embjax.train.loop import Loop
    from embjax.train.step import Program

    cfg = load_config(None, ARGS + ["--checkpoint.every=10", f"--out_dir={tmp_path}"])
    P = Program(cfg, make_corpus(cfg))
    r = MemoryRun(cfg)
    with Signals() as sig:
        Loop(P, vmapped=False, signals=sig, show=False).train([r])
    assert sorted(r.snapshots) == [0, 5, 10, 15, 20, 25, 30]
    for s in (10, 20, 30):
        rows, E16, updates = r.snapshots[s]
        params = r.checkpoints[s]
        table = np.asarray(jax.jit(P.table)(params["params"]))
        assert E16.dtype == np.float16 and np.array_equal(E16, table[rows].astype(np.float16))
        assert np.array_equal(updates, np.asarray(params["row_updates"])[rows])
    assert r.snapshots[0][2].sum() == 0 and (r.snapshots[30][2] > 0).any()


def test_run_directory_snapshots_and_page(run):
    snap = snapshots.read(str(run))
    assert snap.steps.tolist() == [0, 5, 10, 15, 20, 25, 30] and snap.E.shape == (7, 64, 16)
    assert np.array_equal(snap.E[-1], np.load(run / "embeddings.npy").astype(np.float16))
    page = (run / "embedding_space.html").read_text()
    assert "<script src" not in page and "<link" not in page and "Plotly.react" in page  # nothing to fetch


def test_page_numbers_match_numpy_references(run):
    """The projection is the final frame's PCA (one basis for every frame); norms and the 5 nearest
    neighbours by cosine at every frame match a float64 brute force."""
    m = page_data([str(run)])["members"][0]
    snap = snapshots.read(str(run))
    E = snap.E.astype(np.float64)
    F, N, _ = E.shape
    xyz = _decode(m["coords"], "f4", (F, N, 3))
    X = E[-1] - E[-1].mean(0)
    evals, evecs = np.linalg.eigh(X.T @ X)
    top = evecs[:, ::-1][:, :3]
    signs = None
    for f in range(F):
        ref = (E[f] - E[-1].mean(0)) @ top  # the final frame's components, applied to frame f
        corr = np.array([np.corrcoef(ref[:, j], xyz[f, :, j])[0, 1] for j in range(3)])
        assert np.allclose(np.abs(corr), 1, atol=1e-5)
        signs = np.sign(corr) if signs is None else signs
        assert np.array_equal(np.sign(corr), signs)  # no axis flips between frames
    _, W = projection(snap.E[-1].astype(np.float32))
    assert np.allclose(xyz[2], (E[2] - E[-1].mean(0)) @ W, atol=1e-4)  # frame 2 in the final basis: no re-fit
    assert np.allclose(_decode(m["norms"], "f4", (F, N)), np.linalg.norm(E, axis=2), rtol=1e-5)
    nn, cos = _decode(m["nn"], "u2", (F, N, 5)), _decode(m["nncos"], "i2", (F, N, 5)) / 10000
    for f in (1, F - 1):
        U = E[f] / np.linalg.norm(E[f], axis=1, keepdims=True)
        G = U @ U.T
        np.fill_diagonal(G, -np.inf)
        ref = -np.sort(-G, axis=1)[:, :5]
        assert np.allclose(cos[f], ref, atol=1.5e-4)
        assert np.allclose(np.take_along_axis(G, nn[f].astype(int), 1), ref, atol=1e-3)
        exact_ids, _ = nearest_neighbors(snap.E[f].astype(np.float32), np.arange(N), k=5)  # the metrics' definition
        assert np.array_equal(nn[f], exact_ids)
    assert m["tokens"][:2] == ["t0_c0", "t1_c1"] and m["classes"][:2] == [0, 1]
    assert _decode(m["updated"], "u1", (F, N))[0].sum() == 0


def test_neighbours_ties_zero_rows_and_signs():
    E = np.array([[1, 0], [2, 0], [0, 1], [0, 0], [-1, 0]], np.float32)
    idx, cos = neighbours(E, k=2)
    assert idx[0].tolist() == [1, 2] and cos[0].tolist() == [1.0, 0.0]  # the tie (rows 2, 3 at 0) to the lower id
    assert idx[3].tolist() == [0, 1] and cos[3].tolist() == [0.0, 0.0]  # a zero row: cosine 0 with all
    rng = np.random.default_rng(0)
    A = rng.normal(size=(50, 4))
    mu, W = projection(A)
    proj = (A - mu) @ W
    assert (proj[np.abs(proj).argmax(0), range(3)] > 0).all()  # signs fixed: the largest coordinate positive
    _, W2 = projection(-A)  # flipping every row flips no axis of the view of -A's own frame
    assert ((-A - (-A).mean(0)) @ W2)[np.abs(proj).argmax(0), range(3)].min() > 0


def test_neighbour_ties_past_the_candidates_go_to_the_lower_id():
    rng = np.random.default_rng(3)
    E = rng.normal(size=(40, 6)).astype(np.float32)
    E[4:35] = np.eye(6, dtype=np.float32)[0]  # 31 equal unit rows: cosines exactly 1, in any summation order
    idx, cos = neighbours(E, k=5)
    assert idx[4].tolist() == [5, 6, 7, 8, 9] and idx[20].tolist() == [4, 5, 6, 7, 8]
    assert np.allclose(cos[20], 1, atol=1e-6)


@pytest.mark.slow
def test_sweep_page_and_the_view_command(sweep, tmp_path, capsys):
    members = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(str(sweep / "*" / "config.yaml")))
    assert len(members) == 3 and (sweep / "embedding_space.html").exists()
    for n in members:  # vmapped or in turn, each member's frames are its own table
        assert np.array_equal(
            snapshots.read(str(sweep / n)).E[-1], np.load(sweep / n / "embeddings.npy").astype(np.float16)
        )
    assert "embedding_space.html" in (sweep / "report.md").read_text()
    data = page_data([str(sweep / n) for n in members])
    assert [m["label"] for m in data["members"]] == ["σ=0.02", "σ=0.2", "σ=1"]  # as the sweep's progress bars
    out = tmp_path / "two.html"
    assert view_main([str(sweep), f"--members={members[0]},*init_std1", f"--out={out}"]) == 0
    blob = out.read_text().split('<script id="embjax-data" type="application/json">')[1].split("</script>")[0]
    assert [m["name"] for m in json.loads(blob)["members"]] == [members[0], members[2]]
    r = run_cli("experiments.view", str(tmp_path))  # no run here
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no run directory with embedding snapshots" in r.stderr
    assert view_main([str(sweep / members[0]), "--bogus=1"]) == 2
    assert view_main([str(sweep / members[0]), "--members=x"]) == 2  # --members is for a sweep
    assert view_main([str(sweep / members[0]), f"--out={tmp_path}/missing/x.html"]) == 2
    assert "allowed" in capsys.readouterr().err
    assert not glob.glob(f"{sweep}/{members[0]}/*.tmp*")


def test_snapshot_every_zero_writes_no_snapshots_or_page(tmp_path):
    assert train_main(ARGS + [f"--out_dir={tmp_path}", "--name=nosnap", "--log.snapshot_every=0"]) == 0
    assert (
        not (tmp_path / "nosnap" / "snapshots").exists() and not (tmp_path / "nosnap" / "embedding_space.html").exists()
    )
    assert view_main([str(tmp_path / "nosnap")]) == 2


def test_page_reaches_the_offline_wandb_run(run):
    files = glob.glob(str(run / "wandb" / "offline-run-*" / "*.wandb"))
    assert len(files) == 1
    items = {
        i.nested_key[0]: json.loads(i.value_json)
        for r in wandb_records(files[0])
        if r.WhichOneof("record_type") == "history"
        for i in r.history.item
        if list(i.nested_key[1:]) == ["_type"]
    }
    html_keys = [k for k, v in items.items() if v == "html-file"]
    assert html_keys == ["embedding_space"]
    logged = glob.glob(str(run / "wandb" / "offline-run-*" / "files" / "media" / "html" / "embedding_space_*.html"))
    assert len(logged) == 1 and open(logged[0]).read() == (run / "embedding_space.html").read_text()


# ---- in a real browser: Debian's chromium + chromedriver through Selenium ----


@pytest.fixture(scope="module")
def browser():
    from embjax.bench.browser import chromium_paths, headless_chromium

    if chromium_paths() is None:
        if os.environ.get("EMBJAX_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required here (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver (apt-get install chromium chromium-driver; .ci/run installs them)")
    driver = headless_chromium(console_log=True)
    yield driver
    driver.quit()


def _open(driver, path):
    driver.get(f"file://{path}")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script(
            "return !!window.embjaxViewer && document.querySelectorAll('.member .scatterlayer .point').length > 0"
        )
    )
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def _frame(driver):
    label = driver.find_element("id", "step-label").text  # "step 10 / 30 · frame 3 / 7"
    return int(label.split("frame ")[1].split(" /")[0]), int(label.split("step ")[1].split(" /")[0])


def _wait(driver, cond, timeout=10):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: cond())


@pytest.mark.slow
def test_browser_controls_play_and_step_exactly_one_frame(browser, run):
    _open(browser, run / "embedding_space.html")
    click = lambda i: browser.find_element("id", i).click()
    assert _frame(browser) == (1, 0)
    member = browser.find_element("id", "member-0")
    before, xs = (
        member.screenshot_as_png,
        browser.execute_script("return Array.from(document.getElementById('member-0').data[0].x)"),
    )
    click("speed")
    browser.find_element("css selector", "#speed option[value='4']").click()
    click("play")
    _wait(browser, lambda: _frame(browser)[0] >= 3)  # the clock moves on its own
    click("play")  # pause
    time.sleep(0.3)
    paused = _frame(browser)
    time.sleep(0.6)
    assert _frame(browser) == paused  # paused stays put
    assert member.screenshot_as_png != before  # the picture changed
    moved = browser.execute_script("return Array.from(document.getElementById('member-0').data[0].x)")
    assert len(moved) == 64 and np.abs(np.array(moved) - np.array(xs)).max() > 1e-3  # and the points moved
    click("first")
    _wait(browser, lambda: _frame(browser) == (1, 0))
    click("forward")
    assert _frame(browser) == (2, 5)
    click("forward")
    assert _frame(browser) == (3, 10)
    click("back")
    assert _frame(browser) == (2, 5)
    _wait(
        browser,
        lambda: "step 5)" in browser.execute_script("return document.getElementById('member-0').layout.title.text"),
    )
    assert browser.execute_script("return document.getElementById('slider').value") == "1"
    browser.find_element("css selector", "#colour option[value='updated']").click()
    assert "never updated" in browser.find_element("id", "legend").text
    click("three")  # the optional 3-D view (software WebGL in headless Chromium)
    _wait(
        browser,
        lambda: browser.execute_script("return document.getElementById('member-0').data[0].type") == "scatter3d",
    )
    click("forward")
    assert _frame(browser) == (3, 10)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.mark.slow
def test_browser_hover_shows_the_token_and_its_neighbours(browser, run):
    from selenium.webdriver.common.action_chains import ActionChains

    _open(browser, run / "embedding_space.html")
    browser.execute_script("window.embjaxViewer.go(6)")  # the last frame: the points spread out
    _wait(browser, lambda: _frame(browser)[0] == 7)
    # the most isolated point on screen (so "closest" hover picks it), in pixels from the plot's centre
    i, dx, dy = browser.execute_script("""
        const gd = document.getElementById('member-0'), fl = gd._fullLayout, t = gd.data[0];
        const px = Array.from(t.x, v => fl.xaxis.l2p(v) + fl._size.l);
        const py = Array.from(t.y, v => fl.yaxis.l2p(v) + fl._size.t);
        let best = 0, bestD = -1;
        for (let a = 0; a < px.length; a++) { let d = 1e9;
          for (let b = 0; b < px.length; b++) if (a !== b) d = Math.min(d, Math.hypot(px[a] - px[b], py[a] - py[b]));
          if (d > bestD) { bestD = d; best = a; } }
        const r = gd.getBoundingClientRect();
        return [best, px[best] - r.width / 2, py[best] - r.height / 2];""")
    ActionChains(browser).move_to_element_with_offset(
        browser.find_element("id", "member-0"), int(dx), int(dy)
    ).perform()
    token = f"t{i}_c"
    _wait(
        browser,
        lambda: (
            token
            in browser.execute_script(
                "const h = document.querySelector('#member-0 .hovertext'); return h ? h.textContent : ''"
            )
        ),
    )
    text = browser.execute_script("return document.querySelector('#member-0 .hovertext').textContent")
    assert f"id {i}," in text and "norm" in text and text.count("(") >= 5  # five neighbours with cosines


@pytest.mark.slow
def test_browser_sweep_page_shows_every_member_under_shared_controls(browser, sweep):
    _open(browser, sweep / "embedding_space.html")
    names = browser.execute_script("return Array.from(document.querySelectorAll('.member'), d => d.dataset.name)")
    assert names == sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(str(sweep / "*" / "config.yaml")))
    points = browser.execute_script("return Array.from(document.querySelectorAll('.member'), d => d.data[0].x.length)")
    assert points == [64, 64, 64]
    browser.find_element("id", "forward").click()
    browser.find_element("id", "forward").click()
    _wait(
        browser,
        lambda: all(
            "(step 10)" in t
            for t in browser.execute_script(
                "return Array.from(document.querySelectorAll('.member'), d => d.layout.title.text)"
            )
        ),
    )
    assert len(browser.find_elements("id", "play")) == 1  # one set of controls for all
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.mark.slow
def test_browser_tokens_are_shown_as_written(browser, run, tmp_path):
    """Token strings with quotes, tags, ampersands and a closing script tag reach the hover text literally, and a
    torn last line in metrics.jsonl (as a kill leaves it) does not stop the page."""
    copy = tmp_path / "r"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("wandb", "checkpoints"))
    lines = (copy / "tokens.tsv").read_text().splitlines()
    odd = ['say "hi"', "<b>bold</b>", "a&amp;b", "</script><script>alert(1)</script>"]
    for i, tok in enumerate(odd):
        cols = lines[1 + i].split("\t")
        lines[1 + i] = "\t".join([cols[0], tok, *cols[2:]])
    (copy / "tokens.tsv").write_text("\n".join(lines) + "\n")
    with open(copy / "metrics.jsonl", "a") as f:
        f.write('{"step": 35, "train/lo')
    assert view_main([str(copy)]) == 0
    _open(browser, copy / "embedding_space.html")
    for i, tok in enumerate(odd):
        browser.execute_script(f"Plotly.Fx.hover('member-0', [{{curveNumber: 0, pointNumber: {i}}}])")
        _wait(
            browser,
            lambda tok=tok: browser.execute_script(
                "const h = document.querySelector('#member-0 .hovertext'); return h ? h.textContent : ''"
            ).startswith(tok),
        )
    assert browser.execute_script("return document.querySelectorAll('script').length") == 3  # none injected


@pytest.mark.slow
def test_browser_highlights_a_benchmarks_words_and_their_partners(browser, run, tmp_path):
    """view --highlight=PAIRS: a colour mode for the benchmark's words (the words among the rows, no others), and a
    word's hover lists its benchmark partners with their cosine at that frame (NumPy on the snapshot's rows)."""
    from embjax.outputs import snapshots

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("t1_c1\tt5_c1\t9\nt1_c1\tt2_c2\t1\nt3_c3\tnosuchword\t5\n")
    copy = tmp_path / "r"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("wandb", "checkpoints"))
    assert view_main([str(copy), f"--highlight={pairs}"]) == 0
    _open(browser, copy / "embedding_space.html")
    browser.find_element("css selector", "#colour option[value='highlight']").click()
    assert "benchmark word" in browser.find_element("id", "legend").text
    colours = browser.execute_script("return document.getElementById('member-0').data[0].marker.color")
    assert [i for i, c in enumerate(colours) if c == "#d62728"] == [1, 2, 3, 5]
    snap = snapshots.read(str(copy))
    E = snap.E[-1].astype(np.float64)
    cos = lambda a, b: E[a] @ E[b] / np.linalg.norm(E[a]) / np.linalg.norm(E[b])
    browser.execute_script(f"window.embjaxViewer.go({len(snap.steps) - 1})")
    browser.execute_script("Plotly.Fx.hover('member-0', [{curveNumber: 0, pointNumber: 1}])")
    _wait(
        browser,
        lambda: (
            "pairs:"
            in browser.execute_script(
                "const h = document.querySelector('#member-0 .hovertext'); return h ? h.textContent : ''"
            )
        ),
    )
    text = browser.execute_script("return document.querySelector('#member-0 .hovertext').textContent")
    assert f"t5_c1 ({cos(1, 5):.2f})" in text and f"t2_c2 ({cos(1, 2):.2f})" in text, text
    assert "pairs: 4 of its 5 words shown (4 in the vocabulary)" in browser.find_element("id", "notes").text
