"""Generated bad input (issue 13): every override either stops before anything runs with
exit code 2 and one line naming the key, or (where the value is in fact valid) trains.

The cases are generated from the config schemas: for every key of every group (each env
option with its own schema) wrong types, non-finite numbers, empty values and non-ASCII
text; deleted groups and keys, unknown keys and group options, override syntax errors
and bad combinations.  Most are checked in process through launch.py's own path (hydra
compose -> :func:`eqmarl.launch.checks.checked_config`, messages by
:func:`~eqmarl.launch.checks.bad_input_message`); a sample covering every error path runs
through the real ``python launch.py``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import eqmarl.config as C
from eqmarl.launch.checks import bad_input_message, checked_config, is_bad_input
from tests.conftest import CONFIGS, TINY, launch_cmd

# env option -> (its schema, overrides it needs to be checked on its own: no graph model
# without an entity graph, SMACv2 on SMAX since StarCraft II is not installed here)
ENV_OPTIONS = {
    "mpe": (C.MpeEnvConfig, []),
    "lever": (C.LeverEnvConfig, ["model=mlp"]),
    "hanabi": (C.HanabiEnvConfig, ["model=mlp"]),
    "hanabi_3c": (C.HanabiEnvConfig, ["model=mlp"]),
    "smax": (C.Smacv2EnvConfig, []),
    "smacv2": (C.Smacv2EnvConfig, ["env.backend=smax"]),
}
GROUPS = {
    "model": C.ModelConfig,
    "algo": C.AlgoConfig,
    "train": C.TrainConfig,
    "logger": C.LoggerConfig,
    "cluster": C.ClusterConfig,
    "learner": C.LearnerConfig,
    "container": C.ContainerConfig,
}
# free text: any string is a valid value (W&B names, SLURM names, paths, commands)
FREE_TEXT = {
    "logger.project",
    "logger.entity",
    "logger.group",
    "logger.job_type",
    "cluster.partition",
    "cluster.account",
    "cluster.qos",
    "cluster.constraint",
    "cluster.log_dir",
    "cluster.job_name",
    "container.image",
    "container.python",
    "resume",
    "experiment",
}
NON_FINITE = ["nan", "inf", "-inf"]
NON_ASCII = "'ñandú'"


def _base(t: typing.Any) -> typing.Any:
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if typing.get_origin(t) is typing.Union and len(args) == 1 else t


def _bad_values(key: str, t: typing.Any, i: int) -> list[str]:
    """One bad value per key (the kinds rotate over the keys); floats: a non-finite one too."""
    t = _base(t)
    if t is bool:
        kinds = ["2", "maybe", "''"]
    elif t is int:
        kinds = ["1.5", "abc", "''", "inf"]
    elif t is float:
        return [NON_FINITE[i % 3]] + ([["abc", "''"][i // 2 % 2]] if i % 2 == 0 else [])
    elif t is str:
        kinds = [] if key in FREE_TEXT else ["''", NON_ASCII, "no_such_value"]
    elif typing.get_origin(t) is list:
        (item,) = typing.get_args(t)
        kinds = ["[nan,1.0]", "[1.0,inf]"] if item is float else ["abc"] if item is str else []
    elif typing.get_origin(t) is dict:
        kinds = ["abc"]
    else:
        kinds = []
    return [kinds[i % len(kinds)]] if kinds else []


def generate() -> list[tuple[list[str], str]]:
    """(overrides, the key the message must name)."""
    cases: list[tuple[list[str], str]] = []

    def fields(cls: type, prefix: str, extra: list[str], limit: int = 1000, offset: int = 0) -> None:
        hints = typing.get_type_hints(cls)
        for i, f in enumerate(dataclasses.fields(cls)[offset : offset + limit]):
            key = f"{prefix}{f.name}"
            for v in _bad_values(key, hints[f.name], i + offset):
                cases.append(([*extra, f"{key}={v}"], key))

    for n, (option, (schema, extra)) in enumerate(ENV_OPTIONS.items()):
        # every key on the default env; a few on each other option (the schemas repeat)
        fields(schema, "env.", [f"env={option}", *extra], *((1000, 0) if option == "mpe" else (2, 1 + 2 * (n % 3))))
        cases.append(([f"env={option}", *extra, "+env.no_such_key=1"], "env.no_such_key"))
    for group, schema in GROUPS.items():
        fields(schema, f"{group}.", [])
        cases.append(([f"+{group}.no_such_key=1"], f"{group}.no_such_key"))
    cases += [([f"seed={v}"], "seed") for v in ("-1", "2147483648", "''", "nan")]
    # deleted groups and keys; unknown group options
    for group in ("env", *GROUPS):
        cases.append(([f"~{group}"], group))
    cases += [([f"{g}=no_such_option"], g) for g in ("env", "model", "learner")]
    cases += [
        (["~seed"], "seed"),
        (["~train.num_envs"], "train.num_envs"),
        (["experiment=no_such_option"], "experiment"),
    ]
    # override syntax
    cases += [
        (["seed=["], "seed"),
        (["env.scenario=ñandú"], "env.scenario"),
        (["algo.lr=1e-3)"], "algo.lr"),
        (["train.num_envs=={1}"], "train.num_envs"),
    ]
    # values the types accept but a run cannot use, or would ignore
    cases += [
        (["train.max_iterations=0"], "train.max_iterations"),
        (["train.max_nonfinite_updates=0"], "train.max_nonfinite_updates"),
        (["algo.target_kl=-1"], "algo.target_kl"),
        (["algo.target_kl=0"], "algo.target_kl"),
        (["model.init_log_std=1000"], "model.init_log_std"),
        (["model.graph_backend=sparse"], "model.graph_backend"),
        (["train.device=cuda"], "train.device"),
        (["train.num_envs=1000000000"], "train.num_envs"),
        (["train.num_envs=1000000", "algo.rollout_steps=1000", "algo.num_minibatches=1"], "train.num_envs"),
        (["train.eval_episodes=100000000"], "train.eval_episodes"),
        (["env.n_landmarks=4"], "env.n_landmarks"),
        (["env.n_prey=3"], "env.n_prey"),
        (["env.prey_policy=random"], "env.prey_policy"),
        (["env.scenario=simple_spread_large", "env.n_landmarks=2"], "env.n_landmarks"),
    ]
    # bad combinations
    cases += [
        (["learner=single", "learner.zero_stage=2"], "learner.zero_stage"),
        (["learner=ddp", "learner.precision=bf16"], "learner.precision"),
        (["learner=deepspeed", "learner.offload_optimizer=true"], "learner.offload_optimizer"),
        (["env=lever"], "model.name"),
        (["model=mlp", "model.knn=3"], "model.knn"),
        (["model=gnn", "model.share_params=false"], "model.share_params"),
        (["container=docker"], "container.runtime"),
        (["container=docker", "container.image=x"], "container.runtime"),
        (["algo.num_minibatches=7"], "algo.num_minibatches"),
        (["cluster.timeout_min=1", "cluster.signal_delay_s=120"], "cluster.signal_delay_s"),
        (["env.scenario=simple_spread_large", "env.backend=mpe2"], "env.backend"),
        (["env=hanabi", "model=mlp", "env.backend=fast", "env.random_start_player=true"], "env.random_start_player"),
        (["env=lever", "model=mlp", "model.eqc=C4"], "model.eqc"),
        (["model.eqc=C3"], "model.eqc"),
        (["env=lever", "model=mlp", "env.payoffs=[1.0]"], "env.payoffs"),
        (["env=smacv2"], "env.backend"),
        (["experiment=lever", "model=gnn"], "model.name"),
        (["cluster=slurm"], "cluster.name"),
    ]
    return cases


CASES = generate()
# generated values that are in fact valid: each trains a tiny run to the end
VALID = [["~experiment"], ["env.continuous_actions=False"], ["learner=ddp"]]


@pytest.fixture(scope="module")
def hydra_compose():  # type: ignore[no-untyped-def]
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    C.register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        yield compose
    GlobalHydra.instance().clear()


def check(compose, overrides: list[str]) -> str | None:  # type: ignore[no-untyped-def]
    """launch.py's path in process: the one-line message of a bad input, None when valid."""
    try:
        checked_config(compose("config", overrides=overrides), overrides, multirun=False)
    except Exception as e:
        assert is_bad_input(e), f"{overrides}: not reported as bad input: {type(e).__name__}: {e}"
        return bad_input_message(e)
    return None


def test_at_least_100_generated_cases_across_every_group() -> None:
    assert len(CASES) >= 100
    keys = {key.split(".")[0] for _, key in CASES}
    assert {"env", "model", "algo", "train", "logger", "cluster", "learner", "container", "experiment"} <= keys
    for option in ENV_OPTIONS:
        assert any(f"env={option}" in o for o, _ in CASES), option


def test_every_generated_bad_override_is_refused_naming_its_key(hydra_compose) -> None:  # type: ignore[no-untyped-def]
    failures = []
    for overrides, key in CASES:
        msg = check(hydra_compose, overrides)
        if msg is None:
            failures.append(f"{overrides}: accepted")
        elif key not in msg or "\n" in msg or "Traceback" in msg:
            failures.append(f"{overrides}: message does not name {key} on one line: {msg}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("overrides", VALID, ids=lambda o: " ".join(o))
def test_generated_values_that_are_valid_train_to_the_end(hydra_compose, tmp_path: Path, overrides, one_thread):  # type: ignore[no-untyped-def]
    from eqmarl.launch.job import run_training

    over = [*TINY, "model=mlp", "train.num_envs=4", "train.total_env_steps=200", *overrides]
    assert check(hydra_compose, over) is None
    cfg = checked_config(hydra_compose("config", overrides=over), over, multirun=False)
    metrics = run_training(cfg, tmp_path)
    assert metrics["env_steps"] == 200 and (tmp_path / "checkpoints" / "latest").exists()


# through the real CLI: one case per error path (eqmarl's validation, hydra's parser,
# group options, deleted groups, unknown keys, non-finite numbers, bool types, a sweep)
CLI_SAMPLE = [
    (["seed=["], "seed"),
    (["env.scenario=ñandú"], "env.scenario"),
    (["env=no_such_option"], "env"),
    (["~env"], "env"),
    (["train.num_env=3"], "train.num_env"),
    (["+train.no_such_key=1"], "train.no_such_key"),
    (["algo.lr=inf"], "algo.lr"),
    (["env.continuous_actions=2"], "env.continuous_actions"),
    (["learner=single", "learner.zero_stage=2"], "learner.zero_stage"),
    (["-m", "seed=0,-1"], "seed"),
]


def test_cli_sample_exits_2_with_one_line_naming_the_key(tmp_path: Path, clean_env) -> None:
    def run(i: int) -> subprocess.CompletedProcess:
        over, _ = CLI_SAMPLE[i]
        dirs = [f"hydra.run.dir={tmp_path / str(i)}", f"hydra.sweep.dir={tmp_path / str(i)}"]
        return subprocess.run(
            launch_cmd(*over, *TINY, *dirs), capture_output=True, text=True, env=clean_env, timeout=120, check=False
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run, range(len(CLI_SAMPLE))))
    for i, ((over, key), p) in enumerate(zip(CLI_SAMPLE, results)):
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("eqmarl:")]
        assert p.returncode == 2, f"{over}: exit {p.returncode}\n{p.stderr[-2000:]}"
        assert "Traceback" not in p.stderr, f"{over}:\n{p.stderr[-2000:]}"
        assert lines and key in lines[0], f"{over}: {p.stderr[-2000:]}"
        assert not (tmp_path / str(i)).exists() or not any((tmp_path / str(i)).rglob("metrics.csv")), over
