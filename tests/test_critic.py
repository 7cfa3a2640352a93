"""``model.critic``: a critic encoder other than the actor's (e.g. a cheap MLP critic under
an E2GN2 actor).  The policy stays equivariant (the actor decides it); the critic is what
was asked for; bad values are refused naming the key."""

from __future__ import annotations

import pytest
import torch

from eqmarl.config import ConfigError, ModelConfig
from eqmarl.envs.mpe_vmas import VmasMPE
from eqmarl.models.gnn import GNNLayer
from eqmarl.models.message_passing import GraphEncoder
from eqmarl.models.mlp import MLPEncoder
from eqmarl.models.registry import make_policy
from eqmarl.symmetry.testing import EquivarianceError, assert_equivariant, random_o2, rotate_observation
from tests.conftest import compose
from tests.test_graph_models import policy_outputs, vmas_obs  # noqa: F401  (the fixture)


def _policy(critic: str | None, dtype: torch.dtype = torch.float64):
    spec = VmasMPE("simple_spread", num_envs=1).spec
    torch.manual_seed(0)
    return make_policy(ModelConfig(name="e2gn2", hidden=16, critic=critic), spec, False).to(dtype)


def test_the_critic_is_built_from_model_critic() -> None:
    assert isinstance(_policy(None).critic_encoder, GraphEncoder)
    assert isinstance(_policy("mlp").critic_encoder, MLPEncoder)
    gnn = _policy("gnn").critic_encoder
    assert isinstance(gnn, GraphEncoder) and all(isinstance(layer, GNNLayer) for layer in gnn.layers)


@pytest.mark.parametrize("critic", ["mlp", "gnn"])
def test_actor_stays_equivariant_with_another_critic(vmas_obs, critic: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    torch.set_num_threads(1)
    policy = _policy(critic)
    gen = torch.Generator().manual_seed(4)
    for reflection in (False, True):
        g = random_o2(reflection, gen, torch.float64)
        # rotate the graph and the flat observation alike: the actor reads the graph only
        both = lambda o, g: rotate_observation(o, g, flat_vectors=True)  # noqa: E731
        assert_equivariant(policy_outputs(policy), vmas_obs, {"mean": "equivariant"}, g=g, transform=both)
    # the critic is not the E2GN2 one: its value is no longer rotation-invariant (mlp and
    # gnn read coordinates as plain features); the check sees it, so it can fail
    with pytest.raises(EquivarianceError, match="value"):
        assert_equivariant(policy_outputs(policy), vmas_obs, {"value": "invariant"}, transform=both, generator=gen)
    assert_equivariant(policy_outputs(_policy(None)), vmas_obs, {"value": "invariant"}, transform=both, generator=gen)


def test_bad_critics_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.critic='transformer'; allowed: .*e2gn2.*mlp"):
        compose(["model.critic=transformer"])
    with pytest.raises(ConfigError, match=r"model\.critic='gnn'.*no entity graph"):
        compose(["env=lever", "model=mlp", "model.critic=gnn"])
    assert compose(["model.critic=mlp"]).model.critic == "mlp"
