"""model.share_params=false: per-agent actor and critic weights, applied in one batched op."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eqmarl.config import ConfigError, ModelConfig
from eqmarl.core.env import EnvSpec, Observation
from eqmarl.models import make_policy
from eqmarl.models.per_agent import PerAgentLinear
from tests.conftest import TINY, compose


@pytest.fixture(autouse=True)
def _threads(one_thread):  # type: ignore[no-untyped-def]
    yield


def _spec(n: int, action_type: str = "continuous") -> EnvSpec:
    return EnvSpec(
        n_agents=n,
        obs_dim=6,
        state_dim=6 * n,
        action_type=action_type,
        action_dim=2 if action_type == "continuous" else 5,
        episode_limit=25,
    )


def _obs(e: int, n: int, same: bool) -> Observation:
    x = torch.randn(e, 1 if same else n, 6, generator=torch.Generator().manual_seed(0)).expand(e, n, 6).contiguous()
    return Observation(obs=x, state=x.reshape(e, -1))


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
@pytest.mark.parametrize("centralized", [False, True], ids=["ippo", "mappo"])
def test_agents_get_different_outputs_for_identical_inputs(action_type: str, centralized: bool) -> None:
    torch.manual_seed(0)
    p = make_policy(ModelConfig(name="mlp", hidden=16, share_params=False), _spec(5, action_type), centralized)
    obs = _obs(3, 5, same=True)
    dist = p.distribution(obs)
    out = dist.mean if action_type == "continuous" else dist.logits
    v = p.value(obs)
    for a in range(1, 5):
        assert not torch.allclose(out[:, a], out[:, 0]) and not torch.allclose(v[:, a], v[:, 0])
    shared = make_policy(ModelConfig(name="mlp", hidden=16), _spec(5, action_type), centralized)
    s_out = shared.distribution(obs)
    s_out = s_out.mean if action_type == "continuous" else s_out.logits
    assert torch.allclose(s_out[:, 1], s_out[:, 0])  # the shared policy: identical rows


def test_per_agent_linear_gradients_are_each_agents_own() -> None:
    """The gradient of agent a's slice equals that of a plain Linear with a's weights, and a
    loss on one agent's output moves only that agent's weights."""
    torch.manual_seed(0)
    lin = PerAgentLinear(4, 3, 5)
    x = torch.randn(7, 4, 3)
    y = lin(x)
    target = torch.randn(7, 4, 5)
    ((y - target) ** 2).sum().backward()
    for a in range(4):
        w = lin.weight.detach()[a].clone().requires_grad_(True)
        b = lin.bias.detach()[a].clone().requires_grad_(True)
        ya = x[:, a] @ w + b
        torch.testing.assert_close(ya, y[:, a].detach())
        ((ya - target[:, a]) ** 2).sum().backward()
        torch.testing.assert_close(lin.weight.grad[a], w.grad)
        torch.testing.assert_close(lin.bias.grad[a], b.grad)
    lin.zero_grad()
    lin(x)[:, 2].sum().backward()
    nonzero = [a for a in range(4) if bool(lin.weight.grad[a].abs().sum() > 0)]
    assert nonzero == [2]


def test_parameters_grow_with_agents_and_other_counts_are_refused() -> None:
    sizes = [
        sum(
            p.numel()
            for p in make_policy(ModelConfig(name="mlp", hidden=16, share_params=False), _spec(n), False).parameters()
        )
        for n in (2, 4)
    ]
    assert sizes[1] == 2 * sizes[0]
    p = make_policy(ModelConfig(name="mlp", hidden=16, share_params=False), _spec(4), False)
    with pytest.raises(ValueError, match="weights for 4 agents; the input has 3"):
        p.distribution(_obs(2, 3, same=False))


def test_graph_models_refuse_per_agent_weights() -> None:
    with pytest.raises(ConfigError) as e:
        compose([*TINY, "model=e2gn2", "model.share_params=false"])
    assert e.value.key == "model.share_params"


def test_trains_checkpoints_and_resumes(tmp_path: Path) -> None:
    from eqmarl.launch.job import run_training
    from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint

    cfg = compose(
        [
            *TINY,
            "model=mlp",
            "model.share_params=false",
            "env.n_agents=4",
            "train.total_env_steps=400",
            "logger.csv=false",
        ]
    )
    run_training(cfg, tmp_path / "a")
    st = load_checkpoint(resolve_checkpoint(tmp_path / "a"))
    assert st["policy"]["actor_encoder.net.0.weight"].shape[0] == 4
    p = make_policy(cfg.model, _spec(4), False)
    assert p.state_dict().keys() == st["policy"].keys()
