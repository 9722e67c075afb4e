"""Bad input exits 2 with one line naming the key, what was given and what is allowed; nothing is written."""

import dataclasses
import os

import numpy as np
import pytest

from embjax.cli import train_main
from embjax.config import from_dict, load_config, parse_overrides, to_dict
from tests.conftest import run_cli


def test_defaults_file_matches_dataclass_defaults_where_unset():
    import yaml

    from embjax.config import Config, flatten

    written = flatten(yaml.safe_load(open("experiments/configs/default.yaml")))
    loaded, defaults = flatten(to_dict(load_config("experiments/configs/default.yaml"))), flatten(to_dict(Config()))
    assert set(loaded) == set(defaults) and set(written) <= set(defaults)
    for key in defaults:  # every key: the file's value where the file sets it, else the dataclass default
        assert loaded[key] == written.get(key, defaults[key]), key
    assert from_dict(to_dict(load_config("experiments/configs/default.yaml"))) == load_config(
        "experiments/configs/default.yaml"
    )  # round trip


def test_overrides_forms():
    assert parse_overrides(
        ["--model.embed_dim=128", "model.tie_embeddings=false", "--log.tags=[a, b]", "--embedding.scale=sqrt_d"]
    ) == {"model.embed_dim": 128, "model.tie_embeddings": False, "log.tags": ["a", "b"], "embedding.scale": "sqrt_d"}
    cfg = load_config(None, ["--log.tags=[a, b]", "--embedding.scale=sqrt_d", "--model.logit_scale=0.5"])
    assert cfg.log.tags == ("a", "b") and cfg.embedding.scale == "sqrt_d" and cfg.model.logit_scale == 0.5


CASES = [
    (["--model.embed_dimm=8"], "model.embed_dimm", "did you mean model.embed_dim"),
    (["--modle.kind=mlp"], "modle", "unknown key"),
    (["--model.embed_dim=abc"], "model.embed_dim", "an integer"),
    (["--model.tie_embeddings=maybe"], "model.tie_embeddings", "true/false"),
    (["--model.embed_dim=0"], "model.embed_dim", "[1,"),
    (["--data.vocab_size=1"], "data.vocab_size", "[2,"),
    (["--steps=0"], "steps", "[1,"),
    (["--embedding.init_std=0"], "embedding.init_std", "(0,"),
    (["--embedding.init_std=-0.1"], "embedding.init_std", "(0,"),
    (["--model.kind=rnn"], "model.kind", "'transformer'"),
    (["--data.kind=images"], "data.kind", "'planted'"),
    (["--embedding.init=kaiming"], "embedding.init", "'xavier'"),
    (["--embedding.scale=big"], "embedding.scale", "sqrt_d"),
    (["--model.num_heads=3"], "model.num_heads", "divisor"),
    (["--data.kind=text"], "data.path", "JSON-lines"),
    (["--data.kind=text", "--data.path=/nonexistent/x.txt"], "data.path", "existing"),
    (["--embedding.init=pretrained"], "embedding.pretrained_path", ".npy"),
    (
        ["--embedding.init=pretrained", "--embedding.pretrained_path=/nonexistent.npy"],
        "embedding.pretrained_path",
        "existing",
    ),
    (["--config=/nonexistent.yaml"], "--config", "existing YAML"),
    (["oops"], "oops", "unexpected"),
]


@pytest.mark.parametrize("args,key,allowed", CASES, ids=[c[1] + ":" + c[0][0] for c in CASES])
def test_bad_input_exits_2_naming_key(args, key, allowed, tmp_path, capsys):
    out = tmp_path / "out"
    code = train_main(args + [f"--out_dir={out}", "--log.wandb=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert key in err and allowed in err, err
    assert not os.path.exists(out / "default"), "nothing may be written"


def test_malformed_yaml_and_non_mapping(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  embed_dim: [1, 2\n")
    assert train_main([f"--config={bad}", f"--out_dir={tmp_path}"]) == 2
    assert "malformed YAML at line" in capsys.readouterr().err
    bad.write_text("- a\n- b\n")
    assert train_main([f"--config={bad}", f"--out_dir={tmp_path}"]) == 2
    assert "YAML mapping" in capsys.readouterr().err


def test_pretrained_shape_mismatch_and_empty_text(tmp_path, capsys):
    np.save(tmp_path / "e.npy", np.zeros((10, 3), np.float32))
    assert (
        train_main(
            [f"--out_dir={tmp_path}/o", "--embedding.init=pretrained", f"--embedding.pretrained_path={tmp_path}/e.npy"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: embedding.pretrained_path: pretrained width: got 3 from '{tmp_path}/e.npy'; allowed: 64 (the run's "
        "width), or embedding.pretrained_project='pca' | 'truncate' to narrow a wider source"
    )
    (tmp_path / "empty.txt").write_text("  \n")
    assert (
        train_main(
            [
                f"--out_dir={tmp_path}/o",
                "--data.kind=text",
                f"--data.path={tmp_path}/empty.txt",
                "--data.tokenizer=byte",
                "--data.vocab_size=256",
            ]
        )
        == 2
    )
    assert "holds no text" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "default")


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert train_main([f"--out_dir={blocker}/sub", "--log.wandb=false"]) == 2
    assert "out_dir" in capsys.readouterr().err


def test_changed_config_on_existing_run_is_refused(tiny, tmp_path, capsys):
    assert train_main(tiny + ["--name=x", "--steps=10"]) == 0
    assert train_main(tiny + ["--name=x", "--steps=10", "--optim.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and "--overwrite=true" in err
    assert train_main(tiny + ["--name=x", "--steps=10", "--optim.lr=0.1", "--overwrite=true"]) == 0


def test_cli_subprocess_exit_code_and_no_traceback(tmp_path):
    p = run_cli("experiments.train", "--model.embed_dim=-4", f"--out_dir={tmp_path}")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip() == "error: model.embed_dim: got -4; allowed: a value in [1, 65536]"


def test_each_field_is_declared_once_and_everything_derives_from_it(monkeypatch, tmp_path):
    """Declare optim.b1 a per-member value in its field's metadata alone: it becomes part of `hp`,
    sweep members differing in it share a group, a resume still refuses it, its range still holds,
    and a compiled program that reads it from the config fails loudly instead of using one member's value."""
    import dataclasses
    import types

    import jax

    from embjax import config as C
    from embjax.data.corpus import make_corpus
    from embjax.outputs.rundir import check
    from embjax.sweep import group_by_shape
    from embjax.train.step import Program, hparams

    base = ["--data.vocab_size=40", "--data.num_classes=4", "--model.embed_dim=8", "--model.num_heads=2"]
    a, b = load_config(None, base + ["--optim.b1=0.8"]), load_config(None, base + ["--optim.b1=0.7"])
    assert "b1" not in hparams(a) and group_by_shape([a, b]) == [[0], [1]]
    field = {f.name: f for f in dataclasses.fields(C.OptimConfig)}["b1"]
    monkeypatch.setattr(field, "metadata", types.MappingProxyType({**field.metadata, "role": C.VALUE}))
    assert "optim.b1" in C.keys_with(C.VALUE) and "optim.b1" not in C.keys_with(resumable=True)
    assert hparams(a)["b1"] == 0.8 and C.values(b)["optim.b1"] == 0.7
    assert group_by_shape([a, b]) == [[0, 1]]
    stored = tmp_path / a.name
    stored.mkdir()
    (stored / "config.yaml").write_text(C.dump_yaml(a))  # a run made with b1 = 0.8 ...
    with pytest.raises(C.ConfigError, match="optim.b1: got 0.7"):  # ... refuses to resume with b1 = 0.7
        check(C.replace(b, out_dir=str(tmp_path)), overwrite=False)
    assert check(C.replace(a, out_dir=str(tmp_path), steps=2000), overwrite=False)  # steps may grow
    with pytest.raises(C.ConfigError, match=r"optim.b1: got 1.5; allowed: a value in \[0, 1\]"):
        load_config(None, ["--optim.b1=1.5"])
    program = Program(a, make_corpus(a))
    # Adam still reads o.b1 from the config: refused at trace time, not silently shared by every member
    with pytest.raises(TypeError, match="optim.b1 is a per-member value"):
        jax.eval_shape(lambda s: program.train_steps(s, program.corpus.tables, 1), program.abstract_state)


def test_programs_see_no_per_member_values():
    from embjax import config as C

    cfg = load_config(None, ["--optim.lr=0.1"])
    static = C.without_values(cfg)
    assert static.data == cfg.data and static.steps == cfg.steps
    values = set(C.keys_with(C.VALUE))
    for section in ("model", "embedding", "optim"):  # every other field of a section with value keys is kept
        for f in dataclasses.fields(getattr(cfg, section)):
            if f"{section}.{f.name}" not in values:
                assert getattr(getattr(static, section), f.name) == getattr(getattr(cfg, section), f.name), f.name
    for key in C.keys_with(C.VALUE):
        with pytest.raises(TypeError, match=key):
            float(C.get(static, key))
    assert C.values(cfg)["optim.embed_weight_decay"] == cfg.optim.weight_decay  # None falls back, as declared


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"JAX_COORDINATOR_ADDRESS": "localhost:1234"}, "JAX_NUM_PROCESSES: got None"),
        (
            {"JAX_COORDINATOR_ADDRESS": "localhost", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
            "JAX_COORDINATOR_ADDRESS: got 'localhost'; allowed: host:port",
        ),
        (
            {"JAX_COORDINATOR_ADDRESS": "localhost:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
            "JAX_PROCESS_ID: got '2'",
        ),
    ],
)
def test_bad_distributed_environment_is_one_line(tmp_path, env, needle):
    p = run_cli("experiments.train", f"--out_dir={tmp_path}", env=env)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and needle in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "default")
