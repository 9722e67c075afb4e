"""The README's and docs/'s shell blocks against the CLI: every `python -m experiments.X` / `embjax X` they show
names a real command, only flags that command's --help lists, only config keys embjax/config.py declares, and
repository files that exist; so the docs cannot drift from the CLI. The README stays a front door (<= 200 lines)."""

import contextlib
import glob
import io
import os
import re
import shlex

from tests.conftest import ROOT

OVERRIDES = {"train", "sweep", "prepare", "findings", "baseline"}  # the commands that take --section.key=value


def doc_files() -> list[str]:
    return [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def shell_commands(path: str) -> list[tuple[str, list[str]]]:
    """(where, argv after the command name) for every embjax command in the file's bash/sh code blocks."""
    out, text = [], open(path, encoding="utf-8").read()
    for block in re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            segment: list[str] = []
            for w in [*words, "&&"]:
                if w in ("&&", ";", "|", "||"):
                    argv = segment[2:] if segment[:2] == ["python", "-m"] else segment
                    if argv and (argv[0].startswith("experiments.") and "peers" not in argv[0] or argv[0] == "embjax"):
                        name = argv[0].removeprefix("experiments.") if argv[0] != "embjax" else argv[1]
                        rest = argv[1:] if argv[0] != "embjax" else argv[2:]
                        out.append((f"{os.path.relpath(path, ROOT)}: {line.strip()}", [name, *rest]))
                    segment = []
                else:
                    segment.append(w)
    return out


def flags_of(name: str) -> set[str]:
    """The flags a command's --help lists (bench's argparse options, every other command's `flags:` line)."""
    from embjax.commands import COMMANDS

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        COMMANDS[name](["--help"])
    text = buf.getvalue()
    listed = re.search(r"^flags: (.*)$", text, re.M)
    found = listed.group(1).split() if listed else re.findall(r"(--[\w-]+)", text)
    return {f.removeprefix("--") for f in found} | {"help"}


def problems(commands: list[tuple[str, list[str]]]) -> list[str]:
    """What in the commands names no command, no flag of its command, no config key or no repository file."""
    from embjax import config as C
    from embjax.commands import COMMANDS

    keys, flags, bad = set(C.keys_with()), {}, []
    for where, (name, *args) in commands:
        if name not in COMMANDS:
            bad.append(f"{where}: no command {name!r}")
            continue
        flags.setdefault(name, flags_of(name))
        for a in args:
            if a.startswith("--"):
                key = a[2:].split("=", 1)[0]
                if key in flags[name] or (name in OVERRIDES and key in keys):
                    continue
                if "." in key and name in OVERRIDES:
                    bad.append(f"{where}: {key!r} is no config key")
                else:
                    bad.append(f"{where}: {a!r} is no flag of {name} ({' '.join(sorted(flags[name]))})")
            elif re.match(r"^(sweeps|experiments)/\S+\.ya?ml$", a) and not os.path.exists(os.path.join(ROOT, a)):
                bad.append(f"{where}: {a} does not exist")
    return bad


def test_every_command_in_the_docs_names_real_flags_keys_and_files():
    commands = [c for path in doc_files() for c in shell_commands(path)]
    assert len(commands) > 20  # the README's and the manuals' examples are all found
    assert problems(commands) == []


def test_the_check_catches_a_command_a_flag_a_key_and_a_file_that_do_not_exist(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\npython -m experiments.train --model.embed_dims=3 && embjax sweep sweeps/nope.yaml\n"
        "python -m experiments.view runs/x --colour=red   # a comment\npython -m experiments.plot x\n```\n"
    )
    found = shell_commands(str(page))
    assert [argv for _, argv in found] == [
        ["train", "--model.embed_dims=3"],
        ["sweep", "sweeps/nope.yaml"],
        ["view", "runs/x", "--colour=red"],
        ["plot", "x"],
    ]
    bad = "\n".join(problems(found))
    assert "'model.embed_dims' is no config key" in bad and "sweeps/nope.yaml does not exist" in bad
    assert "'--colour=red' is no flag of view" in bad and "no command 'plot'" in bad
    assert problems([("ok", ["view", "runs/x", "--highlight=simlex999"])]) == []


def test_the_readme_is_a_front_door():
    lines = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()
    assert len(lines) <= 200
    text = "\n".join(lines)
    assert "pip install -r requirements.txt && python -m experiments.sweep sweeps/quickstart.yaml" in text
    assert "\npytest -q " in text
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", text):  # every manual it links exists
        assert os.path.exists(os.path.join(ROOT, link)), link


def test_every_relative_link_in_the_readme_and_docs_resolves():
    bad = []
    for path in doc_files():
        text = open(path, encoding="utf-8").read()
        for link in re.findall(r"\]\(([\w./-]+\.(?:md|png|yaml|py))(?:#[\w-]*)?\)", text):
            if not os.path.exists(os.path.join(os.path.dirname(path), link)):
                bad.append(f"{os.path.relpath(path, ROOT)}: {link}")
    assert bad == []
