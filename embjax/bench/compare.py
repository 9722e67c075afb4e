"""Case `compare`: the train spec against the PyTorch reference, alternating."""

from __future__ import annotations

import json
import subprocess

import numpy as np

from .common import run_self


def bench_peer(python: str, peer: str, steps: int = 20, **_) -> dict:
    """Run the PyTorch reference script `peer` (it prints a JSON line with tokens_per_s) with another interpreter."""
    out = subprocess.run([python, peer, f"--steps={steps}"], capture_output=True, text=True, check=True)
    return {"case": "peer", **json.loads(out.stdout.strip().splitlines()[-1])}


def bench_compare(peer_python: str, peer: str, steps: int, per_dispatch: int, rounds: int) -> list[dict]:
    """The train spec in embjax and in the PyTorch reference, alternating rounds so drift on a shared machine
    hits both sides; the last row has the medians and their ratio."""
    rows, jax_rates, torch_rates = [], [], []
    for r in range(rounds):
        j = run_self(["--case=train", f"--steps={steps}", f"--per-dispatch={per_dispatch}"])
        t = bench_peer(peer_python, peer, steps)
        jax_rates.append(j["tokens_per_s"])
        torch_rates.append(t["tokens_per_s"])
        rows.append(
            {
                "round": r,
                "embjax_tokens_per_s": j["tokens_per_s"],
                "torch_tokens_per_s": t["tokens_per_s"],
                "mfu": j["mfu"],
                # host-side figures of embjax's timed steps, which another process's load on the machine does not
                # inflate (see bench_train)
                "embjax_dispatch_ms": j.get("dispatch_ms"),
                "embjax_cpu_ms_per_step": j.get("cpu_ms_per_step"),
            }
        )
    return rows + [
        {
            "case": "compare",
            "embjax_median": float(np.median(jax_rates)),
            "torch_median": float(np.median(torch_rates)),
            "ratio": float(np.median(jax_rates) / np.median(torch_rates)),
        }
    ]
