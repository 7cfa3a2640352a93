"""``model.eqc`` and ``algo.other_play`` in training: config checks, wiring, Other-Play's bookkeeping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eqmarl.config import ConfigError
from eqmarl.core.env import Observation
from eqmarl.envs.lever import LeverGame
from eqmarl.models.policy import Policy
from eqmarl.train.checkpoint import load_checkpoint
from eqmarl.train.trainer import Trainer
from eqmarl.wrappers.eqc import EQC
from eqmarl.wrappers.other_play import OtherPlay
from tests.conftest import TINY, compose

HANABI_TINY = [o for o in TINY if not o.startswith("train.total_env_steps")] + [
    "env=hanabi_3c",
    "model=mlp",
    "train.total_env_steps=400",
]


# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["env=lever", "model=mlp", "model.eqc=C5"], "model.eqc"),  # C5 does not act on the nine 1.0-levers
        (["env=lever", "model=mlp", "algo.other_play=X9"], "algo.other_play"),
        (["model.eqc=C5"], "model.eqc"),  # mpe has no finite symmetry group
        (["env=hanabi", "model=mlp", "model.eqc=C3"], "model.eqc"),  # full Hanabi has 5 colours
        (["env=hanabi_3c", "model=mlp", "model.eqc=D10"], "model.eqc"),
        (["env=hanabi", "model=mlp", "env.preset=huge"], "env.preset"),
        (["env=hanabi", "model=mlp", "env.colors=7"], "env.colors"),
        (["env=hanabi", "model=mlp", "env.backend=jax"], "env.backend"),
        (["env=lever", "model=mlp", "model.eqc_average=max"], "model.eqc_average"),
        (["env=lever", "model=mlp", "model.orbit_init=C5"], "model.orbit_init"),
        (["env=lever", "model=mlp", "model.eqc=S9"], "model.eqc"),  # 362,880 copies: too many for EQC
        (["env=lever", "model=mlp", "env.payoffs=[1.0]"], "env.payoffs"),
        (["env=lever"], "model.name"),  # the default e2gn2 needs an entity graph
        (["env=hanabi_3c", "model=gnn"], "model.name"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    assert err.value.key == key
    assert "allowed" in str(err.value)


def test_good_group_names_compose() -> None:
    assert compose(["env=lever", "model=mlp", "model.eqc=C9", "algo.other_play=S9"]).algo.other_play == "S9"
    cfg = compose(["env=hanabi", "model=mlp", "model.eqc=D10", "algo.other_play=S5"])
    assert cfg.model.eqc == "D10" and cfg.env.preset == "full"
    assert compose(["env=hanabi_3c", "model=mlp", "model.eqc=S3"]).env.colors == 3


def test_other_play_relabels_each_agent_and_maps_actions_back() -> None:
    env = LeverGame(num_envs=6)
    act = env.symmetry("C9")
    gen = torch.Generator().manual_seed(0)
    op = OtherPlay(act, num_envs=6, n_agents=2, generator=gen)
    assert op.g.shape == (6, 2)
    obs = env.reset()
    mask = torch.rand(6, 2, 10, generator=gen) > 0.3
    seen = op.observation(Observation(obs.obs, obs.state, None, mask))
    for e in range(6):
        for a in range(2):
            g = int(op.g[e, a])
            # the relabelled mask allows K_g(b) exactly where the original allows b
            assert torch.equal(seen.action_mask[e, a, act.action_perm[g]], mask[e, a])
    chosen = torch.randint(10, (6, 2), generator=gen)
    back = op.env_action(chosen)
    assert torch.equal(act.action(back, op.g), chosen)  # K_g(env action) = chosen action
    before = op.g.clone()
    done = torch.tensor([True, False, True, False, False, False])
    for _ in range(5):
        op.new_episodes(done)
    assert torch.equal(op.g[~done], before[~done])
    assert not torch.equal(op.g[done], before[done])


def test_trainer_eqc_and_other_play_on_hanabi(tmp_path: Path) -> None:
    cfg = compose([*HANABI_TINY, "model.eqc=C3", "algo.other_play=S3"])
    tr = Trainer(cfg, tmp_path)
    assert isinstance(tr.policy, EQC) and tr.other_play is not None
    before = [p.detach().clone() for p in tr.policy.parameters()]
    ro = tr.rollout()
    # the stored actions are legal under the stored (relabelled) masks
    assert bool(ro.obs.action_mask.gather(-1, ro.action.unsqueeze(-1)).all())
    tr.update(ro)
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.policy.parameters()))
    tr.iteration += 1
    state = load_checkpoint(tr.save())
    assert "other_play" in state and state["other_play"]["g"].shape == (8, 2)
    # the checkpoint holds the plain policy (EQC adds no parameters)
    assert isinstance(tr.policy.policy, Policy) and set(state["policy"]) == set(tr.policy.policy.state_dict())
    tr2 = Trainer(cfg, tmp_path)
    tr2.load_state_dict(state)
    assert torch.equal(tr2.other_play.g, tr.other_play.g)  # type: ignore[union-attr]
    ev = tr.evaluate()
    assert ev["eval_return"] == ev["eval_return"]  # a number (not nan)


def test_cli_trains_lever_with_eqc(tmp_path: Path) -> None:
    from eqmarl.launch.job import run_training

    cfg = compose([*TINY, "model=mlp", "env=lever", "model.eqc=C9", "train.total_env_steps=400"])
    metrics = run_training(cfg, tmp_path)
    assert 0.0 <= metrics["eval_return"] <= 1.0
    assert (tmp_path / "checkpoints").is_dir()
