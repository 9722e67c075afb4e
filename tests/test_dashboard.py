"""W&B dashboards as code: a real sweep's workspace spec read back through wandb-workspaces' own model, its panels
naming only keys the offline W&B runs recorded, the same bytes twice, no socket offline, and the save path against
a local stand-in of W&B's GraphQL API on the loopback interface; the findings as a W&B Report spec."""

import glob
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml
from conftest import ROOT, run_cli

from embjax.outputs.sinks import read_wandb_history

TINY_SWEEP = [
    "--steps=10",
    "--data.vocab_size=64",
    "--data.seq_len=16",
    "--data.batch_size=8",
    "--data.eval_batches=1",
    "--log.every=5",
    "--log.metrics_every=5",
    "--log.eval_every=5",
    "--checkpoint.every=0",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The quickstart sweep with two of its three σ (8 members: d × σ × tying; every key still swept), shortened,
    with offline W&B runs."""
    out = tmp_path_factory.mktemp("dash")
    spec = yaml.safe_load(open(os.path.join(ROOT, "sweeps", "quickstart.yaml")))
    spec["parameters"]["embedding.init_std"]["values"] = [0.02, 1.0]
    (out / "quickstart.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    r = run_cli("experiments.sweep", str(out / "quickstart.yaml"), f"--out_dir={out}", "--progress=false", *TINY_SWEEP)
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "quickstart"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    opened = []

    def refuse(*args, **kwargs):
        opened.append(args)
        raise AssertionError(f"a network connection was attempted offline: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return opened


def _panel_keys(workspace):
    """Every metric, media and table key a panel names, and the config keys of its columns and grouping."""
    metrics, configs = set(), set()
    name = lambda m: getattr(m, "name", m)  # read back, a key is a Metric(name=...)
    for section in workspace.sections:
        for p in section.panels:
            metrics |= {name(m) for m in getattr(p, "y", None) or []}
            metrics |= set(getattr(p, "media_keys", None) or [])
            if getattr(p, "table_name", None):
                metrics.add(p.table_name)
            for c in getattr(p, "columns", None) or []:
                (configs if type(c.metric).__name__ == "Config" else metrics).add(c.metric.name)
            if getattr(p, "groupby", None) is not None:
                configs.add(p.groupby.name)
    return metrics, configs


@pytest.mark.slow
def test_a_sweeps_workspace_reads_back_names_only_logged_keys_and_is_the_same_bytes(sweep, no_network):
    from embjax.outputs.dashboard import FILE, SECTIONS, read_spec, spec_json, write_workspace

    path = write_workspace(str(sweep))
    text = open(path).read()
    workspace = read_spec(path)
    assert spec_json(workspace) + "\n" == text  # the round trip through wandb-workspaces' own model is equal
    names = [s.name for s in workspace.sections]
    assert names == [s for s in SECTIONS if s in names] and {"Loss", "Norm growth", "Cosine structure"} <= set(names)
    assert "Word similarity and analogy" not in names  # the quickstart logs no benchmark: no empty section
    recorded = set()
    for f in glob.glob(str(sweep / "*" / "wandb" / "offline-run-*" / "run-*.wandb")):
        for row in read_wandb_history(f):
            recorded |= {k.rsplit("/_type", 1)[0] if k.endswith("/_type") else k for k in row}
    assert len(glob.glob(str(sweep / "*" / "wandb" / "offline-run-*" / "run-*.wandb"))) == 8
    metrics, configs = _panel_keys(workspace)
    assert metrics and metrics <= recorded, metrics - recorded
    assert {"embedding_space", "embeddings/all"} <= metrics  # the page and the projector table, as logged
    swept = {"model.embed_dim", "embedding.init_std", "model.tie_embeddings"}
    assert configs <= swept  # panels colour by swept keys only; runs are grouped by every swept key but seed
    assert [k.name for k in workspace.runset_settings.groupby] == ["model.embed_dim", "embedding.init_std",
                                                                   "model.tie_embeddings"]  # fmt: skip
    assert no_network == []
    assert write_workspace(str(sweep)) == str(sweep / FILE) and open(path).read() == text  # the same bytes again


@pytest.mark.slow
def test_the_dashboard_command_offline_in_a_fresh_process_writes_the_same_bytes(sweep):
    before = open(sweep / "wandb_workspace.json").read() if (sweep / "wandb_workspace.json").exists() else None
    r = run_cli("experiments.dashboard", str(sweep), env={"WANDB_MODE": "offline"})
    assert r.returncode == 0 and "not saved" in r.stdout, r.stderr
    text = open(sweep / "wandb_workspace.json").read()
    if before is not None:
        assert text == before
    r = run_cli("experiments.dashboard", str(sweep), env={"WANDB_MODE": "offline"})
    assert open(sweep / "wandb_workspace.json").read() == text


class _StandIn(BaseHTTPRequestHandler):
    """W&B's GraphQL API as far as a workspace save uses it: the viewer query and upsertView."""

    posted: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:  # wandb's own telemetry (protobuf): acknowledged, ignored
            body = {}
        q, variables = body.get("query", ""), body.get("variables") or {}
        if "upsertView" in q:
            self.posted.append(variables)
            data = {"upsertView": {"view": {"id": "VIEW1", "name": variables.get("name") or "v"}, "inserted": True}}
        elif "viewer" in q:
            data = {"viewer": {"id": "u", "entity": "me", "username": "me", "flags": "{}", "teams": {"edges": []}}}
        else:
            data = {}
        out = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.mark.slow
def test_saving_posts_the_spec_to_a_wandb_api_and_prints_the_url(sweep):
    """The save path for real, against a stand-in of W&B's API on 127.0.0.1 (WANDB_BASE_URL): the upsertView
    mutation carries the written spec with the entity and project given; the command prints the workspace URL."""
    server = HTTPServer(("127.0.0.1", 0), _StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _StandIn.posted = []
    env = {"WANDB_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}", "WANDB_API_KEY": "x" * 40}
    env["WANDB_MODE"] = "online"
    try:
        r = run_cli("experiments.dashboard", str(sweep), "--entity=me", "--project=proj", env=env, timeout=120)
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    assert f"workspace: http://127.0.0.1:{server.server_address[1]}/me/proj?nw=" in r.stdout
    (posted,) = _StandIn.posted
    assert posted["entityName"] == "me" and posted["projectName"] == "proj"
    written = json.load(open(sweep / "wandb_workspace.json"))
    assert json.loads(posted["spec"])["section"]["panelBankConfig"]["sections"][0]["name"] == "Loss"
    sent = [s["name"] for s in json.loads(posted["spec"])["section"]["panelBankConfig"]["sections"]]
    assert sent == [s["name"] for s in written["spec"]["section"]["panelBankConfig"]["sections"]]


def test_no_api_key_is_one_line_exit_2_after_the_spec_is_written(tmp_path):
    """A sweep directory of hand-written files (no training): offline spec first, then the online error."""
    d = tmp_path / "s"
    (d / "m0").mkdir(parents=True)
    (d / "sweep.yaml").write_text("name: s\nmethod: grid\nparameters:\n  seed: {values: [0, 1]}\n")
    (d / "m0" / "config.yaml").write_text("seed: 0\nlog: {project: p}\n")
    (d / "m0" / "summary.json").write_text('{"status": "finished"}')
    (d / "m0" / "metrics.jsonl").write_text('{"step": 0, "train/loss": 1.0}\n')
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "", "WANDB_BASE_URL": "http://127.0.0.1:9"}
    r = run_cli("experiments.dashboard", str(d), env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "was not saved to W&B" in r.stderr and (d / "wandb_workspace.json").exists()
    spec = json.load(open(d / "wandb_workspace.json"))
    assert [s["name"] for s in spec["spec"]["section"]["panelBankConfig"]["sections"]] == ["Loss"]


def test_the_findings_report_spec_reads_back_and_links_the_findings_runs(tmp_path, no_network):
    """A findings result of synthetic runs: one section per finding (verdict, claim, checks, panel grid over its W&B
    group, its plot key), the same bytes twice, read back through wandb-workspaces' model."""
    from test_findings_text import test_width_small_data_text

    from embjax.findings import BY_NAME
    from embjax.findings.runs import load
    from embjax.findings.wandb_report import _spec, read_report, write_report

    root = tmp_path / "text_width"
    root.mkdir()
    test_width_small_data_text(root, 1.0, 0.01, "reproduced")  # writes the runs (and checks their verdict)
    results = [(BY_NAME["width_small_data_text"], str(root), load(str(root)))]
    path = write_report(str(tmp_path), results, "made by a test")
    text = open(path).read()
    assert write_report(str(tmp_path), results, "made by a test") == path and open(path).read() == text
    report = read_report(path)
    assert _spec(report) + "\n" == text
    kinds = [type(b).__name__ for b in report.blocks]
    assert kinds == ["H2", "P", "P", "MarkdownBlock", "P", "PanelGrid"]
    assert report.blocks[0].text == "1. Bigger d with little data, on a finite real corpus: reproduced"
    grid = report.blocks[-1]
    assert "Group" in str(grid.runsets[0].filters) and "'text_width'" in str(grid.runsets[0].filters)
    assert not grid.runsets[0].project and not grid.runsets[0].entity  # no server lookup until the save
    assert grid.panels[0].media_keys == ["findings/width_small_data_text"]
    assert "text_width-findings" in report.blocks[4].text and "text_width-report" in report.blocks[4].text
    assert no_network == []
