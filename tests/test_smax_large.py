"""SMAX N-vs-N (issue 12's large agent counts on SMACv2): the scaled map, spawns inside
the walls, and E2GN2 PPO with kNN graphs that keep SMACv2's edge rule.

Needs jax and jaxmarl (``pip install -c constraints.txt -e '.[smax]'``); skipped without them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("jax")
pytest.importorskip("jaxmarl")

from eqmarl.config import ConfigError
from eqmarl.envs.smacv2 import make_smacv2
from eqmarl.envs.smax import MAP_SIZE, WALL_MARGIN, SmaxSMACv2, smax_map_size
from eqmarl.train.trainer import Trainer
from tests.conftest import TINY, compose


def test_map_size_rule() -> None:
    # SMACv2's map up to 10 units per side; beyond, the side grows with sqrt(N) (same density)
    assert smax_map_size(5, 5) == smax_map_size(10, 8) == MAP_SIZE
    assert smax_map_size(40, 40) == 64.0
    assert smax_map_size(1000, 10) == math.ceil(32 * math.sqrt(100))
    assert smax_map_size(300, 300, map_size=50.4) == 50.0  # an explicit side, SMAX's integer


def test_map_size_refused_where_it_does_not_apply() -> None:
    with pytest.raises(ValueError, match=r"env\.map_size=64.*backend=sc2"):
        make_smacv2("sc2", num_envs=1, seed=0, map_size=64.0)
    with pytest.raises(ConfigError, match=r"env\.map_size"):
        compose(["env=smax", "env.map_size=4"])
    with pytest.raises(ConfigError, match=r"env\.map_size"):
        compose(["env=smacv2", "env.map_size=64"])


@pytest.mark.slow
def test_n_vs_n_spawns_inside_the_walls() -> None:
    """60v60 on the scaled map, both start modes: every unit alive and inside the walls
    after SMAX's reset (whose push-apart of overlapping units would otherwise move dense
    spawns across a wall, where SMAX kills them) and after a first step."""
    n = 60
    env = SmaxSMACv2(8, n_units=n, n_enemies=n, start_positions="surrounded_and_reflect", p=0.5, seed=3)
    size = env.map_size
    assert size == smax_map_size(n, n) > MAP_SIZE
    for seed in range(3):
        obs = env.reset(seed)
        pos = np.asarray(env.smax_state().unit_positions)  # [E, 2N, 2]
        assert pos.min() >= WALL_MARGIN and pos.max() <= size - WALL_MARGIN
        assert bool(obs.graph.node_mask.all())
        env.step(torch.zeros(8, n, 4))  # allies stop; a unit may be shot, none may touch a wall
        after = np.asarray(env.smax_state().unit_positions)  # (the dead keep their position)
        assert after.min() > 0.0 and after.max() < size


@pytest.mark.slow
def test_e2gn2_knn_ppo_on_n_vs_n_keeps_the_edge_rule(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """PPO iterations of E2GN2 with kNN (k=8) on 30v30: the rollout's stored neighbour lists
    (which the update reuses) have no enemy-enemy edges and only live nodes."""
    cfg = compose(
        [
            *[o for o in TINY if not o.startswith(("train.num_envs", "train.total_env_steps", "algo.rollout_steps"))],
            "env=smax",
            "env.n_units=30",
            "env.n_enemies=30",
            "model.knn=8",
            "train.num_envs=2",
            "algo.rollout_steps=4",
            "train.total_env_steps=16",
            "train.eval_every=0",
        ]
    )
    tr = Trainer(cfg, tmp_path)
    ro = tr.rollout()
    g = ro.obs.graph
    assert g is not None and g.neighbors is not None and g.neighbor_valid is not None
    n = 30
    nbr, valid = g.neighbors, g.neighbor_valid  # [T, E, 2N, k]
    assert nbr.shape[-1] == 8
    enemy_rows = nbr[..., n:, :]
    assert not bool(((enemy_rows >= n) & valid[..., n:, :]).any()), "enemy-enemy edge"
    alive = g.node_mask
    sender_alive = torch.gather(alive.unsqueeze(-2).expand(*nbr.shape[:-1], 2 * n), -1, nbr)
    assert bool((sender_alive | ~valid).all())
    metrics = tr.update(ro)
    assert all(math.isfinite(v) for v in metrics.values())
