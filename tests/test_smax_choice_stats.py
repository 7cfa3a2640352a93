"""benchmarks/smax_choice_stats.py: the choice fractions count live agents only."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("smax_choice_stats", ROOT / "benchmarks" / "smax_choice_stats.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_choice_fractions_over_live_agents_and_windows() -> None:
    mod = _module()
    # [T=1, E=1, A=4] agents, mask layout: 3 choices, 4 compass moves, 2 targets
    mask = torch.zeros(1, 1, 4, 9, dtype=torch.bool)
    mask[..., 0] = True  # stop always allowed
    mask[0, 0, 0, [1, 2]] = True  # agent 0: may move and attack
    mask[0, 0, 1, 1] = True  # agent 1: may move only
    mask[0, 0, 2, [1, 2]] = True  # agent 2: may move and attack
    # agent 3: dead (stop only); its choice (attack) must not count
    choice = torch.tensor([2, 1, 0, 2], dtype=torch.float32)
    action = torch.zeros(1, 1, 4, 4)
    action[..., 0] = choice
    rollout = types.SimpleNamespace(
        action=action,
        obs=types.SimpleNamespace(action_mask=mask),
        episode_wins=torch.tensor([1.0, 0.0, 1.0, 1.0]),
        episode_returns=torch.tensor([1.0, 2.0]),
    )
    row = mod.choice_stats(rollout)
    assert row["alive"] == 0.75
    assert (row["stop"], row["move"], row["attack"]) == (1 / 3, 1 / 3, 1 / 3)
    assert row["attack_avail"] == 2 / 3
    assert row["attack_when_avail"] == 0.5 and row["stop_when_avail"] == 0.5
    assert row["win_rate"] == 0.75 and row["return"] == 1.5

    rows = [{"env_steps": s, "win_rate": w} for s, w in ((10_000, 0.0), (20_000, 1.0), (30_000, float("nan")))]
    assert mod.windows(rows) == {"0-20k": 0.5, "20-40k": None}
