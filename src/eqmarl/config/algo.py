"""``algo=`` group: PPO's settings (names as in CleanRL's ppo.py), and their own check.

Checks that need other groups (minibatches dividing the batch of ``train.num_envs``; a
symmetry group for Other-Play that fits the env) are in :mod:`eqmarl.config.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from eqmarl.config.errors import ConfigError, check_choice, check_positive


@dataclass
class AlgoConfig:
    """PPO (``algo=`` group).  Names follow CleanRL's ppo.py."""

    # ippo (critic on each agent's own view) | mappo (centralized critic on the global state)
    name: str = "ippo"
    # env steps per env per iteration (T); batch = T * train.num_envs frames
    rollout_steps: int = 25
    # passes over the batch per iteration
    epochs: int = 4
    # minibatches per pass; must divide the batch (T * num_envs)
    num_minibatches: int = 4
    # Adam learning rate
    lr: float = 3e-4
    # anneal the learning rate linearly to 0 over train.total_env_steps
    anneal_lr: bool = True
    # discount
    gamma: float = 0.99
    # GAE lambda
    gae_lambda: float = 0.95
    # surrogate clipping coefficient
    clip_coef: float = 0.2
    # clip the value loss around the old values (PPO2 style)
    clip_vloss: bool = False
    # value loss coefficient
    vf_coef: float = 0.5
    # entropy bonus coefficient
    ent_coef: float = 0.0
    # global gradient-norm clip (<= 0: off)
    max_grad_norm: float = 0.5
    # normalize advantages per minibatch
    norm_adv: bool = True
    # value normalization (running mean/std of returns; critic predicts normalized values)
    value_norm: bool = True
    # stop the epochs of an iteration early when approx_kl exceeds this (None: never)
    target_kl: Optional[float] = None
    # Other-Play: an independent random element of this group (a name as for model.eqc)
    # per agent per episode, applied to that agent's observations and actions; None: off
    other_play: Optional[str] = None


# algo.name: independent critics | a centralized critic (the trainer's centralized_critic)
ALGOS = ("ippo", "mappo")
# the range of each float key, for the message when a value is not finite
FLOAT_RANGES = {
    "algo.lr": "> 0",
    "algo.clip_coef": "> 0",
    "algo.vf_coef": ">= 0",
    "algo.ent_coef": ">= 0",
    "algo.gamma": "in [0, 1]",
    "algo.gae_lambda": "in [0, 1]",
    "algo.max_grad_norm": "(<= 0: no clipping)",
    "algo.target_kl": "> 0, or null (never stop early)",
}


def check_algo(a: AlgoConfig) -> None:
    """The algorithm's name, positive sizes and rates, and probabilities in [0, 1].

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    check_choice("algo.name", a.name, ALGOS)
    for k in ("rollout_steps", "epochs", "num_minibatches", "lr", "clip_coef"):
        check_positive(f"algo.{k}", getattr(a, k))
    for k in ("vf_coef", "ent_coef"):
        check_positive(f"algo.{k}", getattr(a, k), allow_zero=True)
    for k in ("gamma", "gae_lambda"):
        v = getattr(a, k)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"algo.{k}", v, "a number in [0, 1]")
    if a.target_kl is not None and not a.target_kl > 0:
        raise ConfigError("algo.target_kl", a.target_kl, "a number > 0, or null (never stop early)")
