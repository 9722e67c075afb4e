"""The findings as a W&B Report (`python -m experiments.findings --wandb-report`), built with wandb-workspaces.

One section per finding: its title and verdict, its claim, its checks as a markdown table, and a panel grid over
its sweep's W&B group: the finding's plot (logged as `findings/<name>` to the `<group>-findings` run) in a media
panel, and its runs' eval loss. The `<group>-findings` and `<group>-report` runs are linked by name, not replaced.
Written offline as findings_report.json beside findings.md, the same bytes for the same findings; saved (entity and
project filled, each run set's too) when W&B is online. Building and writing make no network call: run sets carry
no entity or project until the save (wandb-workspaces looks a run set's project up on the server when it has one).
"""

from __future__ import annotations

import json
import os

from ..outputs.dashboard import ENTITY, PROJECT, seeded
from ..outputs.sinks import write_atomic
from .verdict import Finding, evaluate

FILE = "findings_report.json"


def _checks_markdown(checks: list) -> str:
    rows = ["| check | criterion | mean [mean ± 2 s.e.; benchmark checks: the seeds × pairs interval] | verdict |"]
    rows += ["|---|---|---|---|"]
    cell = lambda s: str(s).replace("|", "\\|")
    rows += [f"| {cell(c.claim)} | {cell(c.criterion)} | {c.summary()} | **{c.verdict}** |" for c in checks]
    return "\n".join(rows)


def build_report(results: list[tuple[Finding, str, list[dict]]], header: str):
    """The Report (see the module docstring); results as findings.md takes them: (finding, sweep dir, runs)."""
    import wandb_workspaces.reports.v2 as wr

    blocks = []
    for i, (f, sweep_dir, runs) in enumerate(results, 1):
        verdict, checks, _ = evaluate(f, runs)
        group = os.path.basename(os.path.normpath(sweep_dir))
        blocks += [
            wr.H2(text=f"{i}. {f.title}: {verdict}"),
            wr.P(text=f"Claim. {f.claim}"),
            wr.P(text=f"Source. {f.source}"),
            wr.MarkdownBlock(text=_checks_markdown(checks)),
            wr.P(
                text=f"Runs: W&B group {group}; its plots in the run {group}-findings, its sweep's report in "
                f"the run {group}-report."
            ),  # fmt: skip
            wr.PanelGrid(
                runsets=[wr.Runset(name=group, filters=f"Group = '{group}'")],
                panels=[
                    wr.MediaBrowser(title=f.title, media_keys=[f"findings/{f.name}"]),
                    wr.LinePlot(title="eval loss", x="Step", y=["eval/loss"]),
                ],
            ),
        ]
    return wr.Report(entity=ENTITY, project=PROJECT, title="embjax findings", description=header, blocks=blocks)


def _spec(report) -> str:
    return json.dumps(
        json.loads(report._to_model().model_dump_json(by_alias=True, exclude_none=True)), indent=1, sort_keys=True
    )


def write_report(root: str, results: list[tuple[Finding, str, list[dict]]], header: str) -> str:
    """root/findings_report.json (atomic); returns its path."""
    import wandb_workspaces.reports.v2  # noqa: F401 - imported before the seeded ids: importing draws some too

    with seeded("findings"):
        text = _spec(build_report(results, header))
    path = os.path.join(root, FILE)
    write_atomic(path, lambda fh: fh.write(text + "\n"))
    return path


def read_report(path: str):
    """A written report back through wandb-workspaces' model."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces.reports.v2 import internal

    with open(path, encoding="utf-8") as fh:
        return wr.Report._from_model(internal.ReportViewspec.model_validate_json(fh.read()))


def save_report(path: str, entity: str, project: str) -> str:
    """Save a written report under entity/project (its run sets too); returns its URL."""
    report = read_report(path)
    report.entity, report.project = entity, project
    for block in report.blocks:
        for rs in getattr(block, "runsets", None) or ():
            rs.entity, rs.project = entity, project
    with seeded("findings"):
        report.save()
    return report.url
