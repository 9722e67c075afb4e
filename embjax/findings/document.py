"""The findings' documents: findings.md (verdicts, checks, tables, plots) and a W&B run per sweep group."""

from __future__ import annotations

import os
from collections import defaultdict

from ..outputs.runs import get
from .learned import statement
from .verdict import Finding, evaluate, stage_file

LEARNED = (
    "- **Tables against a random one** (computed from the saved tables, the best-eval checkpoint's where kept: "
    "of every arm's tables, the one whose seeds × pairs interval has the highest lower end, against a random "
    "table's band, 200 draws of N(0, 1) rows on the same vocabulary, mean [± 2 sd]; clearly above when the "
    "interval's lower end is above the band's upper end). "
)


def _protocol_facts(runs: list[dict]) -> str:
    if not runs:
        return "no runs found"
    steps = sorted({int(get(r["cfg"], "steps")) for r in runs})
    seeds = sorted({int(get(r["cfg"], "seed") or 0) for r in runs})
    status = defaultdict(int)
    for r in runs:
        status[r["summary"].get("status", "?")] += 1
    return (
        f"{len(runs)} members ({', '.join(f'{n} {k}' for k, n in sorted(status.items()))}), "
        f"steps {', '.join(map(str, steps))}, seeds {seeds}"
    )


def _link(i: int, f: Finding, verdict: str) -> str:
    return f"[{verdict}](#{i}-{f.name.replace('_', '-')})"


def _summary(results: list[tuple[Finding, str, list[dict]]], evaluated: dict) -> list[str]:
    """The summary table: a claim per row, its verdict on the planted corpus and on real text (a finding and its
    real-text sibling on one row), and where they disagree, the real-text checks that did not reproduce."""
    by_name = {f.name: f for f, _, _ in results}
    siblings = {f.sibling_of: f for f in by_name.values() if f.sibling_of}
    out = ["| # | finding | planted corpus | real text | where they differ |", "|---|---|---|---|---|"]
    for f, _, _ in results:
        if f.sibling_of in by_name:
            continue  # on its planted finding's row
        i, (verdict, _, _) = evaluated[f.name]
        planted = f.sibling_of is None and f.corpus == "planted"
        twin = siblings.get(f.name) if planted else None
        cells = [_link(i, f, verdict), "—"] if planted else ["—", _link(i, f, verdict)]
        reading = ""
        if twin is not None:
            j, (v2, checks, _) = evaluated[twin.name]
            cells[1] = _link(j, twin, v2)
            reading = _differ(checks) if v2 != verdict else ""
        out.append(_row([str(i), f.title, *cells, reading]))
    return out


def _differ(checks: list) -> str:
    """The real-text checks that did not reproduce, each claim cut at its first clause (the first two)."""
    off = [f"{c.claim.split(':')[0].split(' (')[0]}: {c.verdict}" for c in checks if c.verdict != "reproduced"]
    return "real text: " + ("; ".join(off[:2]) + ("; …" if len(off) > 2 else "") if off else "every check reproduced")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def write_markdown(root: str, results: list[tuple[Finding, str, list[dict]]], header: list[str]) -> str:
    """findings.md (and one PNG per finding with a plot) in root; results: (finding, its sweep dir, its runs)."""
    import matplotlib

    matplotlib.use("Agg")
    evaluated = {f.name: (i, evaluate(f, runs)) for i, (f, _, runs) in enumerate(results, 1)}
    scored: dict = {}  # the bootstraps of arms that several findings share, computed once
    lines = ["# Findings", "", *header, "", *_summary(results, evaluated)]
    body: list[str] = []
    for i, (f, sweep_dir, runs) in enumerate(results, 1):
        verdict, checks, (cols, rows) = evaluated[f.name][1]
        stages = [*f.also, *((f.needs,) if f.needs else ()), *f.references]
        learned = statement(runs, scored) if f.corpus == "real text" else None
        body += [
            "",
            f"## {i}. {f.name.replace('_', '-')}",
            "",
            f"**{f.title}: {verdict}.**",
            "",
            f"- **Claim.** {f.claim}",
            f"- **Source.** {f.source}",
            f"- **Protocol.** {f.protocol} "
            f"Sweep {', '.join(f'`{stage_file(n)}`' for n in (f.sweep, *stages))}; "
            f"ran: {_protocol_facts(runs)}; runs in `{sweep_dir}`{' and beside it' if stages else ''}.",
            *([f"- **Audit.** {f.audit}"] if f.audit else []),
            *([f"- **Power** (from a pilot, not the final runs). {f.power}"] if f.power else []),
            *([LEARNED + learned] if learned else []),
            f"- **Pass criterion** (fixed before the run). {f.criterion} A check is reproduced when the band (a "
            "benchmark check: its interval over seeds and pairs) lies inside its interval, not reproduced when it "
            "lies outside, inconclusive when it straddles an edge (a benchmark check then names the noise that "
            "dominated).",
            "",
            "| check | criterion | mean [mean ± 2 s.e.; benchmark checks: the seeds × pairs interval] | verdict |",
            "|---|---|---|---|",
        ]
        body += [_row([c.claim, c.criterion, c.summary(), c.verdict]) for c in checks]
        body += ["", _row(cols), "|" + "---|" * len(cols)] + [_row(r) for r in rows]
        if f.plot is not None and runs and f.plot(runs, os.path.join(root, f"{f.name}.png")):
            body += ["", f"![{f.title}]({f.name}.png)"]
    path = os.path.join(root, "findings.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines + body) + "\n")
    return path


def log_to_wandb(root: str, results: list[tuple[Finding, str, list[dict]]]) -> None:
    """A report run in each sweep's W&B group: the verdicts (summary) and the findings' plots."""
    from ..outputs.sinks import WandbSink

    by_sweep: dict[str, list[tuple[Finding, list[dict]]]] = defaultdict(list)
    for f, sweep_dir, runs in results:
        if runs and get(runs[0]["cfg"], "log.wandb"):
            by_sweep[os.path.basename(sweep_dir)].append((f, runs))
    for group, items in by_sweep.items():
        log = items[0][1][0]["cfg"].get("log", {})
        sink = WandbSink(
            os.path.join(root, group),
            {"findings_for": group},
            project=log.get("project", "embjax"),
            name=f"{group}-findings",
            mode=log.get("mode", "offline"),
            entity=log.get("entity"),
            group=group,
            tags=("findings",),
            init_timeout=float(log.get("init_timeout", 30)),
        )
        sink.log_rich(
            0,
            {
                f"findings/{f.name}": {"kind": "image", "path": os.path.join(root, f"{f.name}.png")}
                for f, _ in items
                if os.path.exists(os.path.join(root, f"{f.name}.png"))
            },
        )
        sink.summary({f"finding/{f.name}": evaluate(f, runs)[0] for f, runs in items})
        sink.close("finished")
