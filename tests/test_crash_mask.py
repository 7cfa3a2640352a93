"""Transitions of a crashed game (``info['crashed']``) are not learned from, and restarts
are counted (the StarCraft II backend reports both; any env may)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch

from eqmarl.train.trainer import Trainer
from tests.conftest import TINY, compose


def _crashing(env, crash_env: int, every: int):
    """Wrap ``env.step``: env ``crash_env`` reports a crash every ``every`` steps."""
    step, t = env.step, [0]

    def crashing_step(actions):
        res = step(actions)
        t[0] += 1
        crashed = torch.zeros(env.num_envs)
        if t[0] % every == 0:
            crashed[crash_env] = 1.0
        res.info["crashed"] = crashed
        res.info["restarts"] = crashed.clone()
        return res

    env.step = crashing_step


def test_crashed_transitions_get_no_gradient_and_restarts_are_counted(tmp_path: Path) -> None:
    cfg = compose([*TINY, "model=mlp", "algo.rollout_steps=10"])
    tr = Trainer(cfg, tmp_path)
    _crashing(tr.env, crash_env=2, every=3)
    ro = tr.rollout()
    assert ro.valid is not None and ro.env_restarts == 3.0
    crashed = ro.valid[:, :, 0] == 0
    assert crashed.sum() == 3 and crashed[:, 2].sum() == 3 and crashed[2, 2] and crashed[5, 2]

    # whatever the crashed transitions hold, the update ends at the same parameters
    wild = dataclasses.replace(
        ro,
        advantages=ro.advantages.masked_fill(crashed.unsqueeze(-1), 1e4),
        returns=ro.returns.masked_fill(crashed.unsqueeze(-1), -1e4),
    )
    state = copy.deepcopy(tr.state_dict())
    params = []
    for r in (ro, wild):
        tr.load_state_dict(copy.deepcopy(state))
        torch.manual_seed(5)
        tr.update(r)
        params.append(torch.cat([p.detach().flatten() for p in tr.policy.parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)

    # without the mask those transitions would move the parameters
    tr.load_state_dict(copy.deepcopy(state))
    torch.manual_seed(5)
    tr.update(dataclasses.replace(wild, valid=None))
    moved = torch.cat([p.detach().flatten() for p in tr.policy.parameters()])
    assert not torch.equal(moved, params[0])
