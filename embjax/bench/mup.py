"""Case `mup`: the train spec under SP and under μP, alternating."""

from __future__ import annotations

from .common import alternate


def bench_mup(steps: int, per_dispatch: int, rounds: int, sets: list[str] = ()) -> list[dict]:
    """The train spec under SP and under μP (d₀ = d / 4, so every μP multiplier is active)."""
    return alternate(
        "mup",
        {v: [f"model.parametrization={v}", "model.base_width=64"] for v in ("sp", "mup")},
        steps,
        per_dispatch,
        rounds,
        sets,
    )
