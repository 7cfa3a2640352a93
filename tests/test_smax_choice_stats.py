"""benchmarks/smax_choice_stats.py: the choice fractions count live agents only; where the
units that move go."""

from __future__ import annotations

import types
from pathlib import Path

import torch

from tests.conftest import load_benchmark


def test_choice_fractions_over_live_agents_and_windows() -> None:
    mod = load_benchmark("smax_choice_stats")
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


def test_move_direction_towards_the_nearest_live_enemy() -> None:
    from eqmarl.core.graph import EntityGraph

    mod = load_benchmark("smax_choice_stats")
    # nodes: agents a0 (0, 0), a1 (0, 4); enemies e0 (2, 0), e1 (0, 4.5) dead, e2 (0, 7)
    x = torch.tensor([[0.0, 0.0], [0.0, 4.0], [2.0, 0.0], [0.0, 4.5], [0.0, 7.0]]).view(1, 1, 5, 2)
    graph = EntityGraph(
        h=torch.zeros(1, 1, 5, 3),
        x=x,
        v=torch.zeros_like(x),
        node_mask=torch.tensor([True, True, True, False, True]).view(1, 1, 5),
        agent_node=torch.tensor([0, 1]),
        edge_rule="bipartite",
        node_group=torch.tensor([0, 0, 1, 1, 1]).view(1, 1, 5),
    )
    action = torch.zeros(1, 1, 2, 4)
    action[0, 0, 0, 1:3] = torch.tensor([2.0, 0.0])  # a0: straight at e0 (clipped to length 1)
    action[0, 0, 1, 1:3] = torch.tensor([0.0, -0.5])  # a1: straight away from e2 (e1 is dead)
    alive = torch.ones(1, 1, 2, dtype=torch.bool)
    out = mod.move_stats(action, graph, alive, alive)
    assert out["nearest_enemy"] == 2.5  # 2 (a0 -> e0) and 3 (a1 -> e2)
    assert abs(out["move_toward_enemy"]) < 1e-6  # +1 and -1
    assert out["move_length"] == 0.75
    # only the transitions that chose move count for the direction
    only_a0 = torch.tensor([[[True, False]]])
    assert abs(mod.move_stats(action, graph, alive, only_a0)["move_toward_enemy"] - 1.0) < 1e-6


def test_summary_means_per_mixed_entropy(tmp_path: Path) -> None:
    mod = load_benchmark("smax_choice_stats")
    import json

    def run(name: str, mode: str, seed: int, win: dict, move: dict) -> None:
        d = {"model": "e2gn2", "seed": seed, "mixed_entropy": mode, "win_rate_windows": win, "move_windows": move}
        (tmp_path / f"{name}.json").write_text(json.dumps(d))

    run("joint_s0", "joint", 0, {"0-20k": 0.2, "20-40k": 0.4}, {"0-20k": 0.5, "20-40k": 0.7})
    run("joint_s1", "joint", 1, {"0-20k": 0.4, "20-40k": None}, {"0-20k": 0.3, "20-40k": 0.1})
    run("per_part_s0", "per_part", 0, {"0-20k": 0.6, "20-40k": 0.8}, {"0-20k": 0.2, "20-40k": 0.3})
    out = mod.summary(tmp_path)
    assert set(out["runs"]) == {"joint_s0", "joint_s1", "per_part_s0"}
    joint = out["means"]["joint"]
    assert joint["seeds"] == [0, 1]
    assert abs(joint["win_rate_windows"]["0-20k"] - 0.3) < 1e-12
    assert joint["win_rate_windows"]["20-40k"] is None  # a run without that window
    assert abs(joint["move_windows"]["20-40k"] - 0.4) < 1e-12
    assert out["means"]["per_part"]["win_rate_windows"] == {"0-20k": 0.6, "20-40k": 0.8}
    assert json.loads((tmp_path / "summary.json").read_text()) == out
