"""The package: pyproject.toml declares exactly what requirements.txt pins, and the `embjax` console script."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT, TINY


def _pins() -> dict[str, str]:
    """requirements.txt: {package: pinned version} (comments and the `-e .` line left out)."""
    pins = {}
    for line in open(os.path.join(ROOT, "requirements.txt")):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.txt: {line!r} is not pinned with =="
        pins[canonicalize_name(name)] = version.strip()
    return pins


def _project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def test_pyproject_declares_exactly_what_requirements_pins():
    project, pins = _project(), _pins()
    declared = [Requirement(r) for r in project["dependencies"]]
    extras = {k: [Requirement(r) for r in v] for k, v in project["optional-dependencies"].items()}
    everything = declared + [r for k, rs in extras.items() if k != "all" for r in rs]
    names = [canonicalize_name(r.name) for r in everything]
    assert len(names) == len(set(names)), "a package declared twice"
    assert set(names) == set(pins), (sorted(set(pins) - set(names)), sorted(set(names) - set(pins)))
    for r in everything:  # a compatible release (or exactly) of the pinned version, nothing looser
        assert len(r.specifier) == 1 and next(iter(r.specifier)).operator in ("~=", "=="), r
        assert r.specifier.contains(pins[canonicalize_name(r.name)]), (r, pins[canonicalize_name(r.name)])
    # [all] is every extra, so `pip install .[all]` installs the whole pinned set
    assert sorted(map(str, extras["all"])) == sorted(str(r) for k, rs in extras.items() if k != "all" for r in rs)


def test_the_embjax_command_is_installed_and_dispatches():
    from embjax import commands

    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts") if e.name == "embjax"}
    assert scripts == {"embjax": "embjax.commands:main"} == {"embjax": _project()["scripts"]["embjax"]}
    # every command is the function its experiments module runs
    modules = {f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments")) if f.endswith(".py")} - {"__init__"}
    assert set(commands.COMMANDS) == modules
    for name, fn in commands.COMMANDS.items():
        src = open(os.path.join(ROOT, "experiments", f"{name}.py")).read()
        assert re.search(rf"\bimport {fn.__name__}\b", src), (name, fn)


def test_the_embjax_command_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from embjax.commands import main

    assert main(["nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "error: command: got 'nope'; allowed: "
        "train | sweep | prepare | findings | report | view | inspect | baseline | dashboard | bench"
    )
    assert main([]) == 2 and "usage: embjax" in capsys.readouterr().out
    assert main(["train", *TINY, f"--out_dir={tmp_path}", "--model.embed_dim=-4"]) == 2
    assert "model.embed_dim" in capsys.readouterr().err and not os.listdir(tmp_path)


@pytest.mark.slow
def test_the_console_script_runs_as_a_process(tmp_path):
    exe = shutil.which("embjax") or os.path.join(os.path.dirname(sys.executable), "embjax")
    assert os.path.exists(exe), "the embjax console script is not installed (pip install -e . / .[all])"
    r = subprocess.run(
        [
            exe,
            "train",
            *TINY,
            f"--out_dir={tmp_path}",
            "--log.wandb=false",
            "--steps=5",
            "--checkpoint.every=0",
            "--log.snapshot_every=0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "default" / "summary.json").exists()
