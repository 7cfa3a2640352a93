"""``env=`` group: one schema per env family, and each family's own check next to its fields.

The allowed values of an env's options are stated once, by the env module that owns them
(:mod:`eqmarl.envs.mpe`, :mod:`eqmarl.envs.hanabi`, :mod:`eqmarl.envs.lever`,
:mod:`eqmarl.envs.smacv2_scenarios`); the checks here import them (lazily: the env
modules import torch), and the envs' own checks raise
:class:`~eqmarl.core.errors.InvalidOption`, which is :class:`~eqmarl.config.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from eqmarl.config.errors import ConfigError, check_choice, check_positive


@dataclass
class EnvConfig:
    """Base of every env config (``env=`` group)."""

    # which environment family: mpe | lever | hanabi | smacv2 (ENV_SCHEMAS)
    name: str = MISSING
    # steps after which an episode is truncated (MPE: 25)
    episode_limit: int = 25


# --------------------------------------------------------------------------------- mpe
@dataclass
class MpeEnvConfig(EnvConfig):
    """MPE tasks (``env=mpe``)."""

    name: str = "mpe"
    # simple_spread | simple_tag | simple_spread_large (simple_spread vectorized for
    # hundreds to thousands of agents on VMAS: see eqmarl.envs.spread_large)
    scenario: str = "simple_spread"
    # vmas (batched torch, default) | mpe2 (PettingZoo reference, worker processes)
    backend: str = "vmas"
    # learning agents (simple_spread: agents = landmarks; simple_tag: predators)
    n_agents: int = 3
    # simple_tag obstacles (None = the scenario's default, 2)
    n_landmarks: Optional[int] = None
    # simple_tag prey (scripted, not learning)
    n_prey: int = 1
    # scripted prey in simple_tag: flee | random | still
    prey_policy: str = "flee"
    # continuous 2-D force actions (True) or 5 discrete moves (False)
    continuous_actions: bool = True
    # mpe2 backend only: worker processes that step the envs
    workers: int = 2
    # mpe2 backend only: seconds a worker may take to answer (a step, reset, the env state
    # of a checkpoint or of a resume, close) before it counts as hung: then it is killed,
    # restarted (its envs start new episodes) and counted in metrics.csv's env_timeouts
    worker_timeout_s: float = 60.0


# simple_tag's own keys with their defaults: another scenario would ignore them
SIMPLE_TAG_KEYS = {"n_landmarks": None, "n_prey": 1, "prey_policy": "flee"}


def check_mpe(env: MpeEnvConfig) -> None:
    """Scenario, backend and prey policy among :mod:`eqmarl.envs.mpe`'s; counts; no simple_tag
    setting on another scenario."""
    from eqmarl.envs.mpe import BACKENDS, PREY_POLICIES, SCENARIOS

    check_choice("env.scenario", env.scenario, SCENARIOS)
    check_choice("env.backend", env.backend, BACKENDS)
    if env.scenario == "simple_spread_large":
        check_choice("env.backend", env.backend, ["vmas"])
    check_choice("env.prey_policy", env.prey_policy, PREY_POLICIES)
    check_positive("env.n_agents", env.n_agents)
    check_positive("env.n_prey", env.n_prey)
    check_positive("env.workers", env.workers)
    check_positive("env.worker_timeout_s", env.worker_timeout_s)
    if env.n_landmarks is not None:
        check_positive("env.n_landmarks", env.n_landmarks)
    if env.scenario != "simple_tag":
        for key, default in SIMPLE_TAG_KEYS.items():
            val = getattr(env, key)
            if val != default:
                raise ConfigError(
                    f"env.{key}",
                    val,
                    f"{default if default is not None else 'null'} with env.scenario={env.scenario} "
                    f"(a simple_tag setting; {env.scenario} ignores it)",
                )


# ------------------------------------------------------------------------------- lever
@dataclass
class LeverEnvConfig(EnvConfig):
    """The lever coordination game (``env=lever``): one-step episodes, payout if all agree."""

    name: str = "lever"
    # every episode is one step
    episode_limit: int = 1
    # players (payout only if all pull the same lever)
    n_agents: int = 2
    # payoff of each lever (one action per lever); EQC's game: nine 1.0 levers and one 0.9
    payoffs: list[float] = field(default_factory=lambda: [1.0] * 9 + [0.9])


def check_lever(env: LeverEnvConfig) -> None:
    """One-step episodes; at least 2 players and 2 levers (:func:`eqmarl.envs.lever.check_options`)."""
    from eqmarl.envs.lever import check_options

    check_choice("env.episode_limit", env.episode_limit, [1])
    check_options(env.n_agents, env.payoffs)


# ------------------------------------------------------------------------------ hanabi
@dataclass
class HanabiEnvConfig(EnvConfig):
    """Hanabi on the engine (``env=hanabi``); see :mod:`eqmarl.envs.hanabi`."""

    name: str = "hanabi"
    # truncate after this many turns (0: never cut a game, i.e. 2 * deck + information tokens)
    episode_limit: int = 0
    # variant preset: full | small | very_small (overridden by the fields below)
    preset: str = "full"
    # seats = agents: 2..5
    players: int = 2
    # override the preset (None: keep it): colours 1..5, ranks 1..5, cards per hand, tokens
    colors: Optional[int] = None
    ranks: Optional[int] = None
    hand_size: Optional[int] = None
    max_information_tokens: Optional[int] = None
    max_life_tokens: Optional[int] = None
    # card_knowledge (canonical encoding with hint memory) | minimal
    observation_type: str = "card_knowledge"
    # the engine picks the first player at random
    random_start_player: bool = False
    # engine (hanabi-learning-environment, a Python loop over games) | fast (batched torch
    # re-implementation, same observations/masks/rewards; seat 0 always starts)
    backend: str = "engine"


def hanabi_params(env: HanabiEnvConfig) -> Any:
    """The game variant ``env.*`` names (:class:`eqmarl.envs.hanabi.HanabiParams`; raises as it does)."""
    from eqmarl.envs.hanabi import HanabiParams

    return HanabiParams.from_preset(
        env.preset,
        env.players,
        env.colors,
        env.ranks,
        env.hand_size,
        env.max_information_tokens,
        env.max_life_tokens,
        env.observation_type,
    )


def check_hanabi(env: HanabiEnvConfig) -> None:
    """The backend and the game variant, as :mod:`eqmarl.envs.hanabi` checks them when it builds."""
    from eqmarl.envs.hanabi import check_backend

    check_backend(env.backend, env.random_start_player)
    hanabi_params(env)


# ------------------------------------------------------------------------------ smacv2
@dataclass
class Smacv2EnvConfig(EnvConfig):
    """SMACv2 scenarios (``env=smacv2``; ``env=smax`` is the same with ``backend: smax``).
    See :mod:`eqmarl.envs.smacv2_scenarios` for the start positions and unit types."""

    name: str = "smacv2"
    # sc2 (StarCraft II, inside the project's image) | smax (JaxMARL's SMAX, no game needed)
    backend: str = "sc2"
    # terran | protoss | zerg (on smax: marine/marauder, stalker/zealot, zergling/hydralisk)
    race: str = "terran"
    # learning agents (allies)
    n_units: int = 5
    # enemies (the built-in AI: SC2's, or SMAX's heuristic)
    n_enemies: int = 5
    # surrounded | reflect | surrounded_and_reflect
    start_positions: str = "surrounded_and_reflect"
    # surrounded_and_reflect: probability of reflect (SMACv2's p; P(surrounded) = 1 - p)
    p: float = 0.5
    # diagonals the enemy groups of surrounded starts use: all (4) | left (x = 0 corners) | right (x = W)
    surround_sides: str = "all"
    # continuous (2-D move vector, E2GN2's setup) | discrete (nearest available compass move)
    movement: str = "continuous"
    # steps after which an episode is truncated (SMAX's default 100; SMACv2 on SC2: 200)
    episode_limit: int = 100
    # smax only: side of the square map; null = SMACv2's 32 up to 10 units per side, larger
    # teams (N-vs-N) on ceil(32 * sqrt(N / 10)) so the unit density stays that of 10v10
    map_size: Optional[float] = None
    # sc2 only: seconds a game's worker may take to answer (a step, a reset with the game's
    # launch, close) before it counts as hung: killed, restarted, counted in env_timeouts
    worker_timeout_s: float = 120.0
    # smax only: a JaxMARL map (3m, 2s3z, 5m_vs_6m, ..., smacv2_5_units / 10 / 20: the names
    # of jaxmarl's map_name_to_scenario, eqmarl.envs.smax.JAXMARL_SCENARIOS) played with its
    # own unit types, start positions, team sizes and 32 x 32 map (n_units / n_enemies follow
    # it; race, start_positions, p, surround_sides, map_size keep their defaults); null =
    # eqmarl's SMACv2 scenario set by the keys above
    scenario: Optional[str] = None
    # smax only: team sizes drawn per episode; null = every episode n_units vs n_enemies;
    # an integer in [1, n_units] = every env draws its team size per episode uniformly from
    # min_units..n_units (both sides; needs n_enemies = n_units), padded to n_units with
    # units dead from the start (out of the graph, the rewards and the PPO loss)
    min_units: Optional[int] = None


def check_smacv2(env: Smacv2EnvConfig) -> None:
    """Backend, scenario, map size and team sizes, as :mod:`eqmarl.envs.smacv2_scenarios` checks them."""
    from eqmarl.envs.smacv2_scenarios import BACKENDS, check_map_size, check_scenario, check_team_sizes

    check_choice("env.backend", env.backend, BACKENDS)
    check_scenario(env.race, env.n_units, env.n_enemies, env.start_positions, env.p, env.surround_sides, env.movement)
    check_map_size(env.backend, env.map_size)
    check_team_sizes(env.backend, env.min_units, env.n_units, env.n_enemies)
    check_positive("env.worker_timeout_s", env.worker_timeout_s)
    if env.scenario is not None:
        from eqmarl.envs.smax import check_jaxmarl_scenario

        if env.backend != "smax":
            raise ConfigError(
                "env.scenario", env.scenario, f"null with env.backend={env.backend} (JaxMARL's maps run on smax)"
            )
        check_jaxmarl_scenario(
            env.scenario,
            env.race,
            env.n_units,
            env.n_enemies,
            env.start_positions,
            env.p,
            env.surround_sides,
            env.map_size,
            env.min_units,
        )


def smacv2_teams(env: Smacv2EnvConfig) -> tuple[int, int]:
    """(allies, enemies) of a SMACv2 config: ``env.scenario``'s when it names a JaxMARL map."""
    from eqmarl.envs.smax import scenario_teams

    return scenario_teams(env.scenario, env.n_units, env.n_enemies)


# ------------------------------------------------------------------------------- group
# env.name -> its schema (registered in hydra's ConfigStore as env/schema_<name>); the
# builders are eqmarl.build.BUILDERS
ENV_SCHEMAS: dict[str, type] = {
    "mpe": MpeEnvConfig,
    "lever": LeverEnvConfig,
    "hanabi": HanabiEnvConfig,
    "smacv2": Smacv2EnvConfig,
}
# the range of each float key, for the message when a value is not finite
FLOAT_RANGES = {
    "env.p": "in [0, 1]",
    "env.payoffs": "(one payoff per lever)",
    "env.worker_timeout_s": "> 0 (seconds)",
}


def check_env(env: EnvConfig) -> None:
    """Check an env config on its own: its name, episode limit and its family's options.

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    check_choice("env.name", env.name, ENV_SCHEMAS)
    check_positive("env.episode_limit", env.episode_limit, allow_zero=isinstance(env, HanabiEnvConfig))
    if isinstance(env, MpeEnvConfig):
        check_mpe(env)
    elif isinstance(env, LeverEnvConfig):
        check_lever(env)
    elif isinstance(env, HanabiEnvConfig):
        check_hanabi(env)
    elif isinstance(env, Smacv2EnvConfig):
        check_smacv2(env)


# the Python packages an env imports when it is built, by (env.name, env.backend): the
# top-level modules, what to install, and the alternative to offer
ENV_PACKAGES: dict[tuple[str, str], tuple[tuple[str, ...], str, str]] = {
    ("mpe", "vmas"): (("vmas",), "pip install 'eqmarl[mpe]'", "mpe2"),
    ("mpe", "mpe2"): (("mpe2",), "pip install 'eqmarl[mpe]'", "vmas"),
    ("hanabi", "engine"): (
        ("hanabi_learning_environment",),
        "CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install hanabi-learning-environment",
        "fast",
    ),
    ("smacv2", "smax"): (("jax", "jaxmarl"), "pip install 'eqmarl[smax]'", "sc2"),
}


def _installed(module: str) -> bool:
    """Whether a top-level module can be imported (found without importing it)."""
    import importlib.util
    import sys

    try:
        return importlib.util.find_spec(module) is not None  # None also for sys.modules[module] = None
    except (ImportError, ValueError):  # a loaded module without a spec
        return sys.modules.get(module) is not None


def check_env_runs_here(env: EnvConfig, starcraft2: bool = True) -> None:
    """What an env needs on the machine that runs it: its Python packages (:data:`ENV_PACKAGES`)
    and StarCraft II for ``env.backend=sc2``.

    A local run is checked here, and so is a SLURM sweep with ``container=none`` before
    ``sbatch`` (its jobs run this machine's Python); a job's node is checked again when
    the job starts.

    Args:
        env: the env config.
        starcraft2: look for StarCraft II (False: ``$SC2PATH`` names it on the jobs' nodes).

    Raises:
        ConfigError: naming ``env.backend``, what is missing and how to install it.
    """
    backend = str(getattr(env, "backend", ""))
    if (env.name, backend) in ENV_PACKAGES:
        modules, install, other = ENV_PACKAGES[(env.name, backend)]
        missing = [m for m in modules if not _installed(m)]
        if missing:
            raise ConfigError(
                "env.backend",
                backend,
                f"{other} here (env.backend={backend} needs the Python package(s) {', '.join(missing)}, "
                f"not installed: {install})",
            )
    if starcraft2 and isinstance(env, Smacv2EnvConfig) and env.backend == "sc2":
        from eqmarl.envs.smacv2 import find_starcraft2, starcraft2_missing_message

        if find_starcraft2() is None:
            raise ConfigError("env.backend", "sc2", "smax here: " + starcraft2_missing_message())


def validate_env_overrides(env: EnvConfig) -> None:
    """Check an env config on its own (``eqmarl eval``'s ``env.*`` overrides of a trained run)."""
    check_env(env)
    check_env_runs_here(env)


def agent_count(env: EnvConfig) -> int:
    """The learning agents of an env config (1 where the schema has no count)."""
    if isinstance(env, Smacv2EnvConfig):
        return smacv2_teams(env)[0]
    for k in ("n_agents", "players", "n_units"):
        if isinstance(getattr(env, k, None), int):
            return int(getattr(env, k))
    return 1
